package sqlite

// Leases of the subscription engine when several processes share the store
// (migration 0008). Lease times are the wall clock, not Config.Now: a lease
// is about whether a process is alive.

import (
	"context"
	"fmt"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// TakeLease gives the lease name to owner for ttl when it is free, lapsed
// or owner's already, and reports whether owner holds it now. A lease
// another owner holds is refused without a write.
func (s *Store) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := time.Now()
	var holder string
	var until int64
	err := s.rdb.QueryRowContext(ctx, `SELECT owner, until FROM sub_lease WHERE name = ?`, name).Scan(&holder, &until)
	if err == nil && holder != owner && until >= now.UnixMilli() {
		return false, nil
	}
	var took bool
	err = s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		res, err := s.conn.ExecContext(t.ctx, `INSERT INTO sub_lease (name, owner, until) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
			WHERE sub_lease.owner = excluded.owner OR sub_lease.until < ?`, name, owner, now.Add(ttl).UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("sqlite: take lease: %w", err)
		}
		n, _ := res.RowsAffected()
		took = n == 1
		return nil
	})
	return took, err
}

// RenewLeases extends every lease owner holds to ttl from now and returns
// their names.
func (s *Store) RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]string, error) {
	var names []string
	err := s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		names = names[:0]
		rows, err := s.conn.QueryContext(t.ctx, `UPDATE sub_lease SET until = ? WHERE owner = ? RETURNING name`, time.Now().Add(ttl).UnixMilli(), owner)
		if err != nil {
			return fmt.Errorf("sqlite: renew leases: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return fmt.Errorf("sqlite: renew leases: %w", err)
			}
			names = append(names, n)
		}
		return rows.Err()
	})
	return names, err
}

// ReleaseLease gives up owner's lease name (nothing when owner does not
// hold it).
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	return s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		if _, err := s.conn.ExecContext(t.ctx, `DELETE FROM sub_lease WHERE name = ? AND owner = ?`, name, owner); err != nil {
			return fmt.Errorf("sqlite: release lease: %w", err)
		}
		return nil
	})
}

// Unowned returns the ids of the subscriptions with undelivered
// notifications whose lease "<prefix><id>" nobody holds (free or lapsed).
func (s *Store) Unowned(ctx context.Context, prefix string) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT s.id FROM sub_state s LEFT JOIN sub_lease l ON l.name = ? || s.id
		WHERE s.events > s.delivered AND (l.until IS NULL OR l.until < ?) ORDER BY s.id`, prefix, time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("sqlite: unowned subscriptions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: unowned subscriptions: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
