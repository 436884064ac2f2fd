package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// MustOpen opens a store in a new SQLite file under tb.TempDir().
func MustOpen(tb testing.TB, clock func() time.Time) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(filepath.Join(tb.TempDir(), "cpis.db"), sqlite.Config{Now: clock})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	fhirtest.RunStoreTests(t, func(tb testing.TB, clock func() time.Time) fhir.Store { return MustOpen(tb, clock) })
}

func TestStore_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	clock := fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s, err := sqlite.Open(path, sqlite.Config{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := fhirtest.MustPut(t, s, "Patient", "p1", 1, `{"resourceType":"Patient","id":"p1"}`)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clock.Add(-24 * time.Hour) // the restarted process's clock is behind
	s, err = sqlite.Open(path, sqlite.Config{Now: clock.Now})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.Read(context.Background(), "Patient", "p1")
	if err != nil || string(got.JSON) != string(want.JSON) || got.VersionID != 1 {
		t.Fatalf("Read after reopen: %v, %v; want version 1 with the same body", got, err)
	}
	next := fhirtest.MustPut(t, s, "Patient", "p2", 1, `{"resourceType":"Patient","id":"p2"}`)
	if next.LastUpdated.Before(want.LastUpdated) || next.Seq != want.Seq+1 {
		t.Errorf("after reopen: lastUpdated %v seq %d; want not before %v and seq %d", next.LastUpdated, next.Seq, want.LastUpdated, want.Seq+1)
	}
}

func TestSearch(t *testing.T) {
	fhirtest.RunSearchTests(t, func(tb testing.TB, clock func() time.Time) fhir.Store { return MustOpen(tb, clock) })
}
