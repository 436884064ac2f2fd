package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestWrite_OneCommitFailures queues writes behind one the writer is
// held in, so that they share the next commit, and makes some of them
// fail or panic after a Put: the first of that commit (which runs without
// a savepoint), one in the middle and the last. Each failed write leaves
// nothing, and every other write of the commit is kept.
func TestWrite_OneCommitFailures(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "cpis.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	boom := errors.New("boom")
	code, ok := fhir.LookupSearchParam("Basic", "code")
	if !ok {
		t.Fatal("no search parameter code on Basic")
	}
	put := func(x fhir.Tx, id string) error {
		return x.Put(&fhir.Resource{Type: "Basic", ID: id, VersionID: 1, LastUpdated: x.Now(), Method: fhir.MethodCreate,
			JSON:  []byte(`{"resourceType":"Basic","id":"` + id + `"}`),
			Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "code", Code: id}}}})
	}
	for _, first := range []string{"fails", "panics"} {
		t.Run("first "+first, func(t *testing.T) {
			hold, held := make(chan struct{}), make(chan struct{})
			holder := make(chan error, 1)
			go func() {
				holder <- s.Write(ctx, func(x fhir.Tx) error {
					close(held)
					<-hold
					return put(x, first+"-held")
				})
			}()
			<-held
			// "" is kept; "error" and "panic" come after the write's Put.
			outcomes := []string{"error", "", "", "error", "", "error"}
			if first == "panics" {
				outcomes[0] = "panic"
			}
			errs := make([]chan error, len(outcomes))
			for i, o := range outcomes {
				id := fmt.Sprintf("%s-%d", first, i)
				errs[i] = make(chan error, 1)
				go func() {
					errs[i] <- s.Write(ctx, func(x fhir.Tx) error {
						if err := put(x, id); err != nil {
							return err
						}
						switch o {
						case "error":
							return boom
						case "panic":
							panic("a bug in a write function")
						}
						return nil
					})
				}()
				// In order, and all queued before the writer is let go.
				for len(s.reqs) < i+1 {
					time.Sleep(time.Millisecond)
				}
			}
			close(hold)
			if err := <-holder; err != nil {
				t.Fatalf("held write: %v", err)
			}
			for i, o := range outcomes {
				id := fmt.Sprintf("%s-%d", first, i)
				werr := <-errs[i]
				_, rerr := s.Read(ctx, "Basic", id)
				page, serr := s.Search(ctx, &fhir.Search{Type: "Basic", Filters: []fhir.Filter{{Param: code, Values: []fhir.Value{{Code: id}}}}, Count: 10}, nil, false)
				if serr != nil {
					t.Fatalf("search %s: %v", id, serr)
				}
				switch {
				case o == "" && (werr != nil || rerr != nil || len(page.Matches) != 1):
					t.Errorf("write %d, kept: Write %v, Read %v, %d found by its index row; want nil, nil, 1", i, werr, rerr, len(page.Matches))
				case o == "error" && (!errors.Is(werr, boom) || !fhir.IsNotFound(rerr) || len(page.Matches) != 0):
					t.Errorf("write %d, failed: Write %v, Read %v, %d found by its index row; want boom, not found, 0", i, werr, rerr, len(page.Matches))
				case o == "panic" && (werr == nil || !fhir.IsNotFound(rerr) || len(page.Matches) != 0):
					t.Errorf("write %d, panicked: Write %v, Read %v, %d found by its index row; want an error, not found, 0", i, werr, rerr, len(page.Matches))
				}
			}
		})
	}
}

