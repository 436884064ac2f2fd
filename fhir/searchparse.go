package fhir

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SearchOptions configure ParseSearch. The zero value of every field but
// Registry is usable.
type SearchOptions struct {
	// Registry holds the parameters in force; required.
	Registry *SearchRegistry
	// Strict is Prefer: handling=strict: unknown and unsupported parameters
	// are errors instead of being listed in Search.Ignored.
	// See https://hl7.org/fhir/R4/search.html#errors.
	Strict bool
	// DefaultCount is the page size when _count is absent; 0 means 20.
	DefaultCount int
	// MaxCount is the largest page size; 0 means 1000. A larger _count is
	// capped to it, not refused.
	MaxCount int
	// BaseURL is this server's FHIR base, such as
	// http://localhost:8080/fhir. Absolute reference values under it are
	// taken as the relative Type/id they name.
	BaseURL string
	// Location is the time zone of date values written without one; nil
	// means UTC.
	Location *time.Location
}

// The defaults and limits of ParseSearch.
const (
	defaultSearchCount = 20
	maxSearchCount     = 1000
	// maxSearchDepth is the number of chain (a.b) and _has hops a
	// parameter may take; deeper ones are not supported.
	maxSearchDepth = 4
)

// ParseSearch parses the query parameters of a search on resource type typ
// ("" for a system search) into a Search whose every value has been checked.
// See https://hl7.org/fhir/R4/search.html.
//
// Keys repeat to AND and commas OR values (https://hl7.org/fhir/R4/search.html#combining);
// "\," "\|" "\$" and "\\" write those characters literally
// (https://hl7.org/fhir/R4/search.html#escaping). Filters come in the
// order of their keys sorted by byte value, repeats of a key in the order
// written; Ignored is sorted the same way. _format, _pretty and _cursor are
// the server's and are skipped.
//
// Values are parsed by the parameter's type (https://hl7.org/fhir/R4/search.html#ptypes):
//
//   - string: Norm is NormalizeString of the value and Exact the value as
//     written; modifiers exact, contains, missing.
//   - token: code, system|code, |code (HasSystem, System empty), system|
//     (Code empty); modifiers not, text (Norm and Exact, no '|' split),
//     of-type on identifier parameters (system|code|value: System, Code
//     "code|value"), missing, and in and not-in, whose value is one or more
//     ValueSet canonical URLs (each with an optional |version), expanded
//     through the registry's ValueSetCodes into the union of their codes
//     (at most 1,000; an unknown value set is IssueInvalid). _id takes a
//     bare id only (Code).
//   - reference: id (RefID, RefType from a type modifier), Type/id (an
//     optional /_history/n is dropped), an absolute URL (under BaseURL taken
//     as Type/id, else URL with a |version in Version); modifiers [Type]
//     (one of the parameter's targets), identifier (a token value in
//     System, Code and HasSystem), missing. A chained key
//     (subject:Patient.name) gives Chain one ChainTarget per target type
//     that has the next parameter, to any depth up to four hops.
//   - date: an optional prefix (eq when none) and the range from DateRange
//     in opts.Location. A space where a time zone's '+' belongs, as an
//     unencoded '+' in a query string arrives, is read as '+'.
//   - number: an optional prefix and NumberRange: Number, Low, High.
//   - quantity: [prefix]number, [prefix]number|system|code or
//     [prefix]number||code: Number, Low, High, UnitSystem, UnitCode.
//   - uri: URI as written; modifiers below, above, missing.
//   - composite: the parts separated by '$', one per component, each parsed
//     by its component's type, in Parts.
//
// Every type takes :missing=true or :missing=false, as one Value. A
// prefix a parameter's Comparators do not list is refused. _has:Type:ref:key
// gives a HasFilter (https://hl7.org/fhir/R4/search.html#has), where key may
// itself be chained or another _has.
//
// In a system search, _type (a comma list of resource types) sets Types,
// and other parameters must be defined on every type searched (all types
// when there is no _type) with the same type; Filter.Param is the first
// type's.
//
// Result controls (https://hl7.org/fhir/R4/search.html#return), each
// given at most once except _include and _revinclude:
//
//   - _count: 0 or more; above MaxCount it is capped; Count is DefaultCount
//     without it.
//   - _sort: a comma list of parameters of the type, '-' before one for
//     descending; composite, special, chained and unsupported ones are
//     refused.
//   - _total: none, estimate or accurate.
//   - _summary: true, text, data, count or false. count sets Count to 0
//     whatever _count says, and Total to accurate unless _total asks for
//     estimate (_total=none with it is refused).
//   - _elements: a comma list of element names [a-zA-Z][a-zA-Z0-9]*.
//   - _include and _revinclude (with :iterate, or the older :recurse):
//     Source:param, Source:param:Target, Source:* (Param nil) and *
//     (Param nil; Source is the searched type for a plain _include and
//     empty, meaning any type, otherwise). param must be a reference
//     parameter of Source, and Target one of its targets. Unless iterated,
//     an _include's Source must be the searched type (in a system search,
//     one of Types when _type is given) and, in a type search, an
//     _revinclude's parameter must be able to refer to the searched type.
//
// Errors are *Error whose message names the parameter and never repeats its
// value. Malformed values, unknown modifiers, chains through parameters that
// are not references, bad result controls and empty values are IssueInvalid
// in either mode. Unknown parameters and unsupported ones (_text,
// _content, _filter, _list, _query, _contained, _containedType, special
// parameters, :above and :below on tokens and references, :in and :not-in
// when the registry has no ValueSetCodes, _type in a type search, chains
// deeper than four hops) are
// IssueNotSupported when opts.Strict is set, and are otherwise listed in
// Ignored as written (key without value) and left out of the Search.
// Compartment is the caller's to set.
//
// ParseSearch is safe for concurrent use; it does not keep params.
func ParseSearch(typ string, params url.Values, opts SearchOptions) (*Search, error) {
	if opts.Registry == nil {
		return nil, errors.New("fhir: ParseSearch needs a SearchRegistry")
	}
	if typ != "" && !IsResourceType(typ) {
		return nil, Errorf(IssueNotFound, "%s is not a resource type", typ)
	}
	p := &searchParser{
		reg:  opts.Registry,
		opts: opts,
		typ:  typ,
		base: strings.TrimRight(opts.BaseURL, "/"),
		s:    &Search{Type: typ},
	}
	if p.opts.MaxCount <= 0 {
		p.opts.MaxCount = maxSearchCount
	}
	if p.opts.DefaultCount <= 0 {
		p.opts.DefaultCount = defaultSearchCount
	}
	p.s.Count = min(p.opts.DefaultCount, p.opts.MaxCount)
	if p.opts.Location == nil {
		p.opts.Location = time.UTC
	}

	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// _type first: in a system search it decides where the other
	// parameters are looked up.
	if vs, ok := params["_type"]; ok {
		if err := p.parseType(vs); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		if err := p.parseKey(k, params[k]); err != nil {
			return nil, err
		}
	}
	if p.s.Summary == SummaryCount {
		switch p.s.Total {
		case TotalNone:
			return nil, Errorf(IssueInvalid, "_summary=count asks for the total only, but _total=none asks for none")
		case TotalDefault:
			p.s.Total = TotalAccurate
		}
		p.s.Count = 0
	}
	slices.Sort(p.s.Ignored)
	return p.s, nil
}

