package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// writeUnindexed writes Patients without index rows, as a server whose
// extraction rules knew nothing of their parameters would have, and marks
// the folder as indexed under an older version.
func writeUnindexed(t *testing.T, dir string, nhs ...string) {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	codec, _ := fhir.NewCodec()
	svc := &fhir.Service{Store: store, Codec: codec} // no Indexer: no index rows
	for _, n := range nhs {
		p, err := codec.Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"` + nhsSystem + `","value":"` + n + `"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SetIndexVersion(context.Background(), "0"); err != nil {
		t.Fatal(err)
	}
}

// countByNHS searches the folder's store for Patients with the number.
func countByNHS(t *testing.T, dir, nhs string) int {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ident, _ := fhir.LookupSearchParam("Patient", "identifier")
	page, err := store.Search(context.Background(), &fhir.Search{Type: "Patient", Count: 10, Total: fhir.TotalAccurate,
		Filters: []fhir.Filter{{Param: ident, Values: []fhir.Value{{System: nhsSystem, HasSystem: true, Code: nhs}}}}}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

func TestReindexCommand(t *testing.T) {
	dir := t.TempDir()
	writeUnindexed(t, dir, "9990000018", "9990000026")
	if n := countByNHS(t, dir, "9990000018"); n != 0 {
		t.Fatalf("before reindex: %d matches, want 0 (nothing indexed)", n)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"reindex", "--data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("cpis reindex: %v; stderr %s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "reindexed 2 of 2 resources") {
		t.Errorf("cpis reindex: stdout %q, want progress naming 2 of 2", stdout.String())
	}
	if n := countByNHS(t, dir, "9990000018"); n != 1 {
		t.Errorf("after reindex: %d matches, want 1", n)
	}
}

// TestServe_ReindexesOnVersionChange starts serve on a folder indexed
// under another version: it rebuilds the index before it serves.
func TestServe_ReindexesOnVersionChange(t *testing.T) {
	dir := t.TempDir()
	writeUnindexed(t, dir, "9990000034")
	out := serveOnce(t, dir)
	if !strings.Contains(out, "search index rebuilt") {
		t.Errorf("serve on an old index: stdout %q, want a reindex", out)
	}
	if n := countByNHS(t, dir, "9990000034"); n != 1 {
		t.Errorf("after serve: %d matches, want 1", n)
	}
	// A second start finds the index current and does not rebuild it.
	if out := serveOnce(t, dir); strings.Contains(out, "rebuilt") {
		t.Errorf("second start: stdout %q, want no reindex", out)
	}
}

// serveOnce starts cpis serve on dir, stops it once it listens and returns
// what it printed.
func serveOnce(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var stdout, stderr bytes.Buffer
	m := &Main{Addr: "127.0.0.1:0", DataDir: dir, LogLevel: "error", Stdout: &stdout, Stderr: &stderr, Ready: ready}
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case <-ready:
		cancel()
	case err := <-errc:
		t.Fatalf("serve: %v; stderr %s", err, stderr.String())
	}
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
	return stdout.String()
}

// TestFolderCommands_RefuseAFolderInUse: cpis reindex and cpis seed --data
// refuse a data folder a server holds (its identifier set and caches would
// not see what they write), and run once it is free.
func TestFolderCommands_RefuseAFolderInUse(t *testing.T) {
	dir := t.TempDir()
	writeUnindexed(t, dir, "9990000018")
	for _, shared := range []bool{false, true} {
		lock, err := lockData(dir, shared) // a server, alone or one of several with --redis-url
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"reindex", "--data", dir},
			{"seed", "--data", dir, "--children", "10", "--councils", "2", "--sites", "2"},
		} {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), "in use by") {
				t.Errorf("cpis %s with the folder locked (shared %v): %v, want a refusal saying it is in use", args[0], shared, err)
			}
		}
		lock.Close()
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"reindex", "--data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("cpis reindex on a free folder: %v; stderr %s", err, stderr.String())
	}
	if n := countByNHS(t, dir, "9990000018"); n != 1 {
		t.Errorf("after reindex: %d matches, want 1", n)
	}
}
