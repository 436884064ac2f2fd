package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	binpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/binary_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// defaultMaxBundleEntries is the most entries of a Bundle when
// Service.MaxBundleEntries is zero.
const defaultMaxBundleEntries = 10000

// BundleOptions are the per-request settings of Service.Bundle.
type BundleOptions struct {
	// BaseURL is this server's FHIR base: request URLs and references
	// under it are taken as relative.
	BaseURL string
	// Minimal leaves the resources out of the response entries
	// (Prefer: return=minimal).
	Minimal bool
	// Check, when set, is called with each POST and PUT entry's resource
	// before anything is written; its error fails the entry (and so a
	// transaction), named as the entry.
	Check func(p *Parsed) error
	// SearchEntry, when set, makes the search that a search entry
	// (GET Type?query) runs, in place of ParseSearch with the service's
	// registry, so that a server's own search rules apply to entries as to
	// its search interaction. The function it returns, when not nil, is
	// given the page found and returns an OperationOutcome (JSON; nil for
	// none) that the entry's searchset carries as its last entry
	// (search.mode outcome). An error from either fails the entry. In a
	// transaction both run on the store's single writer.
	SearchEntry func(typ string, params url.Values, base string) (*Search, func(*SearchPage) (json.RawMessage, error), error)
}

// BundleResult is the outcome of a batch or transaction Bundle: one entry
// per request entry, in request order.
// See https://hl7.org/fhir/R4/http.html#transaction-response.
type BundleResult struct {
	// Type is "transaction-response" or "batch-response".
	Type    string
	Entries []EntryResult
}

// EntryResult is the outcome of one Bundle entry.
type EntryResult struct {
	// Status is the HTTP status of a success (201, 200, 204, 304); zero
	// when Err is set.
	Status int
	// Version is the version written or read, which gives the response's
	// location, etag and lastModified; nil when there is none.
	Version *Resource
	// Body is the resource or searchset Bundle returned, nil for none.
	Body json.RawMessage
	// Err is the failure of a batch entry; the caller turns it into a
	// status and an OperationOutcome. Transactions never have one: their
	// first failure fails the Bundle.
	Err error
}

// entry is one request entry being processed.
type entry struct {
	index   int
	fullURL string
	method  cpb.HTTPVerbCode_Value
	typ, id string
	vid     int64  // vread version
	query   string // conditional or search query, without '?'
	hasQ    bool
	ifMatch int64
	ifNone  string // ifNoneExist
	ifNoneM int64  // ifNoneMatch version
	ifMod   time.Time
	urlID   string // the id in the request url
	p       *Parsed

	// The plan of a POST or PUT.
	newID   string    // the id a POST (or conditional PUT) creates with
	target  string    // Type/id the entry's resource gets, once known
	noop    bool      // a conditional create that matched: nothing to write
	match   *Resource // the resource it matched
	version int64     // the version written
	status  int       // 201 or 200
	undo    []func()  // undoes the reference rewrites, last first
	conds   []condRef // the conditional references resolved
	pre     *prepared // marshalled and indexed outside the writer

	patchType string // a PATCH's patch media type
	patch     []byte // a Binary's JSON Patch; nil: e.p is the FHIRPath Patch

	out EntryResult
}

// condRef is a conditional reference (Type?query) and the Type/id it was
// resolved to.
type condRef struct{ typ, query, to string }

