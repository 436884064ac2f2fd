package profiles

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirpath"
	"github.com/cpis-fhir/cpis/terminology"
)

//go:embed definitions/*.json base/r4.json.gz
var files embed.FS

// IssueCodeInvalid is the OperationOutcome issue type of a code that is not
// in the value set a binding requires.
// See https://hl7.org/fhir/R4/valueset-issue-type.html.
const IssueCodeInvalid fhir.IssueType = "code-invalid"

// Issue is one finding of the validator: an OperationOutcome issue with its
// severity, type and the FHIRPath of the element concerned
// (Flag.category[0].coding[0]). Details, when set, is a code of
// terminology.SystemSpineErrorOrWarningCode that the CP-IS API reports for
// the finding (INVALID_SEARCH_DATA for an invalid NHS number).
// Diagnostics never hold resource content.
// See https://hl7.org/fhir/R4/operationoutcome.html.
type Issue struct {
	fhir.Issue
	Details string
}

// Profile is one StructureDefinition the validator knows.
type Profile struct {
	// URL is the canonical URL (https://fhir.cpis-fhir.org/StructureDefinition/CPIS-Flag).
	URL string
	// Type is the resource type the profile constrains.
	Type string
	// JSON is the StructureDefinition resource as embedded (differential only).
	JSON []byte

	root *element
}

// Validator checks resources against the embedded CP-IS profiles: cardinality,
// fixed and pattern values, slices (by value on identifier.system, coding.system,
// extension url and the like), type choices, bindings (through the terminology
// service), reference target types, FHIRPath invariants and the NHS number
// check digit. Build it once with New; it is safe for concurrent use.
// See https://hl7.org/fhir/R4/validation.html#profile.
type Validator struct {
	term     *terminology.Service
	profiles map[string]*Profile
	byType   map[string]string
	urls     []string
	base     base
	// skipped lists the R4 constraints ValidateBase does not check
	// because the evaluator cannot parse them (type: key).
	skipped []string
}

// embeddedBase is the R4 base of base/r4.json.gz, loaded once per process
// (about 20 ms): its trees are never modified after loading (snapshots and
// validation work on copies or only read them), so every Validator shares
// them.
var embeddedBase = sync.OnceValues(func() (loadedBase, error) {
	b, err := files.ReadFile("base/r4.json.gz")
	if err != nil {
		return loadedBase{}, err
	}
	bs, skipped, err := loadBase(b)
	return loadedBase{bs, skipped}, err
})

type loadedBase struct {
	trees   base
	skipped []string
}

// New builds the snapshots of the embedded profiles from their
// differentials and the R4 base, and compiles their invariants. It fails
// if a definition is malformed (the embedded ones are covered by tests).
func New(term *terminology.Service) (*Validator, error) {
	lb, err := embeddedBase()
	if err != nil {
		return nil, err
	}
	bs, skipped := lb.trees, lb.skipped
	v := &Validator{term: term, profiles: map[string]*Profile{}, byType: map[string]string{}, base: bs, skipped: skipped}
	names, err := fs.Glob(files, "definitions/*.json")
	if err != nil {
		return nil, err
	}
	type sd struct {
		URL          string `json:"url"`
		Type         string `json:"type"`
		Differential struct {
			Element []json.RawMessage `json:"element"`
		} `json:"differential"`
	}
	defs := map[string]sd{}
	for _, name := range names {
		raw, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var d sd
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("profiles: %s: %w", name, err)
		}
		defs[d.URL] = d
		v.profiles[d.URL] = &Profile{URL: d.URL, Type: d.Type, JSON: raw}
		v.byType[d.Type] = d.URL
		v.urls = append(v.urls, d.URL)
	}
	sort.Strings(v.urls)
	targetType := func(url string) string {
		if p := v.profiles[url]; p != nil {
			return p.Type
		}
		return url[strings.LastIndexByte(url, '/')+1:]
	}
	for url, d := range defs {
		root, err := bs.snapshot(d.Type, d.Differential.Element, targetType)
		if err != nil {
			return nil, fmt.Errorf("profiles: %s: %w", url, err)
		}
		v.profiles[url].root = root
	}
	return v, nil
}

