package terminology

import (
	"context"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

// Concept is one code of a value set expansion.
// See https://hl7.org/fhir/R4/valueset-definitions.html#ValueSet.expansion.contains.
type Concept struct {
	System, Code, Display string
}

// Expansion is the result of Expand: one page of the matching codes.
// See https://hl7.org/fhir/R4/valueset-operation-expand.html.
type Expansion struct {
	URL, Version string
	// Total is the number of codes that match the filter; Offset is the
	// position of the first of Contains among them.
	Total, Offset int
	Contains      []Concept
}

// Definitions returns the embedded CodeSystems and ValueSets, in file name
// order. The slice and its bytes must not be modified.
func (s *Service) Definitions() []Definition { return s.defs }

// Expand returns the codes of the value set, in compose (or stored
// expansion) order, that match filter: a text that the code or the display
// contains, compared case-insensitively ("" matches all). The page starts
// at offset and holds at most count codes; a negative count means no
// limit. A valueSetURL may carry a |version, which is ignored. It returns
// an IssueNotFound *fhir.Error if the value set is unknown and an
// IssueInvalid one if offset is negative.
// See https://hl7.org/fhir/R4/valueset-operation-expand.html.
func (s *Service) Expand(ctx context.Context, valueSetURL, filter string, offset, count int) (*Expansion, error) {
	vs := s.valueSets[canonical(valueSetURL)]
	if vs == nil {
		return nil, fhir.Errorf(fhir.IssueNotFound, "ValueSet %s is not known", canonical(valueSetURL))
	}
	if offset < 0 {
		return nil, fhir.Errorf(fhir.IssueInvalid, "offset must not be negative")
	}
	f := strings.ToLower(filter)
	e := &Expansion{URL: vs.url, Version: vs.version, Offset: offset}
	for i, k := range vs.order {
		if f != "" && !strings.Contains(vs.search[i], f) {
			continue
		}
		if e.Total >= offset && (count < 0 || len(e.Contains) < count) {
			e.Contains = append(e.Contains, Concept{System: k.system, Code: k.code, Display: vs.members[k]})
		}
		e.Total++
	}
	return e, nil
}

// LookupResult is what $lookup tells of a code.
// See https://hl7.org/fhir/R4/codesystem-operation-lookup.html.
type LookupResult struct {
	Name, Version, Display string
}

// snomedName is the name of SNOMED CT, which is held only through value
// set expansions.
const snomedName = "SNOMED CT"

// LookupCode returns the name and version of the code system and the
// display of the code. Codes of systems held only through value set
// expansions (SNOMED CT) are found there too, without a version. It
// returns an IssueNotFound *fhir.Error if the code system or the code is
// not known and an IssueInvalid one if system or code is empty.
// See https://hl7.org/fhir/R4/codesystem-operation-lookup.html.
func (s *Service) LookupCode(ctx context.Context, system, code string) (*LookupResult, error) {
	if system == "" || code == "" {
		return nil, fhir.Errorf(fhir.IssueInvalid, "$lookup needs a system and a code")
	}
	if cs := s.systems[canonical(system)]; cs != nil {
		d, ok := cs.concepts[code]
		if !ok {
			return nil, fhir.Errorf(fhir.IssueNotFound, "the code is not in CodeSystem %s", cs.url)
		}
		return &LookupResult{Name: cs.name, Version: cs.version, Display: d}, nil
	}
	d, ok := s.expanded[coding{canonical(system), code}]
	if !ok {
		return nil, fhir.Errorf(fhir.IssueNotFound, "the code is not known in CodeSystem %s", canonical(system))
	}
	name := canonical(system)
	if name == SystemSNOMED {
		name = snomedName
	}
	return &LookupResult{Name: name, Display: d}, nil
}

// Subsumption outcomes of $subsumes.
// See https://hl7.org/fhir/R4/valueset-concept-subsumption-outcome.html.
const (
	Equivalent  = "equivalent"
	Subsumes    = "subsumes"
	SubsumedBy  = "subsumed-by"
	NotSubsumed = "not-subsumed"
)

// Subsumes tests the subsumption relationship between codeA and codeB in
// a code system the service holds: Subsumes when codeA is an ancestor of
// codeB (through concept nesting or `parent` properties), SubsumedBy when
// it is a descendant, Equivalent when they are the same code and
// NotSubsumed otherwise (always, for a flat code system). It returns an
// IssueNotFound *fhir.Error if the code system is not held (SNOMED CT,
// known only through expansions, has no hierarchy here) or a code is not
// in it, and an IssueInvalid one if an argument is empty.
// See https://hl7.org/fhir/R4/codesystem-operation-subsumes.html.
func (s *Service) Subsumes(ctx context.Context, system, codeA, codeB string) (string, error) {
	if system == "" || codeA == "" || codeB == "" {
		return "", fhir.Errorf(fhir.IssueInvalid, "$subsumes needs a system, codeA and codeB")
	}
	cs := s.systems[canonical(system)]
	if cs == nil {
		return "", fhir.Errorf(fhir.IssueNotFound, "CodeSystem %s is not known", canonical(system))
	}
	for _, c := range []string{codeA, codeB} {
		if _, ok := cs.concepts[c]; !ok {
			return "", fhir.Errorf(fhir.IssueNotFound, "a code is not in CodeSystem %s", cs.url)
		}
	}
	switch {
	case codeA == codeB:
		return Equivalent, nil
	case cs.ancestor(codeA, codeB):
		return Subsumes, nil
	case cs.ancestor(codeB, codeA):
		return SubsumedBy, nil
	}
	return NotSubsumed, nil
}

// ancestor reports whether a is a proper ancestor of b.
func (cs *codeSystem) ancestor(a, b string) bool {
	seen := map[string]bool{}
	todo := append([]string(nil), cs.parents[b]...)
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if p == a {
			return true
		}
		if !seen[p] {
			seen[p] = true
			todo = append(todo, cs.parents[p]...)
		}
	}
	return false
}