// Bundle processes a batch or transaction Bundle (p must be a Bundle).
//
// A transaction (https://hl7.org/fhir/R4/http.html#transaction) runs in one
// store transaction (Store.Write): everything it writes shares one commit
// (the same lastUpdated, consecutive Seq), and the first failing entry
// fails the Bundle with an *Error that names the entry (index and fullUrl)
// and the reason, and nothing is written. Entries are processed DELETE,
// then POST, then PUT, then PATCH, then GET and HEAD; reads and searches
// see the transaction's own writes. Before anything is written the fullUrls of
// the POST and PUT entries (urn:uuid:, urn:oid:, absolute or relative) are
// mapped to the Type/id each resource gets, and every Reference that
// names one, wherever it stands (nested elements, extensions, contained
// resources), is rewritten to it; conditional references
// ("Patient?identifier=...") are resolved by a search inside the
// transaction (no match: IssueNotFound; several: ErrMultipleMatches).
// Conditional create (ifNoneExist), update (PUT Type?query), delete
// (DELETE Type?query), patch (PATCH with a Parameters FHIRPath Patch or a
// Binary JSON Patch, on Type/id or Type?query) and ifMatch work as in the
// single interactions.
//
// A batch (https://hl7.org/fhir/R4/http.html#batch) runs each entry on its
// own, in its own store transaction; a failing entry reports its error in
// its EntryResult.Err and the others go on.
//
// Errors: IssueInvalid for a Bundle of another type, an entry without a
// request, a resource whose type differs from its URL's, or two entries
// writing the same resource; IssueNotSupported for a URL the server does
// not take inside Bundles (operations, history, system level);
// IssueTooLong when the Bundle has more than MaxBundleEntries entries.
// Bundle is safe for concurrent use.
func (s *Service) Bundle(ctx context.Context, p *Parsed, opts BundleOptions) (*BundleResult, error) {
	b, ok := p.Message().(*bcrpb.Bundle)
	if !ok {
		return nil, Errorf(IssueInvalid, "a batch or transaction must be a Bundle, not a %s", p.Type)
	}
	max := s.MaxBundleEntries
	if max <= 0 {
		max = defaultMaxBundleEntries
	}
	if len(b.GetEntry()) > max {
		return nil, Errorf(IssueTooLong, "the Bundle has %d entries; at most %d are taken", len(b.GetEntry()), max)
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	switch b.GetType().GetValue() {
	case cpb.BundleTypeCode_TRANSACTION:
		return s.transaction(ctx, b, base, opts)
	case cpb.BundleTypeCode_BATCH:
		return s.batch(ctx, b, base, opts)
	}
	return nil, Errorf(IssueInvalid, "Bundle.type must be transaction or batch to be processed")
}

// entryError names the entry in err, keeping its code and sentinel.
func entryError(e *entry, err error) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return err
	}
	where := "entry " + strconv.Itoa(e.index)
	if e.fullURL != "" {
		where += " (fullUrl " + e.fullURL + ")"
	}
	out := &Error{Code: fe.Code, Message: where + ": " + fe.Message, err: fe.err}
	for _, is := range fe.OutcomeIssues() {
		is.Diagnostics = where + ": " + is.Diagnostics
		is.Expression = append([]string{"Bundle.entry[" + strconv.Itoa(e.index) + "]"}, is.Expression...)
		out.Issues = append(out.Issues, is)
	}
	return out
}

