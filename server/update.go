package server

// update answers PUT [base]/[type]/[id], creating the resource when it does
// not exist (update as create, client-chosen id). If-Match makes it
// version-aware. See https://hl7.org/fhir/R4/http.html#update.
// Statuses: 200 updated; 201 created; 400 invalid body, missing id or an id
// or type that differs from the URL, malformed If-Match; 404 unknown type;
// 412 If-Match is not the current version; 413; 415.

import (
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

func (s *Server) update(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	p, ok := s.parseBody(c, typ)
	if !ok {
		return
	}
	r, created, err := s.serviceFor(c.Request.Context()).Update(c.Request.Context(), typ, c.Param("id"), p, ifMatch)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.written(c, typ, r, created)
}

// ifMatch returns the version in If-Match, zero when absent.
func (s *Server) ifMatch(c *gin.Context) (int64, bool) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return 0, true
	}
	v, ok := parseETag(h)
	if !ok {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, `If-Match must name one version, as W/"3"`))
		return 0, false
	}
	return v, true
}

// conditionalUpdate answers PUT [base]/[type]?[search]: the one resource
// the search matches is updated; with no match the resource is created
// (with the body's id, or a new one); several matches fail with 412. The
// search and the write share one transaction.
// See https://hl7.org/fhir/R4/http.html#cond-update.
// Statuses: 200 updated; 201 created; 400 no search, a malformed search or
// unknown parameter, a body id that differs from the match's; 404 unknown
// type; 412 several matches; 413; 415.
func (s *Server) conditionalUpdate(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	if c.Request.URL.RawQuery == "" {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "an update names the resource: PUT [type]/[id], or PUT [type]?[search] for a conditional update"))
		return
	}
	p, ok := s.parseBody(c, typ)
	if !ok {
		return
	}
	r, created, err := s.serviceFor(c.Request.Context()).ConditionalUpdate(c.Request.Context(), typ, c.Request.URL.RawQuery, p, s.baseURL(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	s.written(c, typ, r, created)
}

// conditionalPatch answers PATCH [base]/[type]?[search]: the patch (as
// patch.go takes it) is applied to the one resource the search matches.
// The search, the patch and the write share one transaction, so nothing
// changes the resource in between. See https://hl7.org/fhir/R4/http.html#patch.
// Statuses: 200 patched; 400 no search, a malformed search or patch; 404
// no match or unknown type; 412 several matches or If-Match is not the
// matched version; 415 not a patch media type; 422 a patch that does not
// apply or makes the resource invalid.
func (s *Server) conditionalPatch(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	if c.Request.URL.RawQuery == "" {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "a patch names the resource: PATCH [type]/[id], or PATCH [type]?[search] for a conditional patch"))
		return
	}
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	ct, body, ok := s.patchBody(c)
	if !ok {
		return
	}
	r, err := s.serviceFor(c.Request.Context()).ConditionalPatch(c.Request.Context(), typ, c.Request.URL.RawQuery, s.baseURL(c), ifMatch, func(cur *fhir.Resource) (*fhir.Parsed, error) {
		return s.applyPatch(cur, ct, body)
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
	s.writeWritten(c, http.StatusOK, r, "patched")
}

// written answers a successful update (201 when it created the resource)
// and registers a SearchParameter it stored.
func (s *Server) written(c *gin.Context, typ string, r *fhir.Resource, created bool) {
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
	if created {
		s.writeWritten(c, http.StatusCreated, r, "created")
		return
	}
	s.writeWritten(c, http.StatusOK, r, "updated")
}
