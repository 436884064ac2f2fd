package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// putPatient writes Patient/id with an NHS number and its index rows.
func putPatient(tb testing.TB, s fhir.Store, id, nhs string, fail bool) error {
	tb.Helper()
	return s.Write(context.Background(), func(tx fhir.Tx) error {
		r := &fhir.Resource{Type: "Patient", ID: id, VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate,
			JSON:  []byte(`{"resourceType":"Patient","id":"` + id + `"}`),
			Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "identifier", System: nhsSystem, Code: nhs}}}}
		if cur, err := tx.Read("Patient", id); err == nil {
			r.VersionID, r.Method = cur.VersionID+1, fhir.MethodUpdate
		}
		if err := tx.Put(r); err != nil {
			return err
		}
		if fail {
			return errors.New("rolled back on purpose")
		}
		return nil
	})
}

func byNHS(tb testing.TB, s fhir.Store, nhs string, total fhir.TotalMode) *fhir.SearchPage {
	tb.Helper()
	ident, _ := fhir.LookupSearchParam("Patient", "identifier")
	page, err := s.Search(context.Background(), &fhir.Search{Type: "Patient", Count: 10, Total: total,
		Filters: []fhir.Filter{{Param: ident, Values: []fhir.Value{{System: nhsSystem, HasSystem: true, Code: nhs}}}}}, nil, false)
	if err != nil {
		tb.Fatalf("search %s: %v", nhs, err)
	}
	return page
}

// TestIdentifierSet checks that the store's set of identifier values, which
// answers lookups of identifiers no resource carries, never hides a match:
// across reopening, rolled-back writes, updates, deletes and concurrent
// writers.
func TestIdentifierSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := putPatient(t, s, "a", "9990000018", false); err != nil {
		t.Fatal(err)
	}
	if got := byNHS(t, s, "9990000018", fhir.TotalDefault); len(got.Matches) != 1 || got.Total != 1 {
		t.Errorf("stored number: %d matches, total %d; want 1, 1", len(got.Matches), got.Total)
	}
	if got := byNHS(t, s, "9990000026", fhir.TotalAccurate); len(got.Matches) != 0 || got.Total != 0 {
		t.Errorf("unknown number: %d matches, total %d; want 0, 0", len(got.Matches), got.Total)
	}
	if got := byNHS(t, s, "9990000026", fhir.TotalNone); got.Total != -1 {
		t.Errorf("unknown number, _total=none: total %d, want -1", got.Total)
	}
	// A rolled-back write leaves its number in the set, not in the index.
	if err := putPatient(t, s, "b", "9990000026", true); err == nil {
		t.Fatal("the failing write succeeded")
	}
	if got := byNHS(t, s, "9990000026", fhir.TotalDefault); len(got.Matches) != 0 {
		t.Errorf("rolled-back number: %d matches, want 0", len(got.Matches))
	}
	// An update to another number: the old one no longer matches.
	if err := putPatient(t, s, "a", "9990000034", false); err != nil {
		t.Fatal(err)
	}
	if n := len(byNHS(t, s, "9990000018", fhir.TotalDefault).Matches); n != 0 {
		t.Errorf("old number after update: %d matches, want 0", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, the set is loaded from the index.
	s, err = sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(byNHS(t, s, "9990000034", fhir.TotalDefault).Matches); n != 1 {
		t.Errorf("after reopen: %d matches, want 1", n)
	}
	// Every acknowledged write is found by a search that starts after it.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; {
				nhs, ok := nhsNumber(1000 + g*100 + i) // 999-range, valid check digit
				if !ok {
					i++
					continue
				}
				if err := putPatient(t, s, fmt.Sprintf("c%d-%d", g, i), nhs, false); err != nil {
					t.Error(err)
					return
				}
				if n := len(byNHS(t, s, nhs, fhir.TotalDefault).Matches); n != 1 {
					t.Errorf("right after writing %s: %d matches, want 1", nhs, n)
				}
				i++
			}
		}()
	}
	wg.Wait()
}

// TestSearch_ParameterFirstWrittenAfterLookup: a search for a parameter no
// row has yet is remembered as empty, and a write that adds the parameter
// makes the next search look again.
func TestSearch_ParameterFirstWrittenAfterLookup(t *testing.T) {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gender, _ := fhir.LookupSearchParam("Patient", "gender")
	q := &fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Param: gender, Values: []fhir.Value{{Code: "female"}}}}}
	for range 2 {
		if page, err := s.Search(context.Background(), q, nil, false); err != nil || len(page.Matches) != 0 {
			t.Fatalf("before any write: %v, %v; want no matches", page, err)
		}
	}
	err = s.Write(context.Background(), func(tx fhir.Tx) error {
		return tx.Put(&fhir.Resource{Type: "Patient", ID: "g", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate,
			JSON:  []byte(`{"resourceType":"Patient","id":"g","gender":"female"}`),
			Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "gender", Code: "female"}}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if page, err := s.Search(context.Background(), q, nil, false); err != nil || len(page.Matches) != 1 {
		t.Errorf("after the write: %v, %v; want 1 match", page, err)
	}
}

// TestIdentifierSet_Any: a disjunction is answered from the set only when
// every part asks for an identifier no resource carries.
func TestIdentifierSet_Any(t *testing.T) {
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := putPatient(t, s, "a", "9990000018", false); err != nil {
		t.Fatal(err)
	}
	ident, _ := fhir.LookupSearchParam("Patient", "identifier")
	byAny := func(nhs ...string) int {
		var parts []fhir.Filter
		for _, n := range nhs {
			parts = append(parts, fhir.Filter{Param: ident, Values: []fhir.Value{{System: nhsSystem, HasSystem: true, Code: n}}})
		}
		page, err := s.Search(context.Background(), &fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Any: parts}}}, nil, false)
		if err != nil {
			t.Fatalf("search %v: %v", nhs, err)
		}
		return len(page.Matches)
	}
	if n := byAny("9990000026", "9990000018"); n != 1 {
		t.Errorf("unknown OR stored: %d matches, want 1", n)
	}
	if n := byAny("9990000026", "9990000034"); n != 0 {
		t.Errorf("unknown OR unknown: %d matches, want 0", n)
	}
}
