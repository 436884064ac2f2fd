package smart_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/redis"
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

// TestReplayStore_SharedAcrossProcesses: two replay stores of their own
// (two server processes) sharing one Redis refuse at one a value used at
// the other; with the Redis unreachable a store goes on with its own
// values (still refusing a value used twice at it).
func TestReplayStore_SharedAcrossProcesses(t *testing.T) {
	url, prefix := fhirtest.NeedRedis(t, "one-time values shared between processes")
	clock := fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	var stores [2]*smart.ReplayStore
	for i := range stores {
		bus, err := redis.Open(url, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		if stores[i], err = smart.OpenSharedReplayStore(filepath.Join(t.TempDir(), "jti.log"), clock.Now, bus); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	exp := clock.Now().Add(5 * time.Minute)
	if fresh, err := stores[0].Use("a", exp); err != nil || !fresh {
		t.Fatalf("Use(a) at the first: %v, %v; want fresh", fresh, err)
	}
	if fresh, err := stores[1].Use("a", exp); err != nil || fresh {
		t.Errorf("Use(a) at the second after the first: %v, %v; want refused", fresh, err)
	}
	down, err := redis.Open("redis://127.0.0.1:19199/0", prefix) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	alone, err := smart.OpenSharedReplayStore(filepath.Join(t.TempDir(), "jti.log"), clock.Now, down)
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	if fresh, err := alone.Use("b", exp); err != nil || !fresh {
		t.Errorf("Use(b) with Redis down: %v, %v; want fresh", fresh, err)
	}
	if fresh, err := alone.Use("b", exp); err != nil || fresh {
		t.Errorf("Use(b) again with Redis down: %v, %v; want refused", fresh, err)
	}
}
