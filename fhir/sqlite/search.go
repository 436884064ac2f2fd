package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Search implements fhir.Store: it turns s into one SQL query on the index
// tables, returns the page after cursor (before it when backward) in the
// order of s.Sort, and adds the page's _include and _revinclude resources.
// See https://hl7.org/fhir/R4/search.html.
//
// # Plan
//
// Each filter becomes a condition on a resource row (res). The most
// selective one (an _id, an identifier, a reference, a chain or _has
// leading to one of those; a plain code or a string prefix when a probe of
// at most probeLimit index rows says it is rare) drives the query: its
// index rows give the candidate rids, looked up by primary key; the other
// conditions are EXISTS checks on the index tables by rid. Without a
// selective filter the query walks the type's resources in rid order and
// stops when the page is full.
//
// # Paging
//
// Paging is keyset paging: the cursor holds the sort values and rid of the
// last resource of the page (the first, for the previous page), and the
// next page starts strictly after it. rid is given at creation and never
// changes, so in the default order (rid) a resource that existed throughout
// is seen exactly once however writes go on between pages. Backward with
// no cursor reads the last page. A page reached from a cursor has a Prev
// (forward) or Next (backward) even when it is empty, so that a client can
// turn back.
//
// # Cost
//
// A page costs its matches' index reads, except when the query walks a
// type's resources: then it reads as many resources as it takes to fill
// the page. _total=accurate (or estimate, which is the same count) and
// _sort read every match.
func (s *Store) Search(ctx context.Context, q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	return s.search(ctx, &reader{s: s}, q, cursor, backward)
}

// emptyPage is the answer of a search that nothing can match.
func emptyPage(q *fhir.Search, cursor fhir.Cursor) *fhir.SearchPage {
	page := &fhir.SearchPage{Total: -1}
	if q.Total == fhir.TotalAccurate || q.Total == fhir.TotalEstimate || (q.Total == fhir.TotalDefault && cursor == nil) {
		page.Total = 0
	}
	return page
}

// plainFilters reports whether q is a query compile cannot refuse: no
// sort or include, and filters that are tokens without a modifier,
// references with :identifier, or chains of a reference to such a filter,
// alone or in an OR. (The restriction is the server's own.)
func plainFilters(q *fhir.Search) bool {
	if len(q.Sort) > 0 || len(q.Include) > 0 || len(q.RevInclude) > 0 || q.Type == "" {
		return false
	}
	var plain func(fs []fhir.Filter) bool
	plain = func(fs []fhir.Filter) bool {
		for i := range fs {
			f := &fs[i]
			switch {
			case len(f.Any) > 0:
				if !plain(f.Any) {
					return false
				}
			case f.Has != nil || f.Param == nil:
				return false
			case len(f.Chain) > 0:
				if f.Param.Type != fhir.SearchParamReference || f.Modifier != "" {
					return false
				}
				for j := range f.Chain {
					if !plain([]fhir.Filter{f.Chain[j].Filter}) {
						return false
					}
				}
			case len(f.Values) == 0:
				return false
			case f.Param.Type == fhir.SearchParamToken && f.Modifier == "":
			case f.Param.Type == fhir.SearchParamReference && f.Modifier == "identifier":
			default:
				return false
			}
		}
		return true
	}
	return plain(q.Filters)
}

