package subscription_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/redis"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server/subscription"
)

// sharedPair runs two engines, each on a store of its own over one
// database file and each with a bus of its own on the test Redis
// (fhirtest.NeedRedis), as two server processes of one data folder are.
func sharedPair(tb testing.TB) (a, b *env) {
	tb.Helper()
	url, prefix := fhirtest.NeedRedis(tb, "engines that share delivery")
	path := filepath.Join(tb.TempDir(), "cpis.db")
	var envs [2]*env
	for i := range envs {
		bus, err := redis.Open(url, prefix)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { bus.Close() })
		envs[i] = startAt(tb, path, sqlite.Config{Shared: true}, subscription.Config{Bus: bus, LeaseTTL: 600 * time.Millisecond})
	}
	return envs[0], envs[1]
}

// TestShared_OrderUnderConcurrentWritesTwoEngines: two engines share one
// store and one Redis; 8 writers write through both stores at once; the
// notifications of each of two Subscriptions arrive exactly in event
// number order, without gaps; a Subscription written through one store is
// activated whichever engine matches.
func TestShared_OrderUnderConcurrentWritesTwoEngines(t *testing.T) {
	a, b := sharedPair(t)
	rc := newReceiver(t)
	subs := []string{a.create(t, subscriptionJSON("LA1", "Communication", rc.URL+"/one", "")).ID,
		b.create(t, subscriptionJSON("LA1", "Communication", rc.URL+"/two", "")).ID}
	for _, id := range subs {
		eventually(t, "status active", func() bool { s, _ := a.status(t, id); return s == "active" })
	}
	const writers, each = 8, 25
	writeConcurrently(t, writers, each, a, b)
	eventually(t, "all deliveries", func() bool { return len(rc.receipts()) >= 2*writers*each })
	time.Sleep(100 * time.Millisecond) // no extra ones arrive
	next := map[string]int64{"/one": 1, "/two": 1}
	for _, r := range rc.receipts() {
		if r.Event != next[r.Path] {
			t.Fatalf("%s: event %d, want %d (in order, no gaps, no duplicates)", r.Path, r.Event, next[r.Path])
		}
		next[r.Path]++
	}
}

// TestShared_WebsocketClientAtTheOtherEngine: a websocket client bound
// through one engine gets the messages of a Subscription whatever engine
// delivers it, through Redis pub/sub: the pings of an R4 websocket
// Subscription, the notification Bundles (after the handshake at the bind)
// of a topic-based one.
func TestShared_WebsocketClientAtTheOtherEngine(t *testing.T) {
	a, b := sharedPair(t)
	for _, c := range []struct {
		name, body string
		topic      bool
	}{
		{"R4", `{"resourceType":"Subscription","status":"requested","reason":"test","criteria":"Communication","channel":{"type":"websocket"}}`, false},
		{"topic", `{"resourceType":"Subscription","status":"requested","reason":"test","criteria":"` + subscription.Topics[0].URL + `",
			"channel":{"type":"websocket","payload":"application/fhir+json","_payload":{"extension":[{"url":"` + subscription.PayloadContentExtension + `","valueCode":"id-only"}]}}}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sub := a.create(t, c.body)
			eventually(t, "status active", func() bool { s, _ := a.status(t, sub.ID); return s == "active" })
			next := func(msgs <-chan string, want string) {
				t.Helper()
				select {
				case m := <-msgs:
					if !strings.Contains(m, want) {
						t.Errorf("message %.200q, want one with %q", m, want)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("no %q message within 30s", want)
				}
			}
			for _, bound := range []*env{a, b} {
				msgs, unbind := bound.eng.Bind(sub.ID)
				if c.topic {
					next(msgs, "handshake")
				}
				for _, writer := range []*env{a, b} {
					writer.create(t, communicationJSON("LA1", "x"))
					if c.topic {
						next(msgs, "event-notification")
					} else {
						next(msgs, "ping "+sub.ID)
					}
				}
				unbind()
			}
		})
	}
}
