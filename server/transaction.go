package server

// bundle answers POST [base] with a Bundle of type transaction or batch.
// See https://hl7.org/fhir/R4/http.html#transaction.
//
// A transaction is all or nothing, in one store transaction (see
// fhir.Service.Bundle): its answer is a transaction-response Bundle with
// one entry per request entry, in request order, each with its status,
// location, etag and lastModified (and the resource, unless
// Prefer: return=minimal). When an entry fails, nothing is written and the
// answer is the failure's status with an OperationOutcome naming the entry
// (index and fullUrl) and the reason. A batch is answered by batch.go.
// Statuses: 200 with the response Bundle; 400 not a Bundle, not a batch or
// transaction, a malformed entry; 404/409/410/412/422 as the failing entry
// of a transaction; 413 too many entries or too large a body; 415.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

func (s *Server) bundle(c *gin.Context) {
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	// The Bundle is parsed once, with its entries; the engine uses the
	// entries' protos as they are. Parsing holds one of the slots that
	// leave a processor for the store's writer (fhir.HoldPrepSlot).
	release, err := fhir.HoldPrepSlot(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	p, err := s.codec.Parse(body)
	release()
	if err != nil {
		s.fail(c, err)
		return
	}
	if p.Type != "Bundle" {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "POST to the FHIR base takes a batch or transaction Bundle, not a %s", p.Type))
		return
	}
	base := s.baseURL(c)
	seen := &seenLog{}
	res, err := s.serviceFor(c.Request.Context()).Bundle(c.Request.Context(), p, fhir.BundleOptions{BaseURL: base, Minimal: preferReturn(c) == "minimal",
		Check: s.checkEntry, SearchEntry: s.bundleSearch(c, seen)})
	if err != nil {
		s.fail(c, err)
		return
	}
	read, given := s.checkReadEntries(c, p, res)
	auditEventOf(c.Request.Context()).returned(read...)
	seen.add(seenRecords{records: given})
	if err := s.noteAccess(c, seen.reads...); err != nil {
		s.fail(c, err)
		return
	}
	out := fhir.NewBundle(res.Type)
	out.Entry = make([]fhir.BundleEntry, len(res.Entries))
	for i, e := range res.Entries {
		out.Entry[i] = s.responseEntry(c, base, e)
	}
	for i := range out.Entry {
		if out.Entry[i].Response.Status[0] != '2' {
			continue
		}
		if r := res.Entries[i].Version; r != nil && r.Type == "SearchParameter" && !r.Deleted() {
			s.searchParameterWritten(r)
		}
	}
	for i := range out.Entry {
		if oo := s.flaggedOutcome(c, res.Entries[i].Version); oo != nil && out.Entry[i].Response.Status[0] == '2' {
			out.Entry[i].Response.Outcome = oo
		}
	}
	warnFlagged(c)
	b, err := out.JSON()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}

// responseEntry is the Bundle.entry of one result: its response and,
// when there is one, the resource.
func (s *Server) responseEntry(c *gin.Context, base string, e fhir.EntryResult) fhir.BundleEntry {
	if e.Err != nil {
		return s.failedEntry(c, e.Err)
	}
	be := fhir.BundleEntry{Resource: e.Body, Response: &fhir.BundleResponse{Status: statusLine(e.Status)}}
	if r := e.Version; r != nil {
		if !r.Deleted() {
			be.FullURL = base + "/" + r.Ref()
		}
		if e.Status == http.StatusCreated || e.Status == http.StatusOK {
			be.Response.Location = base + "/" + r.VersionRef()
		}
		be.Response.Etag = r.ETag()
		be.Response.LastModified = fhir.FormatInstant(r.LastUpdated)
	}
	return be
}

// checkReadEntries puts the read entries (GET and HEAD of Type/id and
// Type/id/_history/n) of a Bundle through the role policy, as the same
// read outside a Bundle: an entry whose resource the principal may not see
// answers 404 (or 403) instead. Searches in entries were narrowed inside
// the store already; writes were checked as they were put. It returns
// the versions the read entries let the principal know of (for the audit
// record: the reads inside a transaction do not pass the audited store)
// and those that GET entries answered with their content (for the access
// history).
func (s *Server) checkReadEntries(c *gin.Context, p *fhir.Parsed, res *fhir.BundleResult) (read, given []*fhir.Resource) {
	b, ok := p.Message().(*bcrpb.Bundle)
	if !ok {
		return nil, nil
	}
	pr := principalOf(c.Request.Context())
	for i, be := range b.GetEntry() {
		if i >= len(res.Entries) {
			break
		}
		m := be.GetRequest().GetMethod().GetValue()
		e := &res.Entries[i]
		if (m != cpb.HTTPVerbCode_GET && m != cpb.HTTPVerbCode_HEAD) || e.Err != nil || e.Version == nil {
			continue
		}
		if err := s.policy.CanRead(pr, e.Version, nil); err != nil {
			*e = fhir.EntryResult{Err: err}
			continue
		}
		read = append(read, e.Version)
		if m == cpb.HTTPVerbCode_GET && e.Status == http.StatusOK {
			given = append(given, e.Version)
		}
	}
	return read, given
}

// bundleSearch returns the SearchEntry hook of the Bundle request c: a
// search entry is read as the search interaction reads a search (the
// national access-history form, NHS number checks, CP-IS lookups and the
// outcome entry they carry), and what each finds goes in seen for the
// access history.
func (s *Server) bundleSearch(c *gin.Context, seen *seenLog) func(typ string, params url.Values, base string) (*fhir.Search, func(*fhir.SearchPage) (json.RawMessage, error), error) {
	ctx := c.Request.Context()
	p, viewer := principalOf(ctx), unscheduledViewer(c)
	return func(typ string, params url.Values, base string) (*fhir.Search, func(*fhir.SearchPage) (json.RawMessage, error), error) {
		if typ == "AuditEvent" {
			params = accessHistoryParams(p, params)
		}
		q, err := fhir.ParseSearch(typ, params, fhir.SearchOptions{Registry: s.registry, DefaultCount: s.cfg.DefaultCount, MaxCount: s.cfg.MaxCount, BaseURL: base})
		if err != nil {
			return nil, nil, err
		}
		lk, err := s.cpisSearch(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		return q, func(page *fhir.SearchPage) (json.RawMessage, error) {
			counted, err := s.countedRecords(ctx, viewer, q, page)
			if err != nil {
				return nil, err
			}
			if viewer != nil {
				seen.add(seenIn(lk, counted))
			}
			return s.searchOutcome(lk, q, page)
		}, nil
	}
}

// seenLog gathers what the entries of a Bundle read. It is safe for
// concurrent use.
type seenLog struct {
	mu    sync.Mutex
	reads []seenRecords
}

func (l *seenLog) add(sr seenRecords) {
	if len(sr.records) == 0 {
		return
	}
	l.mu.Lock()
	l.reads = append(l.reads, sr)
	l.mu.Unlock()
}

// statusLine is a Bundle response status: the code and its reason phrase.
func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// checkEntry checks a resource a Bundle entry writes as the single
// interactions do: a SearchParameter must be one the server can use (422
// otherwise, before anything is stored).
func (s *Server) checkEntry(p *fhir.Parsed) error {
	if p.Type != "SearchParameter" {
		return nil
	}
	b, err := s.codec.Marshal(p)
	if err != nil {
		return err
	}
	return s.checkSearchParameter(b)
}
