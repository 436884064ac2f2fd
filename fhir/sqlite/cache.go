package sqlite

import (
	"container/list"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// stmtCacheSize bounds the search statements kept prepared.
const stmtCacheSize = 256

// stmtCache keeps prepared statements of the read pool by SQL text, the
// least recently used closed first when it holds more than max. Search SQL
// carries its values as arguments, so one text serves every search of the
// same shape and the hot lookups are prepared once per connection. It is
// safe for concurrent use; closing a statement that a query still uses is
// safe too (database/sql closes it once the query is done).
type stmtCache struct {
	db  *sql.DB
	max int

	mu     sync.Mutex
	m      map[string]*list.Element // of *cachedStmt
	lru    list.List                // front: most recently used
	closed bool
}

type cachedStmt struct {
	sql  string
	stmt *sql.Stmt
}

func newStmtCache(db *sql.DB, max int) *stmtCache {
	return &stmtCache{db: db, max: max, m: map[string]*list.Element{}}
}

var errStoreClosed = errors.New("sqlite: store closed")

// get returns the prepared statement for query, preparing it on a miss.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errStoreClosed
	}
	if e, ok := c.m[query]; ok {
		c.lru.MoveToFront(e)
		st := e.Value.(*cachedStmt).stmt
		c.mu.Unlock()
		return st, nil
	}
	c.mu.Unlock()

	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare search: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		st.Close()
		return nil, errStoreClosed
	}
	if e, ok := c.m[query]; ok { // prepared meanwhile by another search
		st.Close()
		c.lru.MoveToFront(e)
		return e.Value.(*cachedStmt).stmt, nil
	}
	c.m[query] = c.lru.PushFront(&cachedStmt{sql: query, stmt: st})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*cachedStmt)
		delete(c.m, old.sql)
		old.stmt.Close()
	}
	return st, nil
}

// close closes every statement; later gets fail.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for e := c.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*cachedStmt).stmt.Close())
	}
	c.m = nil
	c.lru.Init()
	return errors.Join(errs...)
}
