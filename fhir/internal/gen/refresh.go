package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The refresh step copies the parts of an unpacked hl7.fhir.r4.core 4.0.1
// package that the generator needs into the repository (see SOURCES.md).
// It is the only code that reads outside the repository, and it runs only
// when asked to with -refresh; go generate reads the copies.

// Input file names inside the r4 input directory.
const (
	searchParamsFile    = "searchparameters.json"
	resourceTypesFile   = "resourcetypes.json"
	baseCapabilityFile  = "capabilitystatement-base-searchparams.json"
	compartmentFileGlob = "CompartmentDefinition-*.json"
)

// compartmentFiles are the compartment definitions copied verbatim.
// CompartmentDefinition-example.json is an example, not a definition.
var compartmentFiles = []string{
	"CompartmentDefinition-device.json",
	"CompartmentDefinition-encounter.json",
	"CompartmentDefinition-patient.json",
	"CompartmentDefinition-practitioner.json",
	"CompartmentDefinition-relatedPerson.json",
}

// rawSearchParam is the trimmed form of a SearchParameter resource: the
// fields the generator uses, spelled as in FHIR JSON.
type rawSearchParam struct {
	URL          string         `json:"url"`
	Code         string         `json:"code"`
	Experimental bool           `json:"experimental"`
	Base         []string       `json:"base,omitempty"`
	Type         string         `json:"type"`
	Expression   string         `json:"expression,omitempty"`
	XPathUsage   string         `json:"xpathUsage,omitempty"`
	Target       []string       `json:"target,omitempty"`
	Modifier     []string       `json:"modifier,omitempty"`
	Comparator   []string       `json:"comparator,omitempty"`
	MultipleOr   *bool          `json:"multipleOr,omitempty"`
	MultipleAnd  *bool          `json:"multipleAnd,omitempty"`
	Component    []rawComponent `json:"component,omitempty"`
}

// rawComponent is SearchParameter.component.
type rawComponent struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}

// rawResourceType is the trimmed form of a StructureDefinition with
// kind = resource that is not a profile (derivation != constraint).
type rawResourceType struct {
	Type           string `json:"type"`
	URL            string `json:"url"`
	Abstract       bool   `json:"abstract"`
	Derivation     string `json:"derivation,omitempty"`
	BaseDefinition string `json:"baseDefinition,omitempty"`
}

// rawCapabilityParam is CapabilityStatement.rest.searchParam.
type rawCapabilityParam struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
	Type       string `json:"type"`
}

// refresh reads the unpacked package in pkgDir and writes the trimmed
// inputs to inDir.
func refresh(pkgDir, inDir string) error {
	if err := checkPackage(pkgDir); err != nil {
		return err
	}
	if err := os.MkdirAll(inDir, 0o755); err != nil {
		return err
	}

	// SearchParameter-*.json → searchparameters.json.
	files, err := filepath.Glob(filepath.Join(pkgDir, "SearchParameter-*.json"))
	if err != nil {
		return err
	}
	var sps []rawSearchParam
	for _, f := range files {
		var sp rawSearchParam
		if err := readJSON(f, &sp); err != nil {
			return err
		}
		sps = append(sps, sp)
	}
	slices.SortFunc(sps, func(a, b rawSearchParam) int { return strings.Compare(a.URL, b.URL) })
	if err := writeJSONLines(filepath.Join(inDir, searchParamsFile), sps); err != nil {
		return err
	}

	// StructureDefinition-*.json (kind = resource, not profiles) → resourcetypes.json.
	files, err = filepath.Glob(filepath.Join(pkgDir, "StructureDefinition-*.json"))
	if err != nil {
		return err
	}
	var rts []rawResourceType
	for _, f := range files {
		var sd struct {
			rawResourceType
			Kind string `json:"kind"`
		}
		if err := readJSON(f, &sd); err != nil {
			return err
		}
		if sd.Kind != "resource" || sd.Derivation == "constraint" {
			continue
		}
		rts = append(rts, sd.rawResourceType)
	}
	slices.SortFunc(rts, func(a, b rawResourceType) int { return strings.Compare(a.Type, b.Type) })
	if err := writeJSONLines(filepath.Join(inDir, resourceTypesFile), rts); err != nil {
		return err
	}

	// CapabilityStatement-base.json rest[0].searchParam → the parameters for
	// all resources, deduplicated by name (the source repeats them).
	var cs struct {
		Rest []struct {
			SearchParam []rawCapabilityParam `json:"searchParam"`
		} `json:"rest"`
	}
	if err := readJSON(filepath.Join(pkgDir, "CapabilityStatement-base.json"), &cs); err != nil {
		return err
	}
	if len(cs.Rest) != 1 {
		return fmt.Errorf("CapabilityStatement-base.json: %d rest entries, want 1", len(cs.Rest))
	}
	var cps []rawCapabilityParam
	seen := map[string]bool{}
	for _, p := range cs.Rest[0].SearchParam {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		cps = append(cps, p)
	}
	slices.SortFunc(cps, func(a, b rawCapabilityParam) int { return strings.Compare(a.Name, b.Name) })
	if err := writeJSONLines(filepath.Join(inDir, baseCapabilityFile), cps); err != nil {
		return err
	}

	// CompartmentDefinition-*.json, copied byte for byte.
	old, err := filepath.Glob(filepath.Join(inDir, compartmentFileGlob))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	for _, name := range compartmentFiles {
		b, err := os.ReadFile(filepath.Join(pkgDir, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(inDir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkPackage makes sure pkgDir holds hl7.fhir.r4.core 4.0.1, which the
// generated file headers name.
func checkPackage(pkgDir string) error {
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := readJSON(filepath.Join(pkgDir, "package.json"), &pkg); err != nil {
		return err
	}
	if pkg.Name != "hl7.fhir.r4.core" || pkg.Version != "4.0.1" {
		return fmt.Errorf("%s: package %s %s, want hl7.fhir.r4.core 4.0.1", pkgDir, pkg.Name, pkg.Version)
	}
	return nil
}

// readJSON decodes the JSON file name into v.
func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// writeJSONLines writes vs as a JSON array with one element per line, so
// that a refresh shows up in diffs entry by entry.
func writeJSONLines[T any](name string, vs []T) error {
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i, v := range vs {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		buf.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if i < len(vs)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	return os.WriteFile(name, buf.Bytes(), 0o644)
}
