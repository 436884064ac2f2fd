package profiles

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

// element is one element definition of a snapshot, with its children
// (the elements below it) and its slices.
// See https://hl7.org/fhir/R4/elementdefinition.html.
type element struct {
	id         string // element id: Patient.identifier:nhsNumber.system
	path       string // Flag.period.start, without slice names
	name       string // JSON name; "value" for value[x]
	choice     bool
	sliceName  string
	min        int
	max        int // -1 for *
	array      bool
	types      []elementType
	baseTypes  []string // every type the R4 base allows (choice elements)
	choiceKeys []string // the JSON names of baseTypes: valueString...
	fixed      any
	pattern    any
	binding    *binding
	invariants []*invariant
	slicing    *slicing
	slices     []*element
	children   []*element
	unfolded   bool
	// focus selects the items of this element from the root when it has
	// invariants to evaluate on them.
	focus *fhirpath.Expression
	// baseInvariants are the R4 constraints of the element (ele-1 and
	// ext-1 excepted), checked only by ValidateBase.
	baseInvariants []*invariant
	// contentRef is the element whose definition this one reuses
	// (Questionnaire.item.item is #Questionnaire.item).
	contentRef *element
}

type elementType struct {
	code     string
	profiles []string
	targets  []string // reference target types (resource type names)
}

type binding struct {
	strength string
	valueSet string
}

type invariant struct {
	key, severity, human string
	expr                 *fhirpath.Expression
}

type slicing struct {
	paths  []string // value discriminator paths ($this, system, url, use...)
	kinds  []string // discriminator type per path
	closed bool
}

// baseDef is one type of base/r4.json.
type baseDef struct {
	Type    string `json:"type"`
	Kind    string `json:"kind"`
	Element []struct {
		Path string `json:"path"`
		Min  int    `json:"min"`
		Max  string `json:"max"`
		Type []struct {
			Code          string   `json:"code"`
			TargetProfile []string `json:"targetProfile"`
		} `json:"type"`
		Binding *struct {
			Strength string `json:"strength"`
			ValueSet string `json:"valueSet"`
		} `json:"binding"`
		ContentReference string `json:"contentReference"`
		Constraint       []struct {
			Key        string `json:"key"`
			Severity   string `json:"severity"`
			Human      string `json:"human"`
			Expression string `json:"expression"`
		} `json:"constraint"`
	} `json:"element"`
}

// base holds the R4 element trees, by type name: every resource type and
// complex data type.
type base map[string]*element

func parseMax(s string) int {
	if s == "*" {
		return -1
	}
	n, _ := strconv.Atoi(s)
	return n
}

// loadBase builds one element tree per type from base/r4.json.gz. The
// constraints whose expression the FHIRPath evaluator cannot parse are
// left out and returned in skipped (as type: key).
func loadBase(gz []byte) (out base, skipped []string, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, nil, fmt.Errorf("profiles: base/r4.json.gz: %w", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, nil, fmt.Errorf("profiles: base/r4.json.gz: %w", err)
	}
	var defs []baseDef
	if err := json.Unmarshal(b, &defs); err != nil {
		return nil, nil, fmt.Errorf("profiles: base/r4.json.gz: %w", err)
	}
	out = base{}
	for _, d := range defs {
		byPath := map[string]*element{}
		var root *element
		for _, be := range d.Element {
			e := &element{id: be.Path, path: be.Path, min: be.Min, max: parseMax(be.Max)}
			e.array = e.max != 1 && e.max != 0
			i := strings.LastIndexByte(be.Path, '.')
			e.name = be.Path[i+1:]
			if n, ok := strings.CutSuffix(e.name, "[x]"); ok {
				e.name, e.choice = n, true
			}
			for _, t := range be.Type {
				et := elementType{code: t.Code}
				for _, p := range t.TargetProfile {
					et.targets = append(et.targets, p[strings.LastIndexByte(p, '/')+1:])
				}
				e.types = append(e.types, et)
				e.baseTypes = append(e.baseTypes, t.Code)
				if e.choice {
					e.choiceKeys = append(e.choiceKeys, e.name+strings.ToUpper(t.Code[:1])+t.Code[1:])
				}
			}
			if be.Binding != nil {
				e.binding = &binding{strength: be.Binding.Strength, valueSet: be.Binding.ValueSet}
			}
			for _, c := range be.Constraint {
				if skipInvariants[c.Key] {
					continue
				}
				x, err := fhirpath.Parse(c.Expression)
				if err != nil {
					skipped = append(skipped, d.Type+": "+c.Key)
					continue
				}
				e.baseInvariants = append(e.baseInvariants, &invariant{key: c.Key, severity: c.Severity, human: c.Human, expr: x})
			}
			byPath[be.Path] = e
			if ref, ok := strings.CutPrefix(be.ContentReference, "#"); ok {
				if e.contentRef = byPath[ref]; e.contentRef == nil {
					return nil, nil, fmt.Errorf("profiles: base %s: %s refers to unknown %s", d.Type, be.Path, ref)
				}
			}
			if i < 0 {
				root = e
				root.unfolded = true
				continue
			}
			parent := byPath[be.Path[:i]]
			if parent == nil {
				return nil, nil, fmt.Errorf("profiles: base %s: %s has no parent", d.Type, be.Path)
			}
			parent.children = append(parent.children, e)
			parent.unfolded = true
		}
		if root == nil {
			return nil, nil, fmt.Errorf("profiles: base %s has no root element", d.Type)
		}
		out[d.Type] = root
	}
	return out, skipped, nil
}

