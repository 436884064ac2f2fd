package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cpis-fhir/cpis/fhir"
)

// reindexBatch is the number of resources Reindex reads, indexes and
// writes at a time.
const reindexBatch = 500

// Reindex implements fhir.Store: it walks the current, not deleted,
// resources in rid order, reindexBatch at a time, computes each one's
// index with index (outside the writer, so writes go on meanwhile), and
// replaces its rows in one Write per batch. A resource written since its
// batch was read keeps the rows that write gave it. progress, when not
// nil, is called after each batch with the resources done and the total
// (which grows if resources are created meanwhile). An error from index
// stops the walk; the batches written before it stay. It is how new search
// parameters (https://hl7.org/fhir/R4/searchparameter.html) and changed
// extraction rules reach resources stored before them.
func (s *Store) Reindex(ctx context.Context, index func(typ string, body []byte) (*fhir.Index, error), progress func(done, total int)) error {
	var total int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM res WHERE deleted = 0`).Scan(&total); err != nil {
		return fmt.Errorf("reindex: %w", err)
	}
	type item struct {
		rid     int64
		typ, id string
		version int64
		body    []byte
		idx     *fhir.Index
	}
	var after int64
	done := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT r.rid, r.type, r.id, r.version, h.body FROM res r JOIN history h ON h.seq = r.seq
			WHERE r.rid > ? AND r.deleted = 0 ORDER BY r.rid LIMIT ?`, after, reindexBatch)
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		var batch []item
		for rows.Next() {
			var it item
			if err := rows.Scan(&it.rid, &it.typ, &it.id, &it.version, &it.body); err != nil {
				rows.Close()
				return fmt.Errorf("reindex: %w", err)
			}
			batch = append(batch, it)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		for i := range batch {
			it := &batch[i]
			if it.idx, err = index(it.typ, it.body); err != nil {
				return fmt.Errorf("reindex %s/%s: %w", it.typ, it.id, err)
			}
		}
		err = s.Write(ctx, func(ftx fhir.Tx) error {
			t := ftx.(*tx)
			for _, it := range batch {
				var version int64
				var deleted int
				err := s.txIndex.version.QueryRowContext(t.ctx, it.rid).Scan(&version, &deleted)
				if err != nil {
					return err
				}
				if version != it.version || deleted != 0 {
					continue // written meanwhile: its rows are newer
				}
				if err := t.replaceIndex(it.rid, it.typ, true, it.idx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		done += len(batch)
		after = batch[len(batch)-1].rid
		if progress != nil {
			progress(done, max(total, done))
		}
	}
}

const indexVersionKey = "index_version"

// IndexVersion returns the index version recorded by SetIndexVersion, ""
// if none was (a new store, or one created before search). Callers compare
// it with fhir.IndexVersion to decide whether to Reindex. It honours ctx:
// a cancelled ctx fails it.
func (s *Store) IndexVersion(ctx context.Context) (string, error) {
	var v string
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = ?`, indexVersionKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("index version: %w", err)
	}
	return v, nil
}

// SetIndexVersion records v as the version the index rows were made
// with, durably (it is a Write). See Reindex.
func (s *Store) SetIndexVersion(ctx context.Context, v string) error {
	return s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		_, err := s.conn.ExecContext(t.ctx, `INSERT INTO store_meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, indexVersionKey, v)
		if err != nil {
			return fmt.Errorf("set index version: %w", err)
		}
		return nil
	})
}
