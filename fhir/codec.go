package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/fhirvalidate"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec parses and validates FHIR R4 JSON into google/fhir protos and
// marshals them to canonical JSON. Build it once with NewCodec and share it:
// it is safe for concurrent use.
type Codec struct {
	u *jsonformat.Unmarshaller
	m *jsonformat.Marshaller
}

// NewCodec returns a strict R4 codec: unknown elements, bad codes, bad
// primitives and missing required elements are errors.
func NewCodec() (*Codec, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("new unmarshaller: %w", err)
	}
	u.MaxNestingDepth = 64
	m, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("new marshaller: %w", err)
	}
	fpRoot() // the fast parser's tables, built once for all codecs
	return &Codec{u: u, m: m}, nil
}

// Parsed is a parsed and validated resource.
type Parsed struct {
	// Type is the resource type, such as "Patient".
	Type string
	cr   *bcrpb.ContainedResource
	res  protoreflect.Message
}

// Proto returns the resource as a google/fhir ContainedResource.
func (p *Parsed) Proto() *bcrpb.ContainedResource { return p.cr }

// Message returns the resource message inside the ContainedResource, such
// as a *patientpb.Patient.
func (p *Parsed) Message() proto.Message { return p.res.Interface() }

// ID returns the resource's id element, or "" when it has none.
func (p *Parsed) ID() string {
	fd := p.res.Descriptor().Fields().ByName("id")
	if fd == nil || !p.res.Has(fd) {
		return ""
	}
	id, _ := p.res.Get(fd).Message().Interface().(*dtpb.Id)
	return id.GetValue()
}

// Meta returns the resource's meta element, or nil when it has none.
func (p *Parsed) Meta() *dtpb.Meta {
	fd := p.res.Descriptor().Fields().ByName("meta")
	if fd == nil || !p.res.Has(fd) {
		return nil
	}
	m, _ := p.res.Get(fd).Message().Interface().(*dtpb.Meta)
	return m
}

// Stamp sets the id and meta.versionId and meta.lastUpdated of the resource.
// Other meta elements (profile, security, tag, source) are kept.
func (p *Parsed) Stamp(id string, version int64, lastUpdated time.Time) {
	fields := p.res.Descriptor().Fields()
	p.res.Set(fields.ByName("id"), protoreflect.ValueOfMessage((&dtpb.Id{Value: id}).ProtoReflect()))
	meta := p.res.Mutable(fields.ByName("meta")).Message().Interface().(*dtpb.Meta)
	meta.VersionId = &dtpb.Id{Value: strconv.FormatInt(version, 10)}
	meta.LastUpdated = &dtpb.Instant{
		ValueUs:   lastUpdated.UnixMilli() * 1000,
		Timezone:  "Z",
		Precision: dtpb.Instant_MILLISECOND,
	}
}

// Marshal returns the canonical JSON of the resource: the bytes
// google/fhir's Marshaller gives, written by the fast marshaller
// (fastmarshal.go) when it takes the resource, else by google/fhir. The
// fast one leaves the proto as it is; google/fhir's rewrites its typed
// references as strings and drops its no-value extensions, which the
// callers do not read afterwards.
func (c *Codec) Marshal(p *Parsed) ([]byte, error) {
	if b, ok := appendJSON(nil, p.cr.ProtoReflect()); ok {
		return b, nil
	}
	b, err := c.m.Marshal(p.cr)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", p.Type, err)
	}
	return b, nil
}