// search runs q with rd: the read pool (a fresh reader) or the writer's
// transaction (a reader with w set).
func (s *Store) search(ctx context.Context, rd *reader, q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	if q.Count < 0 {
		return nil, fhir.Errorf(fhir.IssueInvalid, "_count must not be negative")
	}
	// An identifier that no resource carries: nothing can match.
	absent := s.ids.absent(q) && s.stillAbsent(ctx, q)
	if absent && cursor == nil && plainFilters(q) {
		// The lookup of an NHS number no record carries (99% of CP-IS
		// lookups), answered without compiling the query: its filters are
		// of the kinds compile never refuses.
		return emptyPage(q, nil), nil
	}
	p, err := s.compile(ctx, rd, q)
	if err != nil {
		return nil, err
	}
	if absent {
		if cursor != nil {
			if _, err := decodeCursor(cursor, len(p.keys)); err != nil {
				return nil, err
			}
		}
		return emptyPage(q, cursor), nil
	}
	var pos *position
	if cursor != nil {
		if pos, err = decodeCursor(cursor, len(p.keys)); err != nil {
			return nil, err
		}
	}
	counted := q.Total == fhir.TotalAccurate || q.Total == fhir.TotalEstimate || (q.Count == 0 && q.Total == fhir.TotalDefault)
	if rd.w == nil && (p.probe >= 0 || counted || (q.Count > 0 && (len(q.Include) > 0 || len(q.RevInclude) > 0))) {
		// Several queries: read them from one snapshot. (The writer's
		// transaction is one snapshot already.)
		tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		defer tx.Rollback()
		rd.tx = tx
	}
	if err := p.choose(ctx, rd); err != nil {
		return nil, err
	}
	page := &fhir.SearchPage{Total: -1}
	var hits []hit
	if q.Count > 0 {
		if hits, err = p.readPage(ctx, rd, page, q.Count, cursor, pos, backward); err != nil {
			return nil, err
		}
	}
	switch {
	case counted:
		if page.Total, err = p.count(ctx, rd); err != nil {
			return nil, err
		}
	case q.Total == fhir.TotalDefault && cursor == nil && page.Next == nil && !backward:
		page.Total = len(page.Matches)
	}
	if len(hits) > 0 && (len(q.Include) > 0 || len(q.RevInclude) > 0) {
		if page.Included, err = s.include(ctx, rd, q, hits); err != nil {
			return nil, err
		}
	}
	if rd.tx != nil {
		if err := rd.tx.Commit(); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	return page, nil
}

// readPage reads the count matches after pos (before it, backward) into
// page.Matches, in order, and sets page.Next and page.Prev: Next after the
// last match when more follow (or, backward, when a cursor was given),
// Prev before the first when more precede (or, forward, when a cursor was
// given: the page was reached from somewhere). It returns the matches' row
// keys and types.
func (p *plan) readPage(ctx context.Context, rd *reader, page *fhir.SearchPage, count int, cursor fhir.Cursor, pos *position, backward bool) ([]hit, error) {
	var b sqlb
	p.pageSQL(&b, pos, backward, count+1)
	rows, err := rd.query(ctx, b.String(), b.args)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var at []position
	for rows.Next() {
		r, ps, err := p.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		page.Matches = append(page.Matches, r)
		at = append(at, ps)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	more := len(page.Matches) > count
	if more {
		page.Matches, at = page.Matches[:count], at[:count]
	}
	if backward {
		slices.Reverse(page.Matches)
		slices.Reverse(at)
	}
	// ahead and behind: whether matches follow and precede the page.
	ahead, behind := more, cursor != nil
	if backward {
		ahead, behind = cursor != nil, more
	}
	// An empty page after (before) a cursor may still have matches before
	// (after) it, up to and including the cursor's resource.
	turn := func() fhir.Cursor {
		back := *pos
		back.incl = true
		return back.encode()
	}
	switch n := len(at); {
	case n > 0 && ahead:
		page.Next = at[n-1].encode()
	case n == 0 && backward && cursor != nil:
		page.Next = turn()
	}
	switch {
	case len(at) > 0 && behind:
		page.Prev = at[0].encode()
	case len(at) == 0 && !backward && cursor != nil:
		page.Prev = turn()
	}
	hits := make([]hit, len(at))
	for i, r := range page.Matches {
		hits[i] = hit{rid: at[i].rid, typ: r.Type}
	}
	return hits, nil
}

// count returns the number of all matches.
func (p *plan) count(ctx context.Context, rd *reader) (int, error) {
	var b sqlb
	p.countSQL(&b)
	rows, err := rd.query(ctx, b.String(), b.args)
	if err != nil {
		return 0, fmt.Errorf("search total: %w", err)
	}
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("search total: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("search total: %w", err)
	}
	return n, nil
}

// Explain returns SQLite's EXPLAIN QUERY PLAN of the query that reads the
// first page of the search s (https://hl7.org/fhir/R4/search.html), one
// line per step, indented by depth. Tests and benchmarks use it to show
// that the hot lookups are index searches. Errors are those of Search.
func (s *Store) Explain(ctx context.Context, q *fhir.Search) (string, error) {
	rd := &reader{s: s}
	p, err := s.compile(ctx, rd, q)
	if err != nil {
		return "", err
	}
	if err := p.choose(ctx, rd); err != nil {
		return "", err
	}
	var b sqlb
	p.pageSQL(&b, nil, false, max(q.Count, 1)+1)
	rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+b.String(), b.args...)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	defer rows.Close()
	depth := map[int]int{}
	var out strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return "", fmt.Errorf("explain: %w", err)
		}
		d := 0
		if parent != 0 {
			d = depth[parent] + 1
		}
		depth[id] = d
		out.WriteString(strings.Repeat("  ", d))
		out.WriteString(detail)
		out.WriteByte('\n')
	}
	return out.String(), rows.Err()
}

// reader runs search queries on the read pool, or inside one read
// transaction when a search needs several queries, or, when w is set, on
// the writer's connection inside w's transaction (fhir.Tx.Search), where
// the transaction's own writes are seen.
type reader struct {
	s  *Store
	tx *sql.Tx
	w  *tx
}

