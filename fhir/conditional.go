package fhir

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// IssueMultipleMatches is the issue type of a conditional interaction whose
// search matched more resources than it may act on (412).
// See https://hl7.org/fhir/R4/valueset-issue-type.html.
const IssueMultipleMatches IssueType = "multiple-matches"

// ErrMultipleMatches is wrapped by errors that report a conditional create,
// update, delete or reference whose search matched too many resources; it
// maps to 412 Precondition Failed.
// See https://hl7.org/fhir/R4/http.html#cond-update.
var ErrMultipleMatches = errors.New("fhir: multiple matches")

func multipleMatchesf(format string, args ...any) *Error {
	e := Errorf(IssueMultipleMatches, format, args...)
	e.err = ErrMultipleMatches
	return e
}

// defaultMaxConditionalDeletes is the most resources one conditional
// delete removes when Service.MaxConditionalDeletes is zero: one, the
// "single" mode of https://hl7.org/fhir/R4/http.html#3.1.0.7.1.
const defaultMaxConditionalDeletes = 1

// conditionalSearch returns the current resources of type typ that the
// search query (a URL query string, without '?') matches, at most limit+1
// of them, so that callers can tell "more than limit". It runs inside tx,
// so that nothing can be written between the search and the caller's
// writes. Errors: IssueInvalid for an empty or malformed query, and, since
// a condition must never be silently widened, IssueNotSupported for a
// parameter the server does not know.
func (s *Service) conditionalSearch(tx view, typ, query, base string, limit int) ([]*Resource, error) {
	vals, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return nil, Errorf(IssueInvalid, "the search of the conditional %s interaction is not a valid query string", typ)
	}
	for _, k := range []string{"_format", "_pretty", "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"} {
		delete(vals, k)
	}
	if len(vals) == 0 {
		return nil, Errorf(IssueInvalid, "the conditional %s interaction has no search parameters", typ)
	}
	reg := s.Registry
	if reg == nil {
		reg = NewSearchRegistry()
	}
	q, err := ParseSearch(typ, vals, SearchOptions{Registry: reg, Strict: true, BaseURL: base, MaxCount: limit + 1, DefaultCount: limit + 1})
	if err != nil {
		return nil, err
	}
	q.Count, q.Total = limit+1, TotalNone
	page, err := tx.Search(q, nil, false)
	if err != nil {
		return nil, err
	}
	return page.Matches, nil
}

// ConditionalCreate creates p unless the search ifNoneExist (the
// If-None-Exist header: a query string on p's type) matches: one match is
// returned as it is with created false and nothing written; two or more
// fail with ErrMultipleMatches (412). The search and the create run in one
// store transaction, so concurrent identical conditional creates make one
// resource. base is this server's FHIR base, for reference values.
// See https://hl7.org/fhir/R4/http.html#ccreate.
func (s *Service) ConditionalCreate(ctx context.Context, p *Parsed, ifNoneExist, base string) (r *Resource, created bool, err error) {
	pre := s.prepare(p, NewID(), 1, MethodCreate)
	if err := s.validate(storeView{ctx, s.Store}, p, pre); err != nil {
		return nil, false, err
	}
	err = s.Store.Write(ctx, func(tx Tx) error {
		ms, err := s.conditionalSearch(tx, p.Type, ifNoneExist, base, 1)
		if err != nil {
			return err
		}
		switch len(ms) {
		case 0:
			r, err = s.commitPrepared(tx, p, pre)
			created = err == nil
			return err
		case 1:
			r, created = ms[0], false
			return nil
		}
		return multipleMatchesf("If-None-Exist matched more than one %s; nothing was created", p.Type)
	})
	return r, created, err
}

// ConditionalUpdate stores p as the new version of the one resource of
// typ that the search query matches; with no match it creates the
// resource (with p's id when it has one, else a new one). Two or more
// matches fail with ErrMultipleMatches (412); an id in p that differs from
// the matched resource's is IssueInvalid. The search and the write run in
// one store transaction. See https://hl7.org/fhir/R4/http.html#cond-update.
func (s *Service) ConditionalUpdate(ctx context.Context, typ, query string, p *Parsed, base string) (r *Resource, created bool, err error) {
	if p.Type != typ {
		return nil, false, Errorf(IssueInvalid, "the resource type %s does not match the URL's %s", p.Type, typ)
	}
	if id := p.ID(); id != "" && !ValidID(id) {
		return nil, false, Errorf(IssueInvalid, "the resource id is not a valid FHIR id")
	}
	if err := s.validate(storeView{ctx, s.Store}, p, nil); err != nil {
		return nil, false, err
	}
	err = s.Store.Write(ctx, func(tx Tx) error {
		r, created, err = s.conditionalUpdateTx(tx, typ, query, p, base)
		return err
	})
	return r, created, err
}

