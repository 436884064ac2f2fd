package server

// The terminology service: the embedded CodeSystems and ValueSets (package
// terminology) are written into the store at start under their fixed ids,
// when missing, deleted or different from the embedded ones, in one
// transaction (as the StructureDefinitions are, structuredefinition.go), so
// that read, history and search (GET [base]/ValueSet?url=..., ?name=...,
// ?version=...; the same on CodeSystem) serve them as any other resource.
// See https://hl7.org/fhir/R4/terminology-service.html.
//
// Operations, each by GET with query parameters or POST with a Parameters
// body (query parameters are read too; the body's win):
//
//   - GET|POST [base]/ValueSet/$expand and [base]/ValueSet/[id]/$expand:
//     url (valueUri), filter (valueString; matched case-insensitively
//     against code and display), count and offset (valueInteger). Answers a
//     ValueSet with expansion.total, offset and contains (system, code,
//     display). See https://hl7.org/fhir/R4/valueset-operation-expand.html.
//   - GET|POST [base]/ValueSet/$validate-code and
//     [base]/ValueSet/[id]/$validate-code: url, system and code, or coding
//     (valueCoding, POST only). Answers Parameters result (valueBoolean),
//     message (when false) and display (when true).
//     See https://hl7.org/fhir/R4/valueset-operation-validate-code.html.
//   - GET|POST [base]/CodeSystem/$lookup: system and code, or coding.
//     Answers Parameters name, version (when known) and display.
//     See https://hl7.org/fhir/R4/codesystem-operation-lookup.html.
//   - GET|POST [base]/CodeSystem/$subsumes: system, codeA and codeB, or
//     codingA and codingB. Answers Parameters outcome (valueCode:
//     equivalent, subsumes, subsumed-by or not-subsumed).
//     See https://hl7.org/fhir/R4/codesystem-operation-subsumes.html.
//
// The operations answer from the embedded content only: a ValueSet or
// CodeSystem a client writes is stored and searchable but not used by
// them (an instance-level operation on one is 400 not-supported).
// Not supported: $expand's valueSet, context, date, activeOnly and other
// parameters, $validate-code's codeableConcept, valueSet and display
// check, $lookup's property and date, $validate-code on CodeSystem, and
// these operations inside batch or transaction Bundles.
// Statuses: 200; 400 a missing or malformed parameter, a body that is not
// a Parameters resource; 404 an unknown resource type for the operation,
// value set, code system, code ($lookup, $subsumes) or id; 410 a deleted
// ValueSet instance; 413.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// loadTerminology writes the CodeSystems and ValueSets the store lacks or
// holds in another form.
func (s *Server) loadTerminology(ctx context.Context) error {
	var defs []definition
	for _, d := range s.term.Definitions() {
		defs = append(defs, definition{Type: d.Type, ID: d.ID, JSON: d.JSON})
	}
	return s.writeDefinitions(ctx, "terminology", defs)
}

// opCoding is a Coding parameter.
type opCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// opParams are the input parameters of a terminology operation: the query
// parameters, overridden by those of a POSTed Parameters body.
type opParams struct {
	values  map[string]string
	codings map[string]opCoding
	// lists holds every value of each parameter (values the last).
	lists map[string][]string
}

// all returns every value of the parameter name, in order.
func (p *opParams) all(name string) []string { return p.lists[name] }

