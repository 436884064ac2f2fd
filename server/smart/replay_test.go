package smart_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server/smart"
)

// TestReplayStore_SurvivesRestart: a value used once is refused after the
// store is opened again, until it expires.
func TestReplayStore_SurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jti.log")
	clock := fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	r, err := smart.OpenReplayStore(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value string
		want  bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		if fresh, err := r.Use(tc.value, clock.Now().Add(5*time.Minute)); err != nil || fresh != tc.want {
			t.Fatalf("Use(%q) = %v, %v; want %v", tc.value, fresh, err, tc.want)
		}
	}
	r.Close()
	r, err = smart.OpenReplayStore(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if fresh, _ := r.Use("a", clock.Now().Add(5*time.Minute)); fresh {
		t.Errorf("Use(a) after a restart: fresh, want refused")
	}
	r.Close()
	// After expiry the value is forgotten (and compacted away).
	clock.Add(10 * time.Minute)
	r, err = smart.OpenReplayStore(path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if fresh, _ := r.Use("b", clock.Now().Add(5*time.Minute)); !fresh {
		t.Errorf("Use(b) after it expired: refused, want fresh")
	}
}
