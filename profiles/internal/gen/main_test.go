package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedOutput regenerates base/r4.json.gz from the shared R4
// package, when it is present beside the module (CI has it), and checks
// that the committed file is exactly what the generator writes.
func TestCommittedOutput(t *testing.T) {
	core := filepath.Join("..", "..", "..", "..", "shared", "fhir-r4", "core")
	if fi, err := os.Stat(core); err != nil || !fi.IsDir() {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %s is absent", core)
		}
		t.Skipf("the R4 package is not at %s: the generator's output was not compared", core)
	}
	out := filepath.Join(t.TempDir(), "r4.json.gz")
	if err := run(core, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "base", "r4.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("profiles/base/r4.json.gz differs from the generator's output (%d bytes, committed %d): run go run ./profiles/internal/gen -core ../shared/fhir-r4/core", len(got), len(want))
	}
}
