package fhir

import (
	"slices"
	"strings"
	"sync"
)

// SearchParamType is the type of a search parameter: how its values are
// written in a query and matched. Its value is the FHIR code, such as
// "token". See https://hl7.org/fhir/R4/valueset-search-param-type.html.
type SearchParamType string

// The search parameter types of FHIR R4.
// See https://hl7.org/fhir/R4/search.html#ptypes.
const (
	SearchParamNumber    SearchParamType = "number"
	SearchParamDate      SearchParamType = "date"
	SearchParamString    SearchParamType = "string"
	SearchParamToken     SearchParamType = "token"
	SearchParamReference SearchParamType = "reference"
	SearchParamComposite SearchParamType = "composite"
	SearchParamQuantity  SearchParamType = "quantity"
	SearchParamURI       SearchParamType = "uri"
	SearchParamSpecial   SearchParamType = "special"
)

// SearchParam is a search parameter as it applies to one resource type,
// taken from the R4 SearchParameter resources (hl7.fhir.r4.core 4.0.1).
// See https://hl7.org/fhir/R4/searchparameter.html.
//
// The values returned by SearchParams and LookupSearchParam are shared
// tables: callers must not modify them. They are safe for concurrent reads.
type SearchParam struct {
	// Name is the code used in queries, such as "patient" or "_id".
	Name string
	// URL is the canonical URL of the SearchParameter that defines it,
	// such as "http://hl7.org/fhir/SearchParameter/clinical-patient".
	URL string
	// Type says how values are written and matched.
	Type SearchParamType
	// Expression is the FHIRPath expression that extracts the values, with
	// a multi-resource definition narrowed to the union members for this
	// resource type: clinical-patient gives Flag the expression
	// "Flag.subject.where(resolve() is Patient)". Parameters defined on
	// Resource keep the expression on Resource ("Resource.meta.tag").
	// It is empty for parameters that no expression defines, such as
	// _content, _text, _has and _list.
	Expression string
	// XPathUsage is SearchParameter.xpathUsage: "normal", "phonetic",
	// "nearby", "distance" or "other"; empty if the definition has none.
	XPathUsage string
	// Targets are the resource types a reference parameter may refer to,
	// sorted; nil for other types.
	Targets []string
	// Modifiers are the modifiers the definition lists. R4's own
	// definitions list none, which means all modifiers for the type apply.
	Modifiers []string
	// Comparators are the prefixes allowed on values (such as "ge"), for
	// number, date and quantity parameters that list them.
	Comparators []string
	// MultipleOr reports whether a parameter may have several values
	// separated by commas. It is true unless the definition says false.
	MultipleOr bool
	// MultipleAnd reports whether the parameter may repeat in a query. It is
	// true unless the definition says false.
	MultipleAnd bool
	// Components are the parts of a composite parameter, in order.
	Components []SearchParamComponent
}

// SearchParamComponent is one part of a composite search parameter, such
// as the code in Observation's code-value-quantity.
type SearchParamComponent struct {
	// Definition is the canonical URL of the SearchParameter that the part
	// is searched as.
	Definition string
	// Expression is the FHIRPath expression of the part, relative to the
	// composite parameter's expression (such as "code").
	Expression string
	// Name is the code of the Definition parameter, such as "code".
	Name string
	// Type is the type of the Definition parameter.
	Type SearchParamType
}

// SearchParams returns the search parameters of resourceType, sorted by
// name: those defined for the type and those for all resources (_id,
// _lastUpdated and so on). It returns nil if resourceType is not a
// resource type (see IsResourceType). The slice is the caller's own; the
// parameters it points to are shared and must not be modified.
func SearchParams(resourceType string) []*SearchParam {
	return slices.Clone(spByType[resourceType])
}

// LookupSearchParam returns the search parameter called name on
// resourceType. It reports false if resourceType is unknown or has no such
// parameter. The result is shared and must not be modified.
func LookupSearchParam(resourceType, name string) (*SearchParam, bool) {
	ps := spByType[resourceType]
	i, ok := slices.BinarySearchFunc(ps, name, func(p *SearchParam, name string) int {
		return strings.Compare(p.Name, name)
	})
	if !ok {
		return nil, false
	}
	return ps[i], true
}

// SearchRegistry holds the search parameters in force: the generated table
// (R4 and the CP-IS parameters shipped with it) and those added at run time
// from SearchParameter resources. A run-time parameter is first added for
// indexing only (Params, which the Indexer reads, has it; Lookup and
// Searchable, which search and the CapabilityStatement read, do not), and
// becomes searchable once Activate says the existing resources have been
// reindexed. Its zero value is not usable; build it with NewSearchRegistry.
// It is safe for concurrent use.
type SearchRegistry struct {
	mu        sync.RWMutex
	extra     map[string][]*SearchParam // by resource type, sorted by name
	active    map[*SearchParam]bool
	valueSets ValueSetCodes
}

