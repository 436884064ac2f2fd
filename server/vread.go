package server

// vread answers GET [base]/[type]/[id]/_history/[vid].
// See https://hl7.org/fhir/R4/http.html#vread.
// Statuses: 200; 304 as for read; 404 unknown type, id or version; 410 when
// the version records a delete.

import (
	"net/http"
	"strconv"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

func (s *Server) vread(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	if err := s.catchUpAudit(c, typ); err != nil {
		s.failProjection(c, err)
		return
	}
	id := c.Param("id")
	v, err := strconv.ParseInt(c.Param("vid"), 10, 64)
	if !fhir.ValidID(id) || err != nil || v < 1 {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s has no such resource version (versions are whole numbers from 1)", typ))
		return
	}
	r, err := s.serviceFor(c.Request.Context()).VRead(c.Request.Context(), typ, id, v)
	if err != nil {
		if r != nil {
			setVersionHeaders(c, r)
		}
		s.fail(c, err)
		return
	}
	if notModified(c, r) {
		setVersionHeaders(c, r)
		c.Status(http.StatusNotModified)
		return
	}
	if err := s.noteAccess(c, seenRecords{records: []*fhir.Resource{r}}); err != nil {
		s.fail(c, err)
		return
	}
	s.writeResource(c, http.StatusOK, r)
}
