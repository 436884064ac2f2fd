package fhir

// Search is a parsed, typed FHIR search: what a store needs to find and
// order resources, plus the result controls the server applies to the page.
// ParseSearch builds it from query parameters; every value in it has been
// checked, so a store can turn it into SQL without further validation.
// See https://hl7.org/fhir/R4/search.html.
type Search struct {
	// Type is the resource type searched; empty for a system search, where
	// Types (from _type) narrows the types, empty meaning all.
	Type  string
	Types []string

	// Filters are ANDed: a resource matches when it matches every one.
	Filters []Filter

	// Compartment, when set, keeps the resources in that compartment
	// (Patient/123/Flag): those whose compartment parameters for the type
	// (CompartmentParams) reference it.
	Compartment *CompartmentRef

	// Sort orders the results; empty means by the store's insertion order
	// of resources (stable under updates). Ties are broken by that order.
	Sort []SortKey

	// Count is the page size (0 means only the total is wanted, as
	// _summary=count asks).
	Count int
	// Total says whether and how to count all matches.
	Total TotalMode

	// Summary and Elements shape the returned resources; stores ignore them.
	Summary  SummaryMode
	Elements []string

	// Include and RevInclude name the resources added to the page.
	Include    []Include
	RevInclude []Include

	// Ignored lists the parameters (as written, without values) that a
	// lenient parse skipped because the server does not know or support
	// them.
	Ignored []string

	// Restrict, when set, limits every resource the search reaches: its
	// matches, the resources chains and _has go through, and the resources
	// _include and _revinclude add. Stores apply it inside the query, so
	// that pages, cursors and totals never see a resource it excludes. The
	// search parser never sets it; an access policy does. Nil reaches
	// everything.
	Restrict *Restriction
}

// Restriction is what a search may reach, for access control: each type
// that may be reached, with the filters its resources must all match.
// A type that is not in Types is never reached (no match, chain, _has or
// include yields a resource of it). Its filters are trusted as written:
// stores apply no Restriction inside them.
type Restriction struct {
	// Types maps a resource type to the filters (ANDed) its resources must
	// match; nil or empty filters reach every resource of the type.
	Types map[string][]Filter
	// Pinned, when set, gives the filters of the types it knows (ok true)
	// ahead of Types, made when a search asks for them: a restriction
	// made for one search, whose types are many and its search reaches
	// few.
	Pinned func(typ string) (fs []Filter, ok bool)
	// Base, when set, holds the types that Types does not (Types wins): a
	// restriction shared by many searches, such as the part of a
	// principal's that does not depend on the search. Shared filters must
	// not be changed.
	Base *Restriction
}

// Reaches reports whether resources of typ may be reached at all.
func (r *Restriction) Reaches(typ string) bool {
	if r == nil {
		return true
	}
	_, ok := r.Filters(typ)
	return ok
}

// Filters returns the filters of typ, from Types or else Base, and
// whether typ may be reached at all. A nil Restriction reaches every type
// with no filter.
func (r *Restriction) Filters(typ string) ([]Filter, bool) {
	if r == nil {
		return nil, true
	}
	for ; r != nil; r = r.Base {
		if r.Pinned != nil {
			if fs, ok := r.Pinned(typ); ok {
				return fs, true
			}
		}
		if fs, ok := r.Types[typ]; ok {
			return fs, true
		}
	}
	return nil, false
}

// Filter is one search parameter occurrence: its values are ORed.
type Filter struct {
	// Param is the parameter searched (for Has, the parameter of the inner
	// filter is inside Has).
	Param *SearchParam
	// Modifier is the modifier as written after the colon, without it:
	// "", "missing", "exact", "contains", "text", "not", "above", "below",
	// "in", "not-in", "identifier", "of-type", or a resource type name for
	// a reference parameter (subject:Patient), which narrows Targets.
	Modifier string
	// Values are ORed. For Modifier "missing" there is exactly one value
	// whose Missing field says true or false. For "in" and "not-in" they
	// are the codes of the value sets named (System, HasSystem and Code;
	// possibly none), expanded when the search was parsed: "in" matches a
	// resource with one of them, "not-in" one with none of them (as
	// "not", a resource without a value matches).
	Values []Value
	// Chain, for a chained reference (patient.identifier=...), holds one
	// filter per target type that has the chained parameter; the filter
	// matches when a referenced resource of one of those types matches its
	// filter. Values is empty then.
	Chain []ChainTarget
	// Has is a reverse chain (_has:Observation:patient:code=...); Param is
	// nil then.
	Has *HasFilter
	// Any makes the filter a disjunction: it matches when one of these
	// filters does (Param is nil then). The search parser never makes
	// one; access restrictions do.
	Any []Filter
}