func (rd *reader) query(ctx context.Context, query string, args []any) (*sql.Rows, error) {
	if rd.w != nil {
		st, err := rd.s.writerStmt(rd.w.ctx, query)
		if err != nil {
			return nil, err
		}
		return st.QueryContext(rd.w.ctx, args...)
	}
	st, err := rd.s.stmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if rd.tx != nil {
		st = rd.tx.StmtContext(ctx, st)
	}
	return st.QueryContext(ctx, args...)
}

// sqlb builds SQL text together with its arguments.
type sqlb struct {
	sb   strings.Builder
	args []any
	n    int // aliases made
}

func (b *sqlb) w(parts ...string) {
	for _, p := range parts {
		b.sb.WriteString(p)
	}
}

// arg writes a placeholder for v.
func (b *sqlb) arg(v any) {
	b.sb.WriteByte('?')
	b.args = append(b.args, v)
}

// key writes v, a search parameter's key (int64) or a resource type
// (string), into the SQL text rather than as an argument. Both come from
// small fixed sets, so the statements stay few; and a statement that binds
// them as arguments is prepared again by SQLite whenever they change
// between two runs (about 80 us for a token search here), as the lookups'
// Patient and Organization searches do all the time.
func (b *sqlb) key(v any) {
	switch v := v.(type) {
	case int64:
		b.sb.WriteString(strconv.FormatInt(v, 10))
	case string:
		b.sb.WriteByte('\'')
		b.sb.WriteString(strings.ReplaceAll(v, "'", "''"))
		b.sb.WriteByte('\'')
	default:
		b.arg(v)
	}
}

// alias returns a table alias not used before in the statement.
func (b *sqlb) alias(prefix string) string {
	b.n++
	return prefix + strconv.Itoa(b.n)
}

func (b *sqlb) String() string { return b.sb.String() }

// cond is a compiled filter: a condition on one resource row.
type cond interface {
	// match writes an SQL boolean that is true when the resource whose
	// res row has alias r matches.
	match(b *sqlb, r string)
	// rank says how selective the condition is: lower is more selective,
	// and notDrivable means rids must not be used.
	rank() int
	// rids writes a SELECT of one column, rid, giving exactly the
	// resources that match (of any type and including no deleted one,
	// since index rows exist only for current versions), in any order and
	// possibly repeated.
	rids(b *sqlb)
}

// Ranks of conditions, most selective first.
const (
	rankID         = 0 // _id
	rankIdentifier = 1 // an identifier (token), :identifier, :of-type
	rankReference  = 2 // a reference to a given resource
	rankExact      = 3 // string :exact, uri equality
	rankPrefix     = 4 // string starts-with, :text, uri :below: probed
	rankCode       = 5 // another token, a date, number or quantity range: probed
	notDrivable    = 100
)

// probeLimit is the number of index rows under which a probed condition
// (a code, a string prefix, a range) drives the query rather than being
// checked while walking the type's resources in rid order.
const probeLimit = 1000

// pred writes an SQL boolean on the index row of alias x.
type pred func(b *sqlb, x string)

// rowCond matches resources that have an index row of parameter pid in
// table for which one of preds holds (any row when preds is empty); neg
// negates it (NOT EXISTS).
type rowCond struct {
	table string
	pid   int64
	preds []pred
	neg   bool
	rk    int
}

func (c *rowCond) match(b *sqlb, r string) {
	x := b.alias("x")
	if c.neg {
		b.w("NOT ")
	}
	// The check probes the resource's own rows (the table's rid index),
	// never a range of the parameter's rows: without statistics SQLite may
	// take the range index for a date or number (every AuditEvent of the
	// last day, say, for each candidate).
	b.w("EXISTS (SELECT 1 FROM ", c.table, " ", x, " INDEXED BY ", c.table, "_rid WHERE ", x, ".rid = ", r, ".rid AND ", x, ".pid = ")
	b.key(c.pid)
	if len(c.preds) > 0 {
		b.w(" AND (")
		for i, p := range c.preds {
			if i > 0 {
				b.w(" OR ")
			}
			b.w("(")
			p(b, x)
			b.w(")")
		}
		b.w(")")
	}
	b.w(")")
}

func (c *rowCond) rank() int {
	if c.neg || len(c.preds) == 0 {
		return notDrivable
	}
	return c.rk
}

func (c *rowCond) rids(b *sqlb) {
	for i, p := range c.preds {
		if i > 0 {
			b.w(" UNION ALL ")
		}
		x := b.alias("x")
		b.w("SELECT ", x, ".rid FROM ", c.table, " ", x, " WHERE ", x, ".pid = ")
		b.key(c.pid)
		b.w(" AND ")
		p(b, x)
	}
}

// resCond is a condition on the res row itself (_id, _lastUpdated, the
// compartment's own resource). typ is the type searched, "" for any; rids
// needs it to be selective.
type resCond struct {
	typ  string
	pred pred
	rk   int
}

