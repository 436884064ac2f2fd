package sqlite

// The subscription engine's storage: the outbox (history in seq order),
// the matcher's cursor and the per-subscription notification queues
// (migration 0005). Queue writes go through the single writer like every
// other write, so they share its group commits. See server/subscription and
// https://hl7.org/fhir/R4/subscription.html.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Commits returns a channel that receives a value (coalesced, never
// blocking the writer) after every commit that wrote something. It is meant
// for one reader: the subscription engine of the process.
func (s *Store) Commits() <-chan struct{} { return s.commits }

// Changes returns up to limit committed versions with Seq above after, in
// Seq order, with their JSON (nil for a delete) and, for the versions
// committed last, the index rows they were written with (recent.go).
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]*fhir.Resource, error) {
	st, err := s.stmts.get(ctx, `SELECT type, id, version, seq, last_updated, method, body FROM history WHERE seq > ? ORDER BY seq LIMIT ?`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	rows, err := st.QueryContext(ctx, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	out, err := scanVersions(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: changes: %w", err)
	}
	s.recent.fill(out)
	return out, nil
}

// LastSeq returns the Seq of the last committed version (0: none).
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT max(seq) FROM history`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: last seq: %w", err)
	}
	return n.Int64, nil
}

// MatchCursor returns the matcher's cursor: every version with Seq up to
// it has been matched.
func (s *Store) MatchCursor(ctx context.Context) (int64, error) {
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM sub_cursor WHERE name = 'match'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: match cursor: %w", err)
	}
	return n, nil
}

// ErrCursorMoved fails an Enqueue whose cursor is not the stored one: another
// matcher moved it.
var ErrCursorMoved = errors.New("sqlite: the subscription match cursor moved")

// Enqueue appends ns (Subscription, Seq, Type, ID and Version set) to their
// subscriptions' queues, numbering each subscription's events on from its
// last, and moves the matcher's cursor from from to to, all in one
// transaction: after a crash either all of it is stored or none. It returns
// ns with Number set. Errors: ErrCursorMoved when the cursor is not at from.
func (s *Store) Enqueue(ctx context.Context, from, to int64, ns []fhir.Notification) ([]fhir.Notification, error) {
	out := make([]fhir.Notification, len(ns))
	copy(out, ns)
	err := s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		res, err := s.conn.ExecContext(t.ctx, `UPDATE sub_cursor SET seq = ? WHERE name = 'match' AND seq = ?`, to, from)
		if err != nil {
			return fmt.Errorf("sqlite: enqueue: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrCursorMoved
		}
		for i := range out {
			n := &out[i]
			if err := s.conn.QueryRowContext(t.ctx, `INSERT INTO sub_state (id, events) VALUES (?, 1)
				ON CONFLICT (id) DO UPDATE SET events = events + 1 RETURNING events`, n.Subscription).Scan(&n.Number); err != nil {
				return fmt.Errorf("sqlite: enqueue: %w", err)
			}
			if _, err := s.conn.ExecContext(t.ctx, `INSERT INTO sub_event (sub, num, seq, type, id, version) VALUES (?, ?, ?, ?, ?, ?)`,
				n.Subscription, n.Number, n.Seq, n.Type, n.ID, n.Version); err != nil {
				return fmt.Errorf("sqlite: enqueue: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Events returns up to limit notifications of subscription sub with
// Number above after, in Number order.
func (s *Store) Events(ctx context.Context, sub string, after int64, limit int) ([]fhir.Notification, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT num, seq, type, id, version FROM sub_event WHERE sub = ? AND num > ? ORDER BY num LIMIT ?`, sub, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: events: %w", err)
	}
	defer rows.Close()
	var out []fhir.Notification
	for rows.Next() {
		n := fhir.Notification{Subscription: sub}
		if err := rows.Scan(&n.Number, &n.Seq, &n.Type, &n.ID, &n.Version); err != nil {
			return nil, fmt.Errorf("sqlite: events: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: events: %w", err)
	}
	return out, nil
}

// Notified reports whether subscription sub has a notification of the
// version with commit sequence number seq.
func (s *Store) Notified(ctx context.Context, sub string, seq int64) (bool, error) {
	var ok bool
	if err := s.rdb.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sub_event WHERE sub = ? AND seq = ?)`, sub, seq).Scan(&ok); err != nil {
		return false, fmt.Errorf("sqlite: notified: %w", err)
	}
	return ok, nil
}

// Ack records, for each subscription, the last event number delivered (it
// never goes back), in one transaction.
func (s *Store) Ack(ctx context.Context, delivered map[string]int64) error {
	return s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		for sub, n := range delivered {
			if _, err := s.conn.ExecContext(t.ctx, `INSERT INTO sub_state (id, delivered) VALUES (?, ?)
				ON CONFLICT (id) DO UPDATE SET delivered = max(delivered, excluded.delivered)`, sub, n); err != nil {
				return fmt.Errorf("sqlite: ack: %w", err)
			}
		}
		return nil
	})
}

// SetSubscriptionState records the engine's decision about subscription
// sub: its status and the reason (empty for none).
func (s *Store) SetSubscriptionState(ctx context.Context, sub, status, reason string) error {
	return s.Write(ctx, func(ftx fhir.Tx) error {
		t := ftx.(*tx)
		if _, err := s.conn.ExecContext(t.ctx, `INSERT INTO sub_state (id, status, error, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at`,
			sub, status, reason, t.now.UnixMilli()); err != nil {
			return fmt.Errorf("sqlite: subscription state: %w", err)
		}
		return nil
	})
}

// SubscriptionStates returns the engine's state of every subscription that
// has one, by id.
func (s *Store) SubscriptionStates(ctx context.Context) ([]fhir.SubscriptionState, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, events, delivered, status, error, updated_at FROM sub_state ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: subscription states: %w", err)
	}
	defer rows.Close()
	var out []fhir.SubscriptionState
	for rows.Next() {
		var st fhir.SubscriptionState
		var at int64
		if err := rows.Scan(&st.ID, &st.Events, &st.Delivered, &st.Status, &st.Error, &at); err != nil {
			return nil, fmt.Errorf("sqlite: subscription states: %w", err)
		}
		if at > 0 {
			st.UpdatedAt = time.UnixMilli(at).UTC()
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: subscription states: %w", err)
	}
	return out, nil
}

// SubscriptionState returns the engine's state of subscription sub (the
// zero state, with ID set, when it has none).
func (s *Store) SubscriptionState(ctx context.Context, sub string) (fhir.SubscriptionState, error) {
	st := fhir.SubscriptionState{ID: sub}
	var at int64
	err := s.rdb.QueryRowContext(ctx, `SELECT events, delivered, status, error, updated_at FROM sub_state WHERE id = ?`, sub).
		Scan(&st.Events, &st.Delivered, &st.Status, &st.Error, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("sqlite: subscription state: %w", err)
	}
	if at > 0 {
		st.UpdatedAt = time.UnixMilli(at).UTC()
	}
	return st, nil
}
