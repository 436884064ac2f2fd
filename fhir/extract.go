package fhir

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

// Indexer turns a resource's canonical JSON into its search index values:
// for every search parameter of the resource's type that has a FHIRPath
// expression, it evaluates the expression and turns each item of the result
// into typed rows (see Index) by the parameter's type and the item's FHIR
// type. See https://hl7.org/fhir/R4/search.html#ptypes and
// https://hl7.org/fhir/R4/searchparameter.html.
//
// A reference parameter narrowed by type, such as CareTeam's patient
// ("CareTeam.subject.where(resolve() is Patient)"), cannot tell the type of
// a Reference that has only an identifier, which is how CP-IS writes a
// subject known by NHS number. The Indexer then keeps that identifier as
// the parameter's "<code>:identifier" row all the same, so that
// CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|... (the
// national CP-IS API) finds it; the reference itself is not indexed.
//
// Expressions are compiled once and cached, so parameters added to the
// registry at run time are indexed from the next call on. An Indexer is
// safe for concurrent use; its zero value is not usable (use NewIndexer).
type Indexer struct {
	reg *SearchRegistry
	// types caches, per resource type, the plans of the parameters that
	// reg.Params returned last (*typePlan).
	types sync.Map
	// exprs caches compiled expressions by their text (*fhirpath.Expression,
	// or nil when the text does not compile).
	exprs   sync.Map
	skipped atomic.Int64
}

// NewIndexer returns an Indexer for the parameters in force in reg.
func NewIndexer(reg *SearchRegistry) *Indexer {
	return &Indexer{reg: reg}
}

// Skipped returns how many parameter evaluations have been left out of an
// index so far because the parameter's expression does not compile or
// failed on the resource (for example with fhirpath.ErrUnsupported, as
// memberOf() does). The resource is indexed without that parameter. The
// count is for operators (metrics, logs); clients never see it.
func (ix *Indexer) Skipped() int64 { return ix.skipped.Load() }

// Index returns the index values of a resource of type typ from its JSON
// (with id and meta set): one set of rows per search parameter, each row
// once. A parameter whose expression fails on this resource is left out
// and counted (see Skipped). Index fails, with an error that carries no
// issue code (an internal error), when body is not a JSON resource of type
// typ. See https://hl7.org/fhir/R4/search.html.
func (ix *Indexer) Index(typ string, body []byte) (*Index, error) {
	root, err := fhirpath.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("fhir: index %s: %w", typ, err)
	}
	if root.Type != typ {
		return nil, fmt.Errorf("fhir: index %s: the body is a %s resource", typ, root.Type)
	}
	idx := &Index{}
	for _, pl := range ix.plans(typ) {
		if pl.x == nil {
			ix.skipped.Add(1)
			continue
		}
		if !pl.index(idx, root) {
			ix.skipped.Add(1)
		}
	}
	return idx, nil
}

// typePlan is the cached plan of one resource type: params is what
// reg.Params returned when plans were made, to tell when it changed.
type typePlan struct {
	params []*SearchParam
	plans  []*paramPlan
}

// plans returns the plans of the indexed parameters of typ, remade when
// the registry's parameters for typ changed.
func (ix *Indexer) plans(typ string) []*paramPlan {
	params := ix.reg.Params(typ)
	if v, ok := ix.types.Load(typ); ok {
		if tp := v.(*typePlan); slices.Equal(tp.params, params) {
			return tp.plans
		}
	}
	tp := &typePlan{params: params}
	for _, p := range params {
		if p.Expression == "" || p.Type == SearchParamSpecial {
			continue
		}
		tp.plans = append(tp.plans, ix.plan(p))
	}
	ix.types.Store(typ, tp)
	return tp.plans
}

// plan compiles the expressions of p.
func (ix *Indexer) plan(p *SearchParam) *paramPlan {
	pl := newParamPlan(p.Name, p.Type)
	pl.x = ix.compile(p.Expression)
	if p.Type == SearchParamReference {
		if base, ok := withoutResolveIs(p.Expression); ok {
			pl.untyped = ix.compile(base)
		}
	}
	if p.Type == SearchParamComposite {
		if len(p.Components) == 0 {
			pl.x = nil
		}
		for _, c := range p.Components {
			cp := newParamPlan(c.Name, c.Type)
			if cp.x = ix.compile(c.Expression); cp.x == nil || c.Type == SearchParamComposite || c.Type == SearchParamSpecial {
				pl.x = nil
			}
			pl.components = append(pl.components, cp)
		}
	}
	return pl
}