// MarshalMessage returns the canonical JSON of any resource proto, such as
// an OperationOutcome or a Bundle built by the server.
func (c *Codec) MarshalMessage(m proto.Message) ([]byte, error) {
	if b, ok := appendJSON(nil, m.ProtoReflect()); ok {
		return b, nil
	}
	b, err := c.m.MarshalResource(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

// Parse parses and validates one resource in JSON. Errors are *Error with
// code structure (not JSON, not a resource) or invalid, with one issue per
// problem found, each naming the element in its expression. No resource
// content is copied into the messages.
func (c *Codec) Parse(body []byte) (*Parsed, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, Errorf(IssueStructure, "the request body is empty; a FHIR resource in JSON was expected")
	}
	if err := checkJSONObject(body); err != nil {
		return nil, err
	}
	cr, rep, err := c.parse(body)
	if err != nil {
		return nil, err
	}
	if len(rep.issues) > 0 {
		return nil, &Error{Code: IssueInvalid, Message: "the resource is not valid FHIR R4: " + rep.issues[0].Diagnostics, Issues: rep.issues}
	}
	res := containedMessage(cr)
	if res == nil {
		return nil, Errorf(IssueInvalid, "the resource has no resourceType")
	}
	return &Parsed{Type: string(res.Descriptor().Name()), cr: cr, res: res}, nil
}

// parse reads body with the fast path when it takes it, else with
// google/fhir, and validates the proto as google/fhir's Unmarshaller
// does; the issues found are in the reporter.
func (c *Codec) parse(body []byte) (*bcrpb.ContainedResource, *reporter, error) {
	rep := &reporter{}
	if cr, ok := fastParse(body); ok {
		if err := fhirvalidate.ValidateWithErrorReporter(cr, rep); err != nil {
			rep.add(err)
		}
		return cr, rep, nil
	}
	return c.parseGoogle(body, rep)
}

// parseGoogle is parse with google/fhir alone: the parser of record.
func (c *Codec) parseGoogle(body []byte, rep *reporter) (*bcrpb.ContainedResource, *reporter, error) {
	m, err := c.u.UnmarshalWithErrorReporter(body, rep)
	if err != nil {
		rep.add(err)
	}
	if len(rep.issues) > 0 {
		return nil, rep, nil
	}
	cr, ok := m.(*bcrpb.ContainedResource)
	if !ok {
		return nil, rep, fmt.Errorf("parse: unexpected message %T", m)
	}
	return cr, rep, nil
}

func containedMessage(cr *bcrpb.ContainedResource) protoreflect.Message {
	m := cr.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message()
}

// checkJSONObject reports a body that is not one JSON object, with the byte
// offset of a syntax error but none of the body's content.
func checkJSONObject(body []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	tok, err := dec.Token()
	if err != nil {
		return jsonSyntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Errorf(IssueStructure, "the request body must be a JSON object holding a FHIR resource")
	}
	return nil
}

func jsonSyntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return Errorf(IssueStructure, "the request body is not valid JSON (syntax error at byte offset %d)", se.Offset)
	}
	return Errorf(IssueStructure, "the request body is not valid JSON")
}

// reporter collects google/fhir parse and validation errors as issues. It
// keeps the error's path and its PHI-free Details, never its Diagnostics
// (which may quote values), except the name of an unknown field.
type reporter struct{ issues []Issue }

func (r *reporter) ReportValidationError(path string, err error) error {
	r.add(err)
	return nil
}

func (r *reporter) ReportValidationWarning(path string, err error) error { return nil }

func (r *reporter) add(err error) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		for i := 0; i < v.Len(); i++ {
			if e, ok := v.Index(i).Interface().(error); ok {
				r.add(e)
			}
		}
		return
	}
	path, details, diag, ok := unmarshalErrorFields(err)
	if !ok {
		r.issues = append(r.issues, Issue{Severity: SeverityError, Code: IssueInvalid, Diagnostics: "the resource is not valid FHIR R4"})
		return
	}
	code := IssueInvalid
	switch {
	case details == "invalid JSON":
		r.issues = append(r.issues, Issue{Severity: SeverityError, Code: IssueStructure, Diagnostics: "the request body is not valid JSON"})
		return
	case details == "unknown field":
		if f, err := strconv.Unquote(diag); err == nil {
			path = joinPath(path, f)
		}
		code = IssueStructure
		details = "unknown element"
	case details == "unknown resource type":
		path = "resourceType"
		code = IssueNotSupported
		details = "unknown resource type"
	case strings.HasPrefix(details, "missing required field "):
		if f, err := strconv.Unquote(strings.TrimPrefix(details, "missing required field ")); err == nil {
			path = joinPath(path, f)
		}
		code = IssueRequired
		details = "missing required element"
	}
	iss := Issue{Severity: SeverityError, Code: code, Diagnostics: details}
	if path != "" {
		iss.Expression = []string{path}
		iss.Diagnostics = path + ": " + details
	}
	r.issues = append(r.issues, iss)
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// unmarshalErrorFields reads Path, Details and Diagnostics from google/fhir's
// internal UnmarshalError, which cannot be named outside its module.
func unmarshalErrorFields(err error) (path, details, diag string, ok bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		p, d := v.FieldByName("Path"), v.FieldByName("Details")
		if !p.IsValid() || !d.IsValid() || p.Kind() != reflect.String || d.Kind() != reflect.String {
			continue
		}
		if g := v.FieldByName("Diagnostics"); g.IsValid() && g.Kind() == reflect.String {
			diag = g.String()
		}
		return p.String(), d.String(), diag, true
	}
	return "", "", "", false
}