// Profiles returns the canonical URLs of the known profiles, sorted.
func (v *Validator) Profiles() []string { return v.urls }

// Profile returns the profile with the canonical URL (a |version suffix is
// ignored), or nil.
func (v *Validator) Profile(url string) *Profile {
	if i := strings.IndexByte(url, '|'); i >= 0 {
		url = url[:i]
	}
	return v.profiles[url]
}

// ProfileFor returns the CP-IS profile of a resource type ("" if none).
func (v *Validator) ProfileFor(resourceType string) string { return v.byType[resourceType] }

// Validate checks a FHIR JSON resource against the profile and returns its
// findings, none if it conforms. Errors and warnings are ordered by
// element. A body that is not a JSON resource, a profile that is not known
// and a resource of another type than the profile's each give a single
// error. Validate does not repeat the base checks of the strict parser
// (unknown elements, primitive formats), and checks bindings only for value
// sets the terminology service holds.
func (v *Validator) Validate(resourceJSON []byte, profileURL string) []Issue {
	p := v.Profile(profileURL)
	if p == nil {
		return []Issue{issue(fhir.SeverityError, fhir.IssueNotSupported, "", "the profile is not known to this server")}
	}
	root, err := fhirpath.Decode(resourceJSON)
	if err != nil {
		return []Issue{issue(fhir.SeverityError, fhir.IssueStructure, "", "the body is not a FHIR JSON resource")}
	}
	if root.Type != p.Type {
		return []Issue{issue(fhir.SeverityError, fhir.IssueInvalid, root.Type, fmt.Sprintf("the profile constrains %s, not %s", p.Type, root.Type))}
	}
	w := &walk{v: v, root: root}
	w.value(root.Object(), p.root, root.Type, root.Type)
	w.nhsNumbers(root.Object(), root.Type)
	return w.issues
}

// ValidateBase checks a FHIR JSON resource against the R4 base
// StructureDefinition of its type (http://hl7.org/fhir/StructureDefinition/<Type>),
// descending into data types, contained resources and resources inside
// Bundles and Parameters: cardinality, bindings whose value sets the
// terminology service holds (required: error), reference target types, the
// R4 invariants the FHIRPath evaluator runs (all but those of
// SkippedInvariants), and natively ele-1 (no empty object or string) and
// ext-1 (an extension has a value or extensions, not both). It returns the
// findings, none if the resource conforms. A body that is not a JSON
// resource, or not of an R4 resource type, gives a single error. As
// Validate, it does not repeat the strict parser's checks.
// See https://hl7.org/fhir/R4/validation.html.
func (v *Validator) ValidateBase(resourceJSON []byte) []Issue {
	root, err := fhirpath.Decode(resourceJSON)
	if err != nil {
		return []Issue{issue(fhir.SeverityError, fhir.IssueStructure, "", "the body is not a FHIR JSON resource")}
	}
	el := v.base[root.Type]
	if el == nil || !fhir.IsResourceType(root.Type) {
		return []Issue{issue(fhir.SeverityError, fhir.IssueNotSupported, "", "the resourceType is not an R4 resource type")}
	}
	w := &walk{v: v, root: root, base: true}
	w.value(root.Object(), el, root.Type, root.Type)
	return w.issues
}

// skipInvariants are R4 constraints that ValidateBase does not evaluate:
// ele-1 and ext-1 are checked natively; the others need what the
// FHIRPath evaluator does not have (see SkippedInvariants).
var skipInvariants = map[string]bool{
	"ele-1": true, "ext-1": true,
	// Narrative.div: htmlChecks() is not a function of the evaluator.
	"txt-1": true, "txt-2": true,
	// Questionnaire.item.enableWhen: "answer is Boolean" needs the FHIR
	// boolean of answerBoolean to be a System Boolean, which the
	// evaluator's "is" does not do (it fails the official example
	// Questionnaire-bb).
	"que-7": true,
}

