package server

// search answers the search interactions with a searchset Bundle:
//
//	GET  [base]/[type]?params        POST [base]/[type]/_search (form body)
//	GET  [base]?params               POST [base]/_search        (system, with _type)
//	GET  [base]/[compartment]/[id]/[type]?params                (compartment)
//
// POST with an application/x-www-form-urlencoded body is the form to use for
// NHS numbers, which must not appear in URLs that proxies log; the paging
// links never carry search values either: they hold one opaque, sealed
// _cursor (see cursor.go). Unknown or unsupported parameters are ignored and
// reported in an OperationOutcome entry (search.mode = outcome), or refused
// with 400 under Prefer: handling=strict.
// See https://hl7.org/fhir/R4/search.html and https://hl7.org/fhir/R4/http.html#search.
// Statuses: 200; 400 malformed value, unknown parameter (strict), bad
// cursor; 404 unknown type or compartment; 415 a POST body that is not a form.

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// serverParams are handled by the server on every interaction, not by the
// search parser, and are not part of a search's identity.
var serverParams = []string{"_format", "_pretty", "_cursor"}

func (s *Server) searchType(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	s.search(c, typ, nil)
}

func (s *Server) searchSystem(c *gin.Context) { s.search(c, "", nil) }

// searchCompartment answers GET [base]/[compartment]/[id]/[type].
// See https://hl7.org/fhir/R4/compartmentdefinition.html.
func (s *Server) searchCompartment(c *gin.Context) {
	ctype, ok := s.resourceType(c)
	if !ok {
		return
	}
	id, typ := c.Param("id"), c.Param("ctype")
	if !fhir.IsCompartmentType(ctype) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s is not a compartment type (Patient, Encounter, RelatedPerson, Practitioner, Device)", ctype))
		return
	}
	if !fhir.ValidID(id) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s has no resource with that id", ctype))
		return
	}
	if typ == "*" {
		s.fail(c, fhir.Errorf(fhir.IssueNotSupported, "a search of all types in a compartment (%s/[id]/*) is not supported; name the type", ctype))
		return
	}
	if !fhir.IsResourceType(typ) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%q is not a FHIR R4 resource type served here", safeToken(typ)))
		return
	}
	if len(fhir.CompartmentParams(ctype, typ)) == 0 && typ != ctype {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s resources are not in the %s compartment", typ, ctype))
		return
	}
	s.search(c, typ, &fhir.CompartmentRef{Type: ctype, ID: id})
}

// searchParams returns the request's search parameters: the URL's, plus a
// POST's form body.
func (s *Server) searchParams(c *gin.Context) (url.Values, error) {
	params := c.Request.URL.Query()
	if c.Request.Method != http.MethodPost {
		return params, nil
	}
	body, err := s.readBody(c)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return params, nil
	}
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt != mediaForm {
		return nil, &statusError{http.StatusUnsupportedMediaType, fhir.Errorf(fhir.IssueNotSupported, "a POST to _search takes its parameters as %s", mediaForm)}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fhir.Errorf(fhir.IssueInvalid, "the _search form body is not valid %s", mediaForm)
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, nil
}

const mediaForm = "application/x-www-form-urlencoded"

