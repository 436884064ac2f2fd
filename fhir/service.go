package fhir

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"
)

// Service performs the FHIR write and read interactions on a Store: it
// assigns ids and versions, stamps meta and stores canonical JSON produced
// once. It is safe for concurrent use.
type Service struct {
	Store Store
	Codec *Codec
	// Indexer, when set, computes the search index of every version
	// written (Resource.Index), which the store keeps in the same
	// transaction. See https://hl7.org/fhir/R4/search.html.
	Indexer *Indexer
	// Registry holds the search parameters that conditional interactions
	// and conditional references search with; nil means the generated R4
	// table alone.
	Registry *SearchRegistry
	// MaxConditionalDeletes is the most resources one conditional delete
	// may remove; zero means 1 (single). See
	// https://hl7.org/fhir/R4/http.html#3.1.0.7.1.
	MaxConditionalDeletes int
	// MaxBundleEntries is the most entries a batch or transaction Bundle
	// may hold; zero means 10,000. See https://hl7.org/fhir/R4/http.html#transaction.
	MaxBundleEntries int
	// Validate, when set, checks each resource about to be written by
	// Create, Update, ConditionalCreate, ConditionalUpdate, a patch and
	// every POST and PUT entry of a Bundle; its error fails the write (in a
	// Bundle, the entry: a whole transaction, or only that batch entry).
	// It runs once per resource before Store.Write, outside the store's
	// single writer, except for patches applied inside the write (a
	// conditional patch, PATCH entries of a Bundle), whose result exists
	// only there. body is the resource's JSON when the service has
	// marshalled it already, nil otherwise. resolve returns the JSON of the
	// resource a reference names as the write will see it: in a Bundle an
	// entry of the same Bundle (by fullUrl or Type/id), else the current
	// version in the store (committed state, or the write's own inside
	// it); nil when it cannot be read (a deleted or missing resource, an
	// absolute URL outside the server). Validate must be safe for
	// concurrent use. See https://hl7.org/fhir/R4/validation.html.
	Validate func(p *Parsed, body []byte, resolve func(ref string) []byte) error
	// AfterWrite, when set, runs inside the write transaction after each
	// resource version the service puts (creates, updates, patches and
	// every POST, PUT and PATCH entry of a Bundle; not deletes), with the
	// transaction and the version written. Its writes commit with that
	// version or not at all; its error fails the write (in a Bundle, the
	// whole transaction or that batch entry). It runs on the store's
	// single writer, so it must be quick.
	AfterWrite func(tx Tx, r *Resource) error
}

// afterWrite calls s.AfterWrite, if set, for r.
func (s *Service) afterWrite(tx Tx, r *Resource) error {
	if s.AfterWrite == nil {
		return nil
	}
	return s.AfterWrite(tx, r)
}

// validate calls s.Validate, if set, with the prepared bytes when there are
// some and a resolver reading through v.
func (s *Service) validate(v view, p *Parsed, pre *prepared) error {
	if s.Validate == nil {
		return nil
	}
	var body []byte
	if pre != nil && pre.err == nil {
		body = pre.json
	}
	return s.Validate(p, body, s.resolver(v, "", nil))
}

// resolver returns a function that reads the resource a reference names:
// an entry of entries (keyed by fullUrl and by Type/id) or else the
// current version through v; conditional references (Type?search) are
// searched through v. It returns nil for what cannot be read.
func (s *Service) resolver(v view, base string, entries map[string]*entry) func(ref string) []byte {
	return func(ref string) []byte {
		if base != "" {
			ref = strings.TrimPrefix(ref, base+"/")
		}
		if e, ok := entries[ref]; ok {
			switch {
			case e.noop && e.match != nil:
				return e.match.JSON
			case e.pre != nil && e.pre.err == nil:
				return e.pre.json
			}
			b, err := s.Codec.Marshal(e.p)
			if err != nil {
				return nil
			}
			return b
		}
		if typ, q, ok := strings.Cut(ref, "?"); ok {
			if !IsResourceType(typ) {
				return nil
			}
			ms, err := s.conditionalSearch(v, typ, q, base, 1)
			if err != nil || len(ms) != 1 {
				return nil
			}
			return ms[0].JSON
		}
		typ, id, ok := strings.Cut(ref, "/")
		if !ok || !IsResourceType(typ) || !ValidID(id) {
			return nil
		}
		r, err := v.Read(typ, id)
		if err != nil || r.Deleted() {
			return nil
		}
		return r.JSON
	}
}

// Read returns the current version of type/id.
// Errors: IssueNotFound; IssueDeleted (with the delete marker returned
// alongside, so callers can report its version).
// See https://hl7.org/fhir/R4/http.html#read.
func (s *Service) Read(ctx context.Context, typ, id string) (*Resource, error) {
	r, err := s.Store.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if r.Deleted() {
		return r, Errorf(IssueDeleted, "%s: this resource was deleted", typ)
	}
	return r, nil
}