// searchParser holds the state of one ParseSearch call.
type searchParser struct {
	reg  *SearchRegistry
	opts SearchOptions
	typ  string // "" for a system search
	base string // opts.BaseURL without a trailing slash
	s    *Search
}

// skipError reports a parameter that a lenient parse ignores and a strict
// one refuses: unknown (not defined for the type) or unsupported.
type skipError struct {
	unsupported bool
	reason      string // for unsupported: why, as a phrase
}

func (e *skipError) Error() string {
	if e.unsupported {
		return "unsupported: " + e.reason
	}
	return "unknown"
}

func unknownParam() error { return &skipError{} }

func unsupported(reason string) error { return &skipError{unsupported: true, reason: reason} }

// invalid returns an IssueInvalid error about the parameter key.
func invalid(key, format string, args ...any) *Error {
	return Errorf(IssueInvalid, "search parameter %q: %s", key, fmt.Sprintf(format, args...))
}

// unsupportedNames are parameters the spec defines that are not in the
// parameter table; they are unsupported rather than unknown.
var unsupportedNames = map[string]bool{"_contained": true, "_containedType": true}

// parseKey parses every occurrence of one query key.
func (p *searchParser) parseKey(key string, values []string) error {
	name, mod, _ := strings.Cut(key, ":")
	switch name {
	case "", "_format", "_pretty", "_cursor":
		// "" is a query such as "=x" or "&&", which names no parameter.
		return nil
	case "_type":
		if mod != "" {
			return invalid(key, "_type takes no modifier")
		}
		return nil // parsed first, by parseType
	case "_count", "_sort", "_total", "_summary", "_elements":
		if mod != "" {
			return invalid(key, "%s takes no modifier", name)
		}
		if len(values) > 1 {
			return invalid(key, "%s may be given only once", name)
		}
		return p.parseControl(name, values[0])
	case "_include", "_revinclude":
		for _, v := range values {
			if err := p.parseInclude(key, name, mod, v); err != nil {
				return err
			}
		}
		return nil
	}
	for _, v := range values {
		f, err := p.filter(p.typ, key, key, v, 0)
		if err != nil {
			var skip *skipError
			if !errors.As(err, &skip) {
				return err
			}
			if p.opts.Strict {
				if skip.unsupported {
					return Errorf(IssueNotSupported, "search parameter %q is not supported: %s", key, skip.reason)
				}
				if p.typ == "" {
					return Errorf(IssueNotSupported, "unknown search parameter %q for a system search", key)
				}
				return Errorf(IssueNotSupported, "unknown search parameter %q for %s", key, p.typ)
			}
			if !slices.Contains(p.s.Ignored, key) {
				p.s.Ignored = append(p.s.Ignored, key)
			}
			return nil
		}
		p.s.Filters = append(p.s.Filters, f)
	}
	return nil
}