// compile returns the compiled expression src, nil if it does not compile.
func (ix *Indexer) compile(src string) *fhirpath.Expression {
	if v, ok := ix.exprs.Load(src); ok {
		return v.(*fhirpath.Expression)
	}
	x, err := fhirpath.Parse(src)
	if err != nil {
		x = nil
	}
	ix.exprs.Store(src, x)
	return x
}

// paramPlan is how one parameter (or one component of a composite) is
// indexed: its compiled expression and the Param names of its rows.
type paramPlan struct {
	typ SearchParamType
	x   *fhirpath.Expression // nil: not indexable
	// name is the parameter's code; text, identifier and ofType are the
	// Params of the derived rows for :text, :identifier and :of-type.
	name, text, identifier, ofType string
	components                     []*paramPlan
	// untyped, for a reference parameter narrowed by resolve() is T, is
	// the expression without those filters, whose References of unknown
	// type give identifier rows.
	untyped *fhirpath.Expression
}

// withoutResolveIs returns expr with the filters ".where(resolve() is T)"
// ending each of its " | " parts removed; ok is false if it has none.
func withoutResolveIs(expr string) (base string, ok bool) {
	parts := strings.Split(expr, " | ")
	for i, part := range parts {
		j := strings.LastIndex(part, ".where(resolve() is ")
		if j < 0 || !strings.HasSuffix(part, ")") || !IsResourceType(part[j+len(".where(resolve() is "):len(part)-1]) {
			continue
		}
		parts[i], ok = part[:j], true
	}
	return strings.Join(parts, " | "), ok
}

func newParamPlan(name string, typ SearchParamType) *paramPlan {
	return &paramPlan{typ: typ, name: name, text: name + ":text", identifier: name + ":identifier", ofType: name + ":of-type"}
}

// mark is where each row slice of an Index ended before a parameter's rows
// were added.
type mark [8]int

func markOf(idx *Index) mark {
	return mark{len(idx.Strings), len(idx.Tokens), len(idx.References), len(idx.Dates),
		len(idx.Numbers), len(idx.Quantities), len(idx.URIs), len(idx.Composites)}
}

// truncate drops the rows added after m.
func (m mark) truncate(idx *Index) {
	idx.Strings = idx.Strings[:m[0]]
	idx.Tokens = idx.Tokens[:m[1]]
	idx.References = idx.References[:m[2]]
	idx.Dates = idx.Dates[:m[3]]
	idx.Numbers = idx.Numbers[:m[4]]
	idx.Quantities = idx.Quantities[:m[5]]
	idx.URIs = idx.URIs[:m[6]]
	idx.Composites = idx.Composites[:m[7]]
}

// dedup drops the repeated rows among those added after m.
func (m mark) dedup(idx *Index) {
	idx.Strings = dedupRows(idx.Strings, m[0])
	idx.Tokens = dedupRows(idx.Tokens, m[1])
	idx.References = dedupRows(idx.References, m[2])
	idx.Dates = dedupRows(idx.Dates, m[3])
	idx.Numbers = dedupRows(idx.Numbers, m[4])
	idx.Quantities = dedupRows(idx.Quantities, m[5])
	idx.URIs = dedupRows(idx.URIs, m[6])
	idx.Composites = dedupComposites(idx.Composites, m[7])
}

// index adds the rows of the parameter for root to idx. It reports false,
// adding nothing, when the expression fails on root.
func (pl *paramPlan) index(idx *Index, root fhirpath.Node) bool {
	nodes, err := pl.x.Evaluate(root)
	if err != nil {
		return false
	}
	m := markOf(idx)
	if pl.typ == SearchParamComposite {
		if !pl.composite(idx, root, nodes) {
			m.truncate(idx)
			return false
		}
	} else {
		for _, n := range nodes {
			pl.add(idx, n)
		}
	}
	if pl.untyped != nil {
		all, err := pl.untyped.Evaluate(root)
		if err != nil {
			m.truncate(idx)
			return false
		}
		for _, n := range all {
			pl.untypedIdentifier(idx, n)
		}
	}
	m.dedup(idx)
	return true
}

