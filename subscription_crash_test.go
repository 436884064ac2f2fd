package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server/subscription"
)

// TestCrash_SubscriptionDeliverySurvivesKill9 runs the real binary with a
// rest-hook Subscription, commits 1,000 matching Communications, kills the
// server with SIGKILL while it delivers them, restarts it on the same data
// folder and checks that every notification arrives at least once and that
// every duplicate carries the same event number (and idempotency key) for
// the same resource.
func TestCrash_SubscriptionDeliverySurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing subscription delivery across SIGKILL of the cpis binary (builds and runs it)")
	}
	const total = 1000
	var (
		mu       sync.Mutex
		byEvent  = map[int64]string{} // event number -> Communication id
		requests int
		bad      []string
	)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a receiver slow enough that the kill lands mid-delivery
		n, err := strconv.ParseInt(r.Header.Get(subscription.EventNumberHeader), 10, 64)
		id := strings.TrimPrefix(r.URL.Path, "/fhir/Communication/")
		mu.Lock()
		defer mu.Unlock()
		requests++
		sub := r.Header.Get(subscription.SubscriptionHeader)
		if err != nil || r.Header.Get(subscription.IdempotencyKeyHeader) != sub+":"+strconv.FormatInt(n, 10) {
			bad = append(bad, fmt.Sprintf("event %q key %q", r.Header.Get(subscription.EventNumberHeader), r.Header.Get(subscription.IdempotencyKeyHeader)))
		}
		if prev, ok := byEvent[n]; ok && prev != id {
			bad = append(bad, fmt.Sprintf("event %d sent for Communication/%s and Communication/%s", n, prev, id))
		}
		byEvent[n] = id
	}))
	defer rc.Close()
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(byEvent)
	}

	bin := buildCPIS(t)
	dir := t.TempDir()
	p := startCPIS(t, bin, dir)
	client := &http.Client{Transport: withToken(t, dir, http.DefaultTransport)}
	sub := fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"crash test","criteria":"Communication",
		"channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json"}}`, rc.URL+"/fhir")
	status, h, body := do(t, client, "POST", p.base+"/fhir/Subscription", []byte(sub))
	if status != http.StatusCreated {
		t.Fatalf("POST Subscription: status %d body %s", status, body)
	}
	subURL := p.base + "/fhir/" + strings.Join(strings.Split(strings.TrimPrefix(h.Get("Location"), p.base+"/fhir/"), "/")[:2], "/")
	deadline := time.Now().Add(time.Minute)
	for {
		_, _, b := do(t, client, "GET", subURL, nil)
		var s struct{ Status string }
		json.Unmarshal(b, &s)
		if s.Status == "active" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: status %q, want active within a minute", subURL, s.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for b := 0; b < total/100; b++ {
		var entries []string
		for i := 0; i < 100; i++ {
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Communication","status":"completed","payload":[{"contentString":"n%d"}]},"request":{"method":"POST","url":"Communication"}}`, b*100+i))
		}
		bundle := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
		if status, _, body := do(t, client, "POST", p.base+"/fhir", []byte(bundle)); status != http.StatusOK {
			t.Fatalf("POST transaction %d: status %d body %.300s", b, status, body)
		}
	}
	for received() < 300 {
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("only %d notifications arrived before the kill", received())
		}
		time.Sleep(time.Millisecond)
	}
	p.cmd.Process.Kill() // SIGKILL
	p.wait()
	atKill := received()

	startCPIS(t, bin, dir)
	deadline = time.Now().Add(2 * time.Minute)
	for received() < total {
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %d of %d notifications arrived", received(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let stray redeliveries land too
	mu.Lock()
	defer mu.Unlock()
	for n := int64(1); n <= total; n++ {
		if _, ok := byEvent[n]; !ok {
			t.Errorf("event %d never arrived", n)
		}
	}
	if len(byEvent) != total {
		t.Errorf("distinct events %d, want %d", len(byEvent), total)
	}
	for _, b := range bad {
		t.Error(b)
	}
	t.Logf("%d notifications, %d arrived before SIGKILL, %d requests in all (%d duplicates)", total, atKill, requests, requests-total)
}