// parseEntry reads entry i's request.
func parseEntry(i int, be *bcrpb.Bundle_Entry, base string) (*entry, error) {
	e := &entry{index: i, fullURL: be.GetFullUrl().GetValue()}
	req := be.GetRequest()
	if req == nil {
		return e, Errorf(IssueInvalid, "the entry has no request")
	}
	e.method = req.GetMethod().GetValue()
	raw := req.GetUrl().GetValue()
	if base != "" {
		raw = strings.TrimPrefix(raw, base)
	}
	raw = strings.TrimPrefix(raw, "/")
	path, query, hasQ := strings.Cut(raw, "?")
	e.query, e.hasQ = query, hasQ
	segs := strings.Split(path, "/")
	if path == "" {
		segs = nil
	}
	if len(segs) == 0 || !IsResourceType(segs[0]) {
		return e, Errorf(IssueNotSupported, "the request url must start with a resource type; system-level requests are not supported inside Bundles")
	}
	e.typ = segs[0]
	switch {
	case len(segs) == 1:
	case len(segs) == 2 && ValidID(segs[1]) && !hasQ:
		e.id, e.urlID = segs[1], segs[1]
	case len(segs) == 4 && ValidID(segs[1]) && segs[2] == "_history" && e.method == cpb.HTTPVerbCode_GET:
		v, err := strconv.ParseInt(segs[3], 10, 64)
		if err != nil || v < 1 {
			return e, Errorf(IssueInvalid, "the request url names a version that is not a number")
		}
		e.id, e.vid = segs[1], v
	default:
		return e, Errorf(IssueNotSupported, "the request url is not one the server supports inside Bundles (operations and history are not)")
	}
	if v := req.GetIfMatch().GetValue(); v != "" {
		n, ok := parseVersionTag(v)
		if !ok {
			return e, Errorf(IssueInvalid, `ifMatch must name one version, as W/"3"`)
		}
		e.ifMatch = n
	}
	if v := req.GetIfNoneMatch().GetValue(); v != "" {
		n, ok := parseVersionTag(v)
		if !ok {
			return e, Errorf(IssueInvalid, `ifNoneMatch must name one version, as W/"3"`)
		}
		e.ifNoneM = n
	}
	if im := req.GetIfModifiedSince(); im != nil {
		e.ifMod = time.UnixMicro(im.GetValueUs()).UTC()
	}
	e.ifNone = req.GetIfNoneExist().GetValue()
	if cr := be.GetResource(); cr != nil {
		res := containedMessage(cr)
		if res != nil {
			e.p = &Parsed{Type: string(res.Descriptor().Name()), cr: cr, res: res}
		}
	}
	switch e.method {
	case cpb.HTTPVerbCode_POST:
		if e.id != "" || e.hasQ {
			return e, Errorf(IssueNotSupported, "a POST entry must name a resource type only (operations are not supported inside Bundles)")
		}
		fallthrough
	case cpb.HTTPVerbCode_PUT:
		if e.p == nil {
			return e, Errorf(IssueRequired, "a %s entry must carry a resource", e.method)
		}
		if e.p.Type != e.typ {
			return e, Errorf(IssueInvalid, "the resource type %s does not match the request url's %s", e.p.Type, e.typ)
		}
		if e.method == cpb.HTTPVerbCode_PUT && e.id == "" && !e.hasQ {
			return e, Errorf(IssueInvalid, "a PUT entry must name Type/id or Type?search")
		}
		if e.method == cpb.HTTPVerbCode_PUT && e.id != "" {
			if bid := e.p.ID(); bid != e.id {
				return e, Errorf(IssueInvalid, "the resource id does not match the id in the request url")
			}
		}
	case cpb.HTTPVerbCode_DELETE:
		if e.id == "" && !e.hasQ {
			return e, Errorf(IssueInvalid, "a DELETE entry must name Type/id or Type?search")
		}
	case cpb.HTTPVerbCode_GET, cpb.HTTPVerbCode_HEAD:
	case cpb.HTTPVerbCode_PATCH:
		if e.urlID == "" && !e.hasQ {
			return e, Errorf(IssueInvalid, "a PATCH entry must name Type/id or Type?search")
		}
		switch {
		case e.p == nil:
			return e, Errorf(IssueRequired, "a PATCH entry must carry the patch: a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch")
		case e.p.Type == "Parameters":
			e.patchType = "application/fhir+json"
		case e.p.Type == "Binary":
			bin := e.p.Message().(*binpb.Binary)
			e.patchType, e.patch = bin.GetContentType().GetValue(), bin.GetData().GetValue()
		default:
			return e, Errorf(IssueInvalid, "a PATCH entry carries a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch, not a %s", e.p.Type)
		}
	default:
		return e, Errorf(IssueInvalid, "the entry's request method is missing or unknown")
	}
	return e, nil
}