// untypedIdentifier adds the identifier row of n if n is a Reference whose
// target type cannot be told (no type, and no literal reference naming
// one).
func (pl *paramPlan) untypedIdentifier(idx *Index, n fhirpath.Node) {
	if n.Type != "Reference" {
		return
	}
	m := n.Object()
	if str(m, "type") != "" {
		return
	}
	if ref := str(m, "reference"); ref != "" {
		if r, ok := parseReference(ref); ok && r.Type != "" {
			return
		}
		if ref[0] == '#' {
			return
		}
	}
	if id, ok := m["identifier"].(map[string]any); ok {
		if system, value := str(id, "system"), str(id, "value"); system != "" || value != "" {
			idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.identifier, System: system, Code: value})
		}
	}
}

// add adds the rows of one item n of the parameter's expression result.
func (pl *paramPlan) add(idx *Index, n fhirpath.Node) {
	switch pl.typ {
	case SearchParamToken:
		pl.token(idx, n)
	case SearchParamString:
		pl.string(idx, n)
	case SearchParamReference:
		pl.reference(idx, n)
	case SearchParamDate:
		pl.date(idx, n)
	case SearchParamNumber:
		pl.number(idx, n)
	case SearchParamQuantity:
		pl.quantity(idx, n)
	case SearchParamURI:
		if s, ok := n.String(); ok && s != "" {
			idx.URIs = append(idx.URIs, IndexURI{Param: pl.name, URI: s})
		}
	}
}

// token adds the rows of a token value.
// See https://hl7.org/fhir/R4/search.html#token.
func (pl *paramPlan) token(idx *Index, n fhirpath.Node) {
	switch n.Type {
	case "Coding":
		pl.coding(idx, n.Object())
	case "CodeableConcept":
		m := n.Object()
		for _, e := range array(m["coding"]) {
			if c, ok := e.(map[string]any); ok {
				pl.coding(idx, c)
			}
		}
		pl.addText(idx, str(m, "text"))
	case "Identifier":
		m := n.Object()
		system, value := str(m, "system"), str(m, "value")
		if system != "" || value != "" {
			idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.name, System: system, Code: value})
		}
		t, _ := m["type"].(map[string]any)
		if t == nil {
			return
		}
		pl.addText(idx, str(t, "text"))
		if value == "" {
			return
		}
		for _, e := range array(t["coding"]) {
			c, _ := e.(map[string]any)
			if code := str(c, "code"); code != "" {
				idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.ofType, System: str(c, "system"), Code: code + "|" + value})
			}
		}
	case "ContactPoint":
		m := n.Object()
		if value := str(m, "value"); value != "" {
			idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.name, System: str(m, "system"), Code: value})
		}
	default:
		// code, string, id, uri, boolean and the other primitives.
		if s, ok := n.String(); ok && s != "" {
			idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.name, Code: s})
		}
	}
}

func (pl *paramPlan) coding(idx *Index, c map[string]any) {
	if system, code := str(c, "system"), str(c, "code"); system != "" || code != "" {
		idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.name, System: system, Code: code})
	}
	pl.addText(idx, str(c, "display"))
}

// addText adds s as a "<code>:text" string row.
func (pl *paramPlan) addText(idx *Index, s string) {
	if s != "" {
		idx.Strings = append(idx.Strings, IndexString{Param: pl.text, Norm: NormalizeString(s), Exact: s})
	}
}

// string adds the rows of a string value: one per part of a HumanName or
// Address. See https://hl7.org/fhir/R4/search.html#string.
func (pl *paramPlan) string(idx *Index, n fhirpath.Node) {
	var keys []string
	switch n.Type {
	case "HumanName":
		keys = humanNameParts
	case "Address":
		keys = addressParts
	default:
		if s, ok := n.String(); ok {
			pl.addString(idx, s)
		}
		return
	}
	m := n.Object()
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			pl.addString(idx, v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					pl.addString(idx, s)
				}
			}
		}
	}
}

// The elements of HumanName and Address that string search matches.
var (
	humanNameParts = []string{"family", "given", "prefix", "suffix", "text"}
	addressParts   = []string{"line", "city", "district", "state", "postalCode", "country", "text"}
)

func (pl *paramPlan) addString(idx *Index, s string) {
	if s != "" {
		idx.Strings = append(idx.Strings, IndexString{Param: pl.name, Norm: NormalizeString(s), Exact: s})
	}
}

