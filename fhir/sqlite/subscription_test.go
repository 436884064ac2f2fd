package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
)

// TestNotified: Notified finds the versions enqueued for a subscription,
// by commit sequence number, and nothing else.
func TestNotified(t *testing.T) {
	s := MustOpen(t, fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)).Now)
	ctx := context.Background()
	a := fhirtest.MustPut(t, s, "Communication", "c1", 1, `{"resourceType":"Communication","id":"c1","status":"completed"}`)
	b := fhirtest.MustPut(t, s, "Communication", "c2", 1, `{"resourceType":"Communication","id":"c2","status":"completed"}`)
	from, err := s.MatchCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, from, b.Seq, []fhir.Notification{{Subscription: "s1", Seq: a.Seq, Type: a.Type, ID: a.ID, Version: a.VersionID}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sub  string
		seq  int64
		want bool
	}{{"s1", a.Seq, true}, {"s1", b.Seq, false}, {"s2", a.Seq, false}} {
		if got, err := s.Notified(ctx, c.sub, c.seq); err != nil || got != c.want {
			t.Errorf("Notified(%s, %d): %v, %v; want %v", c.sub, c.seq, got, err, c.want)
		}
	}
}
