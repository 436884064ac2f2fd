package sqlite

// Commits of other processes. Several processes may open one database file
// (cpis serve with --redis-url, or cpis token beside a server): SQLite's
// locks serialise their writes, but the in-memory state a Store keeps
// beside the file (the audit chain's head, the writer's parameter keys,
// the last commit time, the identifier set that answers lookup misses,
// the readers' missing parameter keys) would go stale. PRAGMA data_version
// tells, on a connection, whether another connection committed since it
// last asked (https://sqlite.org/pragma.html#pragma_data_version): the
// writer asks at the start of each commit, under the write lock, and, in a
// Shared store, the readers ask before trusting a miss.

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// watch is the readers' view of other connections' commits: a connection
// of its own, the data_version it last saw and the history seq the
// identifier set holds everything up to.
type watch struct {
	mu      sync.Mutex
	conn    *sql.Conn
	version int64
	seq     int64
}

// openWatch takes the watch connection and what it sees now; call it
// before loading the identifier set, which then holds at least that.
func (s *Store) openWatch(ctx context.Context) error {
	c, err := s.rdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("watch connection: %w", err)
	}
	s.watch.conn = c
	if err := c.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&s.watch.version); err != nil {
		return fmt.Errorf("watch connection: %w", err)
	}
	var seq sql.NullInt64
	if err := c.QueryRowContext(ctx, `SELECT max(seq) FROM history`).Scan(&seq); err != nil {
		return fmt.Errorf("watch connection: %w", err)
	}
	s.watch.seq = seq.Int64
	return nil
}

// catchUp makes the readers' state hold every commit made so far, by any
// process: when the database changed since the last look, it adds the
// identifiers of the versions committed since to the identifier set and
// makes the readers look again for the parameter keys they missed. It
// returns an error only when the database cannot be read.
func (s *Store) catchUp(ctx context.Context) error {
	if !s.cfg.Shared {
		return nil
	}
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	var v int64
	if err := w.conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: data version: %w", err)
	}
	if v == w.version {
		return nil
	}
	tx, err := w.conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: catch up: %w", err)
	}
	defer tx.Rollback()
	var last sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM history`).Scan(&last); err != nil {
		return fmt.Errorf("sqlite: catch up: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT p.type, p.code, t.system, t.code FROM history h
		JOIN res r ON r.type = h.type AND r.id = h.id AND r.seq = h.seq
		JOIN idx_token t ON t.rid = r.rid JOIN search_param p ON p.pid = t.pid
		WHERE h.seq > ? AND h.seq <= ? AND (p.code = 'identifier' OR p.code LIKE '%:identifier')`, w.seq, last.Int64)
	if err != nil {
		return fmt.Errorf("sqlite: catch up: %w", err)
	}
	if err := s.ids.addRows(rows); err != nil {
		return fmt.Errorf("sqlite: catch up: %w", err)
	}
	s.pids.gen.Add(1)
	w.version, w.seq = v, max(w.seq, last.Int64)
	return nil
}

// writerCatchUp runs at the start of each commit, holding the write lock:
// when another process committed since this writer's last commit (or that
// cannot be told), it forgets the audit head and the parameter keys it
// cached, which are read again as needed, and takes the last commit time
// from the database when it can. It never fails the commit: what goes
// wrong in the database then fails the writes themselves. Only the writer
// goroutine calls it.
func (s *Store) writerCatchUp(ctx context.Context) {
	var v int64
	st, err := s.writerStmt(ctx, `PRAGMA data_version`)
	if err == nil {
		err = st.QueryRowContext(ctx).Scan(&v)
	}
	if err == nil && v == s.wversion {
		return
	}
	var last sql.NullInt64
	if s.conn.QueryRowContext(ctx, `SELECT max(last_updated) FROM history`).Scan(&last) == nil && last.Valid {
		if t := time.UnixMilli(last.Int64).UTC(); t.After(s.last) {
			s.last = t
		}
	}
	s.audit.head = auditHead{}
	clear(s.wpids)
	s.wversion = v
}

// stillAbsent reports whether q, which the identifier set says matches
// nothing, still does once the set holds every commit so far (any
// process's). When the database cannot be read it says no, and the search
// runs.
func (s *Store) stillAbsent(ctx context.Context, q *fhir.Search) bool {
	if !s.cfg.Shared {
		return true
	}
	if s.catchUp(ctx) != nil {
		return false
	}
	return s.ids.absent(q)
}