// ValueSetCodes returns the codes of the value set that the canonical url
// names, for the token modifiers :in and :not-in; version is the |version
// written after the URL, "" for any. ok is false when the value set is not
// known (or not in that version). It answers from memory, without I/O, and
// must be safe for concurrent use; the codes returned must not be modified.
// See https://hl7.org/fhir/R4/search.html#token.
type ValueSetCodes func(url, version string) (codes []Coding, ok bool)

// SetValueSets makes f the source of the value sets that :in and :not-in
// name in searches parsed with this registry (such as the server's
// terminology). Without one those modifiers are unsupported.
func (r *SearchRegistry) SetValueSets(f ValueSetCodes) {
	r.mu.Lock()
	r.valueSets = f
	r.mu.Unlock()
}

func (r *SearchRegistry) valueSetCodes() ValueSetCodes {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.valueSets
}

// NewSearchRegistry returns a registry holding the generated table.
func NewSearchRegistry() *SearchRegistry {
	return &SearchRegistry{extra: map[string][]*SearchParam{}, active: map[*SearchParam]bool{}}
}

func findParam(ps []*SearchParam, name string) (*SearchParam, bool) {
	i, ok := slices.BinarySearchFunc(ps, name, func(p *SearchParam, name string) int {
		return strings.Compare(p.Name, name)
	})
	if !ok {
		return nil, false
	}
	return ps[i], true
}

// Lookup returns the searchable parameter called name on resourceType, an
// active run-time addition first. It reports false if there is none.
func (r *SearchRegistry) Lookup(resourceType, name string) (*SearchParam, bool) {
	r.mu.RLock()
	p, ok := findParam(r.extra[resourceType], name)
	ok = ok && r.active[p]
	r.mu.RUnlock()
	if ok {
		return p, true
	}
	return LookupSearchParam(resourceType, name)
}

// Params returns the parameters to index on resourceType, sorted by name:
// the generated ones and every run-time addition, active or not, additions
// replacing generated parameters of the same name.
func (r *SearchRegistry) Params(resourceType string) []*SearchParam {
	return r.params(resourceType, false)
}

// Searchable returns the parameters that searches on resourceType may use,
// sorted by name: as Params, without the run-time additions not yet active.
func (r *SearchRegistry) Searchable(resourceType string) []*SearchParam {
	return r.params(resourceType, true)
}

func (r *SearchRegistry) params(resourceType string, activeOnly bool) []*SearchParam {
	base := SearchParams(resourceType)
	r.mu.RLock()
	var extra []*SearchParam
	for _, p := range r.extra[resourceType] {
		if !activeOnly || r.active[p] {
			extra = append(extra, p)
		}
	}
	r.mu.RUnlock()
	if len(extra) == 0 {
		return base
	}
	out := make([]*SearchParam, 0, len(base)+len(extra))
	for _, p := range base {
		if _, dup := findParam(extra, p.Name); !dup {
			out = append(out, p)
		}
	}
	out = append(out, extra...)
	slices.SortFunc(out, func(a, b *SearchParam) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Add makes p a parameter of each of the resource types, for indexing only
// until Activate(p); it replaces a run-time parameter of the same name
// added before. p must not be modified afterwards.
func (r *SearchRegistry) Add(p *SearchParam, resourceTypes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range resourceTypes {
		ps := slices.DeleteFunc(slices.Clone(r.extra[rt]), func(e *SearchParam) bool {
			if e.Name == p.Name {
				delete(r.active, e)
				return true
			}
			return false
		})
		ps = append(ps, p)
		slices.SortFunc(ps, func(a, b *SearchParam) int { return strings.Compare(a.Name, b.Name) })
		r.extra[rt] = ps
	}
}

// Activate makes p, added before, searchable.
func (r *SearchRegistry) Activate(p *SearchParam) {
	r.mu.Lock()
	r.active[p] = true
	r.mu.Unlock()
}

// Added returns the run-time parameters, each once, in the order of their
// URLs, with whether each is active.
func (r *SearchRegistry) Added() (params []*SearchParam, active []bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[*SearchParam]bool{}
	for _, ps := range r.extra {
		for _, p := range ps {
			if !seen[p] {
				seen[p] = true
				params = append(params, p)
			}
		}
	}
	slices.SortFunc(params, func(a, b *SearchParam) int { return strings.Compare(a.URL, b.URL) })
	for _, p := range params {
		active = append(active, r.active[p])
	}
	return params, active
}

// IsCompartmentType reports whether t names a compartment: Device,
// Encounter, Patient, Practitioner or RelatedPerson.
// See https://hl7.org/fhir/R4/compartmentdefinition.html.
func IsCompartmentType(t string) bool { return len(spCompartments[t]) > 0 }