func (s *Service) conditionalUpdateTx(tx Tx, typ, query string, p *Parsed, base string) (*Resource, bool, error) {
	ms, err := s.conditionalSearch(tx, typ, query, base, 1)
	if err != nil {
		return nil, false, err
	}
	bodyID := p.ID()
	switch len(ms) {
	case 0:
		id, version := bodyID, int64(1)
		if id == "" {
			id = NewID()
		} else if cur, err := tx.Read(typ, id); err == nil {
			version = cur.VersionID + 1
		} else if !IsNotFound(err) {
			return nil, false, err
		}
		r, err := s.put(tx, p, id, version, MethodUpdate)
		return r, err == nil, err
	case 1:
		m := ms[0]
		if bodyID != "" && bodyID != m.ID {
			return nil, false, Errorf(IssueInvalid, "the resource id does not match the id of the %s the search matched", typ)
		}
		r, err := s.put(tx, p, m.ID, m.VersionID+1, MethodUpdate)
		return r, false, err
	}
	return nil, false, multipleMatchesf("the conditional update matched more than one %s; nothing was changed", typ)
}

// ConditionalDelete deletes the resources of typ that the search query
// matches and returns the delete markers written (none when nothing
// matched). More matches than MaxConditionalDeletes (one by default) fail
// with ErrMultipleMatches (412) and delete nothing. The search and the
// deletes run in one store transaction.
// See https://hl7.org/fhir/R4/http.html#3.1.0.7.1.
func (s *Service) ConditionalDelete(ctx context.Context, typ, query, base string) ([]*Resource, error) {
	var out []*Resource
	err := s.Store.Write(ctx, func(tx Tx) error {
		var err error
		out, err = s.conditionalDeleteTx(tx, typ, query, base)
		return err
	})
	return out, err
}

func (s *Service) conditionalDeleteTx(tx Tx, typ, query, base string) ([]*Resource, error) {
	limit := s.MaxConditionalDeletes
	if limit <= 0 {
		limit = defaultMaxConditionalDeletes
	}
	ms, err := s.conditionalSearch(tx, typ, query, base, limit)
	if err != nil {
		return nil, err
	}
	if len(ms) > limit {
		return nil, multipleMatchesf("the conditional delete matched more than %d %s; nothing was deleted", limit, typ)
	}
	var out []*Resource
	for _, m := range ms {
		d := &Resource{Type: typ, ID: m.ID, VersionID: m.VersionID + 1, LastUpdated: tx.Now(), Method: MethodDelete}
		if err := tx.Put(d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ConditionalPatch patches the one resource of typ that the search query
// matches: apply gets its current version and returns the patched,
// parsed resource, which is stored as the next version. The search, apply
// and the write run in one store transaction, so nothing can change the
// resource in between. No match is IssueNotFound; two or more fail with
// ErrMultipleMatches (412). When ifMatch is not zero it must be the
// matched resource's version, else the error wraps ErrVersionConflict.
// See https://hl7.org/fhir/R4/http.html#patch.
func (s *Service) ConditionalPatch(ctx context.Context, typ, query, base string, ifMatch int64, apply func(cur *Resource) (*Parsed, error)) (*Resource, error) {
	var out *Resource
	err := s.Store.Write(ctx, func(tx Tx) error {
		ms, err := s.conditionalSearch(tx, typ, query, base, 1)
		if err != nil {
			return err
		}
		switch len(ms) {
		case 0:
			return Errorf(IssueNotFound, "the conditional patch matched no %s", typ)
		case 1:
		default:
			return multipleMatchesf("the conditional patch matched more than one %s; nothing was changed", typ)
		}
		out, err = s.patchTx(tx, ms[0], ifMatch, apply)
		return err
	})
	return out, err
}

// patchTx stores apply(cur) as the next version of cur.
func (s *Service) patchTx(tx Tx, cur *Resource, ifMatch int64, apply func(cur *Resource) (*Parsed, error)) (*Resource, error) {
	if ifMatch != 0 && cur.VersionID != ifMatch {
		return nil, VersionConflictf("If-Match names version %d but the current version is %s", ifMatch, describeVersion(cur))
	}
	p, err := apply(cur)
	if err != nil {
		return nil, err
	}
	if p.Type != cur.Type || p.ID() != cur.ID {
		return nil, Errorf(IssueInvalid, "the patch must not change the resource type or id")
	}
	// The patched resource exists only inside the write: it is validated
	// here, reading through tx.
	if err := s.validate(tx, p, nil); err != nil {
		return nil, err
	}
	return s.put(tx, p, cur.ID, cur.VersionID+1, MethodUpdate)
}