// parseType parses _type. In a type search it is unsupported.
// See https://hl7.org/fhir/R4/search.html#type.
func (p *searchParser) parseType(values []string) error {
	const key = "_type"
	if p.typ != "" {
		if p.opts.Strict {
			return Errorf(IssueNotSupported, "search parameter %q is not supported: it applies to system searches only", key)
		}
		p.s.Ignored = append(p.s.Ignored, key)
		return nil
	}
	if len(values) > 1 {
		return invalid(key, "_type may be given only once")
	}
	for _, t := range strings.Split(values[0], ",") {
		t = strings.TrimSpace(t)
		if !IsResourceType(t) {
			return invalid(key, "each entry must be a resource type")
		}
		if !slices.Contains(p.s.Types, t) {
			p.s.Types = append(p.s.Types, t)
		}
	}
	return nil
}

// filter parses key (the part of full, the key as written, still to parse)
// on resource type typ, with one occurrence's value raw. depth counts the
// chain and _has hops taken.
func (p *searchParser) filter(typ, key, full, raw string, depth int) (Filter, error) {
	if depth > maxSearchDepth {
		return Filter{}, unsupported(fmt.Sprintf("chains and _has go at most %d deep", maxSearchDepth))
	}
	if rest, ok := strings.CutPrefix(key, "_has:"); ok {
		return p.has(typ, rest, full, raw, depth)
	}
	head, rest, chained := strings.Cut(key, ".")
	name, mod, _ := strings.Cut(head, ":")
	if name == "_has" {
		return Filter{}, invalid(full, "_has is written _has:Type:reference:parameter")
	}
	sp, err := p.lookup(typ, name, full)
	if err != nil {
		return Filter{}, err
	}
	if chained {
		return p.chain(sp, mod, rest, full, raw, depth)
	}
	if err := checkModifier(sp, mod, full); err != nil {
		return Filter{}, err
	}
	if sp.Type == SearchParamToken && (mod == "in" || mod == "not-in") {
		vs, err := p.valueSetValues(raw, full)
		if err != nil {
			return Filter{}, err
		}
		return Filter{Param: sp, Modifier: mod, Values: vs}, nil
	}
	vs, err := p.values(sp, mod, raw, full)
	if err != nil {
		return Filter{}, err
	}
	return Filter{Param: sp, Modifier: mod, Values: vs}, nil
}

