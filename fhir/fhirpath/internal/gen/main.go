// Command gen writes model_gen.go, the FHIR R4 element type table used by
// package fhirpath, from a trimmed copy of the hl7.fhir.r4.core 4.0.1
// StructureDefinitions kept in definitions/.
//
// Usage (from fhir/fhirpath, through go generate):
//
//	go run ./internal/gen -in internal/gen/definitions/structuredefinitions-r4.ndjson -out model_gen.go
//
// To refresh the trimmed input from an unpacked hl7.fhir.r4.core package:
//
//	go run ./internal/gen -extract /path/to/package -in internal/gen/definitions/structuredefinitions-r4.ndjson
//
// Only StructureDefinitions of kind resource, complex-type and primitive-type
// with derivation specialization (plus the abstract roots) are kept, and of
// each only the fields the generator reads.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const fhirTypeExt = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

type structureDefinition struct {
	ResourceType   string `json:"resourceType"`
	URL            string `json:"url"`
	Name           string `json:"name"`
	Type           string `json:"type"`
	Kind           string `json:"kind"`
	Abstract       bool   `json:"abstract"`
	Derivation     string `json:"derivation,omitempty"`
	BaseDefinition string `json:"baseDefinition,omitempty"`
	Snapshot       struct {
		Element []element `json:"element"`
	} `json:"snapshot"`
}

type element struct {
	Path             string        `json:"path"`
	Type             []elementType `json:"type,omitempty"`
	ContentReference string        `json:"contentReference,omitempty"`
}

type elementType struct {
	Extension []struct {
		URL      string `json:"url"`
		ValueURL string `json:"valueUrl,omitempty"`
	} `json:"extension,omitempty"`
	Code string `json:"code"`
}

