package fhirpath_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

// searchParameter is an entry of testdata/searchparameters-r4.json, the
// expressions of the official R4 SearchParameters.
type searchParameter struct {
	ID         string   `json:"id"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       string   `json:"type"`
	Expression string   `json:"expression"`
}

func loadSearchParameters(tb testing.TB) []searchParameter {
	tb.Helper()
	b, err := os.ReadFile("testdata/searchparameters-r4.json")
	if err != nil {
		tb.Fatal(err)
	}
	var sps []searchParameter
	if err := json.Unmarshal(b, &sps); err != nil {
		tb.Fatal(err)
	}
	return sps
}

// example is an example resource loaded for tests.
type example struct {
	file string
	typ  string
	body []byte
	root fhirpath.Node
}

// examplesDir returns the folder of example resources: testdata/examples
// (one small official example of each resource type) unless
// FHIRPATH_EXAMPLES names a folder holding all hl7.fhir.r4.examples.
func examplesDir() string {
	if d := os.Getenv("FHIRPATH_EXAMPLES"); d != "" {
		return d
	}
	return "testdata/examples"
}

func loadExamples(tb testing.TB) []example {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(examplesDir(), "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no examples in %s: %v", examplesDir(), err)
	}
	var out []example
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		root, err := fhirpath.Decode(b)
		if err != nil {
			tb.Logf("skip %s: %v", filepath.Base(f), err)
			continue
		}
		out = append(out, example{file: filepath.Base(f), typ: root.Type, body: b, root: root})
	}
	return out
}

// appliesTo reports whether a search parameter with the given bases applies
// to a resource of type typ.
func appliesTo(base []string, typ string) bool {
	return slices.Contains(base, typ) || slices.Contains(base, "Resource") ||
		(slices.Contains(base, "DomainResource") && typ != "Bundle" && typ != "Binary" && typ != "Parameters")
}

// TestSearchParameters parses every expression of the official R4
// SearchParameters and evaluates it on every example of its base types.
func TestSearchParameters(t *testing.T) {
	sps := loadSearchParameters(t)
	examples := loadExamples(t)
	var pairs, nonEmpty int
	for _, sp := range sps {
		x, err := fhirpath.Parse(sp.Expression)
		if err != nil {
			t.Errorf("SearchParameter/%s: %v", sp.ID, err)
			continue
		}
		for _, ex := range examples {
			if !appliesTo(sp.Base, ex.typ) {
				continue
			}
			pairs++
			got, err := x.Evaluate(ex.root)
			if err != nil {
				t.Errorf("SearchParameter/%s on %s: %v", sp.ID, ex.file, err)
				continue
			}
			if len(got) > 0 {
				nonEmpty++
			}
			for _, n := range got {
				if n.Type == "" {
					t.Errorf("SearchParameter/%s on %s: %s has no type", sp.ID, ex.file, n.Path)
				}
			}
		}
	}
	t.Logf("%d expressions parsed, %d expression×example pairs evaluated over %d examples (%d non-empty)", len(sps), pairs, len(examples), nonEmpty)
}