// lookup finds the parameter name on typ, or in a system search on every
// type searched.
func (p *searchParser) lookup(typ, name, full string) (*SearchParam, error) {
	var sp *SearchParam
	if typ != "" {
		var ok bool
		if sp, ok = p.reg.Lookup(typ, name); !ok {
			if unsupportedNames[name] {
				return nil, unsupported("the server does not implement it")
			}
			return nil, unknownParam()
		}
	} else {
		types := p.s.Types
		if len(types) == 0 {
			types = ResourceTypes
		}
		found := 0
		for _, t := range types {
			q, ok := p.reg.Lookup(t, name)
			if !ok {
				continue
			}
			if sp == nil {
				sp = q
			} else if q.Type != sp.Type {
				return nil, invalid(full, "the parameter has different types on the resource types searched; name one type")
			}
			found++
		}
		switch {
		case found == 0 && unsupportedNames[name]:
			return nil, unsupported("the server does not implement it")
		case found == 0:
			return nil, unknownParam()
		case sp.Type != SearchParamSpecial && sp.Expression != "" && found < len(types):
			return nil, invalid(full, "a system search takes only parameters defined on every resource type searched; narrow the types with _type")
		}
	}
	if sp.Type == SearchParamSpecial || sp.Expression == "" {
		return nil, unsupported("the server does not implement it")
	}
	return sp, nil
}

// chain parses a chained parameter: sp (a reference, with modifier mod)
// followed by rest. See https://hl7.org/fhir/R4/search.html#chaining.
func (p *searchParser) chain(sp *SearchParam, mod, rest, full, raw string, depth int) (Filter, error) {
	if sp.Type != SearchParamReference {
		return Filter{}, invalid(full, "only reference parameters can be chained")
	}
	targets := sp.Targets
	if mod != "" {
		if !IsResourceType(mod) {
			return Filter{}, invalid(full, "a chained reference takes only a resource type as its modifier")
		}
		if len(sp.Targets) > 0 && !slices.Contains(sp.Targets, mod) {
			return Filter{}, invalid(full, "the type modifier is not a type the reference can refer to")
		}
		targets = []string{mod}
	}
	f := Filter{Param: sp, Modifier: mod}
	var skipped error
	for _, t := range targets {
		inner, err := p.filter(t, rest, full, raw, depth+1)
		if err != nil {
			var skip *skipError
			if !errors.As(err, &skip) {
				return Filter{}, err
			}
			if skipped == nil || skip.unsupported {
				skipped = err
			}
			continue
		}
		f.Chain = append(f.Chain, ChainTarget{Type: t, Filter: inner})
	}
	if len(f.Chain) == 0 {
		if skipped == nil {
			skipped = unknownParam()
		}
		return Filter{}, skipped
	}
	return f, nil
}

// has parses a reverse chain: rest is "Type:ref:key" after "_has:", on
// resources of typ. See https://hl7.org/fhir/R4/search.html#has.
func (p *searchParser) has(typ, rest, full, raw string, depth int) (Filter, error) {
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return Filter{}, invalid(full, "_has is written _has:Type:reference:parameter")
	}
	src, refName, key := parts[0], parts[1], parts[2]
	if !IsResourceType(src) {
		return Filter{}, invalid(full, "_has names an unknown resource type")
	}
	ref, err := p.lookup(src, refName, full)
	if err != nil {
		return Filter{}, err
	}
	if ref.Type != SearchParamReference {
		return Filter{}, invalid(full, "the second part of _has must be a reference parameter of the type named")
	}
	if typ != "" && len(ref.Targets) > 0 && !slices.Contains(ref.Targets, typ) {
		return Filter{}, invalid(full, "the reference parameter of _has cannot refer to %s", typ)
	}
	inner, err := p.filter(src, key, full, raw, depth+1)
	if err != nil {
		return Filter{}, err
	}
	return Filter{Has: &HasFilter{Type: src, Ref: ref, Filter: inner}}, nil
}

// The modifiers each type supports, and those it defines but this server
// does not support. missing applies to every type; reference also takes a
// resource type. See https://hl7.org/fhir/R4/search.html#modifiers.
var (
	supportedModifiers = map[SearchParamType][]string{
		SearchParamString:    {"exact", "contains"},
		SearchParamToken:     {"not", "text", "of-type", "in", "not-in"},
		SearchParamReference: {"identifier"},
		SearchParamURI:       {"below", "above"},
	}
	unsupportedModifiers = map[SearchParamType][]string{
		SearchParamToken:     {"above", "below"},
		SearchParamReference: {"above", "below"},
	}
)

