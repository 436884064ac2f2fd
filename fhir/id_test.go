package fhir

import (
	"regexp"
	"testing"
	"time"
)

// TestNewID: ids are version 7 UUIDs (RFC 9562): the version and variant
// bits are set, the first 48 bits are the Unix milliseconds, and ids of a
// later millisecond sort after those of an earlier one.
func TestNewID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := newID(t0)
	if !uuid.MatchString(a) || !ValidID(a) {
		t.Fatalf("newID = %q, want a version 7 UUID", a)
	}
	// 2026-12-01T10:00:00Z is 0x01A2310C0100 ms since 1970.
	if got, want := a[:8]+a[9:13], "01a2310c0100"; got != want {
		t.Errorf("newID(%s) timestamp %s, want %s", t0, got, want)
	}
	seen := map[string]bool{}
	prev := a
	for i := 1; i <= 1000; i++ {
		id := newID(t0.Add(time.Duration(i) * time.Millisecond))
		if id <= prev {
			t.Fatalf("newID at +%d ms = %s, not after %s", i, id, prev)
		}
		if seen[id] {
			t.Fatalf("newID repeated %s", id)
		}
		seen[id] = true
		prev = id
	}
	if same := newID(t0); same == a {
		t.Errorf("two ids of one millisecond are equal: %s", a)
	}
}
