package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server/subscription"
)

// hookReceiver is a rest-hook receiver (payload application/fhir+json) that
// records, per Subscription, the Communication each event number carried
// and the order event numbers first arrived in.
type hookReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	byEvent  map[string]map[int64]string // subscription -> event number -> Communication id
	first    map[string][]int64          // subscription -> event numbers in the order they first arrived
	requests int
	bad      []string
}

// newHookReceiver starts a receiver that takes delay over each request.
func newHookReceiver(t *testing.T, delay time.Duration) *hookReceiver {
	t.Helper()
	h := &hookReceiver{byEvent: map[string]map[int64]string{}, first: map[string][]int64{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		n, err := strconv.ParseInt(r.Header.Get(subscription.EventNumberHeader), 10, 64)
		id := strings.TrimPrefix(r.URL.Path, "/fhir/Communication/")
		sub := r.Header.Get(subscription.SubscriptionHeader)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.requests++
		if err != nil || r.Header.Get(subscription.IdempotencyKeyHeader) != sub+":"+strconv.FormatInt(n, 10) {
			h.bad = append(h.bad, fmt.Sprintf("event %q key %q", r.Header.Get(subscription.EventNumberHeader), r.Header.Get(subscription.IdempotencyKeyHeader)))
		}
		events := h.byEvent[sub]
		if events == nil {
			events = map[int64]string{}
			h.byEvent[sub] = events
		}
		prev, seen := events[n]
		if seen && prev != id {
			h.bad = append(h.bad, fmt.Sprintf("Subscription/%s event %d sent for Communication/%s and Communication/%s", sub, n, prev, id))
		}
		if !seen {
			events[n] = id
			h.first[sub] = append(h.first[sub], n)
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// received returns how many distinct events of sub arrived.
func (h *hookReceiver) received(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byEvent[sub])
}

// waitFor waits until n distinct events of sub arrived, failing after d.
func (h *hookReceiver) waitFor(t *testing.T, sub string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for h.received(sub) < n {
		if time.Now().After(deadline) {
			t.Fatalf("Subscription/%s: %d of %d notifications arrived within %s", sub, h.received(sub), n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check asserts that events 1..total of sub arrived, each duplicate for the
// same resource with the same key, and (inOrder) that they first arrived
// in event-number order.
func (h *hookReceiver) check(t *testing.T, sub string, total int, inOrder bool) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for n := int64(1); n <= int64(total); n++ {
		if _, ok := h.byEvent[sub][n]; !ok {
			t.Errorf("Subscription/%s: event %d never arrived", sub, n)
		}
	}
	if len(h.byEvent[sub]) != total {
		t.Errorf("Subscription/%s: distinct events %d, want %d", sub, len(h.byEvent[sub]), total)
	}
	if inOrder {
		for i, n := range h.first[sub] {
			if n != int64(i+1) {
				t.Errorf("Subscription/%s: the %d-th event to arrive first was event %d, want %d (out of order)", sub, i+1, n, i+1)
				break
			}
		}
	}
	for _, b := range h.bad {
		t.Error(b)
	}
}

// subscribe posts an active-to-be rest-hook Subscription to every
// Communication, with the resource as payload, and waits until the engine
// sets it active; it returns its id.
func subscribe(t *testing.T, client *http.Client, base, endpoint string) string {
	t.Helper()
	sub := fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"fault test","criteria":"Communication",
		"channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json"}}`, endpoint)
	status, h, body := do(t, client, "POST", base+"/fhir/Subscription", []byte(sub))
	if status != http.StatusCreated {
		t.Fatalf("POST Subscription: status %d body %s", status, body)
	}
	id := strings.Split(strings.TrimPrefix(h.Get("Location"), base+"/fhir/Subscription/"), "/")[0]
	deadline := time.Now().Add(time.Minute)
	for {
		_, _, b := do(t, client, "GET", base+"/fhir/Subscription/"+id, nil)
		var s struct{ Status string }
		json.Unmarshal(b, &s)
		if s.Status == "active" {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET Subscription/%s: status %q, want active within a minute", id, s.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postCommunications commits n Communications through base, in
// transactions of up to size entries, named from first on.
func postCommunications(t *testing.T, client *http.Client, base string, first, n, size int) {
	t.Helper()
	if err := tryPostCommunications(client, base, first, n, size); err != nil {
		t.Fatal(err)
	}
}

// tryPostCommunications is postCommunications without failing the test,
// for other goroutines than the test's.
func tryPostCommunications(client *http.Client, base string, first, n, size int) error {
	for b := 0; b < n; b += size {
		var entries []string
		for i := b; i < min(b+size, n); i++ {
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Communication","status":"completed","payload":[{"contentString":"n%d"}]},"request":{"method":"POST","url":"Communication"}}`, first+i))
		}
		bundle := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
		status, _, body, err := tryDo(client, "POST", base+"/fhir", []byte(bundle))
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d body %.300s", status, body)
		}
		if err != nil {
			return fmt.Errorf("POST transaction at %d: %w", first+b, err)
		}
	}
	return nil
}

