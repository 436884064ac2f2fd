package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cpis-fhir/cpis/fhir/journal"
)

// The audit trail has two hash-chained parts:
//
//   - the write trail (migration 0004_audit.sql): an append-only table of
//     opaque records (the server's canonical JSON), each row carrying the
//     hash of the row before. A record appended inside a write
//     (Tx.AppendAudit) commits with it or not at all; the writer goroutine
//     appends them, so the chain has one order.
//   - the read trail: the journal file beside the database (ReadAuditPath,
//     package fhir/journal), which Store.AppendAudit appends the records of
//     reads to. Concurrent appends share one write and one fsync, without
//     the writer, so that a read's record costs a line of a file rather
//     than a row of a commit; the file lock lets other processes (cpis
//     token) append to the same chain while the server runs.
//
// VerifyAudit checks the write trail, journal.Verify the read trail: an
// edited, deleted or reordered record breaks its chain.

// auditState is the Store's audit trail: the head of the write trail as
// committed (owned by the writer goroutine) and the read trail's journal.
type auditState struct {
	head    auditHead
	journal *journal.Journal
}

// auditHead is the last row of the chain: its seq and hash. loaded is false
// until the writer has read it from the table.
type auditHead struct {
	loaded bool
	seq    int64
	hash   [sha256.Size]byte
}

// AuditHash is the hash of the audit row seq with record rec whose
// predecessor has the hash prev: SHA-256 over prev, seq as 8 bytes
// big-endian, and rec (journal.Hash, the same for both trails).
func AuditHash(prev [sha256.Size]byte, seq int64, rec []byte) [sha256.Size]byte {
	return journal.Hash(prev, seq, rec)
}

// ReadAuditPath is the read trail's journal of the database at path.
func ReadAuditPath(path string) string { return path + "-audit" }

// ReadAuditPath is the read trail's journal of this store.
func (s *Store) ReadAuditPath() string { return ReadAuditPath(s.path) }

// ReadAuditEnd returns the read trail's position after the last record
// this store appended (journal.Journal.End).
func (s *Store) ReadAuditEnd() int64 { return s.audit.journal.End() }

// AppendAudit appends rec (one line of compact JSON) to the read trail and
// returns once it is durable (or the error that kept it from being so).
// Concurrent calls share writes. It is safe for concurrent use.
func (s *Store) AppendAudit(ctx context.Context, rec []byte) error {
	err := s.audit.journal.Append(rec)
	if errors.Is(err, journal.ErrClosed) {
		return ErrClosed
	}
	return err
}

const insertAudit = `INSERT INTO audit (seq, recorded, prev, hash, record) VALUES (?, ?, ?, ?, ?)`

// AppendAudit appends rec to the write trail inside this transaction: it
// commits with the transaction's writes or not at all.
func (t *tx) AppendAudit(rec []byte) error {
	if !t.audit.loaded {
		h, err := t.s.readAuditHead(t.ctx)
		if err != nil {
			return err
		}
		t.audit = h
	}
	seq := t.audit.seq + 1
	hash := AuditHash(t.audit.hash, seq, rec)
	st, err := t.s.writerStmt(t.ctx, insertAudit)
	if err != nil {
		return err
	}
	prev := t.audit.hash
	if _, err := st.ExecContext(t.ctx, seq, t.now.UnixMilli(), prev[:], hash[:], rec); err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	t.audit.seq, t.audit.hash = seq, hash
	return nil
}

// readAuditHead reads the last row of the chain on the writer's connection.
func (s *Store) readAuditHead(ctx context.Context) (auditHead, error) {
	h := auditHead{loaded: true}
	var hash []byte
	err := s.conn.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&h.seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return h, nil
	case err != nil:
		return h, fmt.Errorf("sqlite: read audit head: %w", err)
	}
	copy(h.hash[:], hash)
	return h, nil
}

// AuditRow is one row of the audit trail.
type AuditRow struct {
	Seq      int64
	Recorded int64 // Unix milliseconds
	Prev     []byte
	Hash     []byte
	Record   []byte
}

// AuditBreak is the first place where the chain does not hold.
type AuditBreak struct {
	// Seq is the seq of the first row that does not follow from the rows
	// before it (or the seq that is missing).
	Seq int64
	// Reason says what is wrong, such as "hash does not match the record".
	Reason string
}