func (c *resCond) match(b *sqlb, r string) { p := c.pred; b.w("("); p(b, r); b.w(")") }

func (c *resCond) rank() int {
	if c.typ == "" {
		return notDrivable
	}
	return c.rk
}

func (c *resCond) rids(b *sqlb) {
	x := b.alias("x")
	b.w("SELECT ", x, ".rid FROM res ", x, " WHERE ", x, ".type = ")
	b.key(c.typ)
	b.w(" AND ")
	c.pred(b, x)
}

// orCond matches when one of its parts does; none matches nothing.
type orCond []cond

func (c orCond) match(b *sqlb, r string) {
	if len(c) == 0 {
		b.w("0 = 1")
		return
	}
	b.w("(")
	for i, p := range c {
		if i > 0 {
			b.w(" OR ")
		}
		p.match(b, r)
	}
	b.w(")")
}

func (c orCond) rank() int {
	rk := rankID
	for _, p := range c {
		rk = max(rk, p.rank())
	}
	return rk
}

func (c orCond) rids(b *sqlb) {
	if len(c) == 0 {
		b.w("SELECT rid FROM res WHERE 0 = 1")
		return
	}
	for i, p := range c {
		if i > 0 {
			b.w(" UNION ALL ")
		}
		p.rids(b)
	}
}

// andCond matches when all its parts do.
type andCond []cond

func (c andCond) match(b *sqlb, r string) {
	b.w("(")
	for i, p := range c {
		if i > 0 {
			b.w(" AND ")
		}
		p.match(b, r)
	}
	b.w(")")
}

// rank is that of its most selective part, whose rids drive rids.
func (c andCond) rank() int {
	rk := notDrivable
	for _, p := range c {
		rk = min(rk, p.rank())
	}
	return rk
}

func (c andCond) best() int {
	best := 0
	for i, p := range c {
		if p.rank() < c[best].rank() {
			best = i
		}
	}
	return best
}

func (c andCond) rids(b *sqlb) {
	best := c.best()
	a := b.alias("a")
	b.w("SELECT ", a, ".rid FROM res ", a, " WHERE ", a, ".rid IN (")
	c[best].rids(b)
	b.w(")")
	for i, p := range c {
		if i == best {
			continue
		}
		b.w(" AND ")
		p.match(b, a)
	}
}

// typedCond narrows inner to resources of one type, for system searches
// whose parameters differ by type.
type typedCond struct {
	typ   string
	inner cond
}

func (c *typedCond) match(b *sqlb, r string) {
	b.w("(", r, ".type = ")
	b.key(c.typ)
	b.w(" AND ")
	c.inner.match(b, r)
	b.w(")")
}

func (c *typedCond) rank() int    { return c.inner.rank() }
func (c *typedCond) rids(b *sqlb) { c.inner.rids(b) }

// restrictCond is the Restriction's condition on the matches: it drives
// the query only when the search's own filters are less selective (a
// council's Flags drive Flag?status=active, not Flag?patient.identifier=),
// and is probed rather than trusted to be rare.
type restrictCond struct{ cond }

func (c restrictCond) rank() int {
	if rk := c.cond.rank(); rk < notDrivable {
		return max(rk+rankPrefix-rankIdentifier, rankPrefix)
	}
	return notDrivable
}

// constCond is always true or always false.
type constCond bool

func (c constCond) match(b *sqlb, r string) {
	if c {
		b.w("1 = 1")
	} else {
		b.w("0 = 1")
	}
}

func (c constCond) rank() int {
	if c {
		return notDrivable
	}
	return rankID
}

func (c constCond) rids(b *sqlb) { b.w("SELECT rid FROM res WHERE 0 = 1") }

// sortKey is a compiled _sort key: expr writes the resource's sort value
// (NULL when it has none) for the res alias r.
type sortKey struct {
	expr func(b *sqlb, r string)
	desc bool
}

// minMax writes the smallest (or, descending, largest) of col over the
// resource's index rows of pid in table. The unary + keeps the planner on
// the rid index: left to itself it takes min/max from an index led by
// (pid, col) and scans the parameter's rows for the rid, once per
// resource.
func minMax(table, col string, pid int64, desc bool) func(b *sqlb, r string) {
	return func(b *sqlb, r string) {
		x := b.alias("x")
		agg := "min("
		if desc {
			agg = "max("
		}
		b.w("(SELECT ", agg, strings.ReplaceAll(col, "$", x), ") FROM ", table, " ", x, " WHERE ", x, ".rid = ", r, ".rid AND +", x, ".pid = ")
		b.key(pid)
		b.w(")")
	}
}