// SkippedInvariants returns the R4 constraints (as "Type: key") that
// ValidateBase does not check because the FHIRPath evaluator cannot parse
// or run them, sorted.
func (v *Validator) SkippedInvariants() []string {
	out := append([]string(nil), v.skipped...)
	sort.Strings(out)
	return out
}

func issue(sev fhir.Severity, code fhir.IssueType, expr, diag string) Issue {
	is := Issue{Issue: fhir.Issue{Severity: sev, Code: code, Diagnostics: diag}}
	if expr != "" {
		is.Expression = []string{expr}
	}
	return is
}

// walk is the state of one Validate or ValidateBase call.
type walk struct {
	v      *Validator
	root   fhirpath.Node
	issues []Issue
	// base is set by ValidateBase: data types are checked against their
	// own definitions and base invariants are evaluated.
	base bool
	// focus caches, per element with invariants, its items by path.
	focus map[*element]map[string]fhirpath.Node
}

func (w *walk) add(sev fhir.Severity, code fhir.IssueType, expr, format string, args ...any) {
	w.issues = append(w.issues, issue(sev, code, expr, fmt.Sprintf(format, args...)))
}

// item is one value of an element in the JSON.
type item struct {
	value any
	path  string // FHIRPath of the value
	typ   string // the type given by a choice suffix
}

// items collects the values of element c in obj, checking choice types.
func (w *walk) items(obj map[string]any, c *element, path string) []item {
	if !c.choice {
		return values(obj[c.name], path+"."+c.name, "")
	}
	var out []item
	for i, t := range c.baseTypes {
		key := c.choiceKeys[i]
		x, ok := obj[key]
		if !ok {
			continue
		}
		allowed := false
		for _, pt := range c.types {
			allowed = allowed || pt.code == t
		}
		if !allowed {
			w.add(fhir.SeverityError, fhir.IssueStructure, path+"."+key, "type %s is not allowed for %s (allowed: %s)", t, c.path, typeList(c.types))
			continue
		}
		out = append(out, values(x, path+"."+key, t)...)
	}
	return out
}

func typeList(ts []elementType) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.code)
	}
	return strings.Join(s, ", ")
}

func values(x any, path, typ string) []item {
	switch x := x.(type) {
	case nil:
		return nil
	case []any:
		out := make([]item, 0, len(x))
		for i, v := range x {
			if v != nil {
				out = append(out, item{v, path + "[" + strconv.Itoa(i) + "]", typ})
			}
		}
		return out
	default:
		return []item{{x, path, typ}}
	}
}

// object checks the children of el in obj (whose FHIRPath is path).
func (w *walk) object(obj map[string]any, el *element, path string) {
	if obj == nil {
		return
	}
	for _, c := range el.children {
		if !c.choice && len(c.slices) == 0 && obj[c.name] == nil {
			if c.min > 0 {
				w.cardinality(0, c, path+"."+c.name, c.id)
			}
			continue
		}
		its := w.items(obj, c, path)
		name := path + "." + c.name
		w.cardinality(len(its), c, name, c.id)
		if c.slicing == nil || len(c.slices) == 0 {
			for _, it := range its {
				w.value(it.value, c, it.path, it.typ)
			}
			continue
		}
		counts := make([]int, len(c.slices))
		for _, it := range its {
			s := w.match(it.value, c)
			if s < 0 {
				if c.slicing.closed {
					w.add(fhir.SeverityError, fhir.IssueStructure, it.path, "%s matches none of the slices of a closed slicing", c.path)
					continue
				}
				w.value(it.value, c, it.path, it.typ)
				continue
			}
			counts[s]++
			w.value(it.value, c.slices[s], it.path, it.typ)
		}
		for i, s := range c.slices {
			w.cardinality(counts[i], s, name, s.id)
		}
	}
}

