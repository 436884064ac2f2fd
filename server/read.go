package server

// read answers GET [base]/[type]/[id].
// See https://hl7.org/fhir/R4/http.html#read.
// Statuses: 200; 304 (If-None-Match names the current version, or
// If-Modified-Since is not older than it); 404 unknown type or id; 410 deleted.

import (
	"net/http"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

func (s *Server) read(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	if err := s.catchUpAudit(c, typ); err != nil {
		s.failProjection(c, err)
		return
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s has no resource with that id (ids match [A-Za-z0-9-.]{1,64})", typ))
		return
	}
	r, err := s.serviceFor(c.Request.Context()).Read(c.Request.Context(), typ, id)
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

// notModified evaluates If-None-Match (preferred) or If-Modified-Since
// against r. See https://hl7.org/fhir/R4/http.html#cread.
func notModified(c *gin.Context, r *fhir.Resource) bool {
	if inm := c.GetHeader("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if strings.TrimSpace(tag) == "*" {
				return true
			}
			if v, ok := parseETag(tag); ok && v == r.VersionID {
				return true
			}
		}
		return false
	}
	if ims := c.GetHeader("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		return err == nil && !r.LastUpdated.Truncate(time.Second).After(t)
	}
	return false
}