// plan is a compiled search.
type plan struct {
	s      *Store
	types  []string // the types searched; nil for all
	conds  []cond
	keys   []sortKey
	driver int // the index in conds of the condition whose rids drive the query; -1: walk res
	probe  int // the index in conds of a candidate driver to probe before choosing; -1: none
}

// compiler turns a parsed search into a plan; it resolves parameter keys.
type compiler struct {
	s   *Store
	rd  *reader
	ctx context.Context
	now time.Time
	// restrict is the search's Restriction (nil: none), applied to the
	// resources chains and _has reach; restricted caches its compiled
	// conditions by type.
	restrict   *fhir.Restriction
	restricted map[string]cond
}

// restriction returns the condition the Restriction puts on resources of
// typ: nil when there is none, false when typ may not be reached. The
// Restriction's own filters are compiled without it.
func (c *compiler) restriction(typ string) (cond, error) {
	if c.restrict == nil {
		return nil, nil
	}
	if cd, ok := c.restricted[typ]; ok {
		return cd, nil
	}
	fs, ok := c.restrict.Filters(typ)
	var cd cond
	switch {
	case !ok:
		cd = constCond(false)
	case len(fs) > 0:
		saved := c.restrict
		c.restrict = nil
		var and andCond
		for i := range fs {
			fc, err := c.filter(&fs[i], typ)
			if err != nil {
				c.restrict = saved
				return nil, err
			}
			and = append(and, fc)
		}
		c.restrict = saved
		cd = and
		if len(and) == 1 {
			cd = and[0]
		}
	}
	if c.restricted == nil {
		c.restricted = map[string]cond{}
	}
	c.restricted[typ] = cd
	return cd, nil
}

// withRestriction returns inner ANDed with the Restriction's condition on
// typ.
func (c *compiler) withRestriction(inner cond, typ string) (cond, error) {
	rc, err := c.restriction(typ)
	if err != nil || rc == nil {
		return inner, err
	}
	return andCond{inner, rc}, nil
}

func (c *compiler) pid(typ, code string) (int64, error) {
	return c.rd.pid(c.ctx, typ, code)
}

// pid returns the key of the parameter code on typ as rd sees it: the
// committed keys on the read pool, the writer's (this transaction's own
// included) in a write. It is 0, which no row has, for a parameter never
// written.
func (rd *reader) pid(ctx context.Context, typ, code string) (int64, error) {
	if rd.w == nil {
		return rd.s.pids.get(ctx, rd.s.stmts, typ, code)
	}
	k := keyOf(typ, code)
	if id, ok := rd.s.wpids[k]; ok {
		return id, nil
	}
	var id int64
	err := rd.s.txIndex.pidSelect.QueryRowContext(rd.w.ctx, k.typ, k.code).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("search parameter key: %w", err)
	}
	return id, nil
}

func (s *Store) compile(ctx context.Context, rd *reader, q *fhir.Search) (*plan, error) {
	c := &compiler{s: s, rd: rd, ctx: ctx, now: s.cfg.Now(), restrict: q.Restrict}
	p := &plan{s: s, driver: -1, probe: -1}
	switch {
	case q.Type != "":
		p.types = []string{q.Type}
	case len(q.Types) > 0:
		p.types = q.Types
	}
	if q.Compartment != nil {
		cc, types, err := c.compartment(q.Compartment, p.types)
		if err != nil {
			return nil, err
		}
		p.types = types
		p.conds = append(p.conds, cc)
	}
	for i := range q.Filters {
		f := &q.Filters[i]
		cd, err := c.levelFilter(f, p.types)
		if err != nil {
			return nil, err
		}
		p.conds = append(p.conds, cd)
	}
	if q.Restrict != nil {
		rc, types, err := c.restrictTypes(p.types)
		if err != nil {
			return nil, err
		}
		p.types = types
		if rc != nil {
			p.conds = append(p.conds, restrictCond{rc})
		}
	}
	for _, k := range q.Sort {
		sk, err := c.sortKey(k, p.types)
		if err != nil {
			return nil, err
		}
		p.keys = append(p.keys, sk)
	}
	best := -1
	for i, cd := range p.conds {
		if rk := cd.rank(); rk < notDrivable && (best < 0 || rk < p.conds[best].rank()) {
			best = i
		}
	}
	if best >= 0 {
		if p.conds[best].rank() < rankPrefix {
			p.driver = best
		} else {
			p.probe = best
		}
	}
	return p, nil
}

// restrictTypes returns the Restriction's condition on the matches of a
// search of types (nil: all) and the types that may be matched.
func (c *compiler) restrictTypes(types []string) (cond, []string, error) {
	if types == nil {
		for _, t := range fhir.ResourceTypes {
			if c.restrict.Reaches(t) {
				types = append(types, t)
			}
		}
		if len(types) == 0 {
			// "Resource" is no resource's type: nothing matches.
			return constCond(false), []string{"Resource"}, nil
		}
	}
	if len(types) == 1 {
		rc, err := c.restriction(types[0])
		return rc, types, err
	}
	var or orCond
	any := false
	for _, t := range types {
		rc, err := c.restriction(t)
		if err != nil {
			return nil, nil, err
		}
		if rc == nil {
			rc = constCond(true)
		} else {
			any = true
		}
		or = append(or, &typedCond{typ: t, inner: rc})
	}
	if !any {
		return nil, types, nil
	}
	return or, types, nil
}

