package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cpis-fhir/cpis/fhir"
)

// idSet remembers, as 32-bit fingerprints, every identifier value that the
// index holds under an identifier parameter ("identifier", and the derived
// "<reference>:identifier" rows such as Flag "subject:identifier"), so that a
// search by an identifier that no resource carries (99% of CP-IS lookups:
// most children who attend have no record) is answered without a query.
//
// The set is a superset of the index: a value is added inside the write,
// before its commit, and never removed (a rolled-back write, a later update
// or a delete leaves a stale fingerprint, which only sends a search on to
// SQL, as does a collision). A write is acknowledged only after its commit,
// so a search that starts after the acknowledgement finds the value in the
// set. The store must be the only writer of its file, as it already is.
//
// The fingerprints are kept in a sorted array, found through a directory
// of their top 16 bits, and the ones added since the array was last
// rebuilt in a map, merged into a new array when it reaches mergeAt: about
// 4 bytes a value. The national data set has 1.75 million values, which a
// map of 64-bit hashes held in 44 MB and this holds in 7 MB; a number that
// no resource carries collides with one of them once in 2,400 lookups,
// which then asks SQL. It is safe for concurrent use.
type idSet struct {
	seed  maphash.Seed
	base  atomic.Pointer[fpArray] // immutable once stored
	mu    sync.RWMutex
	added map[uint32]struct{} // fingerprints not in base, guarded by mu
	// merging is set while a merge builds the next base outside mu.
	merging bool
}

// mergeAt is the size of the map of recent fingerprints at which they are
// merged into the sorted array.
const mergeAt = 1 << 16

func newIDSet() *idSet {
	s := &idSet{seed: maphash.MakeSeed(), added: map[uint32]struct{}{}}
	s.base.Store(newFPArray(nil))
	return s
}

// fpArray is a sorted array of fingerprints with the start of each value
// of their top 16 bits: the fingerprints with top bits t are
// fps[dir[t]:dir[t+1]].
type fpArray struct {
	fps []uint32
	dir []uint32 // 1<<16 + 1 offsets
}

// newFPArray indexes fps, which must be sorted and without duplicates.
func newFPArray(fps []uint32) *fpArray {
	a := &fpArray{fps: fps, dir: make([]uint32, 1<<16+1)}
	i := 0
	for t := range 1 << 16 {
		a.dir[t] = uint32(i)
		for i < len(fps) && fps[i]>>16 == uint32(t) {
			i++
		}
	}
	a.dir[1<<16] = uint32(len(fps))
	return a
}

func (a *fpArray) has(fp uint32) bool {
	part := a.fps[a.dir[fp>>16]:a.dir[fp>>16+1]]
	_, ok := slices.BinarySearch(part, fp)
	return ok
}

// merge returns a new array of a's fingerprints and more (sorted).
func (a *fpArray) merge(more []uint32) *fpArray {
	out := make([]uint32, 0, len(a.fps)+len(more))
	i, j := 0, 0
	for i < len(a.fps) && j < len(more) {
		switch {
		case a.fps[i] < more[j]:
			out = append(out, a.fps[i])
			i++
		case a.fps[i] > more[j]:
			out = append(out, more[j])
			j++
		default:
			out = append(out, a.fps[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, a.fps[i:]...)
	out = append(out, more[j:]...)
	return newFPArray(out)
}

// trackedParam reports whether rows of the parameter code go in the set.
func trackedParam(code string) bool {
	return code == "identifier" || strings.HasSuffix(code, ":identifier")
}

func (s *idSet) key(typ, code, system, value string) uint32 {
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
	return uint32(h.Sum64())
}

func (s *idSet) add(typ, code, system, value string) {
	fp := s.key(typ, code, system, value)
	if s.base.Load().has(fp) {
		return
	}
	s.mu.Lock()
	s.added[fp] = struct{}{}
	if len(s.added) < mergeAt || s.merging {
		s.mu.Unlock()
		return
	}
	// Merge outside the lock, so that lookups go on meanwhile: until the
	// new array is stored, the merged fingerprints stay in the map too.
	s.merging = true
	more := make([]uint32, 0, len(s.added))
	for k := range s.added {
		more = append(more, k)
	}
	s.mu.Unlock()
	slices.Sort(more)
	next := s.base.Load().merge(more)
	s.mu.Lock()
	s.base.Store(next)
	rest := map[uint32]struct{}{}
	for k := range s.added {
		if !next.has(k) {
			rest[k] = struct{}{}
		}
	}
	s.added = rest
	s.merging = false
	s.mu.Unlock()
}

func (s *idSet) has(typ, code, system, value string) bool {
	fp := s.key(typ, code, system, value)
	if s.base.Load().has(fp) {
		return true
	}
	s.mu.RLock()
	_, ok := s.added[fp]
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
