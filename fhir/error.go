package fhir

import (
	"errors"
	"fmt"
)

// IssueType is an OperationOutcome issue type code.
// See https://hl7.org/fhir/R4/valueset-issue-type.html.
type IssueType string

// The issue types this server reports.
const (
	IssueInvalid       IssueType = "invalid"
	IssueStructure     IssueType = "structure"
	IssueRequired      IssueType = "required"
	IssueValue         IssueType = "value"
	IssueInvariant     IssueType = "invariant"
	IssueSecurity      IssueType = "security"
	IssueLogin         IssueType = "login"
	IssueForbidden     IssueType = "forbidden"
	IssueNotSupported  IssueType = "not-supported"
	IssueDuplicate     IssueType = "duplicate"
	IssueNotFound      IssueType = "not-found"
	IssueDeleted       IssueType = "deleted"
	IssueTooLong       IssueType = "too-long"
	IssueBusinessRule  IssueType = "business-rule"
	IssueConflict      IssueType = "conflict"
	IssueProcessing    IssueType = "processing"
	IssueTooCostly     IssueType = "too-costly"
	IssueException     IssueType = "exception"
	IssueInformational IssueType = "informational"
	IssueTransient     IssueType = "transient"
	IssueThrottled     IssueType = "throttled"
	IssueNoStore       IssueType = "no-store"
)

// Severity is an OperationOutcome issue severity.
type Severity string

// The issue severities.
const (
	SeverityFatal       Severity = "fatal"
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// Issue is one OperationOutcome issue. Diagnostics must be safe to show to
// the client: it never holds resource content such as names or NHS numbers.
type Issue struct {
	Severity    Severity
	Code        IssueType
	Diagnostics string
	// Expression holds FHIRPath expressions naming the elements concerned.
	Expression []string
	// Details, when its Code is set, is the coded reason of the issue,
	// written as issue.details.coding (such as a UK Core Spine error code).
	// See https://hl7.org/fhir/R4/operationoutcome-definitions.html#OperationOutcome.issue.details.
	Details Coding
}

// Coding is a code from a code system.
// See https://hl7.org/fhir/R4/datatypes.html#Coding.
type Coding struct {
	System, Code, Display string
}

// Error is an error with an OperationOutcome issue type and a message that
// is safe to show to clients. Errors without a code are internal failures:
// the client sees a fixed message and the details go to the log only.
type Error struct {
	Code    IssueType
	Message string
	// Issues are extra issues, such as one per invalid element; when empty
	// the error is reported as a single issue carrying Message.
	Issues []Issue
	err    error
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code IssueType, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel the error was built from, if any.
func (e *Error) Unwrap() error { return e.err }

// OutcomeIssues returns the issues to report for e.
func (e *Error) OutcomeIssues() []Issue {
	if len(e.Issues) > 0 {
		return e.Issues
	}
	return []Issue{{Severity: SeverityError, Code: e.Code, Diagnostics: e.Message}}
}

// ErrVersionConflict is wrapped by errors that report a version-aware
// update or delete whose If-Match did not name the current version (412).
var ErrVersionConflict = errors.New("fhir: version conflict")

// ErrStorageFull is wrapped by the error of a write that the store could
// not make because its disk (or the size it is allowed) is full. Nothing
// of the write is kept, and the server answers 507 Insufficient Storage
// (https://www.rfc-editor.org/rfc/rfc4918#section-11.5) with issue type
// no-store.
var ErrStorageFull = errors.New("fhir: storage full")

// StorageFull returns the *Error of a write refused because the store's
// storage is full; it wraps ErrStorageFull.
func StorageFull() *Error {
	return &Error{Code: IssueNoStore, Message: "the server's storage is full: nothing was written; try again later", err: ErrStorageFull}
}

// ErrUnprocessable is wrapped by errors that report content which is well
// formed but cannot be processed (HTTP 422), such as a patch whose result is
// not a valid resource. See https://hl7.org/fhir/R4/http.html#patch.
var ErrUnprocessable = errors.New("fhir: unprocessable")

// InvalidPatchResult reports a patch whose result the codec refuses: err's
// issues, which name the elements, wrapped with ErrUnprocessable (422).
// Errors that are not an *Error are returned as they are.
func InvalidPatchResult(err error) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return err
	}
	return &Error{Code: fe.Code, Message: "the patch would make the resource invalid: " + fe.Message,
		Issues: fe.Issues, err: ErrUnprocessable}
}

// VersionConflictf returns an *Error that wraps ErrVersionConflict.
func VersionConflictf(format string, args ...any) *Error {
	e := Errorf(IssueConflict, format, args...)
	e.err = ErrVersionConflict
	return e
}

// ErrorCode returns the issue type of err, or IssueException when err is
// not an *Error.
func ErrorCode(err error) IssueType {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return IssueException
}
