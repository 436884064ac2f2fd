package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// openTwice opens two Shared Stores on one database file, as two server
// processes sharing a data folder do.
func openTwice(t *testing.T) (a, b *sqlite.Store, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "cpis.db")
	for _, s := range []**sqlite.Store{&a, &b} {
		st, err := sqlite.Open(path, sqlite.Config{Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		*s = st
	}
	return a, b, path
}

// TestForeignCommits_LookupNeverMisses: a lookup by NHS number on one Store
// finds the Patient another Store of the same file wrote, although the
// first had answered "none" for that number from its identifier set, and
// so does a search by a parameter whose key the other Store created.
func TestForeignCommits_LookupNeverMisses(t *testing.T) {
	a, b, _ := openTwice(t)
	for _, nhs := range []string{"9990000042", "9990000050"} {
		if n := len(byNHS(t, a, nhs, fhir.TotalDefault).Matches); n != 0 {
			t.Fatalf("store a, %s before any write: %d matches, want 0", nhs, n)
		}
		if err := putPatient(t, b, "p"+nhs, nhs, false); err != nil {
			t.Fatal(err)
		}
		if n := len(byNHS(t, a, nhs, fhir.TotalDefault).Matches); n != 1 {
			t.Errorf("store a, %s written by store b: %d matches, want 1", nhs, n)
		}
	}
	status, _ := fhir.LookupSearchParam("Basic", "code")
	q := &fhir.Search{Type: "Basic", Count: 10, Filters: []fhir.Filter{{Param: status, Values: []fhir.Value{{Code: "x"}}}}}
	search := func() int {
		page, err := a.Search(context.Background(), q, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Matches)
	}
	if n := search(); n != 0 {
		t.Fatalf("Basic?code=x before any write: %d matches, want 0", n)
	}
	err := b.Write(context.Background(), func(tx fhir.Tx) error {
		return tx.Put(&fhir.Resource{Type: "Basic", ID: "x", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate,
			JSON: []byte(`{"resourceType":"Basic","id":"x"}`), Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "code", Code: "x"}}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := search(); n != 1 {
		t.Errorf("Basic?code=x on store a after store b wrote the first Basic: %d matches, want 1", n)
	}
}

// TestForeignCommits_AuditChainHolds: write-trail records appended in turn
// in transactions of two Stores of one file make one unbroken hash chain.
func TestForeignCommits_AuditChainHolds(t *testing.T) {
	a, b, path := openTwice(t)
	ctx := context.Background()
	for i := range 10 {
		s := a
		if i%2 == 1 {
			s = b
		}
		err := s.Write(ctx, func(tx fhir.Tx) error {
			return tx.(interface{ AppendAudit([]byte) error }).AppendAudit(fmt.Appendf(nil, `{"r":%d}`, i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b.Close()
	if rep := verify(t, path); rep.Break != nil || rep.Rows != 10 {
		t.Fatalf("VerifyAudit after 10 records from two stores in turn: %+v, break %+v; want 10 rows and no break", rep, rep.Break)
	}
}

// BenchmarkSearch_IdentifierMiss is a lookup by an NHS number no resource
// carries, answered by the identifier set: alone, and Shared (after the
// check for other processes' commits, one PRAGMA data_version on the watch
// connection).
func BenchmarkSearch_IdentifierMiss(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  sqlite.Config
	}{{"alone", sqlite.Config{}}, {"shared", sqlite.Config{Shared: true}}} {
		b.Run(c.name, func(b *testing.B) {
			s, err := sqlite.Open(filepath.Join(b.TempDir(), "cpis.db"), c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := putPatient(b, s, "a", "9990000018", false); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if n := len(byNHS(b, s, "9990000026", fhir.TotalDefault).Matches); n != 0 {
					b.Fatalf("unknown number: %d matches", n)
				}
			}
		})
	}
}
