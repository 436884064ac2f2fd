package server

// validateOp answers the $validate operation on a type,
// POST [base]/[type]/$validate, and on an instance,
// POST [base]/[type]/[id]/$validate.
// See https://hl7.org/fhir/R4/resource-operation-validate.html.
//
// The body is the resource, or a Parameters resource with a `resource`
// parameter and an optional `profile` (valueUri or valueCanonical); the
// `profile` query parameter may name the profile too. On an instance an
// empty body (or a Parameters without `resource`) validates the stored
// current version. The resource is parsed strictly (as a create would) and
// validated against the R4 base definition of its type
// (profiles.Validator.ValidateBase: data types, invariants) and against the
// profile asked for, or else against the profiles a write would enforce
// (validate.go: known profiles it claims, the CP-IS Flag profile for a
// CP-IS Flag, with the subject checks); a profile naming the base
// definition (http://hl7.org/fhir/StructureDefinition/[type]) asks for the
// base alone. A finding both report is listed once. The `mode`
// parameter is not supported (ignored): every request is validated as a
// create or update would be. Nothing is written.
// Statuses: 200 with an OperationOutcome (its errors when the resource is
// invalid; one information issue "no issues found" when it is valid);
// 400 a Parameters without a resource on a type, a resource of another type
// than the URL's, a profile the server does not know; 404 unknown type or
// id; 410 deleted; 413; 415.

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/gin-gonic/gin"
)

func (s *Server) validateOp(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	profile := c.Query("profile")
	resource := body
	if len(strings.TrimSpace(string(body))) > 0 {
		var params struct {
			ResourceType string
			Parameter    []struct {
				Name           string
				Resource       json.RawMessage
				ValueURI       string `json:"valueUri"`
				ValueCanonical string
			}
		}
		if json.Unmarshal(body, &params) == nil && params.ResourceType == "Parameters" && typ != "Parameters" {
			resource = nil
			for _, p := range params.Parameter {
				switch p.Name {
				case "resource":
					resource = p.Resource
				case "profile":
					if profile == "" {
						profile = p.ValueURI + p.ValueCanonical
					}
				}
			}
		}
	}
	if len(strings.TrimSpace(string(resource))) == 0 {
		id := c.Param("id")
		if id == "" {
			s.fail(c, fhir.Errorf(fhir.IssueRequired, "$validate on a type needs the resource: the body, or a Parameters resource with a resource parameter"))
			return
		}
		r, err := s.serviceFor(c.Request.Context()).Read(c.Request.Context(), typ, id)
		if err != nil {
			s.fail(c, err)
			return
		}
		resource = r.JSON
	}
	baseOnly := profile == baseProfile+typ
	if profile != "" && !baseOnly && s.validator.Profile(profile) == nil {
		s.fail(c, fhir.Errorf(fhir.IssueNotSupported, "the profile parameter names a profile this server does not know; see GET %s/StructureDefinition", FHIRBase))
		return
	}
	p, err := s.codec.Parse(resource)
	if err != nil {
		var fe *fhir.Error
		if !errors.As(err, &fe) {
			s.fail(c, err)
			return
		}
		s.writeOutcome(c, http.StatusOK, fe.OutcomeIssues())
		return
	}
	if p.Type != typ {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "the resource is a %s but the URL is for %s", p.Type, typ))
		return
	}
	urls := s.profilesOf(p)
	switch {
	case baseOnly:
		urls = nil
	case profile != "":
		urls = []string{s.validator.Profile(profile).URL}
	}
	issues := s.validator.ValidateBase(resource)
	for _, u := range urls {
		issues = append(issues, s.validator.Validate(resource, u)...)
	}
	issues = uniqueIssues(issues)
	if cpisFlag(p) {
		ctx := c.Request.Context()
		issues = append(issues, s.flagRules(resource, func(ref string) []byte {
			typ, id, ok := strings.Cut(ref, "/")
			if !ok || !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
				return nil
			}
			r, err := s.serviceFor(ctx).Read(ctx, typ, id)
			if err != nil {
				return nil
			}
			return r.JSON
		})...)
	}
	out := make([]fhir.Issue, len(issues))
	for i, is := range issues {
		out[i] = is.OutcomeIssue()
	}
	if len(out) == 0 {
		out = []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational, Diagnostics: "no issues found"}}
	}
	s.writeOutcome(c, http.StatusOK, out)
}

// baseProfile is the canonical URL prefix of the R4 base
// StructureDefinitions, one per type.
const baseProfile = "http://hl7.org/fhir/StructureDefinition/"

// uniqueIssues drops the repeats of a finding (the base definition and a
// profile on it can both report it), keeping the first.
func uniqueIssues(issues []profiles.Issue) []profiles.Issue {
	type key struct{ sev, code, expr, diag, details string }
	seen := make(map[key]bool, len(issues))
	out := issues[:0]
	for _, is := range issues {
		k := key{string(is.Severity), string(is.Code), strings.Join(is.Expression, ","), is.Diagnostics, is.Details}
		if !seen[k] {
			seen[k] = true
			out = append(out, is)
		}
	}
	return out
}