func main() {
	extract := flag.String("extract", "", "directory holding StructureDefinition-*.json to trim into -in")
	in := flag.String("in", "internal/gen/definitions/structuredefinitions-r4.ndjson", "trimmed StructureDefinitions (one JSON object a line)")
	out := flag.String("out", "model_gen.go", "Go file to write")
	flag.Parse()
	if *extract != "" {
		if err := extractDefinitions(*extract, *in); err != nil {
			log.Fatal(err)
		}
		return
	}
	sds, err := readDefinitions(*in)
	if err != nil {
		log.Fatal(err)
	}
	src, err := generate(sds)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

func keep(sd *structureDefinition) bool {
	switch sd.Kind {
	case "resource", "complex-type", "primitive-type":
	default:
		return false
	}
	return sd.Derivation == "specialization" || sd.Derivation == ""
}

func extractDefinitions(dir, out string) error {
	files, err := filepath.Glob(filepath.Join(dir, "StructureDefinition-*.json"))
	if err != nil {
		return fmt.Errorf("list definitions: %w", err)
	}
	sort.Strings(files)
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		var sd structureDefinition
		if err := json.Unmarshal(b, &sd); err != nil {
			return fmt.Errorf("decode %s: %w", f, err)
		}
		if !keep(&sd) {
			continue
		}
		for i := range sd.Snapshot.Element {
			for j := range sd.Snapshot.Element[i].Type {
				t := &sd.Snapshot.Element[i].Type[j]
				exts := t.Extension[:0]
				for _, e := range t.Extension {
					if e.URL == fhirTypeExt {
						exts = append(exts, e)
					}
				}
				t.Extension = exts
			}
		}
		line, err := json.Marshal(&sd)
		if err != nil {
			return fmt.Errorf("encode %s: %w", f, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

func readDefinitions(path string) ([]*structureDefinition, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open definitions: %w", err)
	}
	defer f.Close()
	var sds []*structureDefinition
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var sd structureDefinition
		if err := json.Unmarshal(sc.Bytes(), &sd); err != nil {
			return nil, fmt.Errorf("decode definition: %w", err)
		}
		if keep(&sd) {
			sds = append(sds, &sd)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	return sds, nil
}

// typeCode returns the FHIR type name of an element type, replacing the
// FHIRPath System type codes used for primitive values by the FHIR type
// recorded in the structuredefinition-fhir-type extension.
func typeCode(t elementType) string {
	for _, e := range t.Extension {
		if e.URL == fhirTypeExt && e.ValueURL != "" {
			return e.ValueURL
		}
	}
	if s, ok := strings.CutPrefix(t.Code, "http://hl7.org/fhirpath/System."); ok {
		return strings.ToLower(s[:1]) + s[1:]
	}
	return t.Code
}

type entry struct {
	key     string
	types   []string
	choice  bool
	backref string
}

func generate(sds []*structureDefinition) ([]byte, error) {
	var entries []entry
	base := map[string]string{}
	kinds := map[string]string{}
	for _, sd := range sds {
		if sd.BaseDefinition != "" {
			base[sd.Type] = sd.BaseDefinition[strings.LastIndex(sd.BaseDefinition, "/")+1:]
		}
		kinds[sd.Type] = sd.Kind
		if sd.Kind == "primitive-type" {
			continue
		}
		byPath := map[string]*element{}
		hasChildren := map[string]bool{}
		for i := range sd.Snapshot.Element {
			e := &sd.Snapshot.Element[i]
			byPath[e.Path] = e
			if i := strings.LastIndexByte(e.Path, '.'); i > 0 {
				hasChildren[e.Path[:i]] = true
			}
		}
		for _, e := range sd.Snapshot.Element {
			if !strings.Contains(e.Path, ".") {
				continue
			}
			en := entry{key: e.Path}
			if p, ok := strings.CutSuffix(en.key, "[x]"); ok {
				en.key, en.choice = p, true
			}
			src := e
			if e.ContentReference != "" {
				ref := strings.TrimPrefix(e.ContentReference, "#")
				r, ok := byPath[ref]
				if !ok {
					return nil, fmt.Errorf("%s: contentReference %s not found", e.Path, e.ContentReference)
				}
				src = *r
				en.backref = ref
			} else if hasChildren[e.Path] {
				en.backref = e.Path
			}
			for _, t := range src.Type {
				en.types = append(en.types, typeCode(t))
			}
			entries = append(entries, en)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })

	var b bytes.Buffer
	b.WriteString("// Code generated by fhir/internal/gen from hl7.fhir.r4.core 4.0.1. DO NOT EDIT.\n\n")
	b.WriteString("package fhirpath\n\n")
	b.WriteString("// elements maps an element path (type or backbone path, a dot, the element\n// name without [x]) to its definition.\n")
	b.WriteString("var elements = map[string]elementDef{\n")
	for _, e := range entries {
		quoted := make([]string, len(e.types))
		for i, t := range e.types {
			quoted[i] = fmt.Sprintf("%q", t)
		}
		fmt.Fprintf(&b, "%q: {types: []string{%s}", e.key, strings.Join(quoted, ", "))
		if e.choice {
			b.WriteString(", choice: true")
		}
		if e.backref != "" {
			fmt.Fprintf(&b, ", path: %q", e.backref)
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n\n")
	b.WriteString("// baseTypes maps a type name to the type it specializes.\n")
	b.WriteString("var baseTypes = map[string]string{\n")
	for _, k := range sortedKeys(base) {
		fmt.Fprintf(&b, "%q: %q,\n", k, base[k])
	}
	b.WriteString("}\n\n")
	b.WriteString("// typeKinds maps a type name to its StructureDefinition kind.\n")
	b.WriteString("var typeKinds = map[string]typeKind{\n")
	for _, k := range sortedKeys(kinds) {
		kind := map[string]string{"resource": "kindResource", "complex-type": "kindComplex", "primitive-type": "kindPrimitive"}[kinds[k]]
		fmt.Fprintf(&b, "%q: %s,\n", k, kind)
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format generated source: %w", err)
	}
	return src, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
