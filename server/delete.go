package server

// delete answers DELETE [base]/[type]/[id]: a soft delete that records a new
// version; later reads answer 410 and vread of older versions still works.
// Deleting a resource that does not exist or is already deleted succeeds
// and changes nothing. See https://hl7.org/fhir/R4/http.html#delete.
// Statuses: 204 (200 with an OperationOutcome under
// Prefer: return=OperationOutcome); 404 unknown type; 412 If-Match is not
// the current version.

import (
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
		if r, err = s.svc.Delete(c.Request.Context(), typ, id, ifMatch); err != nil {
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
