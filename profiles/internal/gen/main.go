// Command gen writes profiles/base/r4.json.gz, the R4 element definitions
// the profiles package validates against and builds profile snapshots on,
// from the StructureDefinitions of an unpacked hl7.fhir.r4.core 4.0.1
// package. It is a one-time tool: its input is outside the repository, so
// it runs only by hand, from the repository root:
//
//	go run ./profiles/internal/gen -core ../shared/fhir-r4/core
//
// For every resource type and complex data type (the specializations that
// are not abstract) it keeps, per snapshot element: path, min, max, type
// codes with target profiles, contentReference, bindings other than example
// ones (strength and value set) and constraints (key, severity, human,
// expression) other than ele-1 and ext-1, which the validator checks
// natively. See profiles/SOURCES.md.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

const fhirType = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

type sd struct {
	Kind       string `json:"kind"`
	Abstract   bool   `json:"abstract"`
	Derivation string `json:"derivation"`
	Type       string `json:"type"`
	Snapshot   struct {
		Element []struct {
			Path string `json:"path"`
			Min  int    `json:"min"`
			Max  string `json:"max"`
			Type []struct {
				Code      string `json:"code"`
				Extension []struct {
					URL      string `json:"url"`
					ValueURL string `json:"valueUrl"`
					ValueURI string `json:"valueUri"`
				} `json:"extension"`
				TargetProfile []string `json:"targetProfile"`
			} `json:"type"`
			ContentReference string `json:"contentReference"`
			Binding          *struct {
				Strength string `json:"strength"`
				ValueSet string `json:"valueSet"`
			} `json:"binding"`
			Constraint []constraint `json:"constraint"`
		} `json:"element"`
	} `json:"snapshot"`
}

type constraint struct {
	Key        string `json:"key"`
	Severity   string `json:"severity"`
	Human      string `json:"human"`
	Expression string `json:"expression,omitempty"`
}

// The output, read by profiles/snapshot.go (baseDef).
type outType struct {
	Type    string       `json:"type"`
	Kind    string       `json:"kind"`
	Element []outElement `json:"element"`
}

type outElement struct {
	Path             string       `json:"path"`
	Min              int          `json:"min"`
	Max              string       `json:"max"`
	Type             []outTyp     `json:"type,omitempty"`
	ContentReference string       `json:"contentReference,omitempty"`
	Binding          *outBinding  `json:"binding,omitempty"`
	Constraint       []constraint `json:"constraint,omitempty"`
}

type outTyp struct {
	Code          string   `json:"code"`
	TargetProfile []string `json:"targetProfile,omitempty"`
}

type outBinding struct {
	Strength string `json:"strength"`
	ValueSet string `json:"valueSet"`
}

func main() {
	core := flag.String("core", "", "directory of the unpacked hl7.fhir.r4.core 4.0.1 package")
	out := flag.String("out", "profiles/base/r4.json.gz", "output file")
	flag.Parse()
	if err := run(*core, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(core, out string) error {
	if core == "" {
		return fmt.Errorf("-core is required")
	}
	names, err := filepath.Glob(filepath.Join(core, "StructureDefinition-*.json"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	var types []outType
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var d sd
		if err := json.Unmarshal(b, &d); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if d.Abstract || d.Derivation != "specialization" || d.Kind != "resource" && d.Kind != "complex-type" {
			continue
		}
		t := outType{Type: d.Type, Kind: d.Kind}
		for _, e := range d.Snapshot.Element {
			oe := outElement{Path: e.Path, Min: e.Min, Max: e.Max, ContentReference: e.ContentReference}
			for _, ty := range e.Type {
				code := ty.Code
				for _, x := range ty.Extension {
					if x.URL == fhirType {
						code = x.ValueURL + x.ValueURI
					}
				}
				oe.Type = append(oe.Type, outTyp{Code: code, TargetProfile: ty.TargetProfile})
			}
			if bd := e.Binding; bd != nil && bd.ValueSet != "" && bd.Strength != "example" {
				oe.Binding = &outBinding{Strength: bd.Strength, ValueSet: bd.ValueSet}
			}
			for _, c := range e.Constraint {
				if c.Key == "ele-1" || c.Key == "ext-1" || c.Expression == "" {
					continue
				}
				oe.Constraint = append(oe.Constraint, constraint{Key: c.Key, Severity: c.Severity, Human: c.Human, Expression: c.Expression})
			}
			t.Element = append(t.Element, oe)
		}
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].Type < types[j].Type })
	js, err := json.Marshal(types)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Write(js)
	zw.Write([]byte("\n"))
	if err := zw.Close(); err != nil {
		return err
	}
	fmt.Printf("%d types, %d bytes of JSON, %d gzipped\n", len(types), len(js), buf.Len())
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