// parseVersionTag reads W/"3", "3" or 3.
func parseVersionTag(v string) (int64, bool) {
	v = strings.Trim(strings.TrimPrefix(strings.TrimSpace(v), "W/"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}

func (s *Service) transaction(ctx context.Context, b *bcrpb.Bundle, base string, opts BundleOptions) (*BundleResult, error) {
	es := make([]*entry, len(b.GetEntry()))
	written := map[string]int{}
	for i, be := range b.GetEntry() {
		e, err := parseEntry(i, be, base)
		if err != nil {
			return nil, entryError(e, err)
		}
		es[i] = e
		if e.urlID != "" && e.method != cpb.HTTPVerbCode_GET && e.method != cpb.HTTPVerbCode_HEAD {
			k := e.typ + "/" + e.urlID
			if j, dup := written[k]; dup {
				return nil, entryError(e, Errorf(IssueInvalid, "entry %d already writes %s; a transaction may write a resource once", j, k))
			}
			written[k] = i
		}
	}
	if err := s.runEntries(ctx, es, base, opts); err != nil {
		return nil, err
	}
	out := &BundleResult{Type: "transaction-response", Entries: make([]EntryResult, len(es))}
	for i, e := range es {
		out.Entries[i] = e.out
	}
	return out, nil
}

// view is what planning reads through: a Tx, or the store's committed
// state (storeView).
type view interface {
	Read(typ, id string) (*Resource, error)
	Search(s *Search, cursor Cursor, backward bool) (*SearchPage, error)
}

// storeView reads the store's committed state.
type storeView struct {
	ctx context.Context
	st  Store
}

func (v storeView) Read(typ, id string) (*Resource, error) { return v.st.Read(v.ctx, typ, id) }
func (v storeView) Search(q *Search, c Cursor, backward bool) (*SearchPage, error) {
	return v.st.Search(v.ctx, q, c, backward)
}

// runEntries runs es in one store transaction. When no entry deletes, the
// writes are first planned outside the store's writer against the
// committed state (ids, conditional matches, references, versions) and
// marshalled and indexed there, so that the writer (which serialises all
// writes) only checks the plan and splices in the commit time; when the
// check finds the plan stale (another write came between), the entries
// are planned and marshalled again inside.
func (s *Service) runEntries(ctx context.Context, es []*entry, base string, opts BundleOptions) error {
	hold, err := HoldPrepSlot(ctx)
	if err != nil {
		return err
	}
	release := sync.OnceFunc(hold)
	defer release()
	planned := true
	var writes []*entry
	for _, e := range es {
		switch e.method {
		case cpb.HTTPVerbCode_DELETE, cpb.HTTPVerbCode_PATCH:
			planned = false
		case cpb.HTTPVerbCode_POST, cpb.HTTPVerbCode_PUT:
			writes = append(writes, e)
			if opts.Check != nil {
				if err := opts.Check(e.p); err != nil {
					return entryError(e, err)
				}
			}
		}
	}
	if len(writes) == 0 {
		planned = false
	}
	if planned {
		if err := s.planWrites(storeView{ctx, s.Store}, writes, base); err != nil {
			planned = false
			undoRewrites(writes)
		} else {
			for _, e := range writes {
				if !e.noop {
					e.pre = s.prepare(e.p, e.id, e.version, e.writeMethod())
				}
			}
		}
	}
	if s.Validate != nil {
		if err := s.validateEntries(ctx, writes, base); err != nil {
			return err
		}
	}
	release() // writing needs no slot
	wctx := ctx
	if len(writes) >= LargeWriteEntries {
		wctx = WithLargeWrite(ctx)
	}
	return s.Store.Write(wctx, func(tx Tx) error {
		return s.runTransaction(tx, es, writes, base, opts, planned)
	})
}

// validateEntries calls s.Validate on every POST and PUT entry, before the
// write: with the prepared bytes when the writes were planned (references
// between entries then already rewritten), else with nil, and with a
// resolver that finds the other entries of the Bundle by fullUrl and by
// the Type/id planned for them, and anything else in the store's committed
// state. When the writes could not be planned outside the writer (the
// Bundle deletes or patches), references between entries are still their
// fullUrls, which the resolver also finds.
func (s *Service) validateEntries(ctx context.Context, writes []*entry, base string) error {
	byRef := make(map[string]*entry, 2*len(writes))
	for _, e := range writes {
		if e.fullURL != "" {
			byRef[e.fullURL] = e
		}
		if e.target != "" {
			byRef[e.target] = e
		}
	}
	resolve := s.resolver(storeView{ctx, s.Store}, base, byRef)
	for _, e := range writes {
		var body []byte
		if e.pre != nil && e.pre.err == nil {
			body = e.pre.json
		}
		if err := s.Validate(e.p, body, resolve); err != nil {
			return entryError(e, err)
		}
	}
	return nil
}

// runTransaction processes the entries inside tx; see Bundle. writes are
// the POST and PUT entries, already planned and prepared when planned.
func (s *Service) runTransaction(tx Tx, es, writes []*entry, base string, opts BundleOptions, planned bool) error {
	pass := func(methods ...cpb.HTTPVerbCode_Value) []*entry {
		var out []*entry
		for _, e := range es {
			for _, m := range methods {
				if e.method == m {
					out = append(out, e)
				}
			}
		}
		return out
	}
	for _, e := range pass(cpb.HTTPVerbCode_DELETE) {
		if err := s.deleteEntry(tx, e, base); err != nil {
			return entryError(e, err)
		}
	}
	if planned && s.samePlan(tx, writes, base) {
		for _, e := range writes {
			if e.noop {
				e.setMatched(opts)
				continue
			}
			r, err := s.commitPrepared(tx, e.p, e.pre)
			if err != nil {
				return entryError(e, err)
			}
			e.setWritten(r, opts)
		}
	} else {
		if planned {
			undoRewrites(writes)
		}
		if err := s.planWrites(tx, writes, base); err != nil {
			return err
		}
		for _, e := range writes {
			if e.noop {
				e.setMatched(opts)
				continue
			}
			r, err := s.put(tx, e.p, e.id, e.version, e.writeMethod())
			if err != nil {
				return entryError(e, err)
			}
			e.setWritten(r, opts)
		}
	}
	for _, e := range pass(cpb.HTTPVerbCode_PATCH) {
		if err := s.patchEntry(tx, e, base, opts); err != nil {
			return entryError(e, err)
		}
	}
	for _, e := range pass(cpb.HTTPVerbCode_GET, cpb.HTTPVerbCode_HEAD) {
		if err := s.readEntry(tx, e, base, opts); err != nil {
			return entryError(e, err)
		}
	}
	return nil
}

func (e *entry) writeMethod() Method {
	if e.method == cpb.HTTPVerbCode_PUT {
		return MethodUpdate
	}
	return MethodCreate
}

func (e *entry) setMatched(opts BundleOptions) {
	e.out = EntryResult{Status: http.StatusOK, Version: e.match}
	if !opts.Minimal {
		e.out.Body = e.match.JSON
	}
}

func (e *entry) setWritten(r *Resource, opts BundleOptions) {
	e.out = EntryResult{Status: e.status, Version: r}
	if !opts.Minimal {
		e.out.Body = r.JSON
	}
}

// planWrites settles, reading through v, the id each POST and PUT entry
// writes (conditional creates and updates by search), rewrites the
// references between entries and the conditional references, and settles
// each write's version and status (checking ifMatch). Errors name the
// entry.
func (s *Service) planWrites(v view, writes []*entry, base string) error {
	refs := map[string]string{}
	for _, e := range writes {
		if err := s.resolveTarget(v, e, base); err != nil {
			return entryError(e, err)
		}
		if e.fullURL != "" {
			refs[e.fullURL] = e.target
		}
	}
	for _, e := range writes {
		if e.noop {
			continue
		}
		if err := s.rewriteReferences(v, e, refs, base); err != nil {
			return entryError(e, err)
		}
	}
	for _, e := range writes {
		if e.noop {
			continue
		}
		if err := settleVersion(v, e); err != nil {
			return entryError(e, err)
		}
	}
	return nil
}

// samePlan reports whether planning the writes inside tx gives what the
// plan made outside gave: the same ids, matches, conditional reference
// targets and versions. Any difference or error means the plan is redone
// inside.
func (s *Service) samePlan(tx Tx, writes []*entry, base string) bool {
	for _, e := range writes {
		id, noop, version, status := e.id, e.noop, e.version, e.status
		var matchVersion int64
		if e.match != nil {
			matchVersion = e.match.VersionID
		}
		if err := s.resolveTarget(tx, e, base); err != nil || e.id != id || e.noop != noop {
			return false
		}
		if e.noop {
			if e.match.VersionID != matchVersion {
				return false
			}
			continue
		}
		for _, c := range e.conds {
			ms, err := s.conditionalSearch(tx, c.typ, c.query, base, 1)
			if err != nil || len(ms) != 1 || ms[0].Ref() != c.to {
				return false
			}
		}
		if err := settleVersion(tx, e); err != nil || e.version != version || e.status != status {
			return false
		}
	}
	return true
}

func undoRewrites(writes []*entry) {
	for _, e := range writes {
		for i := len(e.undo) - 1; i >= 0; i-- {
			e.undo[i]()
		}
		e.undo, e.conds = nil, nil
	}
}

func (s *Service) deleteEntry(tx Tx, e *entry, base string) error {
	if e.urlID == "" {
		ds, err := s.conditionalDeleteTx(tx, e.typ, e.query, base)
		if err != nil {
			return err
		}
		e.out.Status = http.StatusNoContent
		if len(ds) == 1 {
			e.out.Version = ds[0]
		}
		return nil
	}
	cur, err := tx.Read(e.typ, e.urlID)
	if err != nil && !IsNotFound(err) {
		return err
	}
	if e.ifMatch != 0 && (cur == nil || cur.VersionID != e.ifMatch || cur.Deleted()) {
		return VersionConflictf("ifMatch names version %d but the current version is %s", e.ifMatch, describeVersion(cur))
	}
	e.out.Status = http.StatusNoContent
	if cur == nil || cur.Deleted() {
		return nil
	}
	d := &Resource{Type: e.typ, ID: e.urlID, VersionID: cur.VersionID + 1, LastUpdated: tx.Now(), Method: MethodDelete}
	if err := tx.Put(d); err != nil {
		return err
	}
	e.out.Version = d
	return nil
}

// resolveTarget settles the id of a POST or PUT entry's resource: a
// conditional create that matches and a conditional update resolve by
// searching through v.
func (s *Service) resolveTarget(v view, e *entry, base string) error {
	e.noop, e.match = false, nil
	switch {
	case e.method == cpb.HTTPVerbCode_POST:
		if e.newID == "" {
			e.newID = NewID()
		}
		e.id = e.newID
		if e.ifNone == "" {
			break
		}
		ms, err := s.conditionalSearch(v, e.typ, e.ifNone, base, 1)
		if err != nil {
			return err
		}
		switch len(ms) {
		case 0:
		case 1:
			e.noop, e.id, e.match = true, ms[0].ID, ms[0]
		default:
			return multipleMatchesf("ifNoneExist matched more than one %s; nothing was created", e.typ)
		}
	case e.urlID == "":
		ms, err := s.conditionalSearch(v, e.typ, e.query, base, 1)
		if err != nil {
			return err
		}
		switch len(ms) {
		case 0:
			if e.id = e.p.ID(); e.id == "" {
				if e.newID == "" {
					e.newID = NewID()
				}
				e.id = e.newID
			}
		case 1:
			if bid := e.p.ID(); bid != "" && bid != ms[0].ID {
				return Errorf(IssueInvalid, "the resource id does not match the id of the %s the search matched", e.typ)
			}
			e.id = ms[0].ID
		default:
			return multipleMatchesf("the conditional update matched more than one %s; nothing was changed", e.typ)
		}
	default:
		e.id = e.urlID
	}
	e.target = e.typ + "/" + e.id
	return nil
}

// patchEntry applies a PATCH entry (https://hl7.org/fhir/R4/http.html#patch)
// to the current version of its resource (found by search for Type?query)
// with ApplyPatch, validates the result with the Codec and stores it.
func (s *Service) patchEntry(tx Tx, e *entry, base string, opts BundleOptions) error {
	var cur *Resource
	if e.urlID == "" {
		ms, err := s.conditionalSearch(tx, e.typ, e.query, base, 1)
		if err != nil {
			return err
		}
		switch len(ms) {
		case 0:
			return Errorf(IssueNotFound, "the conditional patch matched no %s", e.typ)
		case 1:
			cur = ms[0]
		default:
			return multipleMatchesf("the conditional patch matched more than one %s; nothing was changed", e.typ)
		}
	} else {
		var err error
		if cur, err = tx.Read(e.typ, e.urlID); err != nil {
			return err
		}
		if cur.Deleted() {
			return Errorf(IssueDeleted, "%s: this resource was deleted", e.typ)
		}
	}
	patch := e.patch
	if patch == nil {
		var err error
		if patch, err = s.Codec.Marshal(e.p); err != nil {
			return err
		}
	}
	r, err := s.patchTx(tx, cur, e.ifMatch, func(cur *Resource) (*Parsed, error) {
		out, err := ApplyPatch(cur.JSON, e.patchType, patch)
		if err != nil {
			return nil, err
		}
		p, err := s.Codec.Parse(out)
		if err != nil {
			return nil, InvalidPatchResult(err)
		}
		return p, nil
	})
	if err != nil {
		return err
	}
	e.status = http.StatusOK
	e.setWritten(r, opts)
	return nil
}

// settleVersion sets the version the entry writes and its status (201 for
// a new resource, 200 for an update), checking ifMatch.
func settleVersion(v view, e *entry) error {
	e.version, e.status = 1, http.StatusCreated
	if e.method != cpb.HTTPVerbCode_PUT {
		return nil
	}
	cur, err := v.Read(e.typ, e.id)
	if err != nil && !IsNotFound(err) {
		return err
	}
	if e.ifMatch != 0 && (cur == nil || cur.VersionID != e.ifMatch || cur.Deleted()) {
		return VersionConflictf("ifMatch names version %d but the current version is %s", e.ifMatch, describeVersion(cur))
	}
	if cur != nil {
		e.version = cur.VersionID + 1
		if !cur.Deleted() {
			e.status = http.StatusOK
		}
	}
	return nil
}

func (s *Service) readEntry(tx Tx, e *entry, base string, opts BundleOptions) error {
	if e.id == "" {
		vals, err := url.ParseQuery(e.query)
		if err != nil {
			return Errorf(IssueInvalid, "the search of the entry is not a valid query string")
		}
		q, done, err := s.searchEntry(e.typ, vals, base, opts)
		if err != nil {
			return err
		}
		page, err := tx.Search(q, nil, false)
		if err != nil {
			return err
		}
		var outcome json.RawMessage
		if done != nil {
			if outcome, err = done(page); err != nil {
				return err
			}
		}
		sb := NewBundle("searchset")
		if page.Total >= 0 {
			t := page.Total
			sb.Total = &t
		}
		for _, set := range []struct {
			mode string
			rs   []*Resource
		}{{"match", page.Matches}, {"include", page.Included}} {
			for _, r := range set.rs {
				body, err := Subset(r.Type, r.JSON, q.Summary, q.Elements)
				if err != nil {
					return err
				}
				sb.Entry = append(sb.Entry, BundleEntry{FullURL: base + "/" + r.Ref(), Resource: body, Search: &BundleSearch{Mode: set.mode}})
			}
		}
		if outcome != nil {
			sb.Entry = append(sb.Entry, BundleEntry{Resource: outcome, Search: &BundleSearch{Mode: "outcome"}})
		}
		body, err := json.Marshal(sb)
		if err != nil {
			return fmt.Errorf("search entry: %w", err)
		}
		e.out = EntryResult{Status: http.StatusOK, Body: body}
		return nil
	}
	var r *Resource
	var err error
	if e.vid != 0 {
		r, err = s.vreadTx(tx, e.typ, e.id, e.vid)
	} else {
		r, err = tx.Read(e.typ, e.id)
	}
	if err != nil {
		return err
	}
	if r.Deleted() {
		return Errorf(IssueDeleted, "%s: this resource was deleted", e.typ)
	}
	if (e.ifNoneM != 0 && e.ifNoneM == r.VersionID) || (!e.ifMod.IsZero() && !r.LastUpdated.After(e.ifMod)) {
		e.out = EntryResult{Status: http.StatusNotModified, Version: r}
		return nil
	}
	e.out = EntryResult{Status: http.StatusOK, Version: r}
	if e.method == cpb.HTTPVerbCode_GET {
		e.out.Body = r.JSON
	}
	return nil
}

// searchEntry makes the search of a search entry: by opts.SearchEntry
// when set, else by ParseSearch with the service's registry.
func (s *Service) searchEntry(typ string, params url.Values, base string, opts BundleOptions) (*Search, func(*SearchPage) (json.RawMessage, error), error) {
	if opts.SearchEntry != nil {
		return opts.SearchEntry(typ, params, base)
	}
	reg := s.Registry
	if reg == nil {
		reg = NewSearchRegistry()
	}
	q, err := ParseSearch(typ, params, SearchOptions{Registry: reg, BaseURL: base})
	return q, nil, err
}

// vreadTx reads version v; inside a transaction only the current version
// is known to the Tx, so older ones come from the store's committed
// history.
func (s *Service) vreadTx(tx Tx, typ, id string, v int64) (*Resource, error) {
	cur, err := tx.Read(typ, id)
	if err != nil {
		return nil, err
	}
	if cur.VersionID == v {
		return cur, nil
	}
	return s.Store.VRead(context.Background(), typ, id, v)
}

func (s *Service) batch(ctx context.Context, b *bcrpb.Bundle, base string, opts BundleOptions) (*BundleResult, error) {
	out := &BundleResult{Type: "batch-response", Entries: make([]EntryResult, len(b.GetEntry()))}
	for i, be := range b.GetEntry() {
		e, err := parseEntry(i, be, base)
		if err == nil {
			err = s.runEntries(ctx, []*entry{e}, base, opts)
		}
		if err != nil {
			out.Entries[i] = EntryResult{Err: err}
			continue
		}
		out.Entries[i] = e.out
	}
	return out, nil
}

// rewriteReferences rewrites, in e's resource, every Reference whose
// reference is a key of refs (a fullUrl of the Bundle, or, under base, its
// Type/id) to the Type/id it maps to, and resolves conditional references
// (Type?search) by a search through v. Contained resources are included.
// Each change is recorded in e.undo; conditional ones also in e.conds.
func (s *Service) rewriteReferences(v view, e *entry, refs map[string]string, base string) error {
	var walkErr error
	set := func(u *dtpb.String, to string) {
		from := u.Value
		u.Value = to
		e.undo = append(e.undo, func() { u.Value = from })
	}
	var walk func(m protoreflect.Message) bool
	walk = func(m protoreflect.Message) bool {
		changed := false
		if ref, ok := m.Interface().(*dtpb.Reference); ok {
			u := ref.GetUri()
			if u == nil {
				return false
			}
			val := u.GetValue()
			if t, ok := refs[val]; ok {
				set(u, t)
				return true
			}
			if base != "" && strings.HasPrefix(val, base+"/") {
				if t, ok := refs[strings.TrimPrefix(val, base+"/")]; ok {
					set(u, t)
					return true
				}
			}
			if typ, q, ok := strings.Cut(val, "?"); ok && IsResourceType(typ) {
				ms, err := s.conditionalSearch(v, typ, q, base, 1)
				if err != nil {
					walkErr = err
					return false
				}
				switch len(ms) {
				case 0:
					walkErr = Errorf(IssueNotFound, "the conditional reference to %s matched no resource", typ)
				case 1:
					set(u, ms[0].Ref())
					e.conds = append(e.conds, condRef{typ: typ, query: q, to: ms[0].Ref()})
					return true
				default:
					walkErr = multipleMatchesf("the conditional reference to %s matched more than one resource", typ)
				}
			}
			return false
		}
		if a, ok := m.Interface().(*anypb.Any); ok {
			cr := &bcrpb.ContainedResource{}
			if err := a.UnmarshalTo(cr); err != nil {
				return false
			}
			if walk(cr.ProtoReflect()) {
				na, err := anypb.New(cr)
				if err != nil {
					walkErr = fmt.Errorf("contained resource: %w", err)
					return false
				}
				from := a.Value
				a.Value = na.Value
				e.undo = append(e.undo, func() { a.Value = from })
				return true
			}
			return false
		}
		m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
				return true
			}
			switch {
			case fd.IsList():
				l := val.List()
				for i := 0; i < l.Len(); i++ {
					if walk(l.Get(i).Message()) {
						changed = true
					}
				}
			case fd.IsMap():
			default:
				if walk(val.Message()) {
					changed = true
				}
			}
			return walkErr == nil
		})
		return changed
	}
	walk(e.p.res)
	return walkErr
}