// redisServer is a private redis-server on a port of 19100-19199.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// startRedis starts a private redis-server from /usr/bin/redis-server (or
// PATH); without one the test is skipped, or fails when env CI is set.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin := "/usr/bin/redis-server"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("CI: no redis-server to start a private Redis with")
			}
			t.Skip("no redis-server installed: not testing subscription delivery with Redis")
		}
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir()}
	for p := 19100; p < 19200 && r.port == 0; p++ {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			r.port = p
		}
	}
	if r.port == 0 {
		t.Fatal("no free port in 19100-19199 for a private redis-server")
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// URL is the --redis-url of the server.
func (r *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// start starts the server (again) and waits until it answers.
func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("private redis-server on port %d did not answer within 10s", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server (nothing is saved: a restart is empty).
func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// leaseOwner returns the pid of the process holding Subscription sub's
// delivery lease in dir's store (0 when none holds it).
func leaseOwner(t *testing.T, dir, sub string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "cpis.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var owner string
	err = db.QueryRowContext(context.Background(), `SELECT owner FROM sub_lease WHERE name = ? AND until > ?`, "sub/"+sub, time.Now().UnixMilli()).Scan(&owner)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.Split(owner, "-")[0])
	return pid
}

// faultRig is what the fault tests with Redis share: a private Redis, a
// receiver, the cpis binary, a data folder and an admin's client for it.
type faultRig struct {
	redis  *redisServer
	hooks  *hookReceiver
	bin    string
	dir    string
	client *http.Client
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	f := &faultRig{redis: startRedis(t), hooks: newHookReceiver(t, time.Millisecond), bin: buildCPIS(t), dir: t.TempDir()}
	f.client = &http.Client{Transport: withToken(t, f.dir, http.DefaultTransport)}
	return f
}

// TestCrash_SubscriptionRedisStoppedAndRestarted runs the real binary with
// --redis-url on a private redis-server, commits 1,000 matching
// Communications, kills Redis after 300 arrived, checks that delivery goes
// on from the store while Redis is down, restarts Redis empty, and checks
// that every notification arrives, in order, each duplicate with the same
// event number and key for the same resource.
func TestCrash_SubscriptionRedisStoppedAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing subscription delivery across a Redis outage (builds and runs cpis and redis-server)")
	}
	const total = 1000
	f := newFaultRig(t)
	rd, rc := f.redis, f.hooks
	p := startCPIS(t, f.bin, f.dir, "--redis-url", rd.URL())
	client := f.client
	sub := subscribe(t, client, p.base, rc.srv.URL+"/fhir")
	postCommunications(t, client, p.base, 0, total/2, 100)
	rc.waitFor(t, sub, 300, time.Minute)
	rd.stop()
	atStop := rc.received(sub)
	postCommunications(t, client, p.base, total/2, total/2, 100) // matched and delivered without Redis
	rc.waitFor(t, sub, atStop+100, time.Minute)
	duringOutage := rc.received(sub) - atStop
	rd.start()
	rc.waitFor(t, sub, total, 2*time.Minute)
	time.Sleep(200 * time.Millisecond) // let stray redeliveries land too
	rc.check(t, sub, total, true)
	t.Logf("%d notifications: %d before Redis stopped, at least %d while it was down; %d requests in all (%d duplicates)",
		total, atStop, duringOutage, rc.requests, rc.requests-total)
}

