package terminology

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

//go:embed data/*.json
var data embed.FS

// Canonical URLs of the code systems and value sets the CP-IS profiles use.
const (
	SystemSNOMED                  = "http://snomed.info/sct"
	SystemFlagCategoryPatient     = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
	SystemNHSNumberVerification   = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
	SystemSpineErrorOrWarningCode = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SpineErrorOrWarningCode"
	SystemSDSJobRole              = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode"

	ValueSetChildProtectionPlan   = "https://fhir.nhs.uk/England/ValueSet/England-ChildProtectionPlan"
	ValueSetFlagCategoryPatient   = "https://fhir.nhs.uk/England/ValueSet/England-FlagCategoryPatient"
	ValueSetNHSNumberVerification = "https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberVerificationStatus"
	ValueSetCareSettingType       = "https://fhir.hl7.org.uk/ValueSet/UKCore-CareSettingType"
	ValueSetFlagStatus            = "http://hl7.org/fhir/ValueSet/flag-status"
	ValueSetAdministrativeGender  = "http://hl7.org/fhir/ValueSet/administrative-gender"
	ValueSetContactPointUse       = "http://hl7.org/fhir/ValueSet/contact-point-use"
	ValueSetContactPointSystem    = "http://hl7.org/fhir/ValueSet/contact-point-system"
)

// Service answers terminology questions on the embedded CodeSystems and
// ValueSets. It is read-only after New and safe for concurrent use.
type Service struct {
	systems   map[string]*codeSystem
	valueSets map[string]*valueSet
	// expanded holds the displays of codes known only from value set
	// expansions (SNOMED CT), the first in value set URL order.
	expanded map[coding]string
	// defs are the embedded files, in file name order.
	defs []Definition
}

// Definition is one embedded CodeSystem or ValueSet as FHIR JSON, with its
// resource type and fixed id, for serving it as a resource.
// See https://hl7.org/fhir/R4/codesystem.html and https://hl7.org/fhir/R4/valueset.html.
type Definition struct {
	Type string // CodeSystem or ValueSet
	ID   string
	URL  string
	JSON []byte
}

// codeSystem is the concepts of one CodeSystem.
type codeSystem struct {
	url, name, version string
	concepts           map[string]string // code -> display, nested concepts included
	codes              []string          // in document order, depth first
	// parents holds each code's direct parents: the concept it is nested
	// in and its `parent` properties.
	parents map[string][]string
}

// valueSet is the membership of one ValueSet.
type valueSet struct {
	url, version string
	members      map[coding]string // -> display
	order        []coding          // members in compose or expansion order
	search       []string          // per order: lower-case code, NUL, display
	systems      []string          // sorted
	codings      []fhir.Coding     // per order, without displays
}

// add adds a member, keeping the first display and position.
func (vs *valueSet) add(k coding, display string) {
	if _, ok := vs.members[k]; ok {
		return
	}
	vs.members[k] = display
	vs.order = append(vs.order, k)
	vs.search = append(vs.search, strings.ToLower(k.code+"\x00"+display))
}

type coding struct{ system, code string }

// resource is the part of a CodeSystem or ValueSet that the service reads.
type resource struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	Name         string    `json:"name"`
	Version      string    `json:"version"`
	Concept      []concept `json:"concept"`
	Compose      struct {
		Include []struct {
			System  string    `json:"system"`
			Concept []concept `json:"concept"`
			Filter  []any     `json:"filter"`
		} `json:"include"`
	} `json:"compose"`
	Expansion *struct {
		Contains []struct {
			System  string `json:"system"`
			Code    string `json:"code"`
			Display string `json:"display"`
		} `json:"contains"`
	} `json:"expansion"`
}

type concept struct {
	Code     string    `json:"code"`
	Display  string    `json:"display"`
	Concept  []concept `json:"concept"`
	Property []struct {
		Code      string `json:"code"`
		ValueCode string `json:"valueCode"`
	} `json:"property"`
}

// New returns a Service over the embedded content. The content is fixed at
// build time and covered by the package tests, so New panics if it is
// malformed rather than returning an error.
func New() *Service {
	s, err := load(data)
	if err != nil {
		panic(err)
	}
	return s
}

