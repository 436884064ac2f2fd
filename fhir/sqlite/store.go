package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migration/*.sql
var migrations embed.FS

// Config tunes a Store. The zero value is usable.
type Config struct {
	// Now returns the current time; nil means time.Now. Tests fake the clock
	// here.
	Now func() time.Time
	// MaxBatch is the most write functions one commit takes; zero means 256.
	MaxBatch int
	// Readers is the size of the read connection pool; zero means
	// 4*GOMAXPROCS.
	Readers int
	// Shared says that other processes write the file too (cpis serve
	// with --redis-url): before a search trusts the identifier set or a
	// missing parameter key, it checks for their commits (foreign.go), a
	// few microseconds per lookup miss. The writer always checks, at each
	// commit.
	Shared bool
}

// Store is a fhir.Store in one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	cfg  Config
	rdb  *sql.DB
	wdb  *sql.DB
	conn *sql.Conn // the writer's connection, used only by the writer goroutine

	readStmt, vreadStmt                *sql.Stmt
	txRead, txInsertHistory            *sql.Stmt
	txResRid, txResInsert, txResUpdate *sql.Stmt            // the writer's res row statements (tx.Put)
	txIndex                            indexStmts           // the writer's index row statements
	insStmts                           map[insKey]*sql.Stmt // the writer's index row inserts, by table and row count
	wstmts                             map[string]*sql.Stmt // the writer's search statements (Tx.Search), by SQL text

	stmts *stmtCache         // the read pool's search statements
	pids  pidCache           // search parameter keys as readers see them
	wpids map[paramKey]int64 // search parameter keys as the writer sees them, owned by the writer
	ids   *idSet             // identifier values in the index, for lookups that cannot match
	watch watch              // other connections' commits as readers see them (foreign.go)

	wversion int64 // data_version of the writer's connection after its last commit (foreign.go)

	mu     sync.RWMutex // guards closed against Write's send on reqs
	closed bool
	reqs   chan *writeReq
	done   chan struct{}
	ckKick chan struct{} // asks the checkpointer for a checkpoint (checkpoint.go)
	ckStop chan struct{} // closed to stop the checkpointer
	ckDone chan struct{} // closed when the checkpointer has stopped
	last   time.Time     // last commit time, owned by the writer

	commits chan struct{} // signalled after each commit that wrote (subscription.go)

	audit  auditState    // the audit trail (audit.go)
	recent recentIndexes // index rows of the last versions committed (recent.go)
	path   string        // the database file
}

type writeReq struct {
	ctx   context.Context
	fn    func(fhir.Tx) error
	done  chan error
	large bool // fhir.IsLargeWrite: committed after the small ones queued with it
}

// Open opens (creating if needed) the database file at path, applies the
// embedded migrations and starts the writer.
func Open(path string, cfg Config) (*Store, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 4 * runtime.GOMAXPROCS(0)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=temp_store(MEMORY)"
	s := &Store{path: path, cfg: cfg, reqs: make(chan *writeReq, 4096), done: make(chan struct{}), wpids: map[paramKey]int64{}, ids: newIDSet(), insStmts: map[insKey]*sql.Stmt{}, wstmts: map[string]*sql.Stmt{}, commits: make(chan struct{}, 1)}
	var err error
	wdsn := dsn + "&_txlock=immediate&_pragma=cache_size(-32768)&_pragma=wal_autocheckpoint(" + strconv.Itoa(autoCheckpointPages) + ")"
	if s.wdb, err = sql.Open("sqlite", wdsn); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	ctx := context.Background()
	if s.conn, err = s.wdb.Conn(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.conn.Close()
		s.wdb.Close()
		return nil, err
	}
	if s.rdb, err = sql.Open("sqlite", dsn+"&_pragma=query_only(1)"); err != nil {
		s.conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(cfg.Readers)
	s.rdb.SetMaxIdleConns(cfg.Readers)
	s.stmts = newStmtCache(s.rdb, stmtCacheSize)
	s.pids.init(s.rdb)
	if err := s.prepare(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	s.pids.fresh = s.catchUp
	if err := s.openWatch(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&s.wversion); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := s.ids.load(ctx, s); err != nil {
		s.closeDBs()
		return nil, err
	}
	var last sql.NullInt64
	if err := s.conn.QueryRowContext(ctx, `SELECT max(last_updated) FROM history`).Scan(&last); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("read last commit time: %w", err)
	}
	if last.Valid {
		s.last = time.UnixMilli(last.Int64).UTC()
	}
	if s.audit.journal, err = journal.Open(ReadAuditPath(path), cfg.Now); err != nil {
		s.closeDBs()
		return nil, err
	}
	// The checkpointer's connection (checkpoint.go).
	ckdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		s.audit.journal.Close()
		s.closeDBs()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ckdb.SetMaxOpenConns(1)
	s.ckKick, s.ckStop, s.ckDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go checkpointer(ckdb, s.ckKick, s.ckStop, s.ckDone)
	go s.writer()
	return s, nil
}

const selectVersion = `SELECT h.version, h.last_updated, h.method, h.body, h.seq FROM `

func (s *Store) prepare(ctx context.Context) error {
	stmts := []struct {
		dst  **sql.Stmt
		prep func(context.Context, string) (*sql.Stmt, error)
		sql  string
	}{
		{&s.readStmt, s.rdb.PrepareContext, selectVersion + `res r JOIN history h ON h.seq = r.seq WHERE r.type = ? AND r.id = ?`},
		{&s.vreadStmt, s.rdb.PrepareContext, selectVersion + `history h WHERE h.type = ? AND h.id = ? AND h.version = ?`},
		{&s.txRead, s.conn.PrepareContext, selectVersion + `res r JOIN history h ON h.seq = r.seq WHERE r.type = ? AND r.id = ?`},
		{&s.txInsertHistory, s.conn.PrepareContext, `INSERT INTO history (type, id, version, last_updated, method, body) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.txResRid, s.conn.PrepareContext, `SELECT rid FROM res WHERE type = ? AND id = ?`},
		{&s.txResInsert, s.conn.PrepareContext, `INSERT INTO res (type, id, version, seq, last_updated, deleted) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.txResUpdate, s.conn.PrepareContext, `UPDATE res SET version = ?, seq = ?, last_updated = ?, deleted = ? WHERE rid = ?`},
	}
	for _, st := range s.txIndex.all() {
		stmts = append(stmts, struct {
			dst  **sql.Stmt
			prep func(context.Context, string) (*sql.Stmt, error)
			sql  string
		}{st.dst, s.conn.PrepareContext, st.sql})
	}
	for _, st := range stmts {
		stmt, err := st.prep(ctx, st.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", st.sql, err)
		}
		*st.dst = stmt
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migration (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migration/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.migrateFile(ctx, name); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return nil
}

func (s *Store) migrateFile(ctx context.Context, name string) error {
	tx, err := s.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migration WHERE name = ?`, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := fs.ReadFile(migrations, name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migration (name, applied_at) VALUES (?, ?)`, name, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	return tx.Commit()
}

// Read implements fhir.Store.
func (s *Store) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := scanVersion(s.readStmt.QueryRowContext(ctx, typ, id), typ, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fhir.Errorf(fhir.IssueNotFound, "%s: no resource with this id", typ)
	}
	return r, err
}

// VRead implements fhir.Store.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	r, err := scanVersion(s.vreadStmt.QueryRowContext(ctx, typ, id, version), typ, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fhir.Errorf(fhir.IssueNotFound, "%s: no such version of this resource", typ)
	}
	return r, err
}

// History implements fhir.Store. Versions come newest first, by Seq.
func (s *Store) History(ctx context.Context, q fhir.HistoryQuery) (*fhir.HistoryPage, error) {
	where, args := "1 = 1", []any{}
	if q.Type != "" {
		where += " AND type = ?"
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where += " AND id = ?"
		args = append(args, q.ID)
	}
	if q.Before > 0 {
		where += " AND seq < ?"
		args = append(args, q.Before)
	}
	if !q.Since.IsZero() {
		// last_updated never decreases as seq grows, so the first version at
		// or after Since bounds seq from below and the scan stays on seq.
		where += " AND seq >= (SELECT coalesce(min(seq), 9223372036854775807) FROM history WHERE last_updated >= ?)"
		args = append(args, q.Since.UnixMilli())
	}
	count := q.Count
	if count <= 0 {
		count = 20
	}
	args = append(args, count+1)
	rows, err := s.rdb.QueryContext(ctx, `SELECT type, id, version, seq, last_updated, method, body FROM history WHERE `+where+` ORDER BY seq DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	page := &fhir.HistoryPage{}
	if page.Versions, err = scanVersions(rows); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if len(page.Versions) > count {
		page.Versions = page.Versions[:count]
		page.Next = page.Versions[count-1].Seq
	}
	return page, nil
}

// scanVersions reads and closes rows of the columns type, id, version, seq,
// last_updated, method, body (of history, or res joined with history).
func scanVersions(rows *sql.Rows) ([]*fhir.Resource, error) {
	defer rows.Close()
	var out []*fhir.Resource
	for rows.Next() {
		r := &fhir.Resource{}
		var lu int64
		var method string
		if err := rows.Scan(&r.Type, &r.ID, &r.VersionID, &r.Seq, &lu, &method, &r.JSON); err != nil {
			return nil, err
		}
		r.LastUpdated, r.Method = time.UnixMilli(lu).UTC(), fhir.Method(method)
		out = append(out, r)
	}
	return out, rows.Err()
}

func scanVersion(row *sql.Row, typ, id string) (*fhir.Resource, error) {
	r := &fhir.Resource{Type: typ, ID: id}
	var lu int64
	var method string
	if err := row.Scan(&r.VersionID, &lu, &method, &r.JSON, &r.Seq); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", typ, err)
	}
	r.LastUpdated, r.Method = time.UnixMilli(lu).UTC(), fhir.Method(method)
	return r, nil
}

// Ready implements fhir.Store: it reads from the database and checks that
// the writer is running.
func (s *Store) Ready(ctx context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// ErrClosed is returned by Write after Close: a transient failure (503) of
// a server that is shutting down.
var ErrClosed = &fhir.Error{Code: fhir.IssueTransient, Message: "the server is shutting down; retry the request"}

// Close implements fhir.Store: it stops taking writes, lets the writer
// commit what is queued, and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	close(s.ckStop)
	<-s.ckDone
	return errors.Join(s.audit.journal.Close(), s.closeDBs())
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.readStmt, s.vreadStmt, s.txRead, s.txInsertHistory, s.txResRid, s.txResInsert, s.txResUpdate} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range s.txIndex.all() {
		if *st.dst != nil {
			errs = append(errs, (*st.dst).Close())
		}
	}
	for _, st := range s.insStmts {
		errs = append(errs, st.Close())
	}
	for _, st := range s.wstmts {
		errs = append(errs, st.Close())
	}
	if s.stmts != nil {
		errs = append(errs, s.stmts.close())
	}
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	if s.watch.conn != nil {
		errs = append(errs, s.watch.conn.Close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	errs = append(errs, s.wdb.Close())
	return errors.Join(errs...)
}