// levelFilter compiles f for the resources of types (nil: all types). A
// parameter defined on every resource is one condition; another, in a
// search of several types, is one condition per type.
func (c *compiler) levelFilter(f *fhir.Filter, types []string) (cond, error) {
	if len(types) == 1 {
		return c.filter(f, types[0])
	}
	if f.Has == nil && f.Param != nil && strings.HasPrefix(f.Param.Name, "_") {
		return c.filter(f, "")
	}
	if len(types) == 0 {
		return nil, fhir.Errorf(fhir.IssueNotSupported, "search parameter %s: a search across all types supports only the parameters of every resource (such as _id and _lastUpdated); name the types with _type", filterName(f))
	}
	var or orCond
	for _, t := range types {
		cd, err := c.filter(f, t)
		if err != nil {
			return nil, err
		}
		or = append(or, &typedCond{typ: t, inner: cd})
	}
	return or, nil
}

func filterName(f *fhir.Filter) string {
	switch {
	case f.Has != nil:
		return "_has"
	case f.Param != nil:
		return f.Param.Name
	}
	return "(unnamed)"
}

// filter compiles f for resources of type typ ("" for a parameter of every
// resource searched across types).
func (c *compiler) filter(f *fhir.Filter, typ string) (cond, error) {
	if f.Has != nil {
		return c.has(f, typ)
	}
	if len(f.Any) > 0 {
		var or orCond
		for i := range f.Any {
			cd, err := c.filter(&f.Any[i], typ)
			if err != nil {
				return nil, err
			}
			or = append(or, cd)
		}
		return or, nil
	}
	if f.Param == nil {
		return nil, fhir.Errorf(fhir.IssueInvalid, "a search filter has no parameter")
	}
	name := f.Param.Name
	// :in and :not-in may name value sets without codes.
	if len(f.Values) == 0 && len(f.Chain) == 0 && f.Modifier != "in" && f.Modifier != "not-in" {
		return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s has no value", name)
	}
	switch name { // the parameters of onResRow
	case "_id":
		return c.idFilter(f, typ)
	case "_type":
		return c.typeFilter(f)
	case "_lastUpdated":
		return c.lastUpdatedFilter(f, typ)
	}
	if f.Param.Expression == "" {
		return nil, fhir.Errorf(fhir.IssueNotSupported, "search parameter %s is not supported", name)
	}
	if f.Modifier == "missing" {
		return c.missing(f, typ)
	}
	switch f.Param.Type {
	case fhir.SearchParamToken:
		return c.token(f, typ)
	case fhir.SearchParamString:
		return c.str(f, typ)
	case fhir.SearchParamReference:
		return c.reference(f, typ)
	case fhir.SearchParamDate:
		return c.date(f, typ)
	case fhir.SearchParamNumber:
		return c.number(f, typ)
	case fhir.SearchParamQuantity:
		return c.quantity(f, typ)
	case fhir.SearchParamURI:
		return c.uri(f, typ)
	case fhir.SearchParamComposite:
		return c.composite(f, typ)
	}
	return nil, fhir.Errorf(fhir.IssueNotSupported, "search parameter %s (type %s) is not supported", name, f.Param.Type)
}

func unsupportedModifier(f *fhir.Filter) error {
	return fhir.Errorf(fhir.IssueNotSupported, "search parameter %s: modifier :%s is not supported", f.Param.Name, f.Modifier)
}

// tables maps a parameter type to its index table.
var tables = map[fhir.SearchParamType]string{
	fhir.SearchParamToken:     "idx_token",
	fhir.SearchParamString:    "idx_string",
	fhir.SearchParamReference: "idx_reference",
	fhir.SearchParamDate:      "idx_date",
	fhir.SearchParamNumber:    "idx_number",
	fhir.SearchParamQuantity:  "idx_quantity",
	fhir.SearchParamURI:       "idx_uri",
	fhir.SearchParamComposite: "idx_composite",
}