// checkModifier checks that mod applies to sp.
func checkModifier(sp *SearchParam, mod, full string) error {
	if mod == "" {
		return nil
	}
	if sp.Type == SearchParamReference && IsResourceType(mod) {
		if len(sp.Targets) > 0 && !slices.Contains(sp.Targets, mod) {
			return invalid(full, "the type modifier is not a type the reference can refer to")
		}
		return nil
	}
	if len(sp.Modifiers) > 0 && !slices.Contains(sp.Modifiers, mod) {
		return invalid(full, "the parameter's definition does not allow this modifier")
	}
	switch {
	case mod == "missing", slices.Contains(supportedModifiers[sp.Type], mod):
	case slices.Contains(unsupportedModifiers[sp.Type], mod):
		return unsupported(fmt.Sprintf("the :%s modifier is not implemented", mod))
	default:
		return invalid(full, "the modifier does not apply to a %s parameter", sp.Type)
	}
	if mod == "of-type" && !isIdentifierParam(sp) {
		return invalid(full, ":of-type applies to identifier parameters only")
	}
	if sp.Name == "_id" && mod != "not" && mod != "missing" {
		return invalid(full, "_id takes only the :not and :missing modifiers")
	}
	return nil
}

// isIdentifierParam reports whether every path of sp's expression selects
// an Identifier (its last element's name ends in "identifier", or it is cast
// to Identifier), as :of-type needs.
func isIdentifierParam(sp *SearchParam) bool {
	if sp.Type != SearchParamToken || sp.Expression == "" {
		return false
	}
	for _, m := range strings.Split(sp.Expression, "|") {
		m = strings.TrimSpace(m)
		m = strings.TrimSuffix(strings.TrimPrefix(m, "("), ")")
		if strings.HasSuffix(m, " as Identifier") || strings.HasSuffix(m, ".as(Identifier)") || strings.HasSuffix(m, ".ofType(Identifier)") {
			continue
		}
		if i := strings.Index(m, ".where("); i >= 0 {
			m = m[:i]
		}
		last := m[strings.LastIndexByte(m, '.')+1:]
		if !strings.HasSuffix(strings.ToLower(last), "identifier") {
			return false
		}
	}
	return true
}

// maxValueSetCodes is the most codes the value sets of one :in or :not-in
// value may expand to.
const maxValueSetCodes = 1000

// valueSetValues expands the value of a token's :in or :not-in: one or
// more ValueSet canonical URLs, each with an optional |version, separated
// by commas. The result is the union of their codes, each once, in the
// order the value sets list them. See https://hl7.org/fhir/R4/search.html#token.
func (p *searchParser) valueSetValues(raw, full string) ([]Value, error) {
	codes := p.reg.valueSetCodes()
	if codes == nil {
		return nil, unsupported("the server has no terminology to expand value sets")
	}
	if raw == "" {
		return nil, invalid(full, "the parameter has no value")
	}
	var out []Value
	seen := map[Coding]bool{}
	for _, s := range splitEscaped(raw, ',') {
		parts := splitEscaped(s, '|')
		u := unescape(parts[0])
		if len(parts) > 2 || !strings.Contains(u, "://") && !strings.HasPrefix(u, "urn:") {
			return nil, invalid(full, "the value is the canonical URL of a ValueSet, optionally with |version")
		}
		var version string
		if len(parts) == 2 {
			version = unescape(parts[1])
		}
		cs, ok := codes(u, version)
		if !ok {
			return nil, invalid(full, "the value set is not one this server holds (see GET ValueSet?url=...)")
		}
		for _, c := range cs {
			k := Coding{System: c.System, Code: c.Code}
			if seen[k] {
				continue
			}
			if len(out) == maxValueSetCodes {
				return nil, invalid(full, "the value sets have more than %d codes; search with fewer", maxValueSetCodes)
			}
			seen[k] = true
			out = append(out, Value{System: c.System, HasSystem: true, Code: c.Code})
		}
	}
	return out, nil
}