// VRead returns version v of type/id. A version that records a delete is
// reported as IssueDeleted, as a read of it is. Errors: IssueNotFound.
// See https://hl7.org/fhir/R4/http.html#vread.
func (s *Service) VRead(ctx context.Context, typ, id string, v int64) (*Resource, error) {
	r, err := s.Store.VRead(ctx, typ, id, v)
	if err != nil {
		return nil, err
	}
	if r.Deleted() {
		return r, Errorf(IssueDeleted, "%s: version %d records the deletion of this resource", typ, v)
	}
	return r, nil
}

// Create stores p as a new resource with a server-assigned id and version
// 1; an id in p is ignored. See https://hl7.org/fhir/R4/http.html#create.
func (s *Service) Create(ctx context.Context, p *Parsed) (*Resource, error) {
	pre := s.prepare(p, NewID(), 1, MethodCreate)
	if err := s.validate(storeView{ctx, s.Store}, p, pre); err != nil {
		return nil, err
	}
	var out *Resource
	err := s.Store.Write(ctx, func(tx Tx) error {
		r, err := s.commitPrepared(tx, p, pre)
		out = r
		return err
	})
	return out, err
}

// Update stores p as the next version of type/id, creating the resource
// when it does not exist or was deleted (created reports that). When
// ifMatch is not zero it must be the current version, else the error wraps
// ErrVersionConflict. Errors: IssueInvalid when p's id or type differ from
// the URL's. See https://hl7.org/fhir/R4/http.html#update.
func (s *Service) Update(ctx context.Context, typ, id string, p *Parsed, ifMatch int64) (r *Resource, created bool, err error) {
	if p.Type != typ {
		return nil, false, &Error{Code: IssueInvalid, Message: "the resource type " + p.Type + " does not match the URL's " + typ,
			Issues: []Issue{{Severity: SeverityError, Code: IssueInvalid, Diagnostics: "resourceType does not match the URL", Expression: []string{"resourceType"}}}}
	}
	switch bodyID := p.ID(); {
	case bodyID == "":
		return nil, false, &Error{Code: IssueRequired, Message: "the resource has no id; an update must carry the id given in the URL",
			Issues: []Issue{{Severity: SeverityError, Code: IssueRequired, Diagnostics: "id is required in an update", Expression: []string{typ + ".id"}}}}
	case bodyID != id:
		return nil, false, &Error{Code: IssueInvalid, Message: "the resource id does not match the id in the URL",
			Issues: []Issue{{Severity: SeverityError, Code: IssueInvalid, Diagnostics: "id does not match the URL", Expression: []string{typ + ".id"}}}}
	}
	if !ValidID(id) {
		return nil, false, Errorf(IssueInvalid, "the id in the URL is not a valid FHIR id ([A-Za-z0-9-.]{1,64})")
	}
	// Marshal and index outside the write, for the version expected; the
	// write function checks the guess.
	var guess int64 = 1
	if cur, err := s.Store.Read(ctx, typ, id); err == nil {
		guess = cur.VersionID + 1
	}
	pre := s.prepare(p, id, guess, MethodUpdate)
	if err := s.validate(storeView{ctx, s.Store}, p, pre); err != nil {
		return nil, false, err
	}
	err = s.Store.Write(ctx, func(tx Tx) error {
		cur, err := tx.Read(typ, id)
		var next int64 = 1
		switch {
		case err == nil:
			next = cur.VersionID + 1
		case ErrorCode(err) != IssueNotFound:
			return err
		}
		if ifMatch != 0 && (cur == nil || cur.VersionID != ifMatch || cur.Deleted()) {
			return VersionConflictf("If-Match names version %d but the current version is %s", ifMatch, describeVersion(cur))
		}
		created = cur == nil || cur.Deleted()
		if next == pre.version {
			r, err = s.commitPrepared(tx, p, pre)
		} else {
			r, err = s.put(tx, p, id, next, MethodUpdate)
		}
		return err
	})
	return r, created, err
}

