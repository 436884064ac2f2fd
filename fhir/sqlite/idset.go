package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/cpis-fhir/cpis/fhir"
)

// idSet remembers, as 64-bit hashes, every identifier value that the index
// holds under an identifier parameter ("identifier", and the derived
// "<reference>:identifier" rows such as Flag "subject:identifier"), so that a
// search by an identifier that no resource carries (99% of CP-IS lookups:
// most children who attend have no record) is answered without a query.
//
// The set is a superset of the index: a value is added inside the write,
// before its commit, and never removed (a rolled-back write, a later update
// or a delete leaves a stale hash, which only sends a search on to SQL, as
// does a hash collision). A write is acknowledged only after its commit, so
// a search that starts after the acknowledgement finds the value in the set.
// The store must be the only writer of its file, as it already is.
// It is safe for concurrent use.
type idSet struct {
	seed maphash.Seed
	mu   sync.RWMutex
	m    map[uint64]struct{}
}

func newIDSet() *idSet { return &idSet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}} }

// trackedParam reports whether rows of the parameter code go in the set.
func trackedParam(code string) bool {
	return code == "identifier" || strings.HasSuffix(code, ":identifier")
}

func (s *idSet) key(typ, code, system, value string) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	k := keyOf(typ, code)
	h.WriteString(k.typ)
	h.WriteByte(0)
	h.WriteString(k.code)
	h.WriteByte(0)
	h.WriteString(system)
	h.WriteByte(0)
	h.WriteString(value)
	return h.Sum64()
}

func (s *idSet) add(typ, code, system, value string) {
	k := s.key(typ, code, system, value)
	s.mu.Lock()
	s.m[k] = struct{}{}
	s.mu.Unlock()
}

func (s *idSet) has(typ, code, system, value string) bool {
	k := s.key(typ, code, system, value)
	s.mu.RLock()
	_, ok := s.m[k]
	s.mu.RUnlock()
	return ok
}

// load adds the identifier rows already in the database.
func (s *idSet) load(ctx context.Context, st *Store) error {
	rows, err := st.conn.QueryContext(ctx, `SELECT p.type, p.code, t.system, t.code FROM search_param p
		JOIN idx_token t ON t.pid = p.pid WHERE p.code = 'identifier' OR p.code LIKE '%:identifier'`)
	if err != nil {
		return fmt.Errorf("load identifiers: %w", err)
	}
	if err := s.addRows(rows); err != nil {
		return fmt.Errorf("load identifiers: %w", err)
	}
	return nil
}

// addRows adds rows of the columns type, code, system, value and closes
// them.
func (s *idSet) addRows(rows *sql.Rows) error {
	defer rows.Close()
	for rows.Next() {
		var typ, code, system, value string
		if err := rows.Scan(&typ, &code, &system, &value); err != nil {
			return err
		}
		s.add(typ, code, system, value)
	}
	return rows.Err()
}

// absent reports whether q is known to match nothing because one of its
// ANDed filters asks only for identifier values (system|value) that no
// resource carries, directly, through a chain or in every part of a
// disjunction (Filter.Any).
func (s *idSet) absent(q *fhir.Search) bool {
	if q.Type == "" {
		return false
	}
	for i := range q.Filters {
		if s.filterAbsent(&q.Filters[i], q.Type) {
			return true
		}
	}
	return false
}

func (s *idSet) filterAbsent(f *fhir.Filter, typ string) bool {
	if len(f.Any) > 0 {
		for i := range f.Any {
			if !s.filterAbsent(&f.Any[i], typ) {
				return false
			}
		}
		return true
	}
	if f.Has != nil || f.Param == nil {
		return false
	}
	if len(f.Chain) > 0 {
		for i := range f.Chain {
			if !s.filterAbsent(&f.Chain[i].Filter, f.Chain[i].Type) {
				return false
			}
		}
		return true
	}
	var code string
	switch {
	case f.Param.Type == fhir.SearchParamToken && f.Modifier == "" && trackedParam(f.Param.Name):
		code = f.Param.Name
	case f.Param.Type == fhir.SearchParamReference && f.Modifier == "identifier":
		code = f.Param.Name + ":identifier"
	default:
		return false
	}
	if len(f.Values) == 0 {
		return false
	}
	for _, v := range f.Values {
		// Only system|value is answered: a value alone may sit under any
		// system.
		if !v.HasSystem || v.System == "" || v.Code == "" || s.has(typ, code, v.System, v.Code) {
			return false
		}
	}
	return true
}

// MayHoldIdentifier reports whether a resource of typ may carry the
// identifier system|value under the identifier parameter code (such as
// Patient "identifier"): false means that none does. The answer comes from
// the identifier set, without a query.
func (s *Store) MayHoldIdentifier(typ, code, system, value string) bool {
	return s.ids.has(typ, code, system, value)
}
