package server

// create answers POST [base]/[type]: the server assigns the id; an id in
// the body is ignored. See https://hl7.org/fhir/R4/http.html#create.
// With If-None-Exist (a search on the type) it is a conditional create
// (https://hl7.org/fhir/R4/http.html#ccreate): no match creates, one match
// answers 200 with the existing resource and writes nothing, more fail
// with 412. The search runs inside the write transaction, so concurrent
// identical conditional creates make one resource.
// Statuses: 201 with Location, ETag and Last-Modified; 200 (conditional,
// matched); 400 invalid JSON or resource, a body of another type, or an
// If-None-Exist search that is malformed or has an unknown parameter;
// 404 unknown type; 412 several matches; 413 too large; 415 not JSON.

import (
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

func (s *Server) create(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	p, ok := s.parseBody(c, typ)
	if !ok {
		return
	}
	if cond := c.GetHeader("If-None-Exist"); cond != "" {
		r, created, err := s.serviceFor(c.Request.Context()).ConditionalCreate(c.Request.Context(), p, cond, s.baseURL(c))
		if err != nil {
			s.fail(c, err)
			return
		}
		if !created {
			s.writeWritten(c, http.StatusOK, r, "found")
			return
		}
		if typ == "SearchParameter" {
			s.searchParameterWritten(r)
		}
		warnFlagged(c)
		s.writeWritten(c, http.StatusCreated, r, "created")
		return
	}
	r, err := s.serviceFor(c.Request.Context()).Create(c.Request.Context(), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
	warnFlagged(c)
	s.writeWritten(c, http.StatusCreated, r, "created")
}

// parseBody reads and parses the request body as a resource of type typ.
func (s *Server) parseBody(c *gin.Context, typ string) (*fhir.Parsed, bool) {
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	p, err := s.codec.Parse(body)
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	if p.Type != typ {
		s.fail(c, &fhir.Error{Code: fhir.IssueInvalid, Message: "the body is a " + p.Type + " but the URL is for " + typ,
			Issues: []fhir.Issue{{Severity: fhir.SeverityError, Code: fhir.IssueInvalid,
				Diagnostics: "resourceType " + p.Type + " does not match the URL's " + typ, Expression: []string{"resourceType"}}}})
		return nil, false
	}
	if typ == "SearchParameter" {
		if err := s.checkSearchParameter(body); err != nil {
			s.fail(c, err)
			return nil, false
		}
	}
	return p, true
}
