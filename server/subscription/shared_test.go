package subscription_test

import (
	"path/filepath"
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
// through one engine gets the pings of a Subscription whatever engine
// delivers it, through Redis pub/sub.
func TestShared_WebsocketClientAtTheOtherEngine(t *testing.T) {
	a, b := sharedPair(t)
	sub := a.create(t, `{"resourceType":"Subscription","status":"requested","reason":"test","criteria":"Communication","channel":{"type":"websocket"}}`)
	eventually(t, "status active", func() bool { s, _ := a.status(t, sub.ID); return s == "active" })
	for _, bound := range []*env{a, b} {
		msgs, unbind := bound.eng.Bind(sub.ID)
		for _, writer := range []*env{a, b} {
			writer.create(t, communicationJSON("LA1", "x"))
			select {
			case m := <-msgs:
				if m != "ping "+sub.ID {
					t.Errorf("message %q, want ping %s", m, sub.ID)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no ping within 30s")
			}
		}
		unbind()
	}
}
