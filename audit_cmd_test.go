package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// TestMain_AuditVerify runs cpis audit verify and export on a real data
// folder, before and after a record of each trail is edited behind the
// server's back.
func TestMain_AuditVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cpis.db")
	st, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		if err := st.AppendAudit(ctx, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
		err := st.Write(ctx, func(tx fhir.Tx) error {
			return tx.(interface{ AppendAudit([]byte) error }).AppendAudit(fmt.Appendf(nil, `{"w":%d}`, i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	// An administrator's command appends to the read trail too.
	if err := auditAdmin(dir, "token-issued", map[string]string{"role": "admin"}); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if err := run(ctx, []string{"audit", "verify", "--data", dir}, &out, &errs); err != nil {
		t.Fatalf("audit verify: %v; %s", err, errs.String())
	}
	if !strings.Contains(out.String(), "write trail intact: 5 records") || !strings.Contains(out.String(), "read trail intact: 6 records") {
		t.Errorf("audit verify: %q, want both intact, 5 and 6 records", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"audit", "export", "--data", dir}, &out, &errs); err != nil {
		t.Fatal(err)
	}
	if n, m := strings.Count(out.String(), `"trail":"reads","seq":`), strings.Count(out.String(), `"record":{"w":`); n != 6 || m != 5 {
		t.Errorf("audit export: %d read and %d write records, want 6 and 5: %s", n, m, out.String())
	}
	if !strings.Contains(out.String(), `"interaction":"admin:token-issued"`) {
		t.Errorf("audit export lacks the token command's record: %s", out.String())
	}

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit SET record = '{"w":42}' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out.Reset()
	err = run(ctx, []string{"audit", "verify", "--data", dir}, &out, &errs)
	if !errors.Is(err, errAuditBroken) || !strings.Contains(out.String(), "write trail broken at record 3") {
		t.Errorf("audit verify after an edit: %v, %q; want the write trail broken at record 3", err, out.String())
	}

	j := sqlite.ReadAuditPath(path)
	b, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(j, bytes.Replace(b, []byte(`{"n":2}`), []byte(`{"n":7}`), 1), 0o600)
	out.Reset()
	run(ctx, []string{"audit", "verify", "--data", dir}, &out, &errs)
	if !strings.Contains(out.String(), "read trail broken at record 2") {
		t.Errorf("audit verify after an edit of the journal: %q; want the read trail broken at record 2", out.String())
	}
}
