package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cpis-fhir/cpis/fhir"
)

// paramKey names a search parameter as the index tables key it: the
// resource type and the parameter's code (with a modifier suffix for the
// derived rows, "subject:identifier"). Parameters defined on every resource
// (codes starting with "_") have an empty type, so that one key serves
// every type and a system search finds them across types.
type paramKey struct{ typ, code string }

func keyOf(typ, code string) paramKey {
	if strings.HasPrefix(code, "_") {
		typ = ""
	}
	return paramKey{typ, code}
}

// indexStmts are the writer's prepared statements for index rows.
type indexStmts struct {
	pidSelect, pidInsert *sql.Stmt

	delToken, delString, delReference, delDate, delNumber, delQuantity, delURI, delComposite *sql.Stmt

	version *sql.Stmt // the current version of a rid, for Reindex
}

type stmtDef struct {
	dst **sql.Stmt
	sql string
}

func (x *indexStmts) all() []stmtDef {
	return []stmtDef{
		{&x.pidSelect, `SELECT pid FROM search_param WHERE type = ? AND code = ?`},
		{&x.pidInsert, `INSERT INTO search_param (type, code) VALUES (?, ?)`},
		{&x.delToken, `DELETE FROM idx_token WHERE rid = ?`},
		{&x.delString, `DELETE FROM idx_string WHERE rid = ?`},
		{&x.delReference, `DELETE FROM idx_reference WHERE rid = ?`},
		{&x.delDate, `DELETE FROM idx_date WHERE rid = ?`},
		{&x.delNumber, `DELETE FROM idx_number WHERE rid = ?`},
		{&x.delQuantity, `DELETE FROM idx_quantity WHERE rid = ?`},
		{&x.delURI, `DELETE FROM idx_uri WHERE rid = ?`},
		{&x.delComposite, `DELETE FROM idx_composite WHERE rid = ?`},
		{&x.version, `SELECT version, deleted FROM res WHERE rid = ?`},
	}
}

// pid returns the key of the parameter code on typ, adding it to
// search_param if it is new. The writer's cache remembers keys; a key
// added by a savepoint or commit that is rolled back is forgotten again
// (see tx.forget), so the cache never holds a key the database lost.
func (t *tx) pid(typ, code string) (int64, error) {
	k := keyOf(typ, code)
	if id, ok := t.s.wpids[k]; ok {
		return id, nil
	}
	var id int64
	err := t.s.txIndex.pidSelect.QueryRowContext(t.ctx, k.typ, k.code).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		res, err := t.s.txIndex.pidInsert.ExecContext(t.ctx, k.typ, k.code)
		if err != nil {
			return 0, err
		}
		if id, err = res.LastInsertId(); err != nil {
			return 0, err
		}
		t.added = append(t.added, k)
	} else if err != nil {
		return 0, err
	}
	t.s.wpids[k] = id
	return id, nil
}

// forget drops from the writer's cache the keys added since mark.
func (t *tx) forget(mark int) {
	for _, k := range t.added[mark:] {
		delete(t.s.wpids, k)
	}
	t.added = t.added[:mark]
}

// replaceIndex makes idx the index rows of rid: it deletes the rows an
// earlier version left (when old is true) and inserts idx's (none when idx
// is nil).
func (t *tx) replaceIndex(rid int64, typ string, old bool, idx *fhir.Index) error {
	x := &t.s.txIndex
	ctx := t.ctx
	if old {
		for _, st := range []*sql.Stmt{x.delToken, x.delString, x.delReference, x.delDate, x.delNumber, x.delQuantity, x.delURI, x.delComposite} {
			if _, err := st.ExecContext(ctx, rid); err != nil {
				return fmt.Errorf("delete index rows: %w", err)
			}
		}
	}
	if idx == nil {
		return nil
	}
	// Rows come grouped by parameter, so the last key looked up is the
	// next one's more often than not.
	var lastCode string
	var lastPid int64
	pid := func(code string) (int64, error) {
		if code == lastCode && lastPid != 0 {
			return lastPid, nil
		}
		id, err := t.pid(typ, code)
		if err != nil {
			return 0, fmt.Errorf("search parameter key: %w", err)
		}
		lastCode, lastPid = code, id
		return id, nil
	}
	args := t.args[:0]
	flush := func(tab *indexTable) error {
		err := t.insertRows(tab, args)
		args = args[:0]
		return err
	}
	for _, v := range idx.Tokens {
		if onResRow(v.Param) {
			continue
		}
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.Code, v.System, rid)
		if trackedParam(v.Param) {
			// Before the commit, so that the set never lacks a value
			// a search could find (see idSet).
			t.s.ids.add(typ, v.Param, v.System, v.Code)
		}
	}
	if err := flush(&tokenTable); err != nil {
		return err
	}
	for _, v := range idx.Strings {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.Norm, v.Exact, rid)
	}
	if err := flush(&stringTable); err != nil {
		return err
	}
	for _, v := range idx.References {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.ID, v.Type, v.URL, v.Version, rid)
	}
	if err := flush(&referenceTable); err != nil {
		return err
	}
	for _, v := range idx.Dates {
		if onResRow(v.Param) {
			continue
		}
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.Low, v.High, rid)
	}
	if err := flush(&dateTable); err != nil {
		return err
	}
	for _, v := range idx.Numbers {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.Value, v.Low, v.High, rid)
	}
	if err := flush(&numberTable); err != nil {
		return err
	}
	for _, v := range idx.Quantities {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.Value, v.Low, v.High, v.System, v.Code, v.Unit, rid)
	}
	if err := flush(&quantityTable); err != nil {
		return err
	}
	for _, v := range idx.URIs {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		args = append(args, p, v.URI, rid)
	}
	if err := flush(&uriTable); err != nil {
		return err
	}
	for cid, v := range idx.Composites {
		p, err := pid(v.Param)
		if err != nil {
			return err
		}
		for part, c := range v.Parts {
			low, high := any(c.Low), any(c.High)
			if c.Type == fhir.SearchParamDate {
				low, high = c.DateLow, c.DateHigh
			}
			args = append(args, rid, p, cid, part, c.System, c.Code, "", c.Norm, c.Exact,
				c.RefType, c.RefID, c.URL, c.URI, c.Value, low, high)
		}
	}
	err := flush(&compositeTable)
	t.args = args[:0]
	return err
}

