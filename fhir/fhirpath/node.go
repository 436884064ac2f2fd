package fhirpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// System type names given to values that an expression computes rather than
// selects from a resource (literals, count(), arithmetic, comparisons).
// See https://hl7.org/fhirpath/N1/#types-and-reflection.
const (
	TypeBoolean  = "System.Boolean"
	TypeString   = "System.String"
	TypeInteger  = "System.Integer"
	TypeDecimal  = "System.Decimal"
	TypeDate     = "System.Date"
	TypeDateTime = "System.DateTime"
	TypeTime     = "System.Time"
	TypeQuantity = "System.Quantity"
)

// Node is one item of a collection: a value selected from a resource or
// computed by an expression.
//
// Value holds the decoded JSON value: map[string]any for a resource or a
// complex type, string for string-like primitives and dates, json.Number
// for integer and decimal, bool for boolean. A System.Quantity holds a
// map[string]any shaped like a FHIR Quantity.
type Node struct {
	// Type is the FHIR type name ("Patient", "HumanName", "Reference",
	// "BackboneElement", "code", "dateTime") of a value selected from a
	// resource, or one of the System type names (TypeString...) of a
	// computed value. It is empty when the type cannot be known.
	Type string
	// Path locates the value in the resource, with JSON element names and
	// zero-based indexes of repeating elements: "Patient.name[0].given[1]",
	// "Observation.valueQuantity". Computed values have an empty Path.
	Path string
	// Value is the decoded JSON value (see Node).
	Value any

	// def is the model path of a backbone element whose children are
	// defined under a path rather than a type ("Observation.component").
	def string
	// ext is the JSON companion object ("_birthDate") of a primitive, which
	// holds its id and extensions.
	ext map[string]any
}

// Collection is the ordered result of an expression.
type Collection []Node

// Decode decodes a FHIR JSON resource into the root node of an evaluation.
// Numbers keep their text (json.Number) so decimals keep their precision.
// Decode fails if body is not a JSON object with a string resourceType.
func Decode(body []byte) (Node, error) {
	if m, ok := decodeObject(body); ok {
		return Resource(m)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return Node{}, fmt.Errorf("fhirpath: decode resource: %w", err)
	}
	return Resource(m)
}

// Resource returns the root node of an already decoded resource (decoded
// with json.Decoder.UseNumber). It fails if m has no string resourceType.
func Resource(m map[string]any) (Node, error) {
	rt, ok := m["resourceType"].(string)
	if !ok || rt == "" {
		return Node{}, fmt.Errorf("fhirpath: resource has no resourceType")
	}
	return Node{Type: rt, Path: rt, Value: m}, nil
}

// Element returns the node of a value selected from a resource at path (as
// Node.Path), to evaluate an expression on with EvaluateOn: a value of the
// FHIR type typ ("HumanName", "Patient", "date"), or, when typ is a model
// path such as "Patient.contact", of the backbone element defined there.
func Element(typ, path string, v any) Node {
	if strings.Contains(typ, ".") {
		return Node{Type: "BackboneElement", Path: path, Value: v, def: typ}
	}
	return Node{Type: typ, Path: path, Value: v}
}

// String returns the text of a string-like primitive (string, code, uri,
// id, date, dateTime...), the literal text of a number and "true" or
// "false" for a boolean. ok is false for complex values.
func (n Node) String() (s string, ok bool) {
	switch v := n.Value.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}

// Object returns the JSON object of a resource or complex-type value, or nil.
func (n Node) Object() map[string]any {
	m, _ := n.Value.(map[string]any)
	return m
}

// IsResource reports whether the node is a resource (the root, a contained
// resource, a Bundle entry's resource...).
func (n Node) IsResource() bool {
	return typeKinds[n.Type] == kindResource
}

// model returns the key prefix under which the node's child elements are
// found in the elements table.
func (n Node) model() string {
	if n.def != "" {
		return n.def
	}
	return n.Type
}

// isPrimitiveType reports whether a FHIR or System type name is primitive.
func isPrimitiveType(t string) bool {
	if strings.HasPrefix(t, "System.") {
		return t != TypeQuantity
	}
	return typeKinds[t] == kindPrimitive
}

// children appends to out the child elements called name of n.
func children(n Node, name string, out Collection) Collection {
	m, ok := n.Value.(map[string]any)
	if !ok {
		// A primitive's id and extensions live in its companion object.
		if n.ext != nil && (name == "extension" || name == "id") {
			return children(Node{Type: "Element", Path: n.Path, Value: n.ext}, name, out)
		}
		return out
	}
	def, known := elements[n.model()+"."+name]
	if known && def.choice {
		for key, v := range m {
			if len(key) <= len(name) || !strings.HasPrefix(key, name) {
				continue
			}
			suffix := key[len(name):]
			for _, t := range def.types {
				if len(t) == len(suffix) && upper(t[0]) == suffix[0] && t[1:] == suffix[1:] {
					ext, _ := m["_"+key]
					out = appendValues(out, n.Path+"."+key, t, "", v, ext)
				}
			}
		}
		return out
	}
	v, found := m[name]
	ext, hasExt := m["_"+name]
	if !found && !hasExt {
		if !known {
			return choiceByName(n, m, name, out)
		}
		return out
	}
	typ, sub := "", ""
	if known && len(def.types) > 0 {
		typ = def.types[0]
		if typ == "BackboneElement" || typ == "Element" {
			sub = def.path
		}
	}
	return appendValues(out, n.Path+"."+name, typ, sub, v, ext)
}

// choiceByName finds a choice element of a node whose type is unknown by
// the JSON naming rule: name followed by a capitalised type name.
func choiceByName(n Node, m map[string]any, name string, out Collection) Collection {
	for key, v := range m {
		if len(key) <= len(name) || !strings.HasPrefix(key, name) || !isUpper(key[len(name)]) {
			continue
		}
		suffix := key[len(name):]
		t := suffix
		if lower := string(suffix[0]+'a'-'A') + suffix[1:]; typeKinds[lower] == kindPrimitive {
			t = lower
		} else if typeKinds[suffix] == kindUnknown {
			continue
		}
		ext, _ := m["_"+key]
		out = appendValues(out, n.Path+"."+key, t, "", v, ext)
	}
	return out
}

// appendValues appends the nodes for the JSON value v (an array or a single
// value) of an element at path, of declared type typ, with ext the
// primitive companion value.
func appendValues(out Collection, path, typ, sub string, v, ext any) Collection {
	if arr, ok := v.([]any); ok {
		exts, _ := ext.([]any)
		for i, item := range arr {
			var e map[string]any
			if i < len(exts) {
				e, _ = exts[i].(map[string]any)
			}
			if item == nil {
				continue
			}
			out = append(out, makeNode(path+"["+strconv.Itoa(i)+"]", typ, sub, item, e))
		}
		return out
	}
	if v == nil {
		return out
	}
	e, _ := ext.(map[string]any)
	return append(out, makeNode(path, typ, sub, v, e))
}

func makeNode(path, typ, sub string, v any, ext map[string]any) Node {
	if typ == "Resource" || typ == "" {
		if m, ok := v.(map[string]any); ok {
			if rt, ok := m["resourceType"].(string); ok {
				typ = rt
			}
		}
	}
	return Node{Type: typ, Path: path, Value: v, def: sub, ext: ext}
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
