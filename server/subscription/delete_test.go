package subscription_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server/subscription"
)

func (e *env) delete(t *testing.T, typ, id string) {
	t.Helper()
	if _, err := e.svc.Delete(context.Background(), typ, id, 0); err != nil {
		t.Fatalf("DELETE %s/%s: %v", typ, id, err)
	}
}

// TestDelete_RestHook: a delete of a matching resource is DELETE
// <endpoint>/<Type>/<id> with a payload, for criteria decided in memory
// (the removed version matched) and for criteria a search decides (the
// removed version was notified); deletes of what did not match notify
// nothing.
func TestDelete_RestHook(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	payload := `,"payload":"application/fhir+json"`
	exact := e.create(t, subscriptionJSON("LA1", "Communication?recipient:identifier="+ods+"|LA1", rc.URL+"/exact", payload))
	searched := e.create(t, subscriptionJSON("LA1", "Communication?recipient:identifier="+ods+"|LA1&sent=ge2020-01-01", rc.URL+"/searched", payload))
	for _, s := range []string{exact.ID, searched.ID} {
		eventually(t, "status active", func() bool { st, _ := e.status(t, s); return st == "active" })
	}
	sent := func(body, when string) string {
		return strings.Replace(body, `"status":"completed",`, `"status":"completed","sent":"`+when+`",`, 1)
	}
	both := e.create(t, sent(communicationJSON("LA1", "both"), "2026-03-01T09:00:00Z"))
	old := e.create(t, sent(communicationJSON("LA1", "sent before 2020"), "2019-03-01T09:00:00Z"))
	other := e.create(t, communicationJSON("LA2", "another council"))
	moved := e.create(t, communicationJSON("LA1", "readdressed"))
	eventually(t, "the readdressed Communication's first version", func() bool {
		for _, r := range rc.receipts() {
			if r.Path == "/exact/Communication/"+moved.ID {
				return true
			}
		}
		return false
	})
	e.update(t, "Communication", moved.ID, communicationIDJSON(moved.ID, "LA2", "readdressed"))
	for _, id := range []string{both.ID, old.ID, other.ID, moved.ID} {
		e.delete(t, "Communication", id)
	}
	// A last Communication, delivered after all the above to each
	// subscription (in order): then nothing else is on its way.
	last := e.create(t, sent(communicationJSON("LA1", "last"), "2026-03-01T10:00:00Z"))
	eventually(t, "the last Communication at both receivers", func() bool {
		n := 0
		for _, r := range rc.receipts() {
			if strings.HasSuffix(r.Path, "/"+last.ID) {
				n++
			}
		}
		return n == 2
	})
	var calls []string
	for _, r := range rc.receipts() {
		calls = append(calls, r.Method+" "+r.Path)
	}
	want := map[string]int{
		"PUT /exact/Communication/" + both.ID: 1, "PUT /exact/Communication/" + old.ID: 1,
		"DELETE /exact/Communication/" + both.ID: 1, "DELETE /exact/Communication/" + old.ID: 1,
		"PUT /exact/Communication/" + moved.ID:   1,
		"PUT /searched/Communication/" + both.ID: 1, "DELETE /searched/Communication/" + both.ID: 1,
		"PUT /exact/Communication/" + last.ID: 1, "PUT /searched/Communication/" + last.ID: 1,
	}
	// The readdressed Communication's update and delete do not match.
	if len(calls) != len(want) {
		t.Errorf("calls %v: %d, want %d", calls, len(calls), len(want))
	}
	for _, c := range calls {
		if want[c] != 1 {
			t.Errorf("unexpected call %s (all: %v)", c, calls)
		}
		want[c]--
	}
	for c, n := range want {
		if n > 0 {
			t.Errorf("missing call %s (all: %v)", c, calls)
		}
	}
	for _, r := range rc.receipts() {
		if r.Method == http.MethodDelete && len(r.Body) != 0 {
			t.Errorf("%s %s: body of %d bytes, want none", r.Method, r.Path, len(r.Body))
		}
	}
}

// TestDelete_Topic: a delete notifies a topic Subscription with a
// notification-event whose focus names the deleted version and, for
// full-resource, an entry that says DELETE without a resource.
func TestDelete_Topic(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	sub := e.create(t, topicSubscriptionJSON("LA1", subscription.Topics[0].URL, "Communication?recipient:identifier="+ods+"|LA1", rc.URL, "full-resource", ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	c := e.create(t, communicationJSON("LA1", "created in error"))
	e.delete(t, "Communication", c.ID)
	eventually(t, "handshake and 2 notifications", func() bool { return len(rc.receipts()) >= 3 })
	body := rc.receipts()[2].Body
	n, p := decodeNotification(t, body)
	if ev := p.events(); ev["2"] != "Communication/"+c.ID+"/_history/2" {
		t.Errorf("delete notification events %v, want 2 -> Communication/%s/_history/2", ev, c.ID)
	}
	if len(n.Entry) != 2 || n.Entry[1].Resource != nil || !strings.Contains(string(body), `"request":{"method":"DELETE","url":"Communication/`+c.ID+`"}`) {
		t.Errorf("delete notification %s: want a second entry with request DELETE and no resource", body)
	}
}
