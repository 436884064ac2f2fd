package server

// The national CP-IS lookup API on the FHIR search (NHS England's CP-IS API
// guides, https://simplifier.net/guide/child-protection---information-sharing--cp-is--api-consumer-impl;
// README "CP-IS workflow"):
//
//   - CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}
//     (also Flag and CarePlan, patient: or subject:) finds the records of
//     that child whether the record names the child by NHS number
//     (Reference.identifier, the national shape) or by a literal reference
//     to the child's Patient: the filter is run as "identifier OR chained
//     Patient.identifier".
//   - A superseded NHS number (its Patient has link type replaced-by) is
//     looked up as its replacement's, and the answer says so.
//   - An answer with no record says that no CP-IS record is held and that
//     this does not mean the child is not at risk (DOMAIN.md rule 5).
//   - Headers: IsUnscheduledAccessEvent true|false (missing = true; another
//     value 400 PRECONDITION_FAILED), TraceID echoed; an NHS number that
//     fails its check digit in a search is 400 INVALID_SEARCH_DATA; a
//     refused request 403 ACCESS_DENIED (errors.go), each with the Spine
//     code in issue.details.

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/terminology"
	"github.com/gin-gonic/gin"
)

// cpisProfileBase is the canonical base of the CP-IS StructureDefinitions.
const cpisProfileBase = "https://fhir.cpis-fhir.org/StructureDefinition/"

func profileURL(id string) string { return cpisProfileBase + id }

// The Spine error codes of the national API.
const (
	spineInvalidSearchData  = "INVALID_SEARCH_DATA"
	spinePreconditionFailed = "PRECONDITION_FAILED"
	spineAccessDenied       = "ACCESS_DENIED"
)

func spineCode(code, display string) fhir.Coding {
	return fhir.Coding{System: terminology.SystemSpineErrorOrWarningCode, Code: code, Display: display}
}

// lookupTypes are the types of CP-IS records a lookup by NHS number finds.
var lookupTypes = map[string]bool{"Flag": true, "CarePlan": true, "CareTeam": true}

// cpisNotes gathers, while a request is served, what the CP-IS workflow
// tells its answer: the new Encounters whose child holds a current
// record. It is safe for concurrent use (batch entries run in turn, but
// the store's writer calls the hook).
type cpisNotes struct {
	mu  sync.Mutex
	enc map[string]bool // Encounter/id
}

func (n *cpisNotes) flagged(ref string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.enc == nil {
		n.enc = map[string]bool{}
	}
	n.enc[ref] = true
	n.mu.Unlock()
}

func (n *cpisNotes) isFlagged(ref string) bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.enc[ref]
}

func (n *cpisNotes) any() bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.enc) > 0
}

type cpisKey struct{}

func notesOf(ctx context.Context) *cpisNotes {
	n, _ := ctx.Value(cpisKey{}).(*cpisNotes)
	return n
}

// traceID is a TraceID value the server echoes: a UUID or another short
// token; anything else is not echoed.
var traceID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// echoTraceID is the first middleware of the FHIR API: it echoes the
// national API's TraceID on every answer, refusals of authentication and
// rate limits included.
func echoTraceID(c *gin.Context) {
	if t := c.GetHeader("TraceID"); t != "" && traceID.MatchString(t) {
		c.Header("TraceID", t)
	}
	c.Next()
}

// cpisRequest is the middleware of the national API's headers: it refuses
// an IsUnscheduledAccessEvent that is neither true nor false, and gives
// the request its cpisNotes.
func (s *Server) cpisRequest(c *gin.Context) {
	if vs := c.Request.Header.Values("IsUnscheduledAccessEvent"); len(vs) > 0 {
		if _, ok := unscheduledHeader(c); !ok {
			s.fail(c, &fhir.Error{Code: fhir.IssueInvalid, Message: "the IsUnscheduledAccessEvent header must be true or false",
				Issues: []fhir.Issue{{Severity: fhir.SeverityError, Code: fhir.IssueInvalid,
					Diagnostics: "the IsUnscheduledAccessEvent header must be true or false (missing means true)",
					Details:     spineCode(spinePreconditionFailed, "Required header parameter(s) are missing or invalid")}}})
			return
		}
	}
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), cpisKey{}, &cpisNotes{}))
	c.Next()
}

