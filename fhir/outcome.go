package fhir

import (
	"strings"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	oopb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/operation_outcome_go_proto"
)

// Outcome returns the issues as an OperationOutcome resource.
// See https://hl7.org/fhir/R4/operationoutcome.html.
func Outcome(issues []Issue) *oopb.OperationOutcome {
	oo := &oopb.OperationOutcome{}
	for _, is := range issues {
		pi := &oopb.OperationOutcome_Issue{
			Severity: &oopb.OperationOutcome_Issue_SeverityCode{Value: cpb.IssueSeverityCode_Value(cpb.IssueSeverityCode_Value_value[enumName(string(is.Severity))])},
			Code:     &oopb.OperationOutcome_Issue_CodeType{Value: cpb.IssueTypeCode_Value(cpb.IssueTypeCode_Value_value[enumName(string(is.Code))])},
		}
		if pi.Severity.Value == cpb.IssueSeverityCode_INVALID_UNINITIALIZED {
			pi.Severity.Value = cpb.IssueSeverityCode_ERROR
		}
		if pi.Code.Value == cpb.IssueTypeCode_INVALID_UNINITIALIZED {
			pi.Code.Value = cpb.IssueTypeCode_EXCEPTION
		}
		if is.Diagnostics != "" {
			pi.Diagnostics = &dtpb.String{Value: is.Diagnostics}
		}
		if d := is.Details; d.Code != "" {
			c := &dtpb.Coding{Code: &dtpb.Code{Value: d.Code}}
			if d.System != "" {
				c.System = &dtpb.Uri{Value: d.System}
			}
			if d.Display != "" {
				c.Display = &dtpb.String{Value: d.Display}
			}
			pi.Details = &dtpb.CodeableConcept{Coding: []*dtpb.Coding{c}}
		}
		for _, e := range is.Expression {
			pi.Expression = append(pi.Expression, &dtpb.String{Value: e})
		}
		oo.Issue = append(oo.Issue, pi)
	}
	return oo
}

// enumName turns a FHIR code such as "not-found" into the google/fhir enum
// value name "NOT_FOUND".
func enumName(code string) string {
	return strings.ToUpper(strings.ReplaceAll(code, "-", "_"))
}