// values parses one occurrence's value: comma-separated values, ORed.
func (p *searchParser) values(sp *SearchParam, mod, raw, full string) ([]Value, error) {
	if raw == "" {
		return nil, invalid(full, "the parameter has no value")
	}
	if mod == "missing" {
		switch raw {
		case "true":
			return []Value{{Missing: true}}, nil
		case "false":
			return []Value{{Missing: false}}, nil
		}
		return nil, invalid(full, ":missing takes true or false")
	}
	parts := splitEscaped(raw, ',')
	out := make([]Value, 0, len(parts))
	for _, s := range parts {
		if s == "" {
			return nil, invalid(full, "the comma-separated list has an empty value")
		}
		v, err := p.value(sp.Type, sp, mod, s, full)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// value parses one value s of type t. sp is nil for a composite's part.
func (p *searchParser) value(t SearchParamType, sp *SearchParam, mod, s, full string) (Value, error) {
	switch t {
	case SearchParamString:
		return textValue(s, full)
	case SearchParamToken:
		return tokenValue(sp, mod, s, full)
	case SearchParamReference:
		return p.referenceValue(sp, mod, s, full)
	case SearchParamDate:
		pre, rest, err := prefix(sp, s, full)
		if err != nil {
			return Value{}, err
		}
		// An unencoded '+' in a query string arrives as a space; a
		// date has no space otherwise.
		rest = strings.ReplaceAll(unescape(rest), " ", "+")
		low, high, ok := DateRange(rest, p.opts.Location)
		if !ok {
			return Value{}, invalid(full, "the value is not a FHIR date, dateTime or instant (such as 2026-01-01 or 2026-01-01T10:00:00+01:00), optionally prefixed")
		}
		return Value{Prefix: pre, DateLow: low, DateHigh: high}, nil
	case SearchParamNumber:
		pre, rest, err := prefix(sp, s, full)
		if err != nil {
			return Value{}, err
		}
		n, low, high, ok := NumberRange(unescape(rest))
		if !ok {
			return Value{}, invalid(full, "the value is not a decimal number, optionally prefixed")
		}
		return Value{Prefix: pre, Number: n, Low: low, High: high}, nil
	case SearchParamQuantity:
		return quantityValue(sp, s, full)
	case SearchParamURI:
		return Value{URI: unescape(s)}, nil
	case SearchParamComposite:
		return p.compositeValue(sp, s, full)
	}
	return Value{}, unsupported(fmt.Sprintf("%s parameters are not implemented", t))
}

// textValue is a string value, also the value of a token's :text.
func textValue(s, full string) (Value, error) {
	exact := unescape(s)
	n := NormalizeString(exact)
	if n == "" {
		return Value{}, invalid(full, "the value is only white space")
	}
	return Value{Norm: n, Exact: exact}, nil
}

// tokenValue parses a token value. sp is nil for a composite's part and a
// reference's :identifier. See https://hl7.org/fhir/R4/search.html#token.
func tokenValue(sp *SearchParam, mod, s, full string) (Value, error) {
	if mod == "text" {
		return textValue(s, full)
	}
	parts := splitEscaped(s, '|')
	if mod == "of-type" {
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return Value{}, invalid(full, ":of-type takes system|code|value, with a code and a value")
		}
		return Value{System: unescape(parts[0]), HasSystem: true, Code: unescape(parts[1]) + "|" + unescape(parts[2])}, nil
	}
	if sp != nil && sp.Name == "_id" {
		id := unescape(s)
		if len(parts) != 1 || !ValidID(id) {
			return Value{}, invalid(full, "the value is not a resource id ([A-Za-z0-9-.]{1,64})")
		}
		return Value{Code: id}, nil
	}
	switch len(parts) {
	case 1:
		return Value{Code: unescape(s)}, nil
	case 2:
		if parts[0] == "" && parts[1] == "" {
			return Value{}, invalid(full, "the token has neither a system nor a code")
		}
		return Value{System: unescape(parts[0]), HasSystem: true, Code: unescape(parts[1])}, nil
	}
	return Value{}, invalid(full, "a token is code, system|code, |code or system|; write a literal '|' as '\\|'")
}

// referenceValue parses a reference value.
// See https://hl7.org/fhir/R4/search.html#reference.
func (p *searchParser) referenceValue(sp *SearchParam, mod, s, full string) (Value, error) {
	if mod == "identifier" {
		return tokenValue(nil, "", s, full)
	}
	parts := splitEscaped(s, '|')
	u := unescape(parts[0])
	if !strings.Contains(u, "://") && !strings.HasPrefix(u, "urn:") {
		if len(parts) != 1 {
			return Value{}, invalid(full, "only an absolute URL or canonical takes a |version")
		}
		return relativeReference(sp, mod, u, full)
	}
	if len(parts) > 2 {
		return Value{}, invalid(full, "a canonical takes at most one |version")
	}
	if p.base != "" {
		if rel, ok := strings.CutPrefix(u, p.base+"/"); ok {
			return relativeReference(sp, mod, rel, full)
		}
	}
	v := Value{URL: u}
	if len(parts) == 2 {
		v.Version = unescape(parts[1])
	}
	return v, nil
}

// relativeReference parses id, Type/id or Type/id/_history/n. mod is ""
// or a resource type (or "missing"/"identifier", handled before).
func relativeReference(sp *SearchParam, mod, s, full string) (Value, error) {
	segs := strings.Split(s, "/")
	var typ, id string
	switch {
	case len(segs) == 1:
		id = segs[0]
		if IsResourceType(mod) {
			typ = mod
		}
	case len(segs) == 2, len(segs) == 4 && segs[2] == "_history" && ValidID(segs[3]):
		typ, id = segs[0], segs[1]
		if !IsResourceType(typ) {
			return Value{}, invalid(full, "the reference does not start with a resource type")
		}
		if sp != nil && len(sp.Targets) > 0 && !slices.Contains(sp.Targets, typ) {
			return Value{}, invalid(full, "the reference names a type the parameter cannot refer to")
		}
		if IsResourceType(mod) && mod != typ {
			return Value{}, invalid(full, "the reference names a type other than the type modifier")
		}
	default:
		return Value{}, invalid(full, "a reference is id, Type/id or an absolute URL")
	}
	if !ValidID(id) {
		return Value{}, invalid(full, "the reference's id is not a resource id ([A-Za-z0-9-.]{1,64})")
	}
	return Value{RefType: typ, RefID: id}, nil
}

// quantityValue parses [prefix]number[|system|code].
// See https://hl7.org/fhir/R4/search.html#quantity.
func quantityValue(sp *SearchParam, s, full string) (Value, error) {
	parts := splitEscaped(s, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return Value{}, invalid(full, "a quantity is [prefix]number, [prefix]number|system|code or [prefix]number||code")
	}
	pre, num, err := prefix(sp, parts[0], full)
	if err != nil {
		return Value{}, err
	}
	n, low, high, ok := NumberRange(unescape(num))
	if !ok {
		return Value{}, invalid(full, "the quantity's number is not a decimal number")
	}
	v := Value{Prefix: pre, Number: n, Low: low, High: high}
	if len(parts) == 3 {
		v.UnitSystem, v.UnitCode = unescape(parts[1]), unescape(parts[2])
	}
	return v, nil
}

// compositeValue parses the '$'-separated parts of a composite value.
// See https://hl7.org/fhir/R4/search.html#composite.
func (p *searchParser) compositeValue(sp *SearchParam, s, full string) (Value, error) {
	if len(sp.Components) == 0 {
		return Value{}, unsupported("the composite parameter has no components")
	}
	parts := splitEscaped(s, '$')
	if len(parts) != len(sp.Components) {
		return Value{}, invalid(full, "the composite takes %d values separated by '$'", len(sp.Components))
	}
	v := Value{Parts: make([]Value, len(parts))}
	for i, c := range sp.Components {
		if parts[i] == "" {
			return Value{}, invalid(full, "part %d of the composite is empty", i+1)
		}
		if c.Type == SearchParamComposite {
			return Value{}, unsupported("composites of composites are not implemented")
		}
		pv, err := p.value(c.Type, nil, "", parts[i], full)
		if err != nil {
			return Value{}, err
		}
		v.Parts[i] = pv
	}
	return v, nil
}

// prefix splits a comparison prefix off s; eq when there is none.
// See https://hl7.org/fhir/R4/search.html#prefix.
func prefix(sp *SearchParam, s, full string) (Prefix, string, error) {
	if len(s) < 2 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z' {
		return PrefixEq, s, nil
	}
	pre := Prefix(s[:2])
	switch pre {
	case PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb, PrefixAp:
	default:
		return "", "", invalid(full, "unknown prefix; use eq, ne, gt, lt, ge, le, sa, eb or ap")
	}
	if sp != nil && len(sp.Comparators) > 0 && !slices.Contains(sp.Comparators, string(pre)) {
		return "", "", invalid(full, "the parameter's definition does not allow the prefix %s", pre)
	}
	return pre, s[2:], nil
}