// missing compiles [param]:missing=true|false: true keeps the resources
// with no index row of the parameter, false those with one. A reference
// given only as an identifier counts as present.
// See https://hl7.org/fhir/R4/search.html#missing.
func (c *compiler) missing(f *fhir.Filter, typ string) (cond, error) {
	table, ok := tables[f.Param.Type]
	if !ok || len(f.Values) != 1 {
		return nil, unsupportedModifier(f)
	}
	missing := f.Values[0].Missing
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	var cd cond = &rowCond{table: table, pid: pid, neg: missing}
	if f.Param.Type == fhir.SearchParamReference {
		ipid, err := c.pid(typ, f.Param.Name+":identifier")
		if err != nil {
			return nil, err
		}
		id := &rowCond{table: "idx_token", pid: ipid, neg: missing}
		if missing {
			cd = andCond{cd, id}
		} else {
			cd = orCond{cd, id}
		}
	}
	return cd, nil
}

// sortKey compiles one _sort key. See https://hl7.org/fhir/R4/search.html#sort.
func (c *compiler) sortKey(k fhir.SortKey, types []string) (sortKey, error) {
	if k.Param == nil {
		return sortKey{}, fhir.Errorf(fhir.IssueInvalid, "a _sort key has no parameter")
	}
	name := k.Param.Name
	col := func(col string) func(b *sqlb, r string) {
		return func(b *sqlb, r string) { b.w(r, ".", col) }
	}
	switch name {
	case "_id":
		return sortKey{expr: col("id"), desc: k.Descending}, nil
	case "_lastUpdated":
		return sortKey{expr: col("last_updated"), desc: k.Descending}, nil
	case "_type":
		return sortKey{expr: col("type"), desc: k.Descending}, nil
	}
	typ := ""
	switch {
	case len(types) == 1:
		typ = types[0]
	case !strings.HasPrefix(name, "_"):
		return sortKey{}, fhir.Errorf(fhir.IssueNotSupported, "_sort %s: sorting a search of several types supports only the parameters of every resource", name)
	}
	if k.Param.Expression == "" {
		return sortKey{}, fhir.Errorf(fhir.IssueNotSupported, "_sort %s is not supported", name)
	}
	pid, err := c.pid(typ, name)
	if err != nil {
		return sortKey{}, err
	}
	d := k.Descending
	var expr func(b *sqlb, r string)
	switch k.Param.Type {
	case fhir.SearchParamToken:
		expr = minMax("idx_token", "$.code", pid, d)
	case fhir.SearchParamString:
		expr = minMax("idx_string", "$.norm", pid, d)
	case fhir.SearchParamReference:
		expr = minMax("idx_reference", "CASE WHEN $.ref_type <> '' THEN $.ref_type || '/' || $.ref_id ELSE $.url END", pid, d)
	case fhir.SearchParamDate:
		if d {
			expr = minMax("idx_date", "$.high", pid, true)
		} else {
			expr = minMax("idx_date", "$.low", pid, false)
		}
	case fhir.SearchParamNumber:
		expr = minMax("idx_number", "$.value", pid, d)
	case fhir.SearchParamQuantity:
		expr = minMax("idx_quantity", "$.value", pid, d)
	case fhir.SearchParamURI:
		expr = minMax("idx_uri", "$.uri", pid, d)
	default:
		return sortKey{}, fhir.Errorf(fhir.IssueNotSupported, "_sort %s (type %s) is not supported", name, k.Param.Type)
	}
	return sortKey{expr: expr, desc: d}, nil
}

// choose settles the driver: a probed candidate drives when it has fewer
// than probeLimit index rows.
func (p *plan) choose(ctx context.Context, rd *reader) error {
	if p.probe < 0 {
		return nil
	}
	cand := p.probe
	p.probe = -1
	var b sqlb
	b.w("SELECT count(*) FROM (")
	probeTarget(p.conds[cand]).rids(&b)
	b.w(" LIMIT ")
	b.arg(probeLimit)
	b.w(") n")
	rows, err := rd.query(ctx, b.String(), b.args)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var n int
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("search: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("search: %w", err)
	}
	if n < probeLimit {
		p.driver = cand
	}
	return nil
}

// probeTarget returns the condition whose index rows bound the rids of c:
// c itself, or the condition at the end of a chain or _has, whose rids the
// chain's rids are computed from (probing the chain itself would compute
// all of them first).
func probeTarget(c cond) cond {
	switch c := c.(type) {
	case *chainCond:
		if len(c.targets) == 1 {
			return probeTarget(c.targets[0].inner)
		}
	case *hasCond:
		return probeTarget(c.inner)
	case *typedCond:
		return probeTarget(c.inner)
	case andCond:
		return probeTarget(c[c.best()])
	case restrictCond:
		return probeTarget(c.cond)
	}
	return c
}

