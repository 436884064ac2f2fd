package access

import (
	"context"
	"errors"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
)

// Store returns st as the principal p may use it (p nil: as nobody, so
// that everything is refused):
//
//   - Read and VRead return only what CanRead allows (404 for a resource
//     p may not know of, 403 for a type p never reads).
//   - Search and Tx.Search are narrowed by Narrow first.
//   - History is checked by History, and an instance's versions by CanRead.
//   - Tx.Put checks every version a write puts with CanWrite against the
//     current version, inside the write, so that a Bundle entry, a
//     conditional interaction and a PATCH are judged like a plain write;
//     the error fails the write (a transaction, or one batch entry).
//   - Tx.Read is not narrowed: the engine plans writes with it; what it
//     returns reaches a client only through a Bundle's read entries, which
//     the caller checks with CanRead.
//
// The returned Store is as safe for concurrent use as st; it is meant to
// live for one request.
func (pl *Policy) Store(st fhir.Store, p *smart.Principal) fhir.Store {
	return &store{Store: st, pl: pl, p: p}
}

type store struct {
	fhir.Store
	pl *Policy
	p  *smart.Principal
}

func (s *store) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := s.Store.Read(ctx, typ, id)
	return s.checkRead(ctx, typ, r, err)
}

func (s *store) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	r, err := s.Store.VRead(ctx, typ, id, version)
	return s.checkRead(ctx, typ, r, err)
}

// checkRead answers a read or vread of typ whose store answer is r, err: a
// type the role may not read is 403 whatever the store said (so that a
// missing resource and a hidden one look alike), a resource the principal
// may not see is CanRead's error.
func (s *store) checkRead(ctx context.Context, typ string, r *fhir.Resource, err error) (*fhir.Resource, error) {
	if err != nil {
		if s.p == nil {
			return nil, errNoPrincipal
		}
		if !readable(s.p, typ) {
			return nil, forbidden("the %s role may not read %s", s.p.Role, typ)
		}
		return nil, err
	}
	if err := s.pl.CanRead(s.p, r, s.previous(ctx, r)); err != nil {
		return nil, err
	}
	return r, nil
}

// previous returns the version before r, by which a delete is judged.
func (s *store) previous(ctx context.Context, r *fhir.Resource) func() *fhir.Resource {
	return func() *fhir.Resource {
		if r.VersionID < 2 {
			return nil
		}
		prev, err := s.Store.VRead(ctx, r.Type, r.ID, r.VersionID-1)
		if err != nil {
			return nil
		}
		return prev
	}
}

func (s *store) Search(ctx context.Context, q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	if err := s.pl.Narrow(s.p, q); err != nil {
		return nil, err
	}
	return s.Store.Search(ctx, q, cursor, backward)
}

func (s *store) History(ctx context.Context, q fhir.HistoryQuery) (*fhir.HistoryPage, error) {
	if err := s.pl.History(s.p, q.Type, q.ID); err != nil {
		return nil, err
	}
	page, err := s.Store.History(ctx, q)
	if err != nil || q.ID == "" {
		return page, err
	}
	// One resource's versions: each must be one p may see (a record whose
	// owner changed keeps its other council's versions hidden). When none
	// is, the resource is hidden.
	kept := page.Versions[:0:0]
	var firstErr error
	for i, v := range page.Versions {
		prev := func() *fhir.Resource {
			if i+1 < len(page.Versions) {
				return page.Versions[i+1]
			}
			return s.previous(ctx, v)()
		}
		if err := s.pl.CanRead(s.p, v, prev); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		kept = append(kept, v)
	}
	if len(kept) == 0 && firstErr != nil {
		return nil, firstErr
	}
	page.Versions = kept
	return page, nil
}

func (s *store) Write(ctx context.Context, fn func(tx fhir.Tx) error) error {
	if s.p == nil {
		return errNoPrincipal
	}
	return s.Store.Write(ctx, func(tx fhir.Tx) error {
		return fn(&txn{Tx: tx, s: s})
	})
}

func (s *store) Reindex(context.Context, func(string, []byte) (*fhir.Index, error), func(int, int)) error {
	return forbidden("reindexing is not a request")
}

func (s *store) Close() error { return nil }

// txn is a write transaction as the principal may use it.
type txn struct {
	fhir.Tx
	s *store
}

func (t *txn) Put(r *fhir.Resource) error {
	var cur *fhir.Resource
	if r.VersionID > 1 {
		c, err := t.Tx.Read(r.Type, r.ID)
		if err != nil && !fhir.IsNotFound(err) {
			return err
		}
		cur = c
	}
	if err := t.s.pl.CanWrite(t.s.p, cur, r); err != nil {
		return err
	}
	return t.Tx.Put(r)
}

// Unwrap returns the transaction without the principal's checks, for the
// writes the service makes on its own inside a request's write (CP-IS
// notifications), which no principal's role would allow.
func (t *txn) Unwrap() fhir.Tx { return t.Tx }

// AppendAudit appends an audit record in the write's transaction when the
// store's transaction can (sqlite).
func (t *txn) AppendAudit(rec []byte) error {
	a, ok := t.Tx.(interface{ AppendAudit(rec []byte) error })
	if !ok {
		return errors.New("access: the store keeps no audit trail")
	}
	return a.AppendAudit(rec)
}

func (t *txn) Search(q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	if err := t.s.pl.Narrow(t.s.p, q); err != nil {
		return nil, err
	}
	return t.Tx.Search(q, cursor, backward)
}