// splitEscaped splits s at each sep that no backslash escapes, keeping the
// escapes in the parts for unescape.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape replaces \, \$ \| and \\ by the character escaped; other
// backslashes stay. See https://hl7.org/fhir/R4/search.html#escaping.
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`,$|\`, s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseControl parses _count, _sort, _total, _summary and _elements.
// See https://hl7.org/fhir/R4/search.html#return.
func (p *searchParser) parseControl(name, v string) error {
	switch name {
	case "_count":
		if v == "" || strings.Trim(v, "0123456789") != "" {
			return invalid(name, "_count takes a whole number, 0 or more")
		}
		n, err := strconv.Atoi(v)
		if err != nil || n > p.opts.MaxCount { // err: too large for an int
			n = p.opts.MaxCount
		}
		p.s.Count = n
	case "_total":
		switch t := TotalMode(v); t {
		case TotalNone, TotalEstimate, TotalAccurate:
			p.s.Total = t
		default:
			return invalid(name, "_total takes none, estimate or accurate")
		}
	case "_summary":
		switch m := SummaryMode(v); m {
		case SummaryTrue, SummaryText, SummaryData, SummaryCount, SummaryFalse:
			p.s.Summary = m
		default:
			return invalid(name, "_summary takes true, text, data, count or false")
		}
	case "_elements":
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if !isElementName(e) {
				return invalid(name, "_elements takes a comma-separated list of element names")
			}
			p.s.Elements = append(p.s.Elements, e)
		}
	case "_sort":
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			desc := strings.HasPrefix(k, "-")
			k = strings.TrimPrefix(k, "-")
			sp, err := p.lookup(p.typ, k, name)
			if err != nil {
				var skip *skipError
				if errors.As(err, &skip) {
					return invalid(name, "each key must be a search parameter of the type searched that the server supports")
				}
				return err
			}
			if sp.Type == SearchParamComposite {
				return invalid(name, "results cannot be sorted by a composite parameter")
			}
			p.s.Sort = append(p.s.Sort, SortKey{Param: sp, Descending: desc})
		}
	}
	return nil
}

// isElementName reports whether s is [a-zA-Z][a-zA-Z0-9]*.
func isElementName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// parseInclude parses one _include or _revinclude (name) occurrence with
// key modifier mod. See https://hl7.org/fhir/R4/search.html#include.
func (p *searchParser) parseInclude(key, name, mod, raw string) error {
	rev := name == "_revinclude"
	var iterate bool
	switch mod {
	case "":
	case "iterate", "recurse":
		iterate = true
	default:
		return invalid(key, "%s takes only the :iterate modifier", name)
	}
	for _, v := range strings.Split(raw, ",") {
		inc, err := p.include(key, name, strings.TrimSpace(v), rev, iterate)
		if err != nil {
			return err
		}
		if rev {
			p.s.RevInclude = append(p.s.RevInclude, inc)
		} else {
			p.s.Include = append(p.s.Include, inc)
		}
	}
	return nil
}

func (p *searchParser) include(key, name, v string, rev, iterate bool) (Include, error) {
	if v == "*" {
		inc := Include{Iterate: iterate}
		if !rev && !iterate {
			inc.Source = p.typ
		}
		return inc, nil
	}
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Include{}, invalid(key, "%s takes Source:parameter, Source:parameter:Target, Source:* or *", name)
	}
	inc := Include{Source: parts[0], Iterate: iterate}
	if !IsResourceType(inc.Source) {
		return Include{}, invalid(key, "the source is not a resource type")
	}
	if !rev && !iterate {
		switch {
		case p.typ != "" && inc.Source != p.typ:
			return Include{}, invalid(key, "the source must be the type searched, %s, unless :iterate is given", p.typ)
		case p.typ == "" && len(p.s.Types) > 0 && !slices.Contains(p.s.Types, inc.Source):
			return Include{}, invalid(key, "the source must be one of the types searched unless :iterate is given")
		}
	}
	if parts[1] == "*" {
		if len(parts) == 3 {
			return Include{}, invalid(key, "Source:* takes no target type")
		}
		return inc, nil
	}
	sp, ok := p.reg.Lookup(inc.Source, parts[1])
	if !ok {
		return Include{}, invalid(key, "the parameter is not a search parameter of the source type")
	}
	if sp.Type != SearchParamReference || sp.Expression == "" {
		return Include{}, invalid(key, "the parameter is not a reference parameter of the source type")
	}
	inc.Param = sp
	if len(parts) == 3 {
		inc.TargetType = parts[2]
		if !IsResourceType(inc.TargetType) || len(sp.Targets) > 0 && !slices.Contains(sp.Targets, inc.TargetType) {
			return Include{}, invalid(key, "the target is not a type the parameter can refer to")
		}
	}
	if rev && !iterate && p.typ != "" {
		if len(sp.Targets) > 0 && !slices.Contains(sp.Targets, p.typ) || inc.TargetType != "" && inc.TargetType != p.typ {
			return Include{}, invalid(key, "the parameter cannot refer to the type searched, %s", p.typ)
		}
	}
	return inc, nil
}
