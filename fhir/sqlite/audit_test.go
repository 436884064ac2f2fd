package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// auditStore opens a store at path and appends n records "r1".."rn" to
// the write trail from concurrent writes, then closes it.
func auditStore(t *testing.T, path string, n int) {
	t.Helper()
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Write(context.Background(), func(tx fhir.Tx) error {
				return tx.(interface{ AppendAudit([]byte) error }).AppendAudit(fmt.Appendf(nil, `{"r":%d}`, i))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
}

func verify(t *testing.T, path string) *sqlite.AuditReport {
	t.Helper()
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.VerifyAudit(context.Background(), nil)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	return rep
}

func TestAudit_AppendAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	auditStore(t, path, 200)
	rep := verify(t, path)
	if rep.Break != nil || rep.Rows != 200 || rep.HeadSeq != 200 {
		t.Fatalf("VerifyAudit after 200 concurrent appends: %+v, break %+v; want 200 rows and no break", rep, rep.Break)
	}
	// The chain goes on across a reopen, and a record appended inside a
	// write that fails is rolled back with it.
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	type appender interface{ AppendAudit(rec []byte) error }
	err = s.Write(context.Background(), func(tx fhir.Tx) error {
		if err := tx.(appender).AppendAudit([]byte(`{"rolled":"back"}`)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("failing write: %v", err)
	}
	err = s.Write(context.Background(), func(tx fhir.Tx) error {
		if err := tx.Put(&fhir.Resource{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: []byte(`{}`)}); err != nil {
			return err
		}
		return tx.(appender).AppendAudit([]byte(`{"wrote":"Patient/p1"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(context.Background(), []byte(`{"after":"write"}`)); err != nil {
		t.Fatal(err)
	}
	var recs []string
	rep, err = s.VerifyAudit(context.Background(), func(r sqlite.AuditRow) error {
		if r.Seq > 200 {
			recs = append(recs, string(r.Record))
		}
		return nil
	})
	s.Close()
	if err != nil || rep.Break != nil || rep.Rows != 201 {
		t.Fatalf("after reopen: %+v %v", rep, err)
	}
	if got := strings.Join(recs, " "); got != `{"wrote":"Patient/p1"}` {
		t.Errorf("records after 200: %s; want the write's record, and not the rolled back one", got)
	}
	// A read's record (Store.AppendAudit) is in the read trail.
	var reads []string
	jr, err := journal.Verify(sqlite.ReadAuditPath(path), func(e journal.Entry) error {
		reads = append(reads, string(e.Record))
		return nil
	})
	if err != nil || jr.Break != nil || strings.Join(reads, " ") != `{"after":"write"}` {
		t.Errorf("read trail %v (%+v %v), want the one appended record", reads, jr, err)
	}
}

// TestAudit_Tampering edits, deletes and reorders rows of a real SQLite
// file behind the store's back and checks that VerifyAudit reports the
// first break at the right row.
func TestAudit_Tampering(t *testing.T) {
	for _, c := range []struct {
		name    string
		sql     []string
		breakAt int64
	}{
		{"record edited", []string{`UPDATE audit SET record = '{"r":999}' WHERE seq = 7`}, 7},
		{"row deleted", []string{`DELETE FROM audit WHERE seq = 5`}, 5},
		{"first row deleted", []string{`DELETE FROM audit WHERE seq = 1`}, 1},
		{"rows reordered", []string{
			`UPDATE audit SET seq = -1 WHERE seq = 3`, `UPDATE audit SET seq = 3 WHERE seq = 4`, `UPDATE audit SET seq = 4 WHERE seq = -1`}, 3},
		{"records swapped", []string{
			`UPDATE audit SET record = (SELECT record FROM audit WHERE seq = 9) WHERE seq = 8`}, 8},
		{"edited and rehashed", []string{`UPDATE audit SET record = '{"r":999}', hash = zeroblob(32) WHERE seq = 6`}, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cpis.db")
			auditStore(t, path, 10)
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range c.sql {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			rep := verify(t, path)
			if rep.Break == nil || rep.Break.Seq != c.breakAt {
				t.Fatalf("%s: break %+v, want the first break at row %d", c.name, rep.Break, c.breakAt)
			}
		})
	}
	t.Run("a record rehashed correctly breaks the next row", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cpis.db")
		auditStore(t, path, 10)
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		var prev []byte
		if err := db.QueryRow(`SELECT prev FROM audit WHERE seq = 4`).Scan(&prev); err != nil {
			t.Fatal(err)
		}
		var p [32]byte
		copy(p[:], prev)
		h := sqlite.AuditHash(p, 4, []byte(`{"r":999}`))
		if _, err := db.Exec(`UPDATE audit SET record = '{"r":999}', hash = ? WHERE seq = 4`, h[:]); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if rep := verify(t, path); rep.Break == nil || rep.Break.Seq != 5 {
			t.Fatalf("break %+v, want at row 5 (its prev no longer matches)", rep.Break)
		}
	})
}
