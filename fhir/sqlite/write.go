package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Write implements fhir.Store. fn runs on the writer goroutine inside a
// savepoint of a commit it may share with other writes; Write returns once
// that commit is durable. A ctx cancelled before fn starts skips fn.
func (s *Store) Write(ctx context.Context, fn func(fhir.Tx) error) error {
	return s.write(&writeReq{ctx: ctx, fn: fn, done: make(chan error, 1), large: fhir.IsLargeWrite(ctx)})
}

func (s *Store) write(req *writeReq) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.reqs <- req
	s.mu.RUnlock()
	// Wait even if ctx ends meanwhile: once fn has started, the outcome
	// must be reported truthfully.
	err := <-req.done
	if storageFull(err) {
		return fhir.StorageFull()
	}
	return err
}

// storageFull reports whether err is SQLite's SQLITE_FULL (the disk, or
// the database's max_page_count, is full) or a system call's ENOSPC. The
// write's savepoint or its whole commit was rolled back, so nothing of it
// is kept.
func storageFull(err error) bool {
	var se *sqlitedriver.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// writer owns s.conn. It takes the first queued write, then every write
// queued behind it (up to MaxBatch), runs them in one transaction, each in a
// savepoint, and commits once. When large writes (fhir.WithLargeWrite)
// and small ones queued together, the small ones are committed first, in
// a commit of their own, so that an attendance does not also wait for the
// council uploads (30-60 ms of the writer each) queued with it: on the
// national mixed bench, attendance p90 175-231 ms -> 150-156 ms; p99 stayed
// at 0.6-0.8 s, the wait for the commit under way. The extra commit costs
// one WAL sync, and only when both kinds wait.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*writeReq, 0, s.cfg.MaxBatch)
	var small, large []*writeReq
	for req := range s.reqs {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		small, large = small[:0], large[:0]
		for _, r := range batch {
			if r.large {
				large = append(large, r)
			} else {
				small = append(small, r)
			}
		}
		if len(small) == 0 || len(large) == 0 {
			s.commit(batch)
			continue
		}
		s.commit(small)
		s.commit(large)
	}
}

func (s *Store) commit(batch []*writeReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	var wtx *tx
	fail := func(err error) {
		if wtx != nil {
			wtx.forget(0) // keys the rolled back commit added are gone
		}
		for i, r := range batch {
			if errs[i] == nil {
				errs[i] = err
			}
			r.done <- errs[i]
		}
	}
	if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("sqlite: begin: %w", err))
		return
	}
	s.writerCatchUp(ctx)
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	if now.Before(s.last) {
		now = s.last
	}
	wtx = &tx{s: s, ctx: ctx, now: now, audit: s.audit.head}
	wrote := false
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		run := s.runSavepoint
		if !wrote {
			run = s.runAlone
		}
		if err := run(ctx, wtx, r.fn); err != nil {
			errs[i] = err
			if errors.Is(err, errSavepoint) {
				s.conn.ExecContext(ctx, "ROLLBACK")
				fail(err)
				return
			}
			continue
		}
		wrote = true
	}
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		s.conn.ExecContext(ctx, "ROLLBACK")
		fail(fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	if wrote {
		s.last = wtx.now
		s.kickCheckpoint()
		select {
		case s.commits <- struct{}{}:
		default:
		}
	}
	s.audit.head = wtx.audit // the audit chain as committed (audit.go)
	if len(wtx.added) > 0 {
		// New parameter keys are committed: readers must look again for
		// keys they found missing (see pidCache).
		s.pids.gen.Add(1)
	}
	wtx.added = wtx.added[:0]
	s.recent.add(wtx.recent) // committed: the matcher may take their index rows
	for i, r := range batch {
		r.done <- errs[i]
	}
}

var errSavepoint = errors.New("sqlite: a savepoint or transaction could not be opened or closed")

// runSavepoint runs fn inside a savepoint and rolls the savepoint back if fn
// fails or panics, so that one failing write never touches the others in
// the batch.
func (s *Store) runSavepoint(ctx context.Context, tx *tx, fn func(fhir.Tx) error) (err error) {
	if _, err := s.conn.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		return fmt.Errorf("%w: %v", errSavepoint, err)
	}
	mark, audit, recent := len(tx.added), tx.audit, len(tx.recent)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: write function panicked: %v", p)
		}
		if err != nil {
			tx.forget(mark)
			tx.audit = audit
			tx.recent = tx.recent[:recent]
			if _, rerr := s.conn.ExecContext(ctx, "ROLLBACK TO w"); rerr != nil {
				// SQLite may have rolled back the whole transaction
				// itself (it does on SQLITE_FULL): the commit fails, with
				// fn's error kept as the cause.
				err = fmt.Errorf("%w: %v (after: %w)", errSavepoint, rerr, err)
				return
			}
		}
		if _, rerr := s.conn.ExecContext(ctx, "RELEASE w"); rerr != nil {
			err = fmt.Errorf("%w: %v", errSavepoint, rerr)
		}
	}()
	return fn(tx)
}

