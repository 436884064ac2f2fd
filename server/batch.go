package server

// A batch Bundle (POST [base], Bundle.type batch) runs each entry on its
// own: the batch-response Bundle has one entry per request entry, in
// request order, each with its own status and, for a failure, an
// OperationOutcome in response.outcome; the others are written whatever
// one entry's fate. The handler is bundle in transaction.go.
// See https://hl7.org/fhir/R4/http.html#batch.
// Statuses: 200 with the batch-response Bundle; 400 not a Bundle or a
// malformed Bundle; 413 too many entries or too large a body; 415.

import (
	"errors"
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// failedEntry is the response entry of a batch entry that failed: its
// status and an OperationOutcome, by the same table as whole responses
// (errors.go). An internal error gets a fixed message; its details go to
// the log.
func (s *Server) failedEntry(c *gin.Context, err error) fhir.BundleEntry {
	status := statusOf(err)
	var fe *fhir.Error
	if status == http.StatusInternalServerError || !errors.As(err, &fe) {
		id := requestIDOf(c)
		s.log.Error("internal error in batch entry", "request_id", id, "route", c.FullPath(), "error", err)
		fe = fhir.Errorf(fhir.IssueException, "internal server error; quote request id %s when reporting it", id)
		status = http.StatusInternalServerError
	}
	s.logStorageFull(c, status)
	oo, merr := s.codec.MarshalMessage(fhir.Outcome(outcomeIssues(status, fe)))
	if merr != nil {
		s.log.Error("marshal OperationOutcome", "request_id", requestIDOf(c), "error", merr)
		oo = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return fhir.BundleEntry{Response: &fhir.BundleResponse{Status: statusLine(status), Outcome: oo}}
}
