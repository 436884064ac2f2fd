package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// TestMain_AuditVerify runs cpis audit verify and export on a real data
// folder, before and after a record is edited behind the server's back.
func TestMain_AuditVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cpis.db")
	st, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := st.AppendAudit(context.Background(), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify", "--data", dir}, &out, &errs); err != nil {
		t.Fatalf("audit verify: %v; %s", err, errs.String())
	}
	if !strings.Contains(out.String(), "intact: 5 records") {
		t.Errorf("audit verify: %q, want intact with 5 records", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"audit", "export", "--data", dir}, &out, &errs); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"record":{"n":`); n != 5 {
		t.Errorf("audit export: %d records, want 5: %s", n, out.String())
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit SET record = '{"n":42}' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out.Reset()
	err = run(context.Background(), []string{"audit", "verify", "--data", dir}, &out, &errs)
	if !errors.Is(err, errAuditBroken) || !strings.Contains(out.String(), "broken at record 3") {
		t.Errorf("audit verify after an edit: %v, %q; want broken at record 3", err, out.String())
	}
}