func (s *Server) search(c *gin.Context, typ string, comp *fhir.CompartmentRef) {
	if err := s.catchUpAudit(c, typ); err != nil {
		s.failProjection(c, err)
		return
	}
	params, err := s.searchParams(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var cursor fhir.Cursor
	var backward bool
	if v := params.Get("_cursor"); v != "" {
		st, q, err := s.cursors.open(v)
		if err != nil {
			s.fail(c, err)
			return
		}
		if st.Type != typ {
			s.fail(c, errBadCursor)
			return
		}
		if st.Compartment != "" {
			ct, id, _ := strings.Cut(st.Compartment, "/")
			comp = &fhir.CompartmentRef{Type: ct, ID: id}
		}
		params, cursor, backward = q, st.Cursor, st.Backward
	}
	for _, k := range serverParams {
		delete(params, k)
	}
	if typ == "AuditEvent" {
		params = accessHistoryParams(principalOf(c.Request.Context()), params)
	}
	// The audit record keeps the search as run (a paging link's is sealed
	// in its cursor), NHS numbers included.
	encoded := params.Encode()
	auditEventOf(c.Request.Context()).setQuery(encoded)
	base := s.baseURL(c)
	q, err := fhir.ParseSearch(typ, params, fhir.SearchOptions{
		Registry:     s.registry,
		Strict:       preferHandling(c) == "strict",
		DefaultCount: s.cfg.DefaultCount,
		MaxCount:     s.cfg.MaxCount,
		BaseURL:      base,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	q.Compartment = comp
	lk, err := s.cpisSearch(c.Request.Context(), q)
	if err != nil {
		s.fail(c, err)
		return
	}
	if q.Summary == fhir.SummaryCount {
		q.Count, q.Total = 0, fhir.TotalAccurate
	}
	page, err := s.storeFor(c.Request.Context()).Search(c.Request.Context(), q, cursor, backward)
	if err != nil {
		s.fail(c, err)
		return
	}
	counted, err := s.countedRecords(c.Request.Context(), unscheduledViewer(c), q, page)
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.noteAccess(c, seenIn(lk, counted)); err != nil {
		s.fail(c, err)
		return
	}

	// The search as understood: the parameters less those ignored.
	st := pageState{Type: typ, Query: encoded}
	if len(q.Ignored) > 0 {
		used := url.Values{}
		for k, vs := range params {
			if !ignored(q.Ignored, k) {
				used[k] = vs
			}
		}
		st.Query = used.Encode()
	}
	if comp != nil {
		st.Compartment = comp.Type + "/" + comp.ID
	}
	linkBase := base
	if typ != "" {
		linkBase += "/" + typ
	}
	link := func(rel string, cur fhir.Cursor, back bool) fhir.BundleLink {
		p := st
		p.Cursor, p.Backward = cur, back
		return fhir.BundleLink{Relation: rel, URL: linkBase + "?_cursor=" + s.cursors.seal(p)}
	}

	b := fhir.NewBundle("searchset")
	b.Meta = &fhir.BundleMeta{LastUpdated: fhir.FormatInstant(s.cfg.Now())}
	if page.Total >= 0 {
		total := page.Total
		b.Total = &total
	}
	b.Link = append(b.Link, link("self", cursor, backward))
	if cursor != nil {
		b.Link = append(b.Link, link("first", nil, false))
	}
	if page.Prev != nil {
		b.Link = append(b.Link, link("previous", page.Prev, true))
	}
	if page.Next != nil {
		b.Link = append(b.Link, link("next", page.Next, false))
	}
	b.Entry = make([]fhir.BundleEntry, 0, len(page.Matches)+len(page.Included)+1)
	for _, set := range []struct {
		mode string
		rs   []*fhir.Resource
	}{{"match", page.Matches}, {"include", page.Included}} {
		for _, r := range set.rs {
			body, err := fhir.Subset(r.Type, r.JSON, q.Summary, q.Elements)
			if err != nil {
				s.fail(c, err)
				return
			}
			b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + r.Ref(), Resource: body, Search: &fhir.BundleSearch{Mode: set.mode}})
		}
	}
	oo, err := s.searchOutcome(lk, q, page)
	if err != nil {
		s.fail(c, err)
		return
	}
	if oo != nil {
		b.Entry = append(b.Entry, fhir.BundleEntry{Resource: oo, Search: &fhir.BundleSearch{Mode: "outcome"}})
	}
	out, err := b.JSON()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}

// ignored reports whether the query key (name[:modifier]) is one the parser
// ignored.
func ignored(list []string, key string) bool {
	for _, k := range list {
		if k == key {
			return true
		}
	}
	return false
}

// preferHandling returns the handling preference of the Prefer header:
// "strict" or "lenient" (the default).
// See https://hl7.org/fhir/R4/search.html#errors.
func preferHandling(c *gin.Context) string {
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.FieldsFunc(h, func(r rune) bool { return r == ';' || r == ',' }) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "handling="); ok && strings.Trim(v, `"`) == "strict" {
				return "strict"
			}
		}
	}
	return "lenient"
}

// outcomeJSON returns the OperationOutcome of issues as JSON. The few fixed
// outcomes of lookups (no record held, superseded number) are marshalled
// once and kept (cache), which saves about 5 µs on each lookup of a child
// with no record; outcomes naming client input are not kept.
// searchOutcome is the OperationOutcome a searchset carries as its last
// entry: what the CP-IS lookup lk tells (lookupIssues) and the parameters
// that were ignored; nil when there is nothing to tell.
func (s *Server) searchOutcome(lk *lookup, q *fhir.Search, page *fhir.SearchPage) (json.RawMessage, error) {
	issues := lookupIssues(lk, len(page.Matches))
	if len(q.Ignored) > 0 {
		issues = append(issues, fhir.Issue{
			Severity:    fhir.SeverityWarning,
			Code:        fhir.IssueNotSupported,
			Diagnostics: "these parameters are unknown or not supported here and were ignored: " + strings.Join(q.Ignored, ", "),
		})
	}
	if len(issues) == 0 {
		return nil, nil
	}
	return s.outcomeJSON(issues, len(q.Ignored) == 0)
}

func (s *Server) outcomeJSON(issues []fhir.Issue, cache bool) (json.RawMessage, error) {
	var key string
	if cache {
		var b strings.Builder
		for _, is := range issues {
			b.WriteString(string(is.Severity) + "\x00" + string(is.Code) + "\x00" + is.Diagnostics + "\x00")
		}
		key = b.String()
		if v, ok := s.outcomes.Load(key); ok {
			return v.([]byte), nil
		}
	}
	oo, err := s.codec.MarshalMessage(fhir.Outcome(issues))
	if err != nil {
		return nil, err
	}
	if cache {
		s.outcomes.Store(key, oo)
	}
	return oo, nil
}
