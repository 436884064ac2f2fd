package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// TestCheckpoint_InTheBackground: with SQLite's automatic checkpoint off
// on the writer's connection, the background checkpoint copies the WAL
// into the database file while the store stays open.
func TestCheckpoint_InTheBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpis.db")
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	before := size(path)
	body := bytes.Repeat([]byte("x"), 3000)
	write := func(round int) {
		for i := range 200 {
			err := s.Write(context.Background(), func(tx fhir.Tx) error {
				return tx.Put(&fhir.Resource{Type: "Basic", ID: fmt.Sprintf("b%d-%d", round, i), VersionID: 1, LastUpdated: tx.Now(),
					Method: fhir.MethodCreate, JSON: fmt.Appendf(nil, `{"resourceType":"Basic","id":"b%d-%d","text":"%s"}`, round, i, body)})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0)
	// 200 writes of 3 KB: about 600 KB reach the database file once
	// checkpointed, which nothing but the background checkpoint does while
	// the store is open.
	deadline := time.Now().Add(20 * time.Second)
	for size(path) < before+500_000 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes after 200 writes (was %d, the WAL %d): the WAL was not checkpointed", size(path), before, size(path+"-wal"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