// unscheduledHeader reads IsUnscheduledAccessEvent: missing means true;
// ok is false for a value other than true or false.
func unscheduledHeader(c *gin.Context) (unscheduled, ok bool) {
	vs := c.Request.Header.Values("IsUnscheduledAccessEvent")
	if len(vs) == 0 {
		return true, true
	}
	if len(vs) > 1 {
		return false, false
	}
	switch strings.ToLower(strings.TrimSpace(vs[0])) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// checkNHSNumbers refuses a search whose NHS number values (system
// https://fhir.nhs.uk/Id/nhs-number, in any filter or chain) fail the
// check digit: 400 with INVALID_SEARCH_DATA.
func checkNHSNumbers(fs []fhir.Filter) error {
	for i := range fs {
		f := &fs[i]
		for _, v := range f.Values {
			if v.HasSystem && v.System == nhsNumberSystem && v.Code != "" && !profiles.ValidNHSNumber(v.Code) {
				return &fhir.Error{Code: fhir.IssueInvalid, Message: "the NHS number in the search is not valid",
					Issues: []fhir.Issue{{Severity: fhir.SeverityError, Code: fhir.IssueInvalid,
						Diagnostics: "search parameter " + paramName(f) + ": the NHS number is not valid (10 digits with a Modulus 11 check digit)",
						Details:     spineCode(spineInvalidSearchData, "Invalid search data")}}}
			}
		}
		for j := range f.Chain {
			if err := checkNHSNumbers([]fhir.Filter{f.Chain[j].Filter}); err != nil {
				return err
			}
		}
		if f.Has != nil {
			if err := checkNHSNumbers([]fhir.Filter{f.Has.Filter}); err != nil {
				return err
			}
		}
		if err := checkNHSNumbers(f.Any); err != nil {
			return err
		}
	}
	return nil
}

func paramName(f *fhir.Filter) string {
	if f.Param == nil {
		return "(reverse chain)"
	}
	if f.Modifier != "" {
		return f.Param.Name + ":" + f.Modifier
	}
	return f.Param.Name
}

// cpisSearch applies the national API's rules to a parsed search q: an
// NHS number that fails its check digit is refused (checkNHSNumbers) and
// a CP-IS lookup is prepared (cpisLookup, nil when q is not one).
func (s *Server) cpisSearch(ctx context.Context, q *fhir.Search) (*lookup, error) {
	if err := checkNHSNumbers(q.Filters); err != nil {
		return nil, err
	}
	return s.cpisLookup(ctx, q)
}

// lookup is what cpisLookup found out about a CP-IS lookup.
type lookup struct {
	superseded bool
	// nhs is the child's NHS number as looked up (the replacement's, for
	// a superseded number).
	nhs string
}

// cpisLookup prepares q when it is a CP-IS lookup (a search of Flag,
// CarePlan or CareTeam by patient:identifier or subject:identifier with an
// NHS number): each such filter is widened to the identifier OR the
// chained Patient.identifier, and a superseded number is replaced by its
// replacement's. It returns nil when q is not a lookup.
func (s *Server) cpisLookup(ctx context.Context, q *fhir.Search) (*lookup, error) {
	if !lookupTypes[q.Type] {
		return nil, nil
	}
	var lk *lookup
	for i := range q.Filters {
		f := &q.Filters[i]
		if f.Param == nil || f.Param.Type != fhir.SearchParamReference || f.Modifier != "identifier" || len(f.Values) != 1 ||
			(f.Param.Name != "patient" && f.Param.Name != "subject") {
			continue
		}
		v := f.Values[0]
		if !v.HasSystem || v.System != nhsNumberSystem || v.Code == "" {
			continue
		}
		if lk == nil {
			lk = &lookup{}
		}
		nhs, err := s.replacement(ctx, v.Code)
		if err != nil {
			return nil, err
		}
		if nhs != v.Code {
			lk.superseded = true
			v.Code = nhs
		}
		lk.nhs = nhs
		ident, ok := s.registry.Lookup("Patient", "identifier")
		if !ok {
			continue
		}
		direct := fhir.Filter{Param: f.Param, Modifier: "identifier", Values: []fhir.Value{v}}
		chained := fhir.Filter{Param: f.Param, Chain: []fhir.ChainTarget{{Type: "Patient",
			Filter: fhir.Filter{Param: ident, Values: []fhir.Value{{System: nhsNumberSystem, HasSystem: true, Code: v.Code}}}}}}
		*f = fhir.Filter{Any: []fhir.Filter{direct, chained}}
	}
	return lk, nil
}

// identifierSet is a store that tells, without a query, that no resource
// carries an identifier (sqlite.Store).
type identifierSet interface {
	MayHoldIdentifier(typ, code, system, value string) bool
}

// maxSupersession bounds the replaced-by links a lookup follows.
const maxSupersession = 5

// replacement returns the NHS number that replaces nhs (DOMAIN.md rule 7):
// while a current Patient with the number has a link of type replaced-by
// to another Patient (a literal reference, or its NHS number), the
// other's number; nhs itself when it is not superseded.
func (s *Server) replacement(ctx context.Context, nhs string) (string, error) {
	ident, ok := s.registry.Lookup("Patient", "identifier")
	if !ok {
		return nhs, nil
	}
	seen := map[string]bool{nhs: true}
	for range maxSupersession {
		if ids, ok := s.store.(identifierSet); ok && !ids.MayHoldIdentifier("Patient", "identifier", nhsNumberSystem, nhs) {
			return nhs, nil // no Patient has the number (99% of lookups)
		}
		page, err := s.store.Search(ctx, &fhir.Search{Type: "Patient", Count: 2, Total: fhir.TotalNone,
			Filters: []fhir.Filter{{Param: ident, Values: []fhir.Value{{System: nhsNumberSystem, HasSystem: true, Code: nhs}}}}}, nil, false)
		if err != nil {
			return "", err
		}
		next := ""
		for _, r := range page.Matches {
			if n := s.replacedBy(ctx, r); n != "" {
				next = n
				break
			}
		}
		if next == "" || seen[next] {
			return nhs, nil
		}
		seen[next] = true
		nhs = next
	}
	return nhs, nil
}

// replacedBy returns the NHS number of the Patient that r's replaced-by
// link names, or "".
func (s *Server) replacedBy(ctx context.Context, r *fhir.Resource) string {
	if !strings.Contains(string(r.JSON), `"replaced-by"`) {
		return ""
	}
	var p patientRecord
	if json.Unmarshal(r.JSON, &p) != nil {
		return ""
	}
	for _, l := range p.Link {
		if l.Type != "replaced-by" {
			continue
		}
		if n := l.Other.identifier(nhsNumberSystem); n != "" {
			return n
		}
		typ, id, ok := strings.Cut(l.Other.Reference, "/")
		if !ok || typ != "Patient" {
			continue
		}
		o, err := s.store.Read(ctx, typ, id)
		if err != nil || o.Deleted() {
			continue
		}
		var op patientRecord
		if json.Unmarshal(o.JSON, &op) == nil && op.nhs() != "" {
			return op.nhs()
		}
	}
	return ""
}

// lookupIssues are the outcome entry's issues of a lookup's answer.
func lookupIssues(lk *lookup, matches int) []fhir.Issue {
	if lk == nil {
		return nil
	}
	var out []fhir.Issue
	if lk.superseded {
		out = append(out, fhir.Issue{Severity: fhir.SeverityWarning, Code: fhir.IssueInformational,
			Diagnostics: "The NHS number searched for has been superseded (merged or replaced): the records shown are those of the NHS number that replaces it. Update the patient's NHS number from PDS."})
	}
	if matches == 0 {
		out = append(out, fhir.Issue{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational,
			Diagnostics: "No CP-IS record is held for this NHS number. This does not mean that the child is not at risk: " +
				"records can be missing because of matching failures, sensitive records or late uploads. Follow local safeguarding procedures."})
	}
	return out
}

// encounterWarning is the warning an EPR receives when the child of the
// Encounter it posted holds a current CP-IS record: it says to look the
// child up, not what the record is.
const encounterWarning = "CP-IS information is held for the subject of this Encounter: look the child up " +
	"(GET CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS number}) and follow local safeguarding procedures"

func encounterIssue() fhir.Issue {
	return fhir.Issue{Severity: fhir.SeverityWarning, Code: fhir.IssueInformational, Diagnostics: encounterWarning}
}

// warnFlagged sets the Warning header (RFC 9111 5.5 form, code 199) on the
// answer of a write that posted an Encounter of a flagged child.
func warnFlagged(c *gin.Context) {
	if notesOf(c.Request.Context()).any() {
		c.Header("Warning", `199 cpis "`+encounterWarning+`"`)
	}
}

// flaggedOutcome is the OperationOutcome put in a Bundle entry's response
// for an Encounter of a flagged child.
func (s *Server) flaggedOutcome(c *gin.Context, r *fhir.Resource) json.RawMessage {
	if r == nil || r.Type != "Encounter" || !notesOf(c.Request.Context()).isFlagged(r.Ref()) {
		return nil
	}
	b, err := s.codec.MarshalMessage(fhir.Outcome([]fhir.Issue{encounterIssue()}))
	if err != nil {
		return nil
	}
	return b
}
