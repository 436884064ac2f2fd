package fhir

// The patch interaction's two formats: JSON Patch (RFC 6902) and FHIRPath
// Patch. See https://hl7.org/fhir/R4/http.html#patch.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MediaJSONPatch is the media type of a JSON Patch document (RFC 6902).
// See https://hl7.org/fhir/R4/http.html#patch.
const MediaJSONPatch = "application/json-patch+json"

// PatchFormat is a patch document format the patch interaction takes.
// See https://hl7.org/fhir/R4/http.html#patch.
type PatchFormat int

// The patch formats: JSON Patch (application/json-patch+json) and FHIRPath
// Patch, a Parameters resource in FHIR JSON (application/fhir+json).
// See https://hl7.org/fhir/R4/fhirpatch.html.
const (
	PatchJSON PatchFormat = iota + 1
	PatchFHIRPath
)

// PatchFormatOf returns the patch format of a Content-Type value; ok is
// false when the media type is neither JSON Patch nor FHIR JSON (a client
// sending it should get 415). The JSON media types application/fhir+json,
// application/json, application/json+fhir and text/json all mean FHIRPath
// Patch. See https://hl7.org/fhir/R4/http.html#patch.
func PatchFormatOf(contentType string) (f PatchFormat, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false
	}
	switch mt {
	case MediaJSONPatch:
		return PatchJSON, true
	case "application/fhir+json", "application/json", "application/json+fhir", "text/json":
		return PatchFHIRPath, true
	}
	return 0, false
}

