// Command gen writes the R4 tables of package fhir from copies of the
// hl7.fhir.r4.core 4.0.1 definitions kept in fhir/internal/gen/r4:
//
//   - fhir/resourcetypes_gen.go: ResourceTypes and IsResourceType.
//   - fhir/searchparams_gen.go: the search parameters of every resource type,
//     read by SearchParams and LookupSearchParam.
//   - fhir/compartments_gen.go: CompartmentParams.
//
// It runs from go generate (fhir/generate.go) or from anywhere in the module:
//
//	go run ./fhir/internal/gen
//
// Flags:
//
//	-in dir       the copied inputs (default: fhir/internal/gen/r4 of the module)
//	-out dir      where to write the *_gen.go files (default: fhir of the module)
//	-refresh dir  first copy fresh inputs from an unpacked hl7.fhir.r4.core
//	              4.0.1 package (its package/ folder); see SOURCES.md
//
// The output depends only on the inputs: running it twice writes the same
// bytes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	in := flag.String("in", "", "directory of the copied R4 inputs (default fhir/internal/gen/r4)")
	out := flag.String("out", "", "directory to write the *_gen.go files to (default fhir)")
	pkg := flag.String("refresh", "", "copy fresh inputs from this unpacked hl7.fhir.r4.core 4.0.1 package first")
	flag.Parse()
	if err := run(*in, *out, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// run resolves the default directories, refreshes the inputs if pkgDir is
// set and writes the generated files.
func run(inDir, outDir, pkgDir string) error {
	if inDir == "" || outDir == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		if inDir == "" {
			inDir = filepath.Join(root, "fhir", "internal", "gen", "r4")
		}
		if outDir == "" {
			outDir = filepath.Join(root, "fhir")
		}
	}
	if pkgDir != "" {
		if err := refresh(pkgDir, inDir); err != nil {
			return fmt.Errorf("refresh: %w", err)
		}
	}
	files, err := generate(inDir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(outDir, f.name), f.src, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds a go.mod file.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}
