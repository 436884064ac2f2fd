package server

// history answers GET [base]/_history, [base]/[type]/_history and
// [base]/[type]/[id]/_history with a history Bundle, newest first.
// Parameters: _since (instant), _count (1 to 1000, default 20); pages are
// linked with an opaque cursor. See https://hl7.org/fhir/R4/http.html#history.
// Statuses: 200; 400 malformed _since or _count, unsupported _at; 404 unknown
// type or (instance history) unknown id.

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

const (
	defaultCount = 20
	maxCount     = 1000
)

func (s *Server) historySystem(c *gin.Context) { s.history(c, "", "") }

func (s *Server) historyType(c *gin.Context) {
	if typ, ok := s.resourceType(c); ok {
		s.history(c, typ, "")
	}
}

func (s *Server) historyInstance(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%s has no resource with that id", typ))
		return
	}
	if _, err := s.storeFor(c.Request.Context()).Read(c.Request.Context(), typ, id); err != nil {
		s.fail(c, err)
		return
	}
	s.history(c, typ, id)
}

func (s *Server) history(c *gin.Context, typ, id string) {
	if err := s.catchUpAudit(c, typ); err != nil {
		s.failProjection(c, err)
		return
	}
	q := fhir.HistoryQuery{Type: typ, ID: id, Count: defaultCount}
	params := c.Request.URL.Query()
	if params.Has("_at") {
		s.fail(c, fhir.Errorf(fhir.IssueNotSupported, "the _at parameter of history is not supported"))
		return
	}
	if v := params.Get("_since"); v != "" {
		t, err := parseInstant(v)
		if err != nil {
			s.fail(c, fhir.Errorf(fhir.IssueInvalid, "_since must be a FHIR instant such as 2026-01-31T09:00:00Z"))
			return
		}
		q.Since = t
	}
	if v := params.Get("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(c, fhir.Errorf(fhir.IssueInvalid, "_count must be a whole number from 0 to %d", maxCount))
			return
		}
		q.Count = min(n, maxCount)
	}
	if v := params.Get("_cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			s.fail(c, fhir.Errorf(fhir.IssueInvalid, "_cursor is not a cursor this server made; follow the Bundle's links"))
			return
		}
		q.Before = n
	}
	if q.Count == 0 {
		q.Count = 1 // a _count=0 page still says whether there is more
	}
	page, err := s.serviceFor(c.Request.Context()).History(c.Request.Context(), q)
	if err != nil {
		s.fail(c, err)
		return
	}
	if params.Get("_count") == "0" {
		page.Versions, page.Next = nil, 0
	}
	if err := s.noteAccess(c, seenRecords{records: page.Versions}); err != nil {
		s.fail(c, err)
		return
	}
	base := s.baseURL(c)
	b := fhir.NewBundle("history")
	b.Meta = &fhir.BundleMeta{LastUpdated: fhir.FormatInstant(s.cfg.Now())}
	self := base + c.Request.URL.Path[len(FHIRBase):]
	link := func(rel string, cursor int64) fhir.BundleLink {
		v := url.Values{}
		for _, k := range []string{"_since", "_count"} {
			if params.Has(k) {
				v.Set(k, params.Get(k))
			}
		}
		if cursor > 0 {
			v.Set("_cursor", strconv.FormatInt(cursor, 10))
		}
		if len(v) == 0 {
			return fhir.BundleLink{Relation: rel, URL: self}
		}
		return fhir.BundleLink{Relation: rel, URL: self + "?" + v.Encode()}
	}
	b.Link = append(b.Link, link("self", q.Before))
	if q.Before > 0 {
		b.Link = append(b.Link, link("first", 0))
	}
	if page.Next > 0 {
		b.Link = append(b.Link, link("next", page.Next))
	}
	b.Entry = make([]fhir.BundleEntry, 0, len(page.Versions))
	for _, r := range page.Versions {
		b.Entry = append(b.Entry, historyEntry(base, r))
	}
	out, err := b.JSON()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}

func historyEntry(base string, r *fhir.Resource) fhir.BundleEntry {
	e := fhir.BundleEntry{
		FullURL:  base + "/" + r.Ref(),
		Resource: r.JSON,
		Request:  &fhir.BundleRequest{Method: string(r.Method), URL: r.Ref()},
		Response: &fhir.BundleResponse{Status: "200 OK", Etag: r.ETag(), LastModified: fhir.FormatInstant(r.LastUpdated)},
	}
	switch {
	case r.Method == fhir.MethodCreate:
		e.Request.URL = r.Type
		e.Response.Status = "201 Created"
	case r.Deleted():
		e.Response.Status = "204 No Content"
	case r.VersionID == 1:
		e.Response.Status = "201 Created"
	}
	return e
}

// parseInstant parses a FHIR instant or dateTime; a value without a time
// zone is taken as UTC, and a date alone as its first moment.
func parseInstant(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fhir.Errorf(fhir.IssueInvalid, "not an instant")
}
