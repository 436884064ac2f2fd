package server

import (
	"errors"
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// statusError is an HTTP-only failure (405, 406, 413, 415, 503...) that no
// domain code maps to.
type statusError struct {
	status int
	err    *fhir.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// statusOf is the one table from errors to HTTP statuses.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	if errors.Is(err, fhir.ErrVersionConflict) || errors.Is(err, fhir.ErrMultipleMatches) {
		return http.StatusPreconditionFailed
	}
	if errors.Is(err, fhir.ErrUnprocessable) {
		return http.StatusUnprocessableEntity
	}
	if errors.Is(err, fhir.ErrStorageFull) {
		return http.StatusInsufficientStorage
	}
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		return http.StatusInternalServerError
	}
	switch fe.Code {
	case fhir.IssueInvalid, fhir.IssueStructure, fhir.IssueRequired, fhir.IssueValue, fhir.IssueInvariant, fhir.IssueNotSupported:
		return http.StatusBadRequest
	case fhir.IssueLogin:
		return http.StatusUnauthorized
	case fhir.IssueForbidden, fhir.IssueSecurity:
		return http.StatusForbidden
	case fhir.IssueNotFound:
		return http.StatusNotFound
	case fhir.IssueDeleted:
		return http.StatusGone
	case fhir.IssueConflict, fhir.IssueDuplicate:
		return http.StatusConflict
	case fhir.IssueTooLong:
		return http.StatusRequestEntityTooLarge
	case fhir.IssueBusinessRule, fhir.IssueProcessing:
		return http.StatusUnprocessableEntity
	case fhir.IssueTooCostly:
		return http.StatusForbidden
	case fhir.IssueTransient:
		return http.StatusServiceUnavailable
	case fhir.IssueThrottled:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// fail answers with err as an OperationOutcome. Internal errors (500) get a
// fixed message naming the request id; their details go to the log only.
func (s *Server) fail(c *gin.Context, err error) {
	status := statusOf(err)
	var fe *fhir.Error
	if status == http.StatusInternalServerError || !errors.As(err, &fe) {
		id := requestIDOf(c)
		s.log.Error("internal error", "request_id", id, "route", c.FullPath(), "error", err)
		fe = fhir.Errorf(fhir.IssueException, "internal server error; quote request id %s when reporting it", id)
		status = http.StatusInternalServerError
	}
	s.logStorageFull(c, status)
	s.writeOutcome(c, status, outcomeIssues(status, fe))
	c.Abort()
}

// logStorageFull logs a write refused because the store's disk is full
// (507) as an error: the client is only told to try again, and someone
// must make room.
func (s *Server) logStorageFull(c *gin.Context, status int) {
	if status == http.StatusInsufficientStorage {
		s.log.Error("storage full: a write was refused", "request_id", requestIDOf(c), "route", c.FullPath())
	}
}

// outcomeIssues are the issues reported for fe answered with status: a
// refusal (403) carries the national CP-IS API's Spine code ACCESS_DENIED
// in issue.details.
func outcomeIssues(status int, fe *fhir.Error) []fhir.Issue {
	issues := fe.OutcomeIssues()
	if status != http.StatusForbidden {
		return issues
	}
	issues = append([]fhir.Issue(nil), issues...)
	for i := range issues {
		if issues[i].Details.Code == "" {
			issues[i].Details = spineCode(spineAccessDenied, "Access has been denied to process this request")
		}
	}
	return issues
}

// writeOutcome writes an OperationOutcome with the issues.
func (s *Server) writeOutcome(c *gin.Context, status int, issues []fhir.Issue) {
	b, err := s.codec.MarshalMessage(fhir.Outcome(issues))
	if err != nil {
		s.log.Error("marshal OperationOutcome", "request_id", requestIDOf(c), "error", err)
		b = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
		status = http.StatusInternalServerError
	}
	s.writeJSON(c, status, b)
}

func (s *Server) noRoute(c *gin.Context) {
	s.fail(c, fhir.Errorf(fhir.IssueNotFound, "no FHIR endpoint here; the FHIR base is %s (see %s/metadata)", FHIRBase, FHIRBase))
}

func (s *Server) noMethod(c *gin.Context) {
	s.fail(c, &statusError{http.StatusMethodNotAllowed, fhir.Errorf(fhir.IssueNotSupported, "method %s is not allowed here; see %s/metadata for what the server supports", c.Request.Method, FHIRBase)})
}