// where writes the conditions on the res alias r.
func (p *plan) where(b *sqlb, r string) {
	b.w(r, ".deleted = 0")
	switch len(p.types) {
	case 0:
	case 1:
		b.w(" AND ", r, ".type = ")
		b.key(p.types[0])
	default:
		b.w(" AND ", r, ".type IN (")
		for i, t := range p.types {
			if i > 0 {
				b.w(", ")
			}
			b.key(t)
		}
		b.w(")")
	}
	if p.driver >= 0 {
		b.w(" AND ", r, ".rid IN (")
		p.conds[p.driver].rids(b)
		b.w(")")
	}
	for i, cd := range p.conds {
		if i == p.driver {
			continue
		}
		b.w(" AND ")
		cd.match(b, r)
	}
}

func (p *plan) countSQL(b *sqlb) {
	b.w("SELECT count(*) FROM res r WHERE ")
	p.where(b, "r")
}

// resultCols are the columns of a match, before its sort values.
const resultCols = "q.rid, q.type, q.id, q.version, q.seq, q.last_updated, h.method, h.body"

// pageSQL writes the query of the page after pos (before it, backward;
// nil: from the start, or the end), limit rows in the order of the page
// (reversed when backward).
//
//	SELECT q.*, h.method, h.body FROM (
//	  SELECT * FROM (SELECT r.rid, ..., key AS k0 FROM res r WHERE filters) s
//	  WHERE s is after pos ORDER BY sort keys, s.rid LIMIT n
//	) q JOIN history h ON h.seq = q.seq ORDER BY sort keys, q.rid
func (p *plan) pageSQL(b *sqlb, pos *position, backward bool, limit int) {
	b.w("SELECT ", resultCols)
	for i := range p.keys {
		b.w(", q.k", strconv.Itoa(i))
	}
	b.w(" FROM (SELECT * FROM (SELECT r.rid, r.type, r.id, r.version, r.seq, r.last_updated")
	for i, k := range p.keys {
		b.w(", ")
		k.expr(b, "r")
		b.w(" AS k", strconv.Itoa(i))
	}
	b.w(" FROM res r WHERE ")
	p.where(b, "r")
	b.w(") s")
	if pos != nil {
		b.w(" WHERE ")
		p.after(b, "s", pos, backward)
	}
	b.w(" ORDER BY ")
	p.order(b, "s", backward)
	b.w(" LIMIT ")
	b.arg(limit)
	b.w(") q JOIN history h ON h.seq = q.seq ORDER BY ")
	p.order(b, "q", backward)
}

// order writes the ORDER BY terms on alias a: each sort key (resources
// without a value last), then rid; all reversed when backward.
func (p *plan) order(b *sqlb, a string, backward bool) {
	dir := func(desc bool) string {
		if desc != backward {
			return " DESC"
		}
		return ""
	}
	for i, k := range p.keys {
		ki := a + ".k" + strconv.Itoa(i)
		b.w("(", ki, " IS NULL)", dir(false), ", ", ki, dir(k.desc), ", ")
	}
	b.w(a, ".rid", dir(false))
}

// after writes the keyset condition: the row of alias a comes after pos in
// the order (before it, backward), or is pos's row when pos.incl.
func (p *plan) after(b *sqlb, a string, pos *position, backward bool) {
	type term struct {
		expr string
		desc bool
		val  any
	}
	var terms []term
	for i, k := range p.keys {
		ki := a + ".k" + strconv.Itoa(i)
		v := pos.keys[i]
		null := 0
		if v == nil {
			null = 1
		}
		terms = append(terms, term{"(" + ki + " IS NULL)", false, null})
		if v != nil {
			terms = append(terms, term{ki, k.desc, v})
		}
	}
	terms = append(terms, term{a + ".rid", false, pos.rid})
	b.w("(")
	for i := range terms {
		if i > 0 {
			b.w(" OR ")
		}
		b.w("(")
		for _, t := range terms[:i] {
			b.w(t.expr, " = ")
			b.arg(t.val)
			b.w(" AND ")
		}
		t := terms[i]
		op := " >"
		if t.desc != backward {
			op = " <"
		}
		if pos.incl && i == len(terms)-1 {
			op += "="
		}
		b.w(t.expr, op, " ")
		b.arg(t.val)
		b.w(")")
	}
	b.w(")")
}

// scan reads one row of pageSQL.
func (p *plan) scan(rows *sql.Rows) (*fhir.Resource, position, error) {
	r := &fhir.Resource{}
	pos := position{keys: make([]any, len(p.keys))}
	var lu int64
	var method string
	dst := []any{&pos.rid, &r.Type, &r.ID, &r.VersionID, &r.Seq, &lu, &method, &r.JSON}
	for i := range pos.keys {
		dst = append(dst, &pos.keys[i])
	}
	if err := rows.Scan(dst...); err != nil {
		return nil, pos, err
	}
	r.LastUpdated, r.Method = time.UnixMilli(lu).UTC(), fhir.Method(method)
	for i, v := range pos.keys {
		if bs, ok := v.([]byte); ok {
			pos.keys[i] = string(bs)
		}
	}
	return r, pos, nil
}