// ChainTarget is one target type of a chained reference and the filter the
// referenced resource must match.
type ChainTarget struct {
	Type   string
	Filter Filter
}

// HasFilter selects resources that are referenced, through the reference
// parameter Ref of resources of Type, by a resource that matches Filter.
// See https://hl7.org/fhir/R4/search.html#has.
type HasFilter struct {
	Type   string
	Ref    *SearchParam
	Filter Filter
}

// Prefix is a comparison prefix of a number, date or quantity value.
// See https://hl7.org/fhir/R4/search.html#prefix.
type Prefix string

// The prefixes.
const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

// Value is one value of a filter, parsed for the parameter's type. Only the
// fields of that type are set.
type Value struct {
	// Missing is the value of a :missing filter.
	Missing bool

	// Token (also _id, and the :identifier and :of-type modifiers):
	// System and Code; HasSystem is true when a system part was written,
	// so that "|code" (HasSystem, System "") asks for no system and
	// "system|" (Code "") for any code in the system. For :of-type, System
	// and Code are the identifier type's and Code is "typecode|value" as in
	// IndexToken.
	System    string
	HasSystem bool
	Code      string

	// String (also :text): Norm is normalised as IndexString.Norm; Exact
	// is as written.
	Norm  string
	Exact string

	// Reference: Type and ID for Type/id or a bare id (Type empty: any
	// target type), URL for an absolute URL or canonical that is not this
	// server's (Version holds a |version suffix).
	RefType string
	RefID   string
	URL     string
	Version string

	// URI: as written; with :below and :above the store matches prefixes.
	URI string

	// Date, number and quantity: the prefix and the range the value
	// covers by its precision, as in IndexDate and IndexNumber. Value is
	// the number as written, which ap compares with.
	Prefix   Prefix
	DateLow  int64
	DateHigh int64
	Number   float64
	Low      float64
	High     float64
	// Quantity: system and code (or unit, when no system is given) of the
	// unit; empty means any unit.
	UnitSystem string
	UnitCode   string

	// Composite: one value per component, in order.
	Parts []Value
}

// CompartmentRef names a compartment instance, such as Patient/123.
type CompartmentRef struct {
	Type string
	ID   string
}

// SortKey is one _sort key.
type SortKey struct {
	Param      *SearchParam
	Descending bool
}

// TotalMode is the _total parameter.
type TotalMode string

// The _total values; TotalDefault lets the server choose.
const (
	TotalDefault  TotalMode = ""
	TotalNone     TotalMode = "none"
	TotalEstimate TotalMode = "estimate"
	TotalAccurate TotalMode = "accurate"
)

// SummaryMode is the _summary parameter.
type SummaryMode string

// The _summary values.
const (
	SummaryNone  SummaryMode = ""
	SummaryTrue  SummaryMode = "true"
	SummaryText  SummaryMode = "text"
	SummaryData  SummaryMode = "data"
	SummaryCount SummaryMode = "count"
	SummaryFalse SummaryMode = "false"
)

// Include is an _include or _revinclude: resources of Source type that the
// parameter Param refers from (include) or to (revinclude), optionally
// narrowed to TargetType. Param nil means every reference parameter of
// Source (the * form). Iterate repeats it over the resources added.
type Include struct {
	Source     string
	Param      *SearchParam
	TargetType string
	Iterate    bool
}

// Cursor is a position in a result: the sort key values and the row key
// of the last resource of a page (or the first, paging backwards). Stores
// make and read it; to everyone else it is opaque bytes.
type Cursor []byte

// SearchPage is one page of results, in order.
type SearchPage struct {
	// Matches are the resources that matched, current versions only.
	Matches []*Resource
	// Included are the resources added by Include and RevInclude, each
	// once and none of them also in Matches.
	Included []*Resource
	// Next is the cursor after the last match, nil on the last page;
	// Prev the cursor before the first match, nil on the first page.
	Next, Prev Cursor
	// Total is the number of all matches when it was counted, else -1.
	Total int
}
