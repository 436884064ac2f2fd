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
	r, created, err := s.svc.Update(c.Request.Context(), typ, c.Param("id"), p, ifMatch)
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
	if created {
		s.writeWritten(c, http.StatusCreated, r, "created")
		return
	}
	s.writeWritten(c, http.StatusOK, r, "updated")
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
