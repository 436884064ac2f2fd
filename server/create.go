package server

// create answers POST [base]/[type]: the server assigns the id; an id in
// the body is ignored. See https://hl7.org/fhir/R4/http.html#create.
// Statuses: 201 with Location, ETag and Last-Modified; 400 invalid JSON or
// resource, or a body of another type; 404 unknown type; 413 too large;
// 415 not JSON.

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
	if c.GetHeader("If-None-Exist") != "" {
		s.fail(c, fhir.Errorf(fhir.IssueNotSupported, "conditional create (If-None-Exist) is not supported yet; the resource was not created"))
		return
	}
	p, ok := s.parseBody(c, typ)
	if !ok {
		return
	}
	r, err := s.svc.Create(c.Request.Context(), p)
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
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