// cardinality checks a count of values against min and max.
func (w *walk) cardinality(n int, c *element, expr, what string) {
	if n < c.min {
		if c.min == 1 {
			w.add(fhir.SeverityError, fhir.IssueRequired, expr, "%s is required (minimum 1)", what)
		} else {
			w.add(fhir.SeverityError, fhir.IssueRequired, expr, "%s needs at least %d values, found %d", what, c.min, n)
		}
	}
	if c.max >= 0 && n > c.max {
		w.add(fhir.SeverityError, fhir.IssueStructure, expr, "%s allows at most %d values, found %d", what, c.max, n)
	}
}

// match returns the index of the slice of c that x belongs to, or -1.
// See https://hl7.org/fhir/R4/profiling.html#discriminator.
func (w *walk) match(x any, c *element) int {
	for i, s := range c.slices {
		ok := true
		for j, p := range c.slicing.paths {
			if !w.discriminates(x, s, c.slicing.kinds[j], p) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// discriminates reports whether x has the value that slice s fixes at the
// discriminator path p (a child name or $this).
func (w *walk) discriminates(x any, s *element, kind, p string) bool {
	obj, _ := x.(map[string]any)
	if kind == "type" && p == "$this" {
		rt, _ := obj["resourceType"].(string)
		return len(s.types) > 0 && s.types[0].code == rt
	}
	if p == "$this" {
		want := s.fixed
		if want == nil {
			want = s.pattern
		}
		return want != nil && matches(x, want, false)
	}
	for _, ch := range s.children {
		if ch.name != p {
			continue
		}
		want := ch.fixed
		if want == nil {
			want = ch.pattern
		}
		if want == nil && p == "url" && len(s.types) > 0 && len(s.types[0].profiles) > 0 {
			want = s.types[0].profiles[0]
		}
		return want != nil && obj != nil && matches(obj[p], want, false)
	}
	return false
}

// value checks one value of element el, then its children. typ is the
// type a choice suffix gave the value, "" otherwise.
func (w *walk) value(x any, el *element, path, typ string) {
	if el.fixed != nil && !matches(x, el.fixed, true) {
		w.add(fhir.SeverityError, fhir.IssueValue, path, "%s must have the value fixed by the profile", elName(el))
	}
	if el.pattern != nil && !matches(x, el.pattern, false) {
		w.add(fhir.SeverityError, fhir.IssueValue, path, "%s must match the pattern of the profile%s", elName(el), patternCodes(el.pattern))
	}
	if el.binding != nil {
		w.bind(x, el, path)
	}
	if obj, ok := x.(map[string]any); ok {
		w.reference(obj, el, path)
		switch {
		case el.unfolded:
			w.object(obj, el, path)
		case w.base:
			w.baseType(obj, el, path, typ)
		}
	}
	for _, inv := range el.invariants {
		w.invariant(inv, el, path)
	}
	if w.base {
		w.baseChecks(x, el, path, typ)
	}
}

func elName(el *element) string { return el.id }

// patternCodes names the system|code pairs of a CodeableConcept or Coding
// pattern (profile constants, never resource content), or "".
func patternCodes(p any) string {
	m, _ := p.(map[string]any)
	cs, _ := m["coding"].([]any)
	if _, ok := m["code"]; ok {
		cs = []any{m}
	}
	var out []string
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		s, _ := cm["system"].(string)
		code, _ := cm["code"].(string)
		out = append(out, s+"|"+code)
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, ", ") + ")"
}

// matches reports whether x equals want (exact) or contains it (pattern):
// a pattern object's properties must all match, and each item of a pattern
// array must match some item of x.
// See https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.pattern_x_.
func matches(x, want any, exact bool) bool {
	switch want := want.(type) {
	case map[string]any:
		obj, ok := x.(map[string]any)
		if !ok || (exact && len(obj) != len(want)) {
			return false
		}
		for k, wv := range want {
			if !matches(obj[k], wv, exact) {
				return false
			}
		}
		return true
	case []any:
		arr, ok := x.([]any)
		if !ok || (exact && len(arr) != len(want)) {
			return false
		}
		for i, wv := range want {
			found := false
			if exact {
				found = matches(arr[i], wv, true)
			} else {
				for _, xv := range arr {
					if matches(xv, wv, false) {
						found = true
						break
					}
				}
			}
			if !found {
				return false
			}
		}
		return true
	case json.Number:
		switch xv := x.(type) {
		case json.Number:
			a, err1 := strconv.ParseFloat(string(xv), 64)
			b, err2 := strconv.ParseFloat(string(want), 64)
			return err1 == nil && err2 == nil && a == b
		}
		return false
	default:
		return x == want
	}
}

// bind checks the codes of x against el's binding.
// See https://hl7.org/fhir/R4/terminologies.html#strength.
func (w *walk) bind(x any, el *element, path string) {
	b := el.binding
	if b.strength == "example" || !w.v.term.HasValueSet(b.valueSet) {
		return
	}
	var codes []code
	switch x := x.(type) {
	case string:
		for _, s := range w.v.term.ValueSetSystems(b.valueSet) {
			codes = append(codes, code{s, x})
		}
		if in := w.anyIn(b.valueSet, codes); !in {
			w.bindFail(b, path, "the code is not")
		}
		return
	case map[string]any:
		if _, ok := x["code"]; ok {
			s, _ := x["system"].(string)
			c, _ := x["code"].(string)
			codes = append(codes, code{s, c})
		} else if cs, ok := x["coding"].([]any); ok {
			for _, ci := range cs {
				m, _ := ci.(map[string]any)
				s, _ := m["system"].(string)
				c, _ := m["code"].(string)
				codes = append(codes, code{s, c})
			}
		}
	default:
		return
	}
	ctx := context.Background()
	in := false
	fromSystem := false
	systems := w.v.term.ValueSetSystems(b.valueSet)
	for _, c := range codes {
		if c.code == "" {
			continue
		}
		ok, _, _ := w.v.term.ValidateCode(ctx, b.valueSet, c.system, c.code)
		if ok {
			in = true
			continue
		}
		for _, s := range systems {
			fromSystem = fromSystem || s == c.system
		}
	}
	switch b.strength {
	case "required":
		if !in {
			w.bindFail(b, path, "no code is")
		}
	case "extensible":
		if fromSystem {
			w.add(fhir.SeverityError, IssueCodeInvalid, path, "a code from the systems of ValueSet %s is not in it (extensible binding)", b.valueSet)
		}
	case "preferred":
		if !in {
			w.bindFail(b, path, "no code is")
		}
	}
}

// code is a system and code to look up in a value set.
type code struct{ system, code string }

func (w *walk) anyIn(vs string, codes []code) bool {
	for _, c := range codes {
		if ok, _, _ := w.v.term.ValidateCode(context.Background(), vs, c.system, c.code); ok {
			return true
		}
	}
	return false
}

func (w *walk) bindFail(b *binding, path, subject string) {
	sev := fhir.SeverityError
	if b.strength == "preferred" {
		sev = fhir.SeverityInformation
	}
	w.add(sev, IssueCodeInvalid, path, "%s in ValueSet %s (%s binding)", subject, b.valueSet, b.strength)
}

// reference checks the target type of a Reference against el's types.
// See https://hl7.org/fhir/R4/references.html.
func (w *walk) reference(obj map[string]any, el *element, path string) {
	var targets []string
	isRef := false
	for _, t := range el.types {
		if t.code == "Reference" {
			isRef = true
			targets = append(targets, t.targets...)
		}
	}
	if !isRef || len(targets) == 0 {
		return
	}
	typ := ""
	if ref, ok := obj["reference"].(string); ok {
		typ = w.refType(ref)
	}
	if typ == "" {
		typ, _ = obj["type"].(string)
	}
	if typ == "" {
		return // an identifier-only or urn:uuid reference names no type
	}
	for _, t := range targets {
		if t == typ || t == "Resource" {
			return
		}
	}
	w.add(fhir.SeverityError, fhir.IssueStructure, path, "%s must reference %s, not %s", elName(el), strings.Join(targets, " or "), typ)
}

// refType returns the resource type a literal reference names, or "".
func (w *walk) refType(ref string) string {
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		cs, _ := w.root.Object()["contained"].([]any)
		for _, c := range cs {
			m, _ := c.(map[string]any)
			if m["id"] == id {
				t, _ := m["resourceType"].(string)
				return t
			}
		}
		return ""
	}
	if strings.HasPrefix(ref, "urn:") {
		return ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return ""
	}
	// A URL whose type segment is no R4 resource type (another
	// specification's, such as .../vhdir/Network/x) names no known type.
	t := parts[len(parts)-2]
	if !fhir.IsResourceType(t) {
		return ""
	}
	return t
}

// invariant evaluates a FHIRPath invariant on the value at path.
// See https://hl7.org/fhir/R4/conformance-rules.html#constraints.
func (w *walk) invariant(inv *invariant, el *element, path string) {
	focus := w.root
	if el.focus != nil {
		if w.focus == nil {
			w.focus = map[*element]map[string]fhirpath.Node{}
		}
		m, ok := w.focus[el]
		if !ok {
			m = map[string]fhirpath.Node{}
			items, err := el.focus.Evaluate(w.root)
			if err == nil {
				for _, n := range items {
					m[n.Path] = n
				}
			}
			w.focus[el] = m
		}
		n, ok := m[path]
		if !ok {
			return
		}
		focus = n
	}
	out, err := inv.expr.EvaluateOn(w.root, focus)
	sev := fhir.SeverityError
	if inv.severity == "warning" {
		sev = fhir.SeverityWarning
	}
	if err != nil {
		w.add(fhir.SeverityWarning, fhir.IssueProcessing, path, "invariant %s could not be evaluated", inv.key)
		return
	}
	if len(out) == 1 {
		if b, ok := out[0].Value.(bool); ok && !b {
			w.add(sev, fhir.IssueInvariant, path, "%s: %s", inv.key, inv.human)
		}
	}
}

// nhsNumbers checks the check digit of every identifier in the resource
// whose system is the NHS number system (Patient.identifier, a
// Reference.identifier of a subject...).
func (w *walk) nhsNumbers(x any, path string) {
	switch x := x.(type) {
	case map[string]any:
		if x["system"] == SystemNHSNumber {
			if s, ok := x["value"].(string); ok {
				if p := NHSNumberProblem(s); p != "" {
					is := issue(fhir.SeverityError, fhir.IssueValue, path+".value", p)
					is.Details = "INVALID_SEARCH_DATA"
					w.issues = append(w.issues, is)
				}
			}
		}
		keys := make([]string, 0, len(x))
		for k, v := range x {
			switch v.(type) {
			case map[string]any, []any:
				if !strings.HasPrefix(k, "_") {
					keys = append(keys, k)
				}
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			w.nhsNumbers(x[k], path+"."+k)
		}
	case []any:
		for i, v := range x {
			w.nhsNumbers(v, path+"["+strconv.Itoa(i)+"]")
		}
	}
}

// AsError returns the findings as a *fhir.Error with code processing (422
// Unprocessable Entity, as a create or update that fails its profile
// answers) carrying every issue, each Details as a code of
// terminology.SystemSpineErrorOrWarningCode in fhir.Issue.Details, or nil
// when no finding is an error.
// See https://hl7.org/fhir/R4/http.html#create.
func AsError(issues []Issue) error {
	failed := false
	out := make([]fhir.Issue, len(issues))
	for i, is := range issues {
		out[i] = is.OutcomeIssue()
		failed = failed || is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal
	}
	if !failed {
		return nil
	}
	return &fhir.Error{Code: fhir.IssueProcessing, Message: "the resource does not conform to its profile", Issues: out}
}

// OutcomeIssue returns the finding as a fhir.Issue, its Details as a code
// of terminology.SystemSpineErrorOrWarningCode.
// See https://hl7.org/fhir/R4/operationoutcome-definitions.html#OperationOutcome.issue.details.
func (is Issue) OutcomeIssue() fhir.Issue {
	out := is.Issue
	if is.Details != "" {
		out.Details = fhir.Coding{System: terminology.SystemSpineErrorOrWarningCode, Code: is.Details}
	}
	return out
}
