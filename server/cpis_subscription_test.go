package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestCPIS_NotificationReachesCouncilSubscription: the whole path of
// DOMAIN.md rule 4. A council subscribes (rest-hook, its own token) to the
// Communications addressed to it; a clinician posts an attendance of a
// child the council holds a record for; the notification the workflow
// writes in the Encounter's transaction arrives at the council's receiver,
// and the other council, which holds no record, gets nothing.
func TestCPIS_NotificationReachesCouncilSubscription(t *testing.T) {
	w := newCPISWorld(t)
	ts := w.ts
	nhs := w.nhs[0]
	pa := w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")

	var mu sync.Mutex
	got := map[string][][]byte{} // by receiver path: the bodies received
	rc := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path[:len("/la-x")]] = append(got[r.URL.Path[:len("/la-x")]], b)
		mu.Unlock()
	}))
	defer rc.Close()
	startEngine(t, ts)

	subscribe := func(tok, ods, path string) string {
		sub := fmt.Sprintf(`{"resourceType":"Subscription","meta":{"tag":[{"system":%q,"code":%q}]},"status":"requested","reason":"CP-IS notifications",
			"criteria":"Communication?recipient:identifier=%s|%s","channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json"}}`,
			odsSys, ods, odsSys, ods, rc.URL+path)
		return do(t, http.MethodPost, ts.Base+"/Subscription", sub, bearer(tok)...).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	}
	ids := []string{subscribe(w.la, councilA, "/la-a/fhir"), subscribe(w.lb, councilB, "/la-b/fhir")}
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		for do(t, http.MethodGet, ts.Base+"/Subscription/"+id, "").object(t)["status"] != "active" {
			if time.Now().After(deadline) {
				t.Fatalf("Subscription/%s not active within a minute", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	do(t, http.MethodPost, ts.Base+"/Encounter", encounter(`{"reference":"`+pa+`"}`), bearer(w.cl)...).wantStatus(t, http.StatusCreated)
	for {
		mu.Lock()
		n := len(got["/la-a"])
		mu.Unlock()
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("council A received no notification within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Give a wrong delivery to council B time to show.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got["/la-a"]) != 1 || len(got["/la-b"]) != 0 {
		t.Fatalf("deliveries: council A %d, council B %d; want 1 and 0", len(got["/la-a"]), len(got["/la-b"]))
	}
	var c struct {
		ResourceType string `json:"resourceType"`
		Subject      struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		Category []struct {
			Coding []struct {
				Code string `json:"code"`
			} `json:"coding"`
		} `json:"category"`
		Encounter struct {
			Reference string `json:"reference"`
		} `json:"encounter"`
	}
	if err := json.Unmarshal(got["/la-a"][0], &c); err != nil {
		t.Fatalf("delivered body %s: %v", got["/la-a"][0], err)
	}
	if c.ResourceType != "Communication" || c.Subject.Reference != pa || len(c.Category) == 0 || c.Category[0].Coding[0].Code != "notification" || c.Encounter.Reference == "" {
		t.Errorf("delivered %s, want council A's notification Communication about %s with the Encounter", got["/la-a"][0], pa)
	}
}