// onResRow reports whether param is searched and sorted on the res row's
// own columns (see compiler.filter and sortKey), so that the store keeps
// no index rows for it: _id (res.id), _lastUpdated (res.last_updated) and
// _type. The two with rows were 2 of the 14 rows of a resource of the
// national data set, and 5 of its 29 B-tree inserts.
func onResRow(param string) bool {
	return param == "_id" || param == "_lastUpdated" || param == "_type"
}

// indexTable describes the INSERT of an index table's rows.
type indexTable struct {
	name string
	cols []string
}

var (
	tokenTable     = indexTable{"idx_token", []string{"pid", "code", "system", "rid"}}
	stringTable    = indexTable{"idx_string", []string{"pid", "norm", "exact", "rid"}}
	referenceTable = indexTable{"idx_reference", []string{"pid", "ref_id", "ref_type", "url", "version", "rid"}}
	dateTable      = indexTable{"idx_date", []string{"pid", "low", "high", "rid"}}
	numberTable    = indexTable{"idx_number", []string{"pid", "value", "low", "high", "rid"}}
	quantityTable  = indexTable{"idx_quantity", []string{"pid", "value", "low", "high", "system", "code", "unit", "rid"}}
	uriTable       = indexTable{"idx_uri", []string{"pid", "uri", "rid"}}
	compositeTable = indexTable{"idx_composite", []string{"rid", "pid", "cid", "part", "system", "code", "unit", "norm", "exact", "ref_type", "ref_id", "url", "uri", "value", "low", "high"}}
)

// maxInsertRows is the most rows one INSERT statement writes.
const maxInsertRows = 16

// insKey names a multi-row INSERT statement: the table and the number of
// rows.
type insKey struct {
	table string
	rows  int
}

// insertRows inserts the rows whose column values args holds, in order,
// with one INSERT per maxInsertRows rows. The statements are prepared on
// the writer's connection once per table and row count, and kept.
func (t *tx) insertRows(tab *indexTable, args []any) error {
	n := len(tab.cols)
	for len(args) > 0 {
		rows := min(len(args)/n, maxInsertRows)
		k := insKey{tab.name, rows}
		st := t.s.insStmts[k]
		if st == nil {
			var b strings.Builder
			b.WriteString("INSERT OR IGNORE INTO " + tab.name + " (" + strings.Join(tab.cols, ", ") + ") VALUES ")
			row := "(" + strings.Repeat("?, ", n-1) + "?)"
			for i := range rows {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(row)
			}
			var err error
			if st, err = t.s.conn.PrepareContext(t.ctx, b.String()); err != nil {
				return fmt.Errorf("prepare index insert: %w", err)
			}
			t.s.insStmts[k] = st
		}
		if _, err := st.ExecContext(t.ctx, args[:rows*n]...); err != nil {
			return fmt.Errorf("insert index rows: %w", err)
		}
		args = args[rows*n:]
	}
	return nil
}

// pidCache maps parameter keys to pids for readers. It holds the keys
// found in the database (committed), and the keys found missing together
// with the generation they were missed in: the writer moves gen on after
// every commit that adds keys, before acknowledging it, so a parameter first
// written after a lookup is found by the next lookup that starts after the
// write is acknowledged. It is safe for concurrent use.
type pidCache struct {
	db      *sql.DB
	mu      sync.RWMutex
	m       map[paramKey]int64
	missing map[paramKey]uint64
	gen     atomic.Uint64
	// fresh moves gen on when another process committed since the last
	// look (Store.catchUp), so that its keys are found too.
	fresh func(context.Context) error
}

func (c *pidCache) init(db *sql.DB) {
	c.db, c.m, c.missing = db, map[paramKey]int64{}, map[paramKey]uint64{}
}

// get returns the pid of code on typ, or 0 (which no row has) if no row of
// the parameter was ever written.
func (c *pidCache) get(ctx context.Context, stmts *stmtCache, typ, code string) (int64, error) {
	k := keyOf(typ, code)
	gen := c.gen.Load()
	c.mu.RLock()
	id, ok := c.m[k]
	missedIn, missed := c.missing[k]
	c.mu.RUnlock()
	if ok {
		return id, nil
	}
	if missed && missedIn == gen {
		if err := c.fresh(ctx); err != nil {
			return 0, err
		}
		if c.gen.Load() == gen {
			return 0, nil
		}
	}
	st, err := stmts.get(ctx, `SELECT pid FROM search_param WHERE type = ? AND code = ?`)
	if err != nil {
		return 0, err
	}
	err = st.QueryRowContext(ctx, k.typ, k.code).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		c.mu.Lock()
		if len(c.missing) > 10000 {
			clear(c.missing) // bounded: queries can name any parameter
		}
		c.missing[k] = gen
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("search parameter key: %w", err)
	}
	c.mu.Lock()
	c.m[k] = id
	c.mu.Unlock()
	return id, nil
}