// Delete records the deletion of type/id as a new version and returns it.
// Deleting a resource that does not exist or is already deleted changes
// nothing and returns (nil, nil). When ifMatch is not zero it must be the
// current version, else the error wraps ErrVersionConflict.
// See https://hl7.org/fhir/R4/http.html#delete.
func (s *Service) Delete(ctx context.Context, typ, id string, ifMatch int64) (*Resource, error) {
	var out *Resource
	err := s.Store.Write(ctx, func(tx Tx) error {
		cur, err := tx.Read(typ, id)
		if err != nil && ErrorCode(err) != IssueNotFound {
			return err
		}
		if ifMatch != 0 && (cur == nil || cur.VersionID != ifMatch || cur.Deleted()) {
			return VersionConflictf("If-Match names version %d but the current version is %s", ifMatch, describeVersion(cur))
		}
		if cur == nil || cur.Deleted() {
			return nil
		}
		out = &Resource{Type: typ, ID: id, VersionID: cur.VersionID + 1, LastUpdated: tx.Now(), Method: MethodDelete}
		return tx.Put(out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// History returns a page of versions; see Store.History.
// See https://hl7.org/fhir/R4/http.html#history.
func (s *Service) History(ctx context.Context, q HistoryQuery) (*HistoryPage, error) {
	return s.Store.History(ctx, q)
}

func (s *Service) put(tx Tx, p *Parsed, id string, version int64, method Method) (*Resource, error) {
	now := tx.Now()
	p.Stamp(id, version, now)
	b, err := s.Codec.Marshal(p)
	if err != nil {
		return nil, err
	}
	r := &Resource{Type: p.Type, ID: id, VersionID: version, LastUpdated: now, Method: method, JSON: b}
	if s.Indexer != nil {
		if r.Index, err = s.Indexer.Index(p.Type, b); err != nil {
			return nil, err
		}
	}
	if err := tx.Put(r); err != nil {
		return nil, err
	}
	if err := s.afterWrite(tx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// placeholderTime stamps versions marshalled before their commit time is
// known; FormatInstant gives every time the same width, so the commit's
// time is spliced into the bytes in place of it.
var placeholderTime = time.Date(1999, 12, 31, 23, 59, 59, 999e6, time.UTC)

// prepared is a version marshalled and indexed outside the store's write
// function (which runs on the store's single writer), stamped with
// placeholderTime for lastUpdated.
type prepared struct {
	id      string
	version int64
	method  Method
	json    []byte
	index   *Index
	at      int // the offset of the placeholder time in json; -1 when none
	err     error
}

// prepare stamps p with id, version and placeholderTime and marshals and
// indexes it. A failure is kept in the result and reported by
// commitPrepared, which also falls back to marshalling inside the write
// when the placeholder cannot be found.
func (s *Service) prepare(p *Parsed, id string, version int64, method Method) *prepared {
	pre := &prepared{id: id, version: version, method: method, at: -1}
	p.Stamp(id, version, placeholderTime)
	if pre.json, pre.err = s.Codec.Marshal(p); pre.err != nil {
		return pre
	}
	pre.at = bytes.Index(pre.json, placeholderField)
	if pre.at >= 0 && bytes.Contains(pre.json[pre.at+1:], placeholderField) {
		// Another lastUpdated (of a contained resource) has the same
		// value: which one is the version's cannot be told by position.
		pre.at = -1
	}
	if pre.at >= 0 {
		pre.at += len(placeholderField) - len(placeholderText) - 1
	}
	if s.Indexer != nil {
		pre.index, pre.err = s.Indexer.Index(p.Type, pre.json)
	}
	return pre
}

var (
	placeholderText  = FormatInstant(placeholderTime)
	placeholderField = []byte(`"lastUpdated":"` + placeholderText + `"`)
)

// commitPrepared writes pre as the next version of p inside tx: it
// splices the commit time into the bytes and the _lastUpdated index rows,
// then Puts. When the placeholder was not found it marshals p inside
// the write as put does.
func (s *Service) commitPrepared(tx Tx, p *Parsed, pre *prepared) (*Resource, error) {
	if pre.err != nil {
		return nil, pre.err
	}
	if pre.at < 0 {
		return s.put(tx, p, pre.id, pre.version, pre.method)
	}
	now := tx.Now()
	copy(pre.json[pre.at:], FormatInstant(now))
	p.Stamp(pre.id, pre.version, now)
	if pre.index != nil {
		ph, ms := placeholderTime.UnixMilli(), now.UnixMilli()
		for i := range pre.index.Dates {
			d := &pre.index.Dates[i]
			if d.Param == "_lastUpdated" && d.Low == ph && d.High == ph {
				d.Low, d.High = ms, ms
			}
		}
	}
	r := &Resource{Type: p.Type, ID: pre.id, VersionID: pre.version, LastUpdated: now, Method: pre.method, JSON: pre.json, Index: pre.index}
	if err := tx.Put(r); err != nil {
		return nil, err
	}
	if err := s.afterWrite(tx, r); err != nil {
		return nil, err
	}
	return r, nil
}

func describeVersion(r *Resource) string {
	switch {
	case r == nil:
		return "none (it does not exist)"
	case r.Deleted():
		return "a deletion"
	}
	return "W/\"" + itoa(r.VersionID) + "\""
}

// IsNotFound reports whether err says a resource or version does not exist.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == IssueNotFound
}