// AuditReport is the result of VerifyAudit.
type AuditReport struct {
	// Rows is the number of rows read; Head the seq and hash of the last
	// one, which a copy kept elsewhere can be compared with (the chain
	// alone cannot show that rows were cut off its end).
	Rows     int64
	HeadSeq  int64
	HeadHash []byte
	// Break is the first break, nil when the chain holds.
	Break *AuditBreak
}

// VerifyAudit reads the audit trail in seq order and checks the chain:
// seq counts up from 1 without gaps, each row's prev is the hash of the row
// before (zero for the first) and each hash is AuditHash of its row. It
// stops at the first break. each, when set, is called with every row that
// holds, in order.
func (s *Store) VerifyAudit(ctx context.Context, each func(AuditRow) error) (*AuditReport, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT seq, recorded, prev, hash, record FROM audit ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	defer rows.Close()
	rep := &AuditReport{}
	var prev [sha256.Size]byte
	for rows.Next() {
		var r AuditRow
		if err := rows.Scan(&r.Seq, &r.Recorded, &r.Prev, &r.Hash, &r.Record); err != nil {
			return nil, fmt.Errorf("verify audit: %w", err)
		}
		want := rep.HeadSeq + 1
		switch {
		case r.Seq != want:
			rep.Break = &AuditBreak{Seq: want, Reason: fmt.Sprintf("row %d is missing (the next row is %d)", want, r.Seq)}
		case !bytes.Equal(r.Prev, prev[:]):
			rep.Break = &AuditBreak{Seq: r.Seq, Reason: "prev is not the hash of the row before (a row was removed, moved or changed)"}
		default:
			if h := AuditHash(prev, r.Seq, r.Record); !bytes.Equal(r.Hash, h[:]) {
				rep.Break = &AuditBreak{Seq: r.Seq, Reason: "hash does not match the row (its record or seq was changed)"}
			}
		}
		if rep.Break != nil {
			return rep, nil
		}
		if each != nil {
			if err := each(r); err != nil {
				return nil, err
			}
		}
		copy(prev[:], r.Hash)
		rep.Rows++
		rep.HeadSeq, rep.HeadHash = r.Seq, append([]byte(nil), r.Hash...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("verify audit: %w", err)
	}
	return rep, nil
}

// EachAudit calls fn with up to limit rows of the audit trail after seq,
// in order (not verified; see VerifyAudit): seq, the commit time in Unix
// milliseconds and the record.
func (s *Store) EachAudit(ctx context.Context, after int64, limit int, fn func(seq, recorded int64, rec []byte) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT seq, recorded, record FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return fmt.Errorf("audit rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, recorded int64
		var rec []byte
		if err := rows.Scan(&seq, &recorded, &rec); err != nil {
			return fmt.Errorf("audit rows: %w", err)
		}
		if err := fn(seq, recorded, rec); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditProjected returns the seq of the last audit record projected
// (SetAuditProjected), 0 when none.
func (s *Store) AuditProjected(ctx context.Context) (int64, error) {
	var seq int64
	err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM audit_projection WHERE id = 1`).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit projection: %w", err)
	}
	return seq, nil
}

// SetAuditProjected records, inside this transaction, that the audit
// records up to seq are projected.
func (t *tx) SetAuditProjected(seq int64) error {
	st, err := t.s.writerStmt(t.ctx, `INSERT INTO audit_projection (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(t.ctx, seq); err != nil {
		return fmt.Errorf("sqlite: audit projection: %w", err)
	}
	return nil
}

// ReadAuditProjected returns how far the read trail is projected
// (SetReadAuditProjected): the seq of the last entry and the journal
// position after it, zeros when none.
func (s *Store) ReadAuditProjected(ctx context.Context) (seq, pos int64, err error) {
	err = s.rdb.QueryRowContext(ctx, `SELECT seq, pos FROM audit_read_projection WHERE id = 1`).Scan(&seq, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("audit projection: %w", err)
	}
	return seq, pos, nil
}

// SetReadAuditProjected records, inside this transaction, that the read
// trail is projected up to the entry seq, which ends at journal position
// pos.
func (t *tx) SetReadAuditProjected(seq, pos int64) error {
	st, err := t.s.writerStmt(t.ctx, `INSERT INTO audit_read_projection (id, seq, pos) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, pos = excluded.pos`)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(t.ctx, seq, pos); err != nil {
		return fmt.Errorf("sqlite: audit projection: %w", err)
	}
	return nil
}