// reference adds the rows of a reference value: a Reference (and its
// identifier as a "<code>:identifier" token), a canonical or uri, an
// Attachment by its url (Consent.source), or a resource
// (Bundle.entry[0].resource) as a reference to itself.
// See https://hl7.org/fhir/R4/search.html#reference.
func (pl *paramPlan) reference(idx *Index, n fhirpath.Node) {
	if n.Type == "Reference" {
		m := n.Object()
		if ref := str(m, "reference"); ref != "" {
			pl.addReference(idx, ref)
		}
		if id, ok := m["identifier"].(map[string]any); ok {
			if system, value := str(id, "system"), str(id, "value"); system != "" || value != "" {
				idx.Tokens = append(idx.Tokens, IndexToken{Param: pl.identifier, System: system, Code: value})
			}
		}
		return
	}
	if s, ok := n.String(); ok {
		pl.addReference(idx, s)
		return
	}
	if n.Type == "Attachment" {
		if url := str(n.Object(), "url"); url != "" {
			pl.addReference(idx, url)
		}
		return
	}
	if n.IsResource() {
		if id := str(n.Object(), "id"); ValidID(id) {
			idx.References = append(idx.References, IndexReference{Param: pl.name, Type: n.Type, ID: id})
		}
	}
}

// addReference adds the row of a reference written as s.
func (pl *paramPlan) addReference(idx *Index, s string) {
	if r, ok := parseReference(s); ok {
		r.Param = pl.name
		idx.References = append(idx.References, r)
	}
}

// parseReference parses a literal reference or canonical: Type/id (or
// Type/id/_history/n) gives Type and ID; an absolute URL or URN gives URL,
// with a |version suffix split off into Version, and Type and ID too when
// its last two path segments (before any /_history/n) are a resource type
// and an id. A local reference (#id) and a relative reference that is not
// Type/id report false. See https://hl7.org/fhir/R4/references.html#literal.
func parseReference(s string) (IndexReference, bool) {
	if s == "" || s[0] == '#' {
		return IndexReference{}, false
	}
	var r IndexReference
	if i := strings.LastIndexByte(s, '|'); i >= 0 {
		s, r.Version = s[:i], s[i+1:]
	}
	absolute := strings.IndexByte(s, ':') >= 0
	if absolute {
		r.URL = s
		if strings.HasPrefix(s, "urn:") {
			return r, true
		}
	}
	typ, id, ok := lastTypeAndID(s)
	if ok {
		r.Type, r.ID = typ, id
	}
	return r, ok || absolute
}

// lastTypeAndID returns the resource type and id that end the path s
// ([...]/Type/id or [...]/Type/id/_history/n).
func lastTypeAndID(s string) (typ, id string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", "", false
	}
	if j := strings.LastIndex(s[:i], "/_history"); j >= 0 && j+len("/_history") == i {
		s = s[:j]
		if i = strings.LastIndexByte(s, '/'); i < 0 {
			return "", "", false
		}
	}
	id, s = s[i+1:], s[:i]
	typ = s[strings.LastIndexByte(s, '/')+1:]
	if !IsResourceType(typ) || !ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

// date adds the rows of a date value.
// See https://hl7.org/fhir/R4/search.html#date.
func (pl *paramPlan) date(idx *Index, n fhirpath.Node) {
	switch n.Type {
	case "Period":
		pl.period(idx, n.Object())
	case "Timing":
		m := n.Object()
		for _, e := range array(m["event"]) {
			if s, ok := e.(string); ok {
				pl.addDate(idx, s)
			}
		}
		if r, ok := m["repeat"].(map[string]any); ok {
			if p, ok := r["boundsPeriod"].(map[string]any); ok {
				pl.period(idx, p)
			}
		}
	default:
		// date, dateTime, instant, System.Date and System.DateTime.
		if s, ok := n.Value.(string); ok {
			pl.addDate(idx, s)
		}
	}
}

func (pl *paramPlan) addDate(idx *Index, s string) {
	if low, high, ok := DateRange(s, nil); ok {
		idx.Dates = append(idx.Dates, IndexDate{Param: pl.name, Low: low, High: high})
	}
}