// clone copies e and everything below it. A copy made asSlice (the start
// of a new slice) has no slicing and no slices of its own.
func (e *element) clone(asSlice bool) *element {
	c := *e
	c.children = make([]*element, len(e.children))
	for i, ch := range e.children {
		c.children[i] = ch.clone(false)
	}
	c.types = append([]elementType(nil), e.types...)
	c.invariants = append([]*invariant(nil), e.invariants...)
	if asSlice {
		c.slicing, c.slices = nil, nil
	} else {
		c.slices = make([]*element, len(e.slices))
		for i, s := range e.slices {
			c.slices[i] = s.clone(false)
		}
	}
	return &c
}

// rebase rewrites the paths of e and its descendants from prefix old to new.
func (e *element) rebase(old, new string) {
	e.path = new + strings.TrimPrefix(e.path, old)
	for _, c := range e.children {
		c.rebase(old, new)
	}
	for _, s := range e.slices {
		s.rebase(old, new)
	}
}

// rebaseID rewrites the element ids of e and its descendants from prefix
// old to new.
func (e *element) rebaseID(old, new string) {
	e.id = new + strings.TrimPrefix(e.id, old)
	for _, c := range e.children {
		c.rebaseID(old, new)
	}
	for _, s := range e.slices {
		s.rebaseID(old, new)
	}
}

// unfold gives e the children of its data type (Identifier.system under
// Patient.identifier), which is how a differential reaches inside a data
// type. It fails if e has no single data type held in base.
func (b base) unfold(e *element) error {
	if e.unfolded {
		return nil
	}
	if len(e.types) != 1 {
		return fmt.Errorf("cannot constrain below %s: it has %d types", e.path, len(e.types))
	}
	dt := b[e.types[0].code]
	if dt == nil {
		return fmt.Errorf("cannot constrain below %s: type %s is not in base/r4.json", e.path, e.types[0].code)
	}
	for _, c := range dt.children {
		cc := c.clone(false)
		cc.rebase(dt.path, e.path)
		cc.rebaseID(dt.path, e.id)
		e.children = append(e.children, cc)
	}
	e.unfolded = true
	return nil
}

// diffElement is one element of a differential.
type diffElement struct {
	ID        string `json:"id"`
	Path      string `json:"path"`
	SliceName string `json:"sliceName"`
	Min       *int   `json:"min"`
	Max       string `json:"max"`
	Type      []struct {
		Code          string   `json:"code"`
		Profile       []string `json:"profile"`
		TargetProfile []string `json:"targetProfile"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
	Constraint []struct {
		Key        string `json:"key"`
		Severity   string `json:"severity"`
		Human      string `json:"human"`
		Expression string `json:"expression"`
	} `json:"constraint"`
	Slicing *struct {
		Discriminator []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"discriminator"`
		Rules string `json:"rules"`
	} `json:"slicing"`
	raw map[string]any
}