func load(fsys fs.FS) (*Service, error) {
	names, err := fs.Glob(fsys, "data/*.json")
	if err != nil {
		return nil, err
	}
	s := &Service{systems: map[string]*codeSystem{}, valueSets: map[string]*valueSet{}, expanded: map[coding]string{}}
	var sets []resource
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		var r resource
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("terminology: %s: %w", path.Base(name), err)
		}
		s.defs = append(s.defs, Definition{Type: r.ResourceType, ID: r.ID, URL: r.URL, JSON: b})
		switch r.ResourceType {
		case "CodeSystem":
			cs := &codeSystem{url: r.URL, name: r.Name, version: r.Version, concepts: map[string]string{}, parents: map[string][]string{}}
			cs.addConcepts(r.Concept, "")
			s.systems[r.URL] = cs
		case "ValueSet":
			sets = append(sets, r)
		default:
			return nil, fmt.Errorf("terminology: %s: unexpected resourceType %q", path.Base(name), r.ResourceType)
		}
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].URL < sets[j].URL })
	for _, r := range sets {
		vs := &valueSet{url: r.URL, version: r.Version, members: map[coding]string{}}
		if r.Expansion != nil {
			for _, c := range r.Expansion.Contains {
				k := coding{c.System, c.Code}
				vs.add(k, c.Display)
				if _, ok := s.expanded[k]; !ok && s.systems[c.System] == nil {
					s.expanded[k] = c.Display
				}
			}
		} else {
			for _, inc := range r.Compose.Include {
				if len(inc.Filter) > 0 {
					return nil, fmt.Errorf("terminology: ValueSet %s: a filter needs a stored expansion", r.URL)
				}
				cs := s.systems[inc.System]
				if len(inc.Concept) == 0 {
					if cs == nil {
						return nil, fmt.Errorf("terminology: ValueSet %s includes unknown CodeSystem %s", r.URL, inc.System)
					}
					for _, code := range cs.codes {
						vs.add(coding{inc.System, code}, cs.concepts[code])
					}
					continue
				}
				for _, c := range inc.Concept {
					display := c.Display
					if cs != nil && display == "" {
						display = cs.concepts[c.Code]
					}
					vs.add(coding{inc.System, c.Code}, display)
				}
			}
		}
		seen := map[string]bool{}
		for c := range vs.members {
			if !seen[c.system] {
				seen[c.system] = true
				vs.systems = append(vs.systems, c.system)
			}
		}
		sort.Strings(vs.systems)
		for _, k := range vs.order {
			vs.codings = append(vs.codings, fhir.Coding{System: k.system, Code: k.code})
		}
		s.valueSets[r.URL] = vs
	}
	return s, nil
}

// addConcepts adds concepts nested in parent ("" at the top level).
func (cs *codeSystem) addConcepts(concepts []concept, parent string) {
	for _, c := range concepts {
		if _, ok := cs.concepts[c.Code]; !ok {
			cs.codes = append(cs.codes, c.Code)
		}
		cs.concepts[c.Code] = c.Display
		if parent != "" {
			cs.parents[c.Code] = append(cs.parents[c.Code], parent)
		}
		for _, p := range c.Property {
			if p.Code == "parent" && p.ValueCode != "" {
				cs.parents[c.Code] = append(cs.parents[c.Code], p.ValueCode)
			}
		}
		cs.addConcepts(c.Concept, c.Code)
	}
}

// canonical strips a |version suffix from a canonical URL.
func canonical(url string) string {
	if i := strings.IndexByte(url, '|'); i >= 0 {
		return url[:i]
	}
	return url
}

// ValidateCode reports whether system|code is in the value set, and the
// code's display when it is. A valueSetURL may carry a |version, which is
// ignored (one version of each value set is held). It returns an
// IssueNotFound *fhir.Error if the value set is unknown, and an
// IssueInvalid one if code is empty.
// See https://hl7.org/fhir/R4/valueset-operation-validate-code.html.
func (s *Service) ValidateCode(ctx context.Context, valueSetURL, system, code string) (in bool, display string, err error) {
	vs := s.valueSets[canonical(valueSetURL)]
	if vs == nil {
		return false, "", fhir.Errorf(fhir.IssueNotFound, "ValueSet %s is not known", canonical(valueSetURL))
	}
	if code == "" {
		return false, "", fhir.Errorf(fhir.IssueInvalid, "no code to validate")
	}
	display, in = vs.members[coding{system, code}]
	return in, display, nil
}

// HasValueSet reports whether the service holds the value set (a |version
// suffix is ignored).
func (s *Service) HasValueSet(valueSetURL string) bool {
	return s.valueSets[canonical(valueSetURL)] != nil
}

// ValueSetCodes returns the codes (system and code) of the value set url in
// compose or expansion order, for the search modifiers :in and :not-in
// (it is a fhir.ValueSetCodes). version "" takes the version held; another
// must be that version. ok is false for an unknown value set or version.
// The slice must not be modified.
// See https://hl7.org/fhir/R4/search.html#token.
func (s *Service) ValueSetCodes(url, version string) (codes []fhir.Coding, ok bool) {
	vs := s.valueSets[url]
	if vs == nil || version != "" && version != vs.version {
		return nil, false
	}
	return vs.codings, true
}

// ValueSetSystems returns the code systems that codes of the value set come
// from, sorted, or nil if the value set is unknown. A profile validator uses
// it for extensible bindings: a code from one of these systems that is not
// in the value set is an error.
// See https://hl7.org/fhir/R4/terminologies.html#extensible.
func (s *Service) ValueSetSystems(valueSetURL string) []string {
	if vs := s.valueSets[canonical(valueSetURL)]; vs != nil {
		return vs.systems
	}
	return nil
}

// Lookup returns the display of a code in a code system. Codes of systems
// held only through value set expansions (SNOMED CT) are found there too.
// ok is false if the code is not known.
// See https://hl7.org/fhir/R4/codesystem-operation-lookup.html.
func (s *Service) Lookup(system, code string) (display string, ok bool) {
	if cs := s.systems[canonical(system)]; cs != nil {
		display, ok = cs.concepts[code]
		return display, ok
	}
	display, ok = s.expanded[coding{canonical(system), code}]
	return display, ok
}