// period adds the row of a Period: from its start's low (MinDate when it
// has none) to its end's high (MaxDate when it has none).
func (pl *paramPlan) period(idx *Index, m map[string]any) {
	start, end := str(m, "start"), str(m, "end")
	if start == "" && end == "" {
		return
	}
	low, high := MinDate, MaxDate
	if start != "" {
		l, _, ok := DateRange(start, nil)
		if !ok {
			return
		}
		low = l
	}
	if end != "" {
		_, h, ok := DateRange(end, nil)
		if !ok {
			return
		}
		high = h
	}
	idx.Dates = append(idx.Dates, IndexDate{Param: pl.name, Low: low, High: high})
}

// number adds the rows of a number value: a decimal or integer by the
// range its precision implies, a Range from low to high.
// See https://hl7.org/fhir/R4/search.html#number.
func (pl *paramPlan) number(idx *Index, n fhirpath.Node) {
	if n.Type == "Range" {
		if q, ok := rangeQuantity(n.Object()); ok {
			idx.Numbers = append(idx.Numbers, IndexNumber{Param: pl.name, Value: q.Value, Low: q.Low, High: q.High})
		}
		return
	}
	if s, ok := n.Value.(json.Number); ok {
		if v, low, high, ok := NumberRange(string(s)); ok {
			idx.Numbers = append(idx.Numbers, IndexNumber{Param: pl.name, Value: v, Low: low, High: high})
		}
	}
}

// quantity adds the rows of a quantity value: a Quantity (Age, Duration,
// Distance, Count, SimpleQuantity, System.Quantity), a Money (currency as
// an urn:iso:std:iso:4217 code) or a Range.
// See https://hl7.org/fhir/R4/search.html#quantity.
func (pl *paramPlan) quantity(idx *Index, n fhirpath.Node) {
	m := n.Object()
	if m == nil {
		return
	}
	var q IndexQuantity
	switch n.Type {
	case "Range":
		r, ok := rangeQuantity(m)
		if !ok {
			return
		}
		q = r
	case "Money":
		v, low, high, ok := NumberRange(numberText(m["value"]))
		if !ok {
			return
		}
		q = IndexQuantity{System: "urn:iso:std:iso:4217", Code: str(m, "currency"), Value: v, Low: low, High: high}
	case "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity", fhirpath.TypeQuantity:
		v, low, high, ok := NumberRange(numberText(m["value"]))
		if !ok {
			return
		}
		q = IndexQuantity{System: str(m, "system"), Code: str(m, "code"), Unit: str(m, "unit"), Value: v, Low: low, High: high}
	default:
		return
	}
	q.Param = pl.name
	idx.Quantities = append(idx.Quantities, q)
}

// rangeQuantity returns a Range as one quantity from low.value to
// high.value, an absent end open (±math.MaxFloat64), with the unit of low
// (or of high when low has none). Value is low's value, else high's. ok is
// false when neither end has a value.
func rangeQuantity(m map[string]any) (IndexQuantity, bool) {
	q := IndexQuantity{Low: -math.MaxFloat64, High: math.MaxFloat64}
	lowQ, _ := m["low"].(map[string]any)
	highQ, _ := m["high"].(map[string]any)
	lv, lok := parseNumber(lowQ)
	hv, hok := parseNumber(highQ)
	if !lok && !hok {
		return q, false
	}
	unit := lowQ
	if hok {
		q.High, q.Value = hv, hv
	}
	if lok {
		q.Low, q.Value = lv, lv
	} else {
		unit = highQ
	}
	q.System, q.Code, q.Unit = str(unit, "system"), str(unit, "code"), str(unit, "unit")
	return q, true
}

// parseNumber returns the value of a Quantity-shaped object.
func parseNumber(m map[string]any) (float64, bool) {
	if m == nil {
		return 0, false
	}
	v, _, _, ok := NumberRange(numberText(m["value"]))
	return v, ok
}

