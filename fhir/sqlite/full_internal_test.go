package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestWrite_StorageFull fills the database up to the size it may have
// (max_page_count, which makes SQLite answer SQLITE_FULL as a full disk
// does): the write that does not fit fails with ErrStorageFull and the
// no-store issue type, nothing of it is kept, and once there is room again
// the same write succeeds.
func TestWrite_StorageFull(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "cpis.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(id string, size int) error {
		body := `{"resourceType":"Basic","id":"` + id + `","note":"` + strings.Repeat("x", size) + `"}`
		return s.Write(ctx, func(x fhir.Tx) error {
			return x.Put(&fhir.Resource{Type: "Basic", ID: id, VersionID: 1, LastUpdated: x.Now(), Method: fhir.MethodCreate, JSON: []byte(body)})
		})
	}
	maxPages := func(n int64) {
		t.Helper()
		err := s.Write(ctx, func(x fhir.Tx) error {
			if n == 0 {
				if err := x.(*tx).s.conn.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&n); err != nil {
					return err
				}
			}
			_, err := x.(*tx).s.conn.ExecContext(ctx, `PRAGMA max_page_count = `+strconv.FormatInt(n, 10))
			return err
		})
		if err != nil {
			t.Fatalf("max_page_count: %v", err)
		}
	}
	if err := put("small", 10); err != nil {
		t.Fatalf("first write: %v", err)
	}
	maxPages(0) // no room to grow
	err = put("big", 1<<20)
	var fe *fhir.Error
	if !errors.Is(err, fhir.ErrStorageFull) || !errors.As(err, &fe) || fe.Code != fhir.IssueNoStore {
		t.Fatalf("write past the size limit: %v; want ErrStorageFull with issue type no-store", err)
	}
	if _, err := s.Read(ctx, "Basic", "big"); !fhir.IsNotFound(err) {
		t.Fatalf("read of the write that did not fit: %v; want not found", err)
	}
	if r, err := s.Read(ctx, "Basic", "small"); err != nil || r.VersionID != 1 {
		t.Fatalf("read of the earlier write: %v, %v", r, err)
	}
	maxPages(1 << 30)
	if err := put("big", 1<<20); err != nil {
		t.Fatalf("the same write once there is room: %v", err)
	}
}