// TestWrite_NoRowsForResRowParams: _id and _lastUpdated, which are searched
// on the res row, get no index rows, and are still found by search; the
// migration drops the rows of a store written before.
func TestWrite_NoRowsForResRowParams(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cpis.db")
	s, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	err = s.Write(ctx, func(x fhir.Tx) error {
		return x.Put(&fhir.Resource{Type: "Basic", ID: "b1", VersionID: 1, LastUpdated: x.Now(), Method: fhir.MethodCreate,
			JSON: []byte(`{"resourceType":"Basic","id":"b1"}`),
			Index: &fhir.Index{
				Tokens: []fhir.IndexToken{{Param: "_id", Code: "b1"}, {Param: "code", Code: "c1"}},
				Dates:  []fhir.IndexDate{{Param: "_lastUpdated", Low: at, High: at}, {Param: "created", Low: at, High: at}},
			}})
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := func(s *Store) (ids, lastUpdated, others int) {
		t.Helper()
		q := func(query string) (n int) {
			if err := s.rdb.QueryRowContext(ctx, query).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		ids = q(`SELECT count(*) FROM idx_token i JOIN search_param p ON p.pid = i.pid WHERE p.code = '_id'`)
		lastUpdated = q(`SELECT count(*) FROM idx_date i JOIN search_param p ON p.pid = i.pid WHERE p.code = '_lastUpdated'`)
		others = q(`SELECT (SELECT count(*) FROM idx_token) + (SELECT count(*) FROM idx_date)`) - ids - lastUpdated
		return
	}
	if ids, lu, others := rows(s); ids != 0 || lu != 0 || others != 2 {
		t.Fatalf("index rows: _id %d, _lastUpdated %d, others %d; want 0, 0, 2", ids, lu, others)
	}
	for _, sp := range []string{"_id", "_lastUpdated"} {
		p, ok := fhir.LookupSearchParam("Basic", sp)
		if !ok {
			t.Fatalf("no search parameter %s", sp)
		}
		v := fhir.Value{Code: "b1"}
		if sp == "_lastUpdated" {
			v = fhir.Value{Prefix: fhir.PrefixLe, DateLow: 0, DateHigh: time.Now().Add(time.Hour).UnixMilli()}
		}
		page, err := s.Search(ctx, &fhir.Search{Type: "Basic", Filters: []fhir.Filter{{Param: p, Values: []fhir.Value{v}}}, Count: 10}, nil, false)
		if err != nil || len(page.Matches) != 1 {
			t.Errorf("search by %s: %v, %d matches; want 1", sp, err, len(page.Matches))
		}
	}
	// A store written before: rows of both, and the migration not yet run.
	err = s.Write(ctx, func(x fhir.Tx) error {
		_, err := x.(*tx).s.conn.ExecContext(ctx, `INSERT OR IGNORE INTO search_param (type, code) VALUES ('', '_id'), ('', '_lastUpdated');
		INSERT INTO idx_token (pid, code, system, rid) SELECT pid, 'b1', '', 1 FROM search_param WHERE code = '_id';
		INSERT INTO idx_date (pid, low, high, rid) SELECT pid, 1, 1, 1 FROM search_param WHERE code = '_lastUpdated';
		DELETE FROM schema_migration WHERE name LIKE '%0009_res_row_params.sql'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids, lu, _ := rows(s); ids != 1 || lu != 1 {
		t.Fatalf("rows put back: _id %d, _lastUpdated %d; want 1, 1", ids, lu)
	}
	s.Close()
	if s, err = Open(path, Config{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ids, lu, others := rows(s); ids != 0 || lu != 0 || others != 2 {
		t.Fatalf("index rows after the migration: _id %d, _lastUpdated %d, others %d; want 0, 0, 2", ids, lu, others)
	}
}

// TestWrite_SmallBeforeLarge: a small write queued behind a large one
// (fhir.WithLargeWrite), both waiting while the writer is held, is
// acknowledged before the large one starts, and both are kept. Before, it
// shared the large one's commit and waited for it.
func TestWrite_SmallBeforeLarge(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "cpis.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(x fhir.Tx, id string) error {
		return x.Put(&fhir.Resource{Type: "Basic", ID: id, VersionID: 1, LastUpdated: x.Now(), Method: fhir.MethodCreate,
			JSON: []byte(`{"resourceType":"Basic","id":"` + id + `"}`)})
	}
	hold, held := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		holder <- s.Write(fhir.WithLargeWrite(ctx), func(x fhir.Tx) error {
			close(held)
			<-hold
			return put(x, "held")
		})
	}()
	<-held
	smallDone := make(chan struct{})
	largeErr, smallErr := make(chan error, 1), make(chan error, 1)
	go func() {
		largeErr <- s.Write(fhir.WithLargeWrite(ctx), func(x fhir.Tx) error {
			select {
			case <-smallDone:
			case <-time.After(5 * time.Second):
				return errors.New("the large write ran before the small one queued with it was acknowledged")
			}
			return put(x, "large")
		})
	}()
	for len(s.reqs) < 1 {
		time.Sleep(time.Millisecond)
	}
	go func() {
		err := s.Write(ctx, func(x fhir.Tx) error { return put(x, "small") })
		close(smallDone)
		smallErr <- err
	}()
	for len(s.reqs) < 2 {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	for name, ch := range map[string]chan error{"held": holder, "large": largeErr, "small": smallErr} {
		if err := <-ch; err != nil {
			t.Errorf("%s write: %v", name, err)
		}
	}
	for _, id := range []string{"held", "large", "small"} {
		if _, err := s.Read(ctx, "Basic", id); err != nil {
			t.Errorf("read %s: %v", id, err)
		}
	}
	if !fhir.IsLargeWrite(fhir.WithLargeWrite(ctx)) || fhir.IsLargeWrite(ctx) {
		t.Errorf("IsLargeWrite does not tell a marked context from an unmarked one")
	}
}