// runAlone runs fn, the first write of the transaction that is kept if
// it succeeds, without a savepoint: if fn fails or panics, rolling the
// whole transaction back undoes fn alone, and a new one is begun for the
// writes after it. A savepoint has SQLite copy every page fn changes to
// its sub-journal first, 15% of the writer's CPU during a seed (where a
// commit holds 4 to 5 uploads); the first write of each commit is spared
// that, and a commit of one write takes no savepoint at all.
func (s *Store) runAlone(ctx context.Context, tx *tx, fn func(fhir.Tx) error) (err error) {
	mark, recent := len(tx.added), len(tx.recent)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: write function panicked: %v", p)
		}
		if err == nil {
			return
		}
		tx.forget(mark)
		tx.recent = tx.recent[:recent]
		// SQLite may have rolled the transaction back itself (it does on
		// SQLITE_FULL), and then ROLLBACK fails: either way none is open.
		s.conn.ExecContext(ctx, "ROLLBACK")
		if _, berr := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); berr != nil {
			err = fmt.Errorf("%w: begin again: %v (after: %w)", errSavepoint, berr, err)
			return
		}
		// Another process may have committed in between.
		s.writerCatchUp(ctx)
		tx.audit = s.audit.head
		if s.last.After(tx.now) {
			tx.now = s.last
		}
	}()
	return fn(tx)
}

// tx implements fhir.Tx on the writer's connection.
type tx struct {
	s   *Store
	ctx context.Context
	now time.Time
	// added lists the search parameter keys this commit inserted, so that
	// a rollback can drop them from the writer's cache.
	added []paramKey
	args  []any     // reused for index row inserts
	audit auditHead // the audit chain's head in this transaction (audit.go)
	// recent lists the index rows of the versions put, for recentIndexes
	// once committed.
	recent []recentIndex
}

func (t *tx) Now() time.Time { return t.now }

func (t *tx) Read(typ, id string) (*fhir.Resource, error) {
	r, err := scanVersion(t.s.txRead.QueryRowContext(t.ctx, typ, id), typ, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fhir.Errorf(fhir.IssueNotFound, "%s: no resource with this id", typ)
	}
	return r, err
}

// Put implements fhir.Tx: it appends the version to history, makes it the
// resource's current version and replaces the resource's index rows with
// r.Index's (none for a nil Index, such as a delete's), all inside the
// write's savepoint.
func (t *tx) Put(r *fhir.Resource) error {
	var body any
	if r.JSON != nil {
		body = r.JSON
	}
	res, err := t.s.txInsertHistory.ExecContext(t.ctx, r.Type, r.ID, r.VersionID, r.LastUpdated.UnixMilli(), string(r.Method), body)
	if err != nil {
		return fmt.Errorf("sqlite: put %s: %w", r.Type, err)
	}
	if r.Seq, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("sqlite: put %s: %w", r.Type, err)
	}
	deleted := 0
	if r.Deleted() {
		deleted = 1
	}
	rid, err := t.putRes(r, deleted)
	if err != nil {
		return fmt.Errorf("sqlite: put %s: %w", r.Type, err)
	}
	// Version 1 is the resource's first row, so it has no index rows yet.
	if err := t.replaceIndex(rid, r.Type, r.VersionID > 1, r.Index); err != nil {
		return fmt.Errorf("sqlite: put %s: %w", r.Type, err)
	}
	if r.Index != nil {
		t.recent = append(t.recent, recentIndex{seq: r.Seq, typ: r.Type, id: r.ID, version: r.VersionID, idx: r.Index})
	}
	return nil
}

// putRes makes r the current version in res and returns the resource's
// rid. A first version inserts the row; a later one updates it. Each is a
// one-row statement without RETURNING, so SQLite opens no statement
// journal for it: an upsert with RETURNING does (RETURNING runs as a
// trigger), and closing a statement journal walks the savepoint's whole
// in-memory sub-journal, which for a council's upload of a hundred
// resources is several megabytes (a tenth of the seed's CPU went there).
func (t *tx) putRes(r *fhir.Resource, deleted int) (int64, error) {
	at := r.LastUpdated.UnixMilli()
	if r.VersionID > 1 {
		var rid int64
		err := t.s.txResRid.QueryRowContext(t.ctx, r.Type, r.ID).Scan(&rid)
		if err == nil {
			_, err = t.s.txResUpdate.ExecContext(t.ctx, r.VersionID, r.Seq, at, deleted, rid)
			return rid, err
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	}
	res, err := t.s.txResInsert.ExecContext(t.ctx, r.Type, r.ID, r.VersionID, r.Seq, at, deleted)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// Search implements fhir.Tx: it runs q as Store.Search does, on the
// writer's connection inside this transaction, so it sees the
// transaction's own writes (and those of the commit's earlier writes) and
// nothing can be written between it and the transaction's next Put. That
// makes a search-then-write, such as a conditional create, race-free. The
// SQL is the same as Store.Search's, prepared once on the writer's
// connection and kept.
func (t *tx) Search(q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	return t.s.search(t.ctx, &reader{s: t.s, w: t}, q, cursor, backward)
}

// writerStmt returns the writer's prepared statement for query, preparing
// it on a miss. At most stmtCacheSize are kept: past that the cache is
// emptied and starts again. Only the writer goroutine calls it.
func (s *Store) writerStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.wstmts[query]; ok {
		return st, nil
	}
	if len(s.wstmts) >= stmtCacheSize {
		for q, st := range s.wstmts {
			st.Close()
			delete(s.wstmts, q)
		}
	}
	st, err := s.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare search: %w", err)
	}
	s.wstmts[query] = st
	return st, nil
}
