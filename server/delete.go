package server

// delete answers DELETE [base]/[type]/[id]: a soft delete that records a new
// version; later reads answer 410 and vread of older versions still works.
// Deleting a resource that does not exist or is already deleted succeeds
// and changes nothing. See https://hl7.org/fhir/R4/http.html#delete.
// Statuses: 204 (200 with an OperationOutcome under
// Prefer: return=OperationOutcome); 404 unknown type; 412 If-Match is not
// the current version.

import (
	"fmt"
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

func (s *Server) delete(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	id := c.Param("id")
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	var r *fhir.Resource
	if fhir.ValidID(id) {
		var err error
		if r, err = s.serviceFor(c.Request.Context()).Delete(c.Request.Context(), typ, id, ifMatch); err != nil {
			s.fail(c, err)
			return
		}
	} else if ifMatch != 0 {
		s.fail(c, fhir.VersionConflictf("If-Match names a version but the resource does not exist"))
		return
	}
	msg := "nothing to delete: the resource does not exist or is already deleted"
	if r != nil {
		setVersionHeaders(c, r)
		msg = "deleted " + r.Ref() + "; version " + r.ETag() + " records the deletion"
	}
	if preferReturn(c) == "OperationOutcome" {
		s.writeOutcome(c, http.StatusOK, []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational, Diagnostics: msg}})
		return
	}
	c.Status(http.StatusNoContent)
}

// conditionalDelete answers DELETE [base]/[type]?[search]: the resources
// the search matches are deleted, at most Config.MaxConditionalDeletes of
// them (one by default); more fail with 412 and delete nothing. No match
// succeeds and changes nothing.
// See https://hl7.org/fhir/R4/http.html#3.1.0.7.1.
// Statuses: 204 (200 with an OperationOutcome under
// Prefer: return=OperationOutcome); 400 no search, a malformed search or
// unknown parameter; 404 unknown type; 412 too many matches.
func (s *Server) conditionalDelete(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	if c.Request.URL.RawQuery == "" {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "a delete names the resource: DELETE [type]/[id], or DELETE [type]?[search] for a conditional delete"))
		return
	}
	ds, err := s.serviceFor(c.Request.Context()).ConditionalDelete(c.Request.Context(), typ, c.Request.URL.RawQuery, s.baseURL(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	if len(ds) == 1 {
		setVersionHeaders(c, ds[0])
	}
	if preferReturn(c) == "OperationOutcome" {
		msg := "nothing to delete: the search matched no resource"
		if len(ds) > 0 {
			msg = fmt.Sprintf("deleted %d %s", len(ds), typ)
		}
		s.writeOutcome(c, http.StatusOK, []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational, Diagnostics: msg}})
		return
	}
	c.Status(http.StatusNoContent)
}