// TestCrash_SubscriptionTwoServersOneKilled runs two real cpis processes on
// one data folder and one private Redis, with two Subscriptions, commits
// 1,000 Communications through both processes at once, kills with SIGKILL
// the process delivering the first Subscription once 300 of its
// notifications arrived, and checks that the other process delivers the
// rest: every notification of both Subscriptions arrives, first in event
// number order, each duplicate with the same event number and key.
func TestCrash_SubscriptionTwoServersOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing two cpis processes sharing delivery through Redis (builds and runs cpis and redis-server)")
	}
	const total = 1000
	f := newFaultRig(t)
	rc, dir, client := f.hooks, f.dir, f.client
	procs := []*cpisProcess{startCPIS(t, f.bin, dir, "--redis-url", f.redis.URL()), startCPIS(t, f.bin, dir, "--redis-url", f.redis.URL())}
	subs := []string{subscribe(t, client, procs[0].base, rc.srv.URL+"/fhir"), subscribe(t, client, procs[1].base, rc.srv.URL+"/fhir")}
	errs := make(chan error, len(procs))
	for i, p := range procs {
		go func() { errs <- tryPostCommunications(client, p.base, i*total/2, total/2, 20) }() // concurrent writers, one per process
	}
	for range procs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, subs[0], 300, time.Minute)
	var victim, survivor *cpisProcess
	for victim == nil {
		pid := leaseOwner(t, dir, subs[0])
		for i, p := range procs {
			if p.cmd.Process.Pid == pid {
				victim, survivor = p, procs[1-i]
			}
		}
		if victim == nil && rc.received(subs[0]) == total {
			t.Fatal("every notification arrived before the kill: nothing to take over")
		}
		time.Sleep(time.Millisecond)
	}
	victim.cmd.Process.Kill() // SIGKILL
	victim.wait()
	atKill := rc.received(subs[0])
	for _, s := range subs {
		rc.waitFor(t, s, total, 2*time.Minute)
	}
	time.Sleep(200 * time.Millisecond)
	for _, s := range subs {
		rc.check(t, s, total, true)
	}
	waitReady(t, survivor.base)
	t.Logf("%d notifications to each of 2 Subscriptions, %d of the first arrived before SIGKILL of its deliverer; %d requests in all (%d duplicates)",
		total, atKill, rc.requests, rc.requests-2*total)
}

// TestServe_DataFolderSharedOnlyWithRedis: a second server on a data folder
// is refused with what to do unless every server of the folder has
// --redis-url; two that have it share the folder, and a lookup through one
// finds the Patient written through the other just after it answered that
// there was none.
func TestServe_DataFolderSharedOnlyWithRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing two cpis processes on one data folder (builds and runs cpis and redis-server)")
	}
	f := newFaultRig(t)
	bin, dir := f.bin, f.dir
	a := startCPIS(t, bin, dir, "--redis-url", f.redis.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--data", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another cpis server") || !strings.Contains(string(out), "--redis-url") {
		t.Errorf("second server without --redis-url: %v, output %q; want a refusal naming --redis-url", err, out)
	}
	b := startCPIS(t, bin, dir, "--redis-url", f.redis.URL())
	client := f.client
	lookup := func(base string) int {
		status, _, body := do(t, client, "POST", base+"/fhir/Patient/_search", []byte("identifier=https://fhir.nhs.uk/Id/nhs-number|9990000042"),
			"Content-Type", "application/x-www-form-urlencoded")
		var bundle struct{ Entry []json.RawMessage }
		if status != http.StatusOK || json.Unmarshal(body, &bundle) != nil {
			t.Fatalf("POST %s/fhir/Patient/_search: status %d body %.300s", base, status, body)
		}
		return len(bundle.Entry)
	}
	if n := lookup(b.base); n != 0 {
		t.Fatalf("lookup through b before any write: %d entries, want 0", n)
	}
	patient := `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000042"}],"gender":"female","birthDate":"2015-04-01"}`
	if status, _, body := do(t, client, "POST", a.base+"/fhir/Patient", []byte(patient)); status != http.StatusCreated {
		t.Fatalf("POST Patient through a: status %d body %.300s", status, body)
	}
	if n := lookup(b.base); n != 1 {
		t.Errorf("lookup through b of the Patient written through a: %d entries, want 1", n)
	}
}

// TestServe_RedisDownAtStart: a server whose --redis-url does not answer
// starts, says so on stderr, and delivers notifications from the store.
func TestServe_RedisDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing a start with Redis down (builds and runs cpis)")
	}
	port := 0
	for p := 19199; p >= 19100 && port == 0; p-- {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			port = p // free: nothing answers there
		}
	}
	rc := newHookReceiver(t, 0)
	bin := buildCPIS(t)
	dir := t.TempDir()
	p := startCPIS(t, bin, dir, "--redis-url", fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	if !strings.Contains(p.stderr.String(), "WARNING: Redis (--redis-url) does not answer") {
		t.Errorf("stderr %q: want the warning that Redis does not answer", tail(p.stderr.String(), 2048))
	}
	client := &http.Client{Transport: withToken(t, dir, http.DefaultTransport)}
	sub := subscribe(t, client, p.base, rc.srv.URL+"/fhir")
	postCommunications(t, client, p.base, 0, 20, 10)
	rc.waitFor(t, sub, 20, time.Minute)
	rc.check(t, sub, 20, true)
}