// snapshot merges a differential onto a copy of the base tree of its type:
// each differential element is found by its id (Patient.identifier:nhsNumber.system),
// slices are created from the sliced element when first named, and data
// types are unfolded where the differential reaches inside them.
// targetType maps a profile URL to the resource type it constrains.
// See https://hl7.org/fhir/R4/profiling.html#snapshot.
func (b base) snapshot(typ string, diff []json.RawMessage, targetType func(string) string) (*element, error) {
	rootBase := b[typ]
	if rootBase == nil {
		return nil, fmt.Errorf("type %s is not in base/r4.json", typ)
	}
	root := rootBase.clone(false)
	for _, raw := range diff {
		var de diffElement
		if err := json.Unmarshal(raw, &de); err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&de.raw); err != nil {
			return nil, err
		}
		e, err := b.find(root, de.ID)
		if err != nil {
			return nil, err
		}
		if err := b.apply(e, &de, targetType); err != nil {
			return nil, fmt.Errorf("%s: %w", de.ID, err)
		}
	}
	return root, nil
}

// find returns the element with the given element id, creating slices.
func (b base) find(root *element, id string) (*element, error) {
	segs := strings.Split(id, ".")
	if segs[0] != root.path {
		return nil, fmt.Errorf("element %s is not under %s", id, root.path)
	}
	cur := root
	for _, seg := range segs[1:] {
		name, slice, _ := strings.Cut(seg, ":")
		name = strings.TrimSuffix(name, "[x]")
		if err := b.unfold(cur); err != nil {
			return nil, err
		}
		var next *element
		for _, c := range cur.children {
			if c.name == name {
				next = c
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("element %s: no %s under %s", id, name, cur.path)
		}
		if slice != "" && !next.choice {
			var s *element
			for _, x := range next.slices {
				if x.sliceName == slice {
					s = x
				}
			}
			if s == nil {
				s = next.clone(true)
				s.sliceName, s.min = slice, 0
				s.rebaseID(next.id, next.id+":"+slice)
				next.slices = append(next.slices, s)
			}
			next = s
		}
		cur = next
	}
	return cur, nil
}

// apply sets the constraints of a differential element on e.
func (b base) apply(e *element, de *diffElement, targetType func(string) string) error {
	if de.Min != nil {
		e.min = *de.Min
	}
	if de.Max != "" {
		e.max = parseMax(de.Max)
	}
	if len(de.Type) > 0 {
		e.types = nil
		for _, t := range de.Type {
			et := elementType{code: t.Code, profiles: t.Profile}
			for _, p := range t.TargetProfile {
				et.targets = append(et.targets, targetType(p))
			}
			e.types = append(e.types, et)
		}
		if !e.unfolded {
			e.children = nil
		}
	}
	for k, v := range de.raw {
		switch {
		case strings.HasPrefix(k, "fixed"):
			e.fixed = v
		case strings.HasPrefix(k, "pattern"):
			e.pattern = v
		}
	}
	if de.Binding != nil {
		e.binding = &binding{strength: de.Binding.Strength, valueSet: de.Binding.ValueSet}
	}
	for _, c := range de.Constraint {
		x, err := fhirpath.Parse(c.Expression)
		if err != nil {
			return fmt.Errorf("invariant %s: %w", c.Key, err)
		}
		e.invariants = append(e.invariants, &invariant{key: c.Key, severity: c.Severity, human: c.Human, expr: x})
	}
	if len(e.invariants) > 0 && e.focus == nil && strings.Contains(e.path, ".") {
		x, err := fhirpath.Parse(focusPath(e))
		if err != nil {
			return fmt.Errorf("focus of %s: %w", e.path, err)
		}
		e.focus = x
	}
	if s := de.Slicing; s != nil {
		sl := &slicing{closed: s.Rules == "closed"}
		for _, d := range s.Discriminator {
			switch d.Type {
			case "value", "pattern", "type":
			default:
				return fmt.Errorf("discriminator type %s is not supported", d.Type)
			}
			sl.kinds = append(sl.kinds, d.Type)
			sl.paths = append(sl.paths, d.Path)
		}
		e.slicing = sl
	}
	return nil
}

// focusPath is the FHIRPath of e's items: its path, with a choice element
// named by its base name (Observation.value).
func focusPath(e *element) string {
	return strings.ReplaceAll(e.path, "[x]", "")
}