// operationParams reads the operation's parameters.
func (s *Server) operationParams(c *gin.Context) (*opParams, error) {
	p := &opParams{values: map[string]string{}, codings: map[string]opCoding{}, lists: map[string][]string{}}
	for k, v := range c.Request.URL.Query() {
		if len(v) > 0 {
			p.values[k] = v[0]
			p.lists[k] = v
		}
	}
	if c.Request.Method != http.MethodPost {
		return p, nil
	}
	body, err := s.readBody(c)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	var in struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string    `json:"name"`
			ValueString    *string   `json:"valueString"`
			ValueURI       *string   `json:"valueUri"`
			ValueCanonical *string   `json:"valueCanonical"`
			ValueCode      *string   `json:"valueCode"`
			ValueID        *string   `json:"valueId"`
			ValueInteger   *int      `json:"valueInteger"`
			ValueCoding    *opCoding `json:"valueCoding"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.ResourceType != "Parameters" {
		return nil, fhir.Errorf(fhir.IssueStructure, "the body of the operation must be a Parameters resource")
	}
	for _, q := range in.Parameter {
		switch {
		case q.ValueCoding != nil:
			p.codings[q.Name] = *q.ValueCoding
		case q.ValueInteger != nil:
			p.values[q.Name] = strconv.Itoa(*q.ValueInteger)
		default:
			for _, v := range []*string{q.ValueString, q.ValueURI, q.ValueCanonical, q.ValueCode, q.ValueID} {
				if v != nil {
					p.values[q.Name] = *v
					p.lists[q.Name] = append(p.lists[q.Name], *v)
				}
			}
		}
	}
	return p, nil
}

// integer returns a non-negative integer parameter, or def when absent.
func (p *opParams) integer(name string, def int) (int, error) {
	v, ok := p.values[name]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fhir.Errorf(fhir.IssueInvalid, "parameter %s must be a non-negative integer", name)
	}
	return n, nil
}

// coding returns system and code from the named Coding parameter, or from
// the system and code parameters.
func (p *opParams) coding(codingName, codeName string) (system, code string) {
	if cd, ok := p.codings[codingName]; ok {
		return cd.System, cd.Code
	}
	return p.values["system"], p.values[codeName]
}

// outParam is one output parameter of a Parameters resource.
type outParam struct {
	Name         string `json:"name"`
	ValueBoolean *bool  `json:"valueBoolean,omitempty"`
	ValueString  string `json:"valueString,omitempty"`
	ValueCode    string `json:"valueCode,omitempty"`
}

// writeParameters answers a Parameters resource.
// See https://hl7.org/fhir/R4/parameters.html.
func (s *Server) writeParameters(c *gin.Context, params []outParam) {
	b, err := json.Marshal(struct {
		ResourceType string     `json:"resourceType"`
		Parameter    []outParam `json:"parameter"`
	}{"Parameters", params})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}

// operationType checks that the URL's type is the one the operation is
// defined on: 404 otherwise.
func (s *Server) operationType(c *gin.Context, want, op string) bool {
	typ, ok := s.resourceType(c)
	if !ok {
		return false
	}
	if typ != want {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "$%s is defined on %s, not on %s", op, want, typ))
		return false
	}
	return true
}

// valueSetURL returns the value set the operation is on: the stored
// ValueSet's url on an instance, else the url parameter.
func (s *Server) valueSetURL(c *gin.Context, p *opParams) (string, error) {
	id := c.Param("id")
	if id == "" {
		u := p.values["url"]
		if u == "" {
			return "", fhir.Errorf(fhir.IssueRequired, "parameter url is required (the ValueSet's canonical URL)")
		}
		return u, nil
	}
	if !fhir.ValidID(id) {
		return "", fhir.Errorf(fhir.IssueNotFound, "ValueSet has no resource with that id")
	}
	r, err := s.serviceFor(c.Request.Context()).Read(c.Request.Context(), "ValueSet", id)
	if err != nil {
		return "", err
	}
	var vs struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(r.JSON, &vs); err != nil {
		return "", err
	}
	if vs.URL == "" || !s.term.HasValueSet(vs.URL) {
		return "", fhir.Errorf(fhir.IssueNotSupported, "ValueSet/%s is not one the terminology service holds; see GET %s/ValueSet", id, FHIRBase)
	}
	return vs.URL, nil
}

// operationInput checks that operation op is asked of type want and reads
// its parameters; on failure it has answered and returns false.
func (s *Server) operationInput(c *gin.Context, want, op string) (*opParams, bool) {
	if !s.operationType(c, want, op) {
		return nil, false
	}
	p, err := s.operationParams(c)
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	return p, true
}

// expandOp answers $expand.
func (s *Server) expandOp(c *gin.Context) {
	p, ok := s.operationInput(c, "ValueSet", "expand")
	if !ok {
		return
	}
	u, err := s.valueSetURL(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	offset, err := p.integer("offset", 0)
	if err != nil {
		s.fail(c, err)
		return
	}
	count, err := p.integer("count", -1)
	if err != nil {
		s.fail(c, err)
		return
	}
	filter := p.values["filter"]
	e, err := s.term.Expand(c.Request.Context(), u, filter, offset, count)
	if err != nil {
		s.fail(c, err)
		return
	}
	type param struct {
		Name         string `json:"name"`
		ValueString  string `json:"valueString,omitempty"`
		ValueInteger *int   `json:"valueInteger,omitempty"`
	}
	type expansion struct {
		Identifier string                 `json:"identifier"`
		Timestamp  string                 `json:"timestamp"`
		Total      int                    `json:"total"`
		Offset     int                    `json:"offset"`
		Parameter  []param                `json:"parameter,omitempty"`
		Contains   []terminologyContained `json:"contains,omitempty"`
	}
	out := struct {
		ResourceType string    `json:"resourceType"`
		URL          string    `json:"url"`
		Version      string    `json:"version,omitempty"`
		Status       string    `json:"status"`
		Expansion    expansion `json:"expansion"`
	}{ResourceType: "ValueSet", URL: e.URL, Version: e.Version, Status: "active"}
	out.Expansion = expansion{
		Identifier: "urn:uuid:" + fhir.NewID(),
		Timestamp:  s.cfg.Now().UTC().Format(time.RFC3339),
		Total:      e.Total,
		Offset:     e.Offset,
	}
	if filter != "" {
		out.Expansion.Parameter = append(out.Expansion.Parameter, param{Name: "filter", ValueString: filter})
	}
	out.Expansion.Parameter = append(out.Expansion.Parameter, param{Name: "offset", ValueInteger: &offset})
	if count >= 0 {
		out.Expansion.Parameter = append(out.Expansion.Parameter, param{Name: "count", ValueInteger: &count})
	}
	for _, cn := range e.Contains {
		out.Expansion.Contains = append(out.Expansion.Contains, terminologyContained(cn))
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}

// terminologyContained is ValueSet.expansion.contains.
type terminologyContained struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// validateCodeOp answers ValueSet $validate-code.
func (s *Server) validateCodeOp(c *gin.Context) {
	p, ok := s.operationInput(c, "ValueSet", "validate-code")
	if !ok {
		return
	}
	u, err := s.valueSetURL(c, p)
	if err != nil {
		s.fail(c, err)
		return
	}
	system, code := p.coding("coding", "code")
	if code == "" {
		s.fail(c, fhir.Errorf(fhir.IssueRequired, "parameter code (with system) or coding is required"))
		return
	}
	in, display, err := s.term.ValidateCode(c.Request.Context(), u, system, code)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := []outParam{{Name: "result", ValueBoolean: &in}}
	if in {
		if display != "" {
			out = append(out, outParam{Name: "display", ValueString: display})
		}
	} else {
		out = append(out, outParam{Name: "message", ValueString: "the code is not in the value set " + canonicalURL(u)})
	}
	s.writeParameters(c, out)
}

// canonicalURL strips a |version suffix.
func canonicalURL(u string) string {
	u, _, _ = strings.Cut(u, "|")
	return u
}

// lookupOp answers CodeSystem $lookup.
func (s *Server) lookupOp(c *gin.Context) {
	p, ok := s.operationInput(c, "CodeSystem", "lookup")
	if !ok {
		return
	}
	system, code := p.coding("coding", "code")
	if system == "" || code == "" {
		s.fail(c, fhir.Errorf(fhir.IssueRequired, "parameters system and code, or coding, are required"))
		return
	}
	r, err := s.term.LookupCode(c.Request.Context(), system, code)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := []outParam{{Name: "name", ValueString: r.Name}}
	if r.Version != "" {
		out = append(out, outParam{Name: "version", ValueString: r.Version})
	}
	out = append(out, outParam{Name: "display", ValueString: r.Display})
	s.writeParameters(c, out)
}

// subsumesOp answers CodeSystem $subsumes.
func (s *Server) subsumesOp(c *gin.Context) {
	p, ok := s.operationInput(c, "CodeSystem", "subsumes")
	if !ok {
		return
	}
	sysA, a := p.coding("codingA", "codeA")
	sysB, b := p.coding("codingB", "codeB")
	if sysA == "" || a == "" || b == "" {
		s.fail(c, fhir.Errorf(fhir.IssueRequired, "parameters system, codeA and codeB, or codingA and codingB, are required"))
		return
	}
	if sysB != "" && canonicalURL(sysB) != canonicalURL(sysA) {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "codingA and codingB must be from the same code system"))
		return
	}
	outcome, err := s.term.Subsumes(c.Request.Context(), sysA, a, b)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeParameters(c, []outParam{{Name: "outcome", ValueCode: outcome}})
}
