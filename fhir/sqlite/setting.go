package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cpis-fhir/cpis/fhir"
)

// Setting returns the value of the store setting key (the store_meta
// table), or nil when it has none. It reads the committed state, also of
// writes by another process on the same file.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	var v string
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: setting: %w", err)
	}
	return []byte(v), nil
}

// PutSetting durably sets the value of the store setting key (it is a
// Write).
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	return s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		_, err := s.conn.ExecContext(t.ctx, `INSERT INTO store_meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, string(value))
		if err != nil {
			return fmt.Errorf("sqlite: put setting: %w", err)
		}
		return nil
	})
}