// ApplyPatch applies a patch to the canonical JSON of a resource and returns
// the patched JSON (not yet parsed or validated; the caller parses it with
// the Codec like any update body).
//
// contentType chooses the format (see PatchFormatOf): a JSON Patch document
// (https://datatracker.ietf.org/doc/html/rfc6902) or a FHIRPath Patch
// Parameters resource (https://hl7.org/fhir/R4/fhirpatch.html). The patch
// is all or nothing: on error nothing of it applies.
//
// Errors are *Error: IssueNotSupported for another media type; IssueInvalid
// for a malformed patch document or a patch that would change resourceType
// or id; IssueProcessing for a patch that does not fit the resource (a
// failed JSON Patch test, a path that selects no element or several, an
// index out of range). Messages name the operation by its zero-based index
// in the patch and never quote the resource or the patch's paths and values.
// ApplyPatch is safe for concurrent use.
func ApplyPatch(resource []byte, contentType string, patch []byte) ([]byte, error) {
	format, ok := PatchFormatOf(contentType)
	if !ok {
		return nil, Errorf(IssueNotSupported, "the patch media type is not supported; send %s (JSON Patch) or application/fhir+json (FHIRPath Patch)", MediaJSONPatch)
	}
	doc, err := decodeJSON(resource)
	if err != nil {
		return nil, fmt.Errorf("patch: decode stored resource: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("patch: stored resource is not a JSON object")
	}
	typ, id := root["resourceType"], root["id"]
	switch format {
	case PatchJSON:
		doc, err = applyJSONPatch(doc, patch)
	default:
		err = applyFHIRPathPatch(root, patch)
	}
	if err != nil {
		return nil, err
	}
	out, ok := doc.(map[string]any)
	if !ok || !jsonEqual(out["resourceType"], typ) {
		return nil, &Error{Code: IssueInvalid, Message: "the patch must not change the resource type",
			Issues: []Issue{{Severity: SeverityError, Code: IssueInvalid, Diagnostics: "a patch must not change resourceType", Expression: []string{"resourceType"}}}}
	}
	if !jsonEqual(out["id"], id) {
		return nil, &Error{Code: IssueInvalid, Message: "the patch must not change the resource id",
			Issues: []Issue{{Severity: SeverityError, Code: IssueInvalid, Diagnostics: "a patch must not change id", Expression: []string{fmt.Sprint(typ) + ".id"}}}}
	}
	fillCompanions(out)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("patch: encode result: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// BundlePatch returns the patch a batch or transaction entry with method
// PATCH carries in its resource, and the media type to pass to ApplyPatch:
// a Parameters resource is a FHIRPath Patch; a Binary whose contentType is
// application/json-patch+json holds a JSON Patch (base64) in its data.
// Errors: IssueInvalid for any other resource or undecodable data;
// IssueNotSupported for a Binary of another media type.
// See https://hl7.org/fhir/R4/http.html#patch.
func BundlePatch(resource []byte) (contentType string, patch []byte, err error) {
	var r struct {
		ResourceType string `json:"resourceType"`
		ContentType  string `json:"contentType"`
		Data         string `json:"data"`
	}
	if err := json.Unmarshal(resource, &r); err != nil {
		return "", nil, Errorf(IssueInvalid, "the patch entry's resource is not a JSON resource")
	}
	switch r.ResourceType {
	case "Parameters":
		return "application/fhir+json", resource, nil
	case "Binary":
		if f, ok := PatchFormatOf(r.ContentType); !ok || f != PatchJSON {
			return "", nil, Errorf(IssueNotSupported, "a Binary patch must have contentType %s", MediaJSONPatch)
		}
		b, err := base64.StdEncoding.DecodeString(r.Data)
		if err != nil {
			return "", nil, Errorf(IssueInvalid, "the Binary patch's data is not base64")
		}
		return MediaJSONPatch, b, nil
	}
	return "", nil, Errorf(IssueInvalid, "a patch entry's resource must be a Parameters (FHIRPath Patch) or a Binary (JSON Patch)")
}

// decodeJSON decodes one JSON value, numbers kept as json.Number.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// --- JSON Patch (RFC 6902) ---------------------------------------------

// errNoTarget reports a JSON Pointer that names no element of the document.
var errNoTarget = errors.New("fhir: no such element")

// applyJSONPatch applies a JSON Patch document to doc and returns the new
// document. See https://datatracker.ietf.org/doc/html/rfc6902#section-4.
func applyJSONPatch(doc any, patch []byte) (any, error) {
	v, err := decodeJSON(patch)
	if err != nil {
		return nil, Errorf(IssueInvalid, "the JSON Patch document is not valid JSON")
	}
	ops, ok := v.([]any)
	if !ok {
		return nil, Errorf(IssueInvalid, "a JSON Patch document must be a JSON array of operations")
	}
	for i, o := range ops {
		if doc, err = applyJSONPatchOp(doc, i, o); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

func applyJSONPatchOp(doc any, i int, o any) (any, error) {
	op, ok := o.(map[string]any)
	if !ok {
		return nil, Errorf(IssueInvalid, "JSON Patch operation %d is not a JSON object", i)
	}
	name, _ := op["op"].(string)
	switch name {
	case "add", "remove", "replace", "move", "copy", "test":
	default:
		return nil, Errorf(IssueInvalid, "JSON Patch operation %d: op must be one of add, remove, replace, move, copy, test", i)
	}
	invalid := func(format string, args ...any) error {
		return Errorf(IssueInvalid, "JSON Patch operation %d (%s): %s", i, name, fmt.Sprintf(format, args...))
	}
	failed := func(format string, args ...any) error {
		return Errorf(IssueProcessing, "JSON Patch operation %d (%s): %s; the patch was not applied", i, name, fmt.Sprintf(format, args...))
	}
	pointer := func(member string) ([]string, string, error) {
		s, ok := op[member].(string)
		if !ok {
			return nil, "", invalid("%s must be a string holding a JSON Pointer", member)
		}
		toks, err := parsePointer(s)
		if err != nil {
			return nil, "", invalid("%s is not a valid JSON Pointer (RFC 6901): %v", member, err)
		}
		return toks, s, nil
	}
	path, pathText, err := pointer("path")
	if err != nil {
		return nil, err
	}
	value, hasValue := op["value"]
	if !hasValue && (name == "add" || name == "replace" || name == "test") {
		return nil, invalid("value is required")
	}
	var from []string
	var fromText string
	if name == "move" || name == "copy" {
		if from, fromText, err = pointer("from"); err != nil {
			return nil, err
		}
	}
	noTarget := func(member string) error {
		return failed("%s names no element of the resource", member)
	}
	switch name {
	case "add":
		doc, err = jsonAdd(doc, path, value)
	case "remove":
		doc, _, err = jsonRemove(doc, path)
	case "replace":
		doc, err = jsonReplace(doc, path, value)
	case "move":
		if pathText == fromText {
			break
		}
		if strings.HasPrefix(pathText, fromText+"/") || fromText == "" {
			return nil, invalid("from must not be a prefix of path (an element cannot move into itself)")
		}
		var moved any
		if doc, moved, err = jsonRemove(doc, from); err != nil {
			return nil, noTarget("from")
		}
		doc, err = jsonAdd(doc, path, moved)
	case "copy":
		src, ok := jsonLookup(doc, from)
		if !ok {
			return nil, noTarget("from")
		}
		doc, err = jsonAdd(doc, path, deepCopy(src))
	case "test":
		got, ok := jsonLookup(doc, path)
		if !ok {
			return nil, noTarget("path")
		}
		if !jsonEqual(got, value) {
			return nil, failed("the test failed: the element does not have the given value")
		}
	}
	if errors.Is(err, errNoTarget) {
		return nil, noTarget("path")
	}
	return doc, err
}

// parsePointer splits a JSON Pointer into its reference tokens, with ~1 and
// ~0 unescaped. See https://datatracker.ietf.org/doc/html/rfc6901#section-3.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, errors.New("it must be empty or start with /")
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || t[j+1] != '0' && t[j+1] != '1') {
				return nil, errors.New("~ must be followed by 0 or 1")
			}
		}
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// arrayIndex reads an array index token: digits without leading zeros,
// below n (or equal to n, and "-" meaning n, when end is true).
func arrayIndex(tok string, n int, end bool) (int, bool) {
	if tok == "-" {
		return n, end
	}
	if tok == "" || len(tok) > 1 && tok[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i > n || i == n && !end {
		return 0, false
	}
	return i, true
}

// jsonLookup returns the value the pointer tokens name.
func jsonLookup(v any, toks []string) (any, bool) {
	for _, t := range toks {
		switch n := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = n[t]; !ok {
				return nil, false
			}
		case []any:
			i, ok := arrayIndex(t, len(n), false)
			if !ok {
				return nil, false
			}
			v = n[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// jsonEdit calls f with the container of the element the tokens name and
// the last token, and stores the container f returns in its parent. It
// returns the new document.
func jsonEdit(doc any, toks []string, f func(container any, key string) (any, error)) (any, error) {
	if len(toks) == 1 {
		return f(doc, toks[0])
	}
	child, ok := jsonLookup(doc, toks[:1])
	if !ok {
		return nil, errNoTarget
	}
	c, err := jsonEdit(child, toks[1:], f)
	if err != nil {
		return nil, err
	}
	switch n := doc.(type) {
	case map[string]any:
		n[toks[0]] = c
	case []any:
		i, _ := arrayIndex(toks[0], len(n), false)
		n[i] = c
	}
	return doc, nil
}

// jsonAdd adds value at the tokens: a new or replaced object member, or an
// array element inserted before the index ("-" appends).
// See https://datatracker.ietf.org/doc/html/rfc6902#section-4.1.
func jsonAdd(doc any, toks []string, value any) (any, error) {
	if len(toks) == 0 {
		return value, nil
	}
	return jsonEdit(doc, toks, func(c any, key string) (any, error) {
		switch n := c.(type) {
		case map[string]any:
			n[key] = value
			return n, nil
		case []any:
			i, ok := arrayIndex(key, len(n), true)
			if !ok {
				return nil, errNoTarget
			}
			return insertAt(n, i, value), nil
		}
		return nil, errNoTarget
	})
}

// jsonRemove removes the element at the tokens and returns it.
// See https://datatracker.ietf.org/doc/html/rfc6902#section-4.2.
func jsonRemove(doc any, toks []string) (any, any, error) {
	if len(toks) == 0 {
		return nil, doc, nil
	}
	var removed any
	doc, err := jsonEdit(doc, toks, func(c any, key string) (any, error) {
		switch n := c.(type) {
		case map[string]any:
			v, ok := n[key]
			if !ok {
				return nil, errNoTarget
			}
			removed = v
			delete(n, key)
			return n, nil
		case []any:
			i, ok := arrayIndex(key, len(n), false)
			if !ok {
				return nil, errNoTarget
			}
			removed = n[i]
			return removeAt(n, i), nil
		}
		return nil, errNoTarget
	})
	return doc, removed, err
}

// jsonReplace replaces the existing element at the tokens.
// See https://datatracker.ietf.org/doc/html/rfc6902#section-4.3.
func jsonReplace(doc any, toks []string, value any) (any, error) {
	if len(toks) == 0 {
		return value, nil
	}
	return jsonEdit(doc, toks, func(c any, key string) (any, error) {
		switch n := c.(type) {
		case map[string]any:
			if _, ok := n[key]; !ok {
				return nil, errNoTarget
			}
			n[key] = value
			return n, nil
		case []any:
			i, ok := arrayIndex(key, len(n), false)
			if !ok {
				return nil, errNoTarget
			}
			n[i] = value
			return n, nil
		}
		return nil, errNoTarget
	})
}

// jsonEqual compares two decoded JSON values as RFC 6902 test does: numbers
// by numeric value, objects regardless of member order.
// See https://datatracker.ietf.org/doc/html/rfc6902#section-4.6.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		r, ok1 := new(big.Rat).SetString(string(x))
		s, ok2 := new(big.Rat).SetString(string(y))
		return ok1 && ok2 && r.Cmp(s) == 0
	}
	return a == b
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

func insertAt(a []any, i int, v any) []any {
	a = append(a, nil)
	copy(a[i+1:], a[i:])
	a[i] = v
	return a
}

func removeAt(a []any, i int) []any {
	return append(a[:i:i], a[i+1:]...)
}

// --- FHIRPath Patch ----------------------------------------------------

// fhirPathOp is one operation parameter of a FHIRPath Patch.
// See https://hl7.org/fhir/R4/fhirpatch.html.
type fhirPathOp struct {
	n                          int // index of the parameter in the patch
	typ, path, name            string
	value                      *patchValue
	index, source, destination *int
}

// patchValue is the value part of an operation: a value[x] (with the
// companion _value[x] of a primitive), a resource, or parts that make up an
// anonymous (backbone) element.
type patchValue struct {
	json   any
	ext    any
	suffix string // the value[x] type suffix, "" for parts and resources
	parts  []any
}

// applyFHIRPathPatch applies a FHIRPath Patch to root, in place.
func applyFHIRPathPatch(root map[string]any, patch []byte) error {
	ops, err := parseFHIRPathPatch(patch)
	if err != nil {
		return err
	}
	for _, op := range ops {
		if err := op.apply(root); err != nil {
			return err
		}
		prune(root)
	}
	return nil
}

func parseFHIRPathPatch(patch []byte) ([]fhirPathOp, error) {
	v, err := decodeJSON(patch)
	if err != nil {
		return nil, Errorf(IssueInvalid, "the FHIRPath Patch is not valid JSON")
	}
	params, ok := v.(map[string]any)
	if !ok || params["resourceType"] != "Parameters" {
		return nil, Errorf(IssueInvalid, "a FHIRPath Patch must be a Parameters resource (or send %s for JSON Patch)", MediaJSONPatch)
	}
	list, ok := params["parameter"].([]any)
	if !ok && params["parameter"] != nil {
		return nil, Errorf(IssueInvalid, "Parameters.parameter must be an array")
	}
	ops := make([]fhirPathOp, 0, len(list))
	for i, p := range list {
		op, err := parseFHIRPathOp(i, p)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parseFHIRPathOp(i int, p any) (fhirPathOp, error) {
	op := fhirPathOp{n: i}
	invalid := func(format string, args ...any) error {
		return Errorf(IssueInvalid, "FHIRPath Patch operation %d: %s", i, fmt.Sprintf(format, args...))
	}
	param, ok := p.(map[string]any)
	if !ok || param["name"] != "operation" {
		return op, invalid("each parameter must be named operation")
	}
	parts, ok := param["part"].([]any)
	if !ok {
		return op, invalid("an operation must have parts")
	}
	seen := map[string]bool{}
	for _, pt := range parts {
		part, ok := pt.(map[string]any)
		name, _ := part["name"].(string)
		if !ok || name == "" {
			return op, invalid("each part must have a name")
		}
		if seen[name] {
			return op, invalid("part %s is given more than once", safeName(name))
		}
		seen[name] = true
		switch name {
		case "type", "path", "name":
			key := "valueString"
			if name == "type" {
				key = "valueCode"
			}
			s, ok := part[key].(string)
			if !ok || s == "" {
				return op, invalid("part %s must have a %s", name, key)
			}
			switch name {
			case "type":
				op.typ = s
			case "path":
				op.path = s
			default:
				op.name = s
			}
		case "index", "source", "destination":
			num, ok := part["valueInteger"].(json.Number)
			n, err := strconv.Atoi(string(num))
			if !ok || err != nil || n < 0 {
				return op, invalid("part %s must have a valueInteger of 0 or more", name)
			}
			switch name {
			case "index":
				op.index = &n
			case "source":
				op.source = &n
			default:
				op.destination = &n
			}
		case "value":
			v, err := partValue(part)
			if err != nil {
				return op, invalid("part value: %v", err)
			}
			op.value = v
		default:
			return op, invalid("unknown part %s; the parts are type, path, name, value, index, source and destination", safeName(name))
		}
	}
	need := map[string][]string{
		"add":     {"path", "name", "value"},
		"insert":  {"path", "value", "index"},
		"delete":  {"path"},
		"replace": {"path", "value"},
		"move":    {"path", "source", "destination"},
	}[op.typ]
	if need == nil {
		return op, invalid("type must be one of add, insert, delete, replace, move")
	}
	for _, n := range need {
		if !seen[n] {
			return op, invalid("a %s operation needs a %s part", op.typ, n)
		}
	}
	return op, nil
}

// safeName returns a part name for an error message when it is a plain
// identifier, else a placeholder.
func safeName(s string) string {
	if validElementName(s) && len(s) <= 64 {
		return s
	}
	return "(the given name)"
}

func validElementName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// partValue reads the value of a part: value[x], resource, or parts.
func partValue(part map[string]any) (*patchValue, error) {
	var v *patchValue
	for k, x := range part {
		switch {
		case k == "resource":
			if _, ok := x.(map[string]any); !ok {
				return nil, errors.New("resource must be a JSON object")
			}
			if v != nil {
				return nil, errors.New("more than one value")
			}
			v = &patchValue{json: x}
		case k == "part":
			ps, ok := x.([]any)
			if !ok || len(ps) == 0 {
				return nil, errors.New("part must be a non-empty array")
			}
			if v != nil {
				return nil, errors.New("more than one value")
			}
			v = &patchValue{parts: ps}
		case len(k) > 5 && strings.HasPrefix(k, "value") && isUpperASCII(k[5]):
			if v != nil {
				return nil, errors.New("more than one value")
			}
			v = &patchValue{json: x, ext: part["_"+k], suffix: k[5:]}
		}
	}
	if v == nil {
		return nil, errors.New("a value[x], resource or part is required")
	}
	return v, nil
}

func isUpperASCII(c byte) bool { return c >= 'A' && c <= 'Z' }

func lowerFirst(s string) string {
	if s == "" || !isUpperASCII(s[0]) {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

func (op *fhirPathOp) invalid(format string, args ...any) error {
	return Errorf(IssueInvalid, "FHIRPath Patch operation %d (%s): %s", op.n, op.typ, fmt.Sprintf(format, args...))
}

func (op *fhirPathOp) failed(format string, args ...any) error {
	return Errorf(IssueProcessing, "FHIRPath Patch operation %d (%s): %s; the patch was not applied", op.n, op.typ, fmt.Sprintf(format, args...))
}

func (op *fhirPathOp) apply(root map[string]any) error {
	nodes, err := op.evaluate(root, op.path)
	if err != nil {
		return err
	}
	switch op.typ {
	case "delete":
		if len(nodes) == 0 {
			return nil
		}
		el, err := op.single(root, nodes)
		if err != nil {
			return err
		}
		el.remove()
		return nil
	case "replace":
		el, err := op.single(root, nodes)
		if err != nil {
			return err
		}
		return op.replace(el)
	case "add":
		if len(nodes) != 1 {
			return op.failed("path must select one element to add to, and selects %d", len(nodes))
		}
		obj, md, err := op.container(root, nodes[0])
		if err != nil {
			return err
		}
		return op.add(obj, md)
	case "insert":
		l, err := op.list(root, nodes, true)
		if err != nil {
			return err
		}
		n := l.len()
		if *op.index > n {
			return op.failed("index %d is beyond the end of the list (%d elements)", *op.index, n)
		}
		v, ext, err := op.valueFor(l.owner, l.key)
		if err != nil {
			return err
		}
		l.insert(*op.index, v, ext)
		return nil
	case "move":
		l, err := op.list(root, nodes, false)
		if err != nil {
			return err
		}
		n := l.len()
		if *op.source >= n || *op.destination >= n {
			return op.failed("source and destination must be below the length of the list (%d elements)", n)
		}
		v, ext := l.removeAt(*op.source)
		l.insert(*op.destination, v, ext)
		return nil
	}
	return op.invalid("unknown operation type")
}

func (op *fhirPathOp) evaluate(root map[string]any, path string) (fhirpath.Collection, error) {
	x, err := fhirpath.Parse(path)
	if err != nil {
		return nil, op.invalid("path is not a valid FHIRPath expression")
	}
	node, err := fhirpath.Resource(root)
	if err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	nodes, err := x.Evaluate(node)
	if err != nil {
		return nil, op.invalid("path could not be evaluated on the resource")
	}
	return nodes, nil
}

// single returns the one element that nodes select; the resource itself
// cannot be replaced or deleted.
func (op *fhirPathOp) single(root map[string]any, nodes fhirpath.Collection) (element, error) {
	if len(nodes) != 1 {
		return element{}, op.failed("path must select one element, and selects %d", len(nodes))
	}
	el, ok := locate(root, nodes[0].Path)
	if !ok {
		return element{}, op.failed("path selects a value that is not an element of this resource")
	}
	if el.parent == nil {
		return element{}, op.invalid("path selects the resource itself, which cannot be replaced or deleted")
	}
	return el, nil
}

// replace replaces the element with the operation's value. A choice
// element (Observation.value[x]) takes the name of the new value's type.
func (op *fhirPathOp) replace(el element) error {
	key := el.key
	if base, ok := choiceBase(el.owner, el.key); ok && op.value.suffix != "" {
		key = base + op.value.suffix
	}
	v, ext, err := op.valueFor(el.owner, key)
	if err != nil {
		return err
	}
	if key != el.key {
		el.remove()
		el = element{parent: el.parent, key: key, index: -1, owner: el.owner}
	}
	el.set(v, ext)
	return nil
}

// container returns the object into which add puts its element: the
// selected element, or the companion object (id, extension) of a selected
// primitive, made when missing.
func (op *fhirPathOp) container(root map[string]any, n fhirpath.Node) (map[string]any, protoreflect.MessageDescriptor, error) {
	el, ok := locate(root, n.Path)
	if !ok {
		return nil, nil, op.failed("path selects a value that is not an element of this resource")
	}
	if el.parent == nil {
		return root, resourceDescriptor(rootType(root)), nil
	}
	v := el.get()
	md := childDescriptor(el.owner, el.key, v)
	if obj, ok := v.(map[string]any); ok {
		return obj, md, nil
	}
	if _, ok := v.([]any); ok {
		return nil, nil, op.failed("path selects a list, not one element")
	}
	return el.companion(true), md, nil
}

func (op *fhirPathOp) add(obj map[string]any, md protoreflect.MessageDescriptor) error {
	if !validElementName(op.name) {
		return op.invalid("name must be an element name")
	}
	key := op.name
	var fd protoreflect.FieldDescriptor
	if md != nil {
		if fd = fieldOf(md, op.name); fd == nil {
			return op.failed("name is not an element of the selected element's type")
		}
		if m := fd.Message(); m != nil && isChoice(m) {
			if op.value.suffix == "" {
				return op.invalid("a choice element needs a value[x] of one of its types")
			}
			key = op.name + op.value.suffix
		}
	}
	exists := obj[key] != nil || obj["_"+key] != nil
	if base, ok := choiceBase(md, key); ok {
		for k := range obj {
			if k != key && strings.HasPrefix(k, base) && len(k) > len(base) && isUpperASCII(k[len(base)]) {
				exists = true
			}
		}
	}
	v, ext, err := op.valueFor(md, key)
	if err != nil {
		return err
	}
	_, isList := obj[key].([]any)
	if fd != nil && fd.IsList() || fd == nil && isList {
		l := list{parent: obj, key: key, owner: md}
		l.insert(l.len(), v, ext)
		return nil
	}
	if exists {
		return op.failed("the element already exists and does not repeat; use replace")
	}
	element{parent: obj, key: key, index: -1, owner: md}.set(v, ext)
	return nil
}

// list returns the list the nodes are items of (all of one list; when the
// path filters it, as with where(), indexes still count in the whole list).
// When the nodes are none and empty is true, the path's last step names
// the (missing or empty) list and the rest of the path selects its parent.
func (op *fhirPathOp) list(root map[string]any, nodes fhirpath.Collection, empty bool) (list, error) {
	if len(nodes) == 0 {
		if !empty {
			return list{}, op.failed("path selects no list")
		}
		head, tail, ok := splitLastStep(op.path)
		if !ok {
			return list{}, op.failed("path selects no list")
		}
		parents, err := op.evaluate(root, head)
		if err != nil {
			return list{}, err
		}
		if len(parents) != 1 {
			return list{}, op.failed("path selects no list")
		}
		obj, md, err := op.container(root, parents[0])
		if err != nil {
			return list{}, err
		}
		if md != nil {
			if fd := fieldOf(md, tail); fd == nil || !fd.IsList() {
				return list{}, op.failed("path does not select a list")
			}
		}
		return list{parent: obj, key: tail, owner: md}, nil
	}
	var l list
	for i, n := range nodes {
		el, ok := locate(root, n.Path)
		if !ok || el.parent == nil || el.index < 0 {
			return list{}, op.failed("path does not select a list")
		}
		if i == 0 {
			l = list{parent: el.parent, key: el.key, owner: el.owner}
		} else if el.key != l.key || !sameMap(el.parent, l.parent) {
			return list{}, op.failed("path selects elements of more than one list")
		}
	}
	return l, nil
}

// sameMap reports whether a and b are the same map (not equal contents).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// splitLastStep splits a FHIRPath expression before its last top-level
// step when that step is a plain element name: "Patient.identifier" gives
// "Patient" and "identifier".
func splitLastStep(expr string) (head, tail string, ok bool) {
	depth, last := 0, -1
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '\'', '`', '"':
			for i++; i < len(expr) && expr[i] != c; i++ {
				if expr[i] == '\\' {
					i++
				}
			}
		case '.':
			if depth == 0 {
				last = i
			}
		}
	}
	if last <= 0 {
		return "", "", false
	}
	head, tail = strings.TrimSpace(expr[:last]), strings.TrimSpace(expr[last+1:])
	return head, tail, validElementName(tail)
}

// valueFor returns the operation's value as the JSON of the element key of
// a parent of type md (nil when unknown), with its primitive companion.
func (op *fhirPathOp) valueFor(md protoreflect.MessageDescriptor, key string) (any, any, error) {
	if op.value.parts == nil {
		return op.value.json, op.value.ext, nil
	}
	var em protoreflect.MessageDescriptor
	if md != nil {
		if fd := fieldOf(md, key); fd != nil {
			em = fd.Message()
		}
	}
	obj, err := buildParts(op.value.parts, em)
	if err != nil {
		return nil, nil, op.invalid("value parts: %v", err)
	}
	return obj, nil, nil
}

// buildParts builds an element of type md (nil when unknown) from parts,
// each naming a child element and giving its value; several parts of one
// name, or one part of a repeating element, make a list.
func buildParts(parts []any, md protoreflect.MessageDescriptor) (map[string]any, error) {
	obj := map[string]any{}
	for _, p := range parts {
		part, ok := p.(map[string]any)
		name, _ := part["name"].(string)
		if !ok || !validElementName(name) {
			return nil, errors.New("each part must have an element name")
		}
		pv, err := partValue(part)
		if err != nil {
			return nil, err
		}
		key := name
		var fd protoreflect.FieldDescriptor
		if md != nil {
			if fd = fieldOf(md, name); fd == nil {
				return nil, errors.New("a part names an element the type does not have")
			}
			if m := fd.Message(); m != nil && isChoice(m) && pv.suffix != "" {
				key = name + pv.suffix
			}
		}
		v, ext := pv.json, pv.ext
		if pv.parts != nil {
			var sub protoreflect.MessageDescriptor
			if fd != nil {
				sub = fd.Message()
			}
			if v, err = buildParts(pv.parts, sub); err != nil {
				return nil, err
			}
		}
		_, isList := obj[key].([]any)
		switch {
		case fd != nil && fd.IsList() || isList:
			l := list{parent: obj, key: key}
			l.insert(l.len(), v, ext)
		case obj[key] != nil && fd == nil:
			obj[key] = []any{obj[key], v}
		case obj[key] != nil:
			return nil, errors.New("a part repeats an element that does not repeat")
		default:
			element{parent: obj, key: key, index: -1}.set(v, ext)
		}
	}
	return obj, nil
}

// element locates one element in a decoded resource: parent[key], or
// parent[key][index] when index is not -1. owner is the type of parent,
// nil when unknown. The zero element (nil parent) is the resource itself.
type element struct {
	parent map[string]any
	key    string
	index  int
	owner  protoreflect.MessageDescriptor
}

// locate finds the element at a fhirpath.Node Path, such as
// "Patient.name[0].given[1]" or "Patient.birthDate.extension[0]" (in the
// primitive's companion _birthDate).
func locate(root map[string]any, path string) (element, bool) {
	typ := rootType(root)
	steps := strings.Split(path, ".")
	if typ == "" || steps[0] != typ {
		return element{}, false
	}
	md := resourceDescriptor(typ)
	var cur any = root
	var el element
	for _, step := range steps[1:] {
		name, index := step, -1
		if i := strings.IndexByte(step, '['); i >= 0 && strings.HasSuffix(step, "]") {
			n, err := strconv.Atoi(step[i+1 : len(step)-1])
			if err != nil || n < 0 {
				return element{}, false
			}
			name, index = step[:i], n
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			if el.parent == nil {
				return element{}, false
			}
			if obj = el.companion(false); obj == nil {
				return element{}, false
			}
		}
		el = element{parent: obj, key: name, index: index, owner: md}
		v := el.get()
		if v == nil {
			return element{}, false
		}
		md = childDescriptor(md, name, v)
		cur = v
	}
	return el, true
}

func rootType(root map[string]any) string {
	s, _ := root["resourceType"].(string)
	return s
}

// get returns the element's value, nil when absent.
func (el element) get() any {
	v := el.parent[el.key]
	if el.index < 0 {
		return v
	}
	a, _ := v.([]any)
	if el.index >= len(a) {
		return nil
	}
	return a[el.index]
}

// companion returns the companion object (_key, holding id and extension)
// of a primitive element; when make is true a missing one is added.
func (el element) companion(make bool) map[string]any {
	ck := "_" + el.key
	if el.index < 0 {
		c, ok := el.parent[ck].(map[string]any)
		if !ok && make {
			c = map[string]any{}
			el.parent[ck] = c
		}
		return c
	}
	a, _ := el.parent[ck].([]any)
	if el.index < len(a) {
		if c, ok := a[el.index].(map[string]any); ok {
			return c
		}
	}
	if !make {
		return nil
	}
	vals, _ := el.parent[el.key].([]any)
	for len(a) < len(vals) {
		a = append(a, nil)
	}
	c := map[string]any{}
	a[el.index] = c
	el.parent[ck] = a
	return c
}

// set stores the value (and the companion of a primitive, removed when
// ext is nil).
func (el element) set(v, ext any) {
	ck := "_" + el.key
	if el.index < 0 {
		el.parent[el.key] = v
		if ext != nil {
			el.parent[ck] = ext
		} else {
			delete(el.parent, ck)
		}
		return
	}
	a, _ := el.parent[el.key].([]any)
	a[el.index] = v
	c, _ := el.parent[ck].([]any)
	if c == nil && ext == nil {
		return
	}
	for len(c) < len(a) {
		c = append(c, nil)
	}
	c[el.index] = ext
	el.parent[ck] = c
}

// remove deletes the element (and its primitive companion).
func (el element) remove() {
	if el.index < 0 {
		delete(el.parent, el.key)
		delete(el.parent, "_"+el.key)
		return
	}
	list{parent: el.parent, key: el.key}.removeAt(el.index)
}

// list is a repeating element parent[key], kept aligned with its primitive
// companion list _key.
type list struct {
	parent map[string]any
	key    string
	owner  protoreflect.MessageDescriptor
}

func (l list) len() int {
	a, _ := l.parent[l.key].([]any)
	return len(a)
}

func (l list) insert(i int, v, ext any) {
	a, _ := l.parent[l.key].([]any)
	n := len(a)
	l.parent[l.key] = insertAt(a, i, v)
	ck := "_" + l.key
	c, _ := l.parent[ck].([]any)
	if c == nil && ext == nil {
		return
	}
	for len(c) < n {
		c = append(c, nil)
	}
	l.parent[ck] = insertAt(c[:n], i, ext)
}

func (l list) removeAt(i int) (v, ext any) {
	a, _ := l.parent[l.key].([]any)
	v = a[i]
	if a = removeAt(a, i); len(a) == 0 {
		delete(l.parent, l.key)
	} else {
		l.parent[l.key] = a
	}
	ck := "_" + l.key
	c, _ := l.parent[ck].([]any)
	if i < len(c) {
		ext = c[i]
		c = removeAt(c, i)
	}
	if allNil(c) || len(a) == 0 {
		delete(l.parent, ck)
	} else if c != nil {
		l.parent[ck] = c
	}
	return v, ext
}

func allNil(a []any) bool {
	for _, v := range a {
		if v != nil {
			return false
		}
	}
	return true
}

// prune removes the empty objects and lists that deletions leave behind,
// which FHIR JSON does not allow, and reports whether v itself is empty. In
// a primitive companion list (_given) an empty object becomes null, to
// keep it aligned with its values.
func prune(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			a, isList := e.([]any)
			switch {
			case isList && strings.HasPrefix(k, "_"):
				for i, c := range a {
					if c != nil && prune(c) {
						a[i] = nil
					}
				}
				if allNil(a) {
					delete(x, k)
				}
			case isList:
				kept := a[:0]
				for _, c := range a {
					if _, isObj := c.(map[string]any); !isObj || !prune(c) {
						kept = append(kept, c)
					}
				}
				if len(kept) == 0 {
					delete(x, k)
				} else {
					x[k] = kept
				}
			case prune(e):
				delete(x, k)
			}
		}
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// fillCompanions replaces the nulls of primitive companion lists ("_given":
// [null, {"id": "b"}]) by empty objects. google/fhir marshals a list item
// without id or extension as null but refuses null when parsing; it takes
// {} and marshals it back as null, so the stored form does not change.
func fillCompanions(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if a, ok := e.([]any); ok && strings.HasPrefix(k, "_") {
				for i, c := range a {
					if c == nil {
						a[i] = map[string]any{}
					}
				}
			}
			fillCompanions(e)
		}
	case []any:
		for _, e := range x {
			fillCompanions(e)
		}
	}
}

// --- element definitions from the google/fhir protos --------------------

// resourceDescriptors maps each R4 resource type name to its proto message.
var resourceDescriptors = sync.OnceValue(func() map[string]protoreflect.MessageDescriptor {
	m := map[string]protoreflect.MessageDescriptor{}
	fields := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().Get(0).Fields()
	for i := 0; i < fields.Len(); i++ {
		md := fields.Get(i).Message()
		m[string(md.Name())] = md
	}
	return m
})

func resourceDescriptor(typ string) protoreflect.MessageDescriptor {
	return resourceDescriptors()[typ]
}

// isChoice reports a google/fhir choice message (Observation.ValueX): a
// single oneof "choice" holding every field.
func isChoice(md protoreflect.MessageDescriptor) bool {
	o := md.Oneofs()
	return o.Len() == 1 && o.Get(0).Name() == "choice" && o.Get(0).Fields().Len() == md.Fields().Len()
}

// fieldOf returns the field of md for a JSON element name: a plain name
// (birthDate, or value for the whole of value[x]) or a typed choice name
// (valueQuantity, which gives the Quantity field of the choice).
func fieldOf(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if md == nil {
		return nil
	}
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	if base, ok := choiceBase(md, key); ok {
		return md.Fields().ByJSONName(base).Message().Fields().ByJSONName(lowerFirst(key[len(base):]))
	}
	return nil
}

// choiceBase returns the choice element name of a typed choice name in md:
// "value" for valueQuantity in Observation.
func choiceBase(md protoreflect.MessageDescriptor, key string) (string, bool) {
	if md == nil {
		return "", false
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		base := f.JSONName()
		if m := f.Message(); m == nil || !isChoice(m) || len(key) <= len(base) || !strings.HasPrefix(key, base) || !isUpperASCII(key[len(base)]) {
			continue
		}
		if f.Message().Fields().ByJSONName(lowerFirst(key[len(base):])) != nil {
			return base, true
		}
	}
	return "", false
}

// childDescriptor returns the type of the element key (value v) of a
// parent of type md; nil when unknown. Contained resources take the type
// their resourceType names.
func childDescriptor(md protoreflect.MessageDescriptor, key string, v any) protoreflect.MessageDescriptor {
	if obj, ok := v.(map[string]any); ok {
		if rt, ok := obj["resourceType"].(string); ok {
			return resourceDescriptor(rt)
		}
	}
	fd := fieldOf(md, key)
	if fd == nil {
		return nil
	}
	return fd.Message()
}
