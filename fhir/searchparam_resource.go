package fhir

import (
	"encoding/json"
	"regexp"
	"slices"

	"github.com/cpis-fhir/cpis/fhir/fhirpath"
)

// searchParameterJSON is the part of a SearchParameter resource that
// defines a parameter.
type searchParameterJSON struct {
	URL        string   `json:"url"`
	Status     string   `json:"status"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       string   `json:"type"`
	Expression string   `json:"expression"`
	Target     []string `json:"target"`
	Component  []any    `json:"component"`
}

var codePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)

// SearchParamFromResource reads a SearchParameter resource (canonical JSON)
// as a parameter a SearchRegistry can take, with the resource types it
// applies to. active is false, with no error, for a SearchParameter whose
// status is not active (it defines nothing to search). Errors are
// IssueBusinessRule naming the element when the server cannot use the
// definition: no url or code, a code starting with "_" or holding other
// characters, an unknown base type, a composite or special type, a missing
// or unparsable expression, an unknown target type.
// See https://hl7.org/fhir/R4/searchparameter.html.
func SearchParamFromResource(body []byte) (p *SearchParam, base []string, active bool, err error) {
	var sp searchParameterJSON
	if err := json.Unmarshal(body, &sp); err != nil {
		return nil, nil, false, Errorf(IssueInvalid, "the SearchParameter is not valid JSON")
	}
	if sp.Status != "active" {
		return nil, nil, false, nil
	}
	bad := func(expr, msg string) (*SearchParam, []string, bool, error) {
		return nil, nil, false, &Error{Code: IssueBusinessRule, Message: "this server cannot search with the SearchParameter: " + msg,
			Issues: []Issue{{Severity: SeverityError, Code: IssueBusinessRule, Diagnostics: msg, Expression: []string{"SearchParameter." + expr}}}}
	}
	switch {
	case sp.URL == "":
		return bad("url", "an active SearchParameter needs a url")
	case !codePattern.MatchString(sp.Code):
		return bad("code", "code must start with a letter and hold only letters, digits, '-', '_' and '.'")
	case len(sp.Base) == 0:
		return bad("base", "base names no resource type")
	case sp.Expression == "":
		return bad("expression", "an expression is needed to index the parameter")
	}
	for _, b := range sp.Base {
		if !IsResourceType(b) {
			return bad("base", "base "+b+" is not an R4 resource type")
		}
	}
	t := SearchParamType(sp.Type)
	switch t {
	case SearchParamNumber, SearchParamDate, SearchParamString, SearchParamToken, SearchParamReference, SearchParamQuantity, SearchParamURI:
	default:
		return bad("type", "type "+sp.Type+" is not supported for parameters added at run time")
	}
	if _, err := fhirpath.Parse(sp.Expression); err != nil {
		return bad("expression", "the expression is not FHIRPath this server can evaluate")
	}
	targets := slices.Sorted(slices.Values(sp.Target))
	for _, tg := range targets {
		if !IsResourceType(tg) {
			return bad("target", "target "+tg+" is not an R4 resource type")
		}
	}
	if t == SearchParamReference && len(targets) == 0 {
		targets = slices.Clone(ResourceTypes)
	}
	if t != SearchParamReference {
		targets = nil
	}
	return &SearchParam{
		Name: sp.Code, URL: sp.URL, Type: t, Expression: sp.Expression, XPathUsage: "normal",
		Targets: targets, MultipleOr: true, MultipleAnd: true,
	}, slices.Clone(sp.Base), true, nil
}