// numberText returns the JSON text of a number decoded with UseNumber.
func numberText(v any) string {
	switch v := v.(type) {
	case json.Number:
		return string(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return ""
}

// composite adds the rows of a composite parameter: for each item of its
// expression's result, every combination of its components' values. It
// reports false when a component's expression fails.
// See https://hl7.org/fhir/R4/search.html#composite.
func (pl *paramPlan) composite(idx *Index, root fhirpath.Node, items fhirpath.Collection) bool {
	var scratch Index
	parts := make([][]IndexPart, len(pl.components))
	for _, item := range items {
		empty := false
		for i, c := range pl.components {
			nodes, err := c.x.EvaluateOn(root, item)
			if err != nil {
				return false
			}
			scratch = Index{Strings: scratch.Strings[:0], Tokens: scratch.Tokens[:0], References: scratch.References[:0],
				Dates: scratch.Dates[:0], Numbers: scratch.Numbers[:0], Quantities: scratch.Quantities[:0], URIs: scratch.URIs[:0]}
			for _, n := range nodes {
				c.add(&scratch, n)
			}
			parts[i] = c.parts(parts[i][:0], &scratch)
			if len(parts[i]) == 0 {
				empty = true
				break
			}
		}
		if !empty {
			idx.Composites = appendProduct(idx.Composites, pl.name, parts)
		}
	}
	return true
}

// parts appends to out the component values in scratch, leaving out the
// rows derived for modifiers.
func (pl *paramPlan) parts(out []IndexPart, scratch *Index) []IndexPart {
	switch pl.typ {
	case SearchParamToken:
		for _, r := range scratch.Tokens {
			if r.Param == pl.name {
				out = append(out, IndexPart{Type: pl.typ, System: r.System, Code: r.Code})
			}
		}
	case SearchParamString:
		for _, r := range scratch.Strings {
			if r.Param == pl.name {
				out = append(out, IndexPart{Type: pl.typ, Norm: r.Norm, Exact: r.Exact})
			}
		}
	case SearchParamReference:
		for _, r := range scratch.References {
			out = append(out, IndexPart{Type: pl.typ, RefType: r.Type, RefID: r.ID, URL: r.URL})
		}
	case SearchParamDate:
		for _, r := range scratch.Dates {
			out = append(out, IndexPart{Type: pl.typ, DateLow: r.Low, DateHigh: r.High})
		}
	case SearchParamNumber:
		for _, r := range scratch.Numbers {
			out = append(out, IndexPart{Type: pl.typ, Value: r.Value, Low: r.Low, High: r.High})
		}
	case SearchParamQuantity:
		for _, r := range scratch.Quantities {
			out = append(out, IndexPart{Type: pl.typ, System: r.System, Code: r.Code, Value: r.Value, Low: r.Low, High: r.High})
		}
	case SearchParamURI:
		for _, r := range scratch.URIs {
			out = append(out, IndexPart{Type: pl.typ, URI: r.URI})
		}
	}
	return out
}

// appendProduct appends a composite row for every combination of one value
// of each component.
func appendProduct(out []IndexComposite, param string, parts [][]IndexPart) []IndexComposite {
	pick := make([]int, len(parts))
	for {
		row := make([]IndexPart, len(parts))
		for i, j := range pick {
			row[i] = parts[i][j]
		}
		out = append(out, IndexComposite{Param: param, Parts: row})
		i := len(pick) - 1
		for ; i >= 0; i-- {
			if pick[i]++; pick[i] < len(parts[i]) {
				break
			}
			pick[i] = 0
		}
		if i < 0 {
			return out
		}
	}
}

// dedupRows drops, in place, the rows after from that equal an earlier row
// after from, keeping the first of each.
func dedupRows[T comparable](rows []T, from int) []T {
	if len(rows)-from < 2 {
		return rows
	}
	if len(rows)-from > 32 {
		seen := make(map[T]struct{}, len(rows)-from)
		out := rows[:from]
		for _, r := range rows[from:] {
			if _, dup := seen[r]; !dup {
				seen[r] = struct{}{}
				out = append(out, r)
			}
		}
		return out
	}
	out := rows[:from+1]
	for _, r := range rows[from+1:] {
		if !slices.Contains(out[from:], r) {
			out = append(out, r)
		}
	}
	return out
}

// dedupComposites is dedupRows for composite rows.
func dedupComposites(rows []IndexComposite, from int) []IndexComposite {
	if len(rows)-from < 2 {
		return rows
	}
	out := rows[:from+1]
	for _, r := range rows[from+1:] {
		if !slices.ContainsFunc(out[from:], func(o IndexComposite) bool { return slices.Equal(o.Parts, r.Parts) }) {
			out = append(out, r)
		}
	}
	return out
}

// str returns the string value of m[key], "" if it has none.
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// array returns v if it is a JSON array, else nil.
func array(v any) []any {
	a, _ := v.([]any)
	return a
}
