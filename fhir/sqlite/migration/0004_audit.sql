-- The audit trail: an append-only, hash-chained log of every request that
-- touches CP-IS data. record is the server's canonical record (JSON); hash
-- is SHA-256 over prev, seq (8 bytes, big-endian) and record, and prev is
-- the hash of the row before (32 zero bytes for seq 1), so that editing,
-- deleting or reordering rows breaks the chain (see audit.go, cpis audit
-- verify).
CREATE TABLE audit (
  seq      INTEGER PRIMARY KEY, -- 1, 2, 3... without gaps
  recorded INTEGER NOT NULL,    -- Unix milliseconds of the commit
  prev     BLOB    NOT NULL,
  hash     BLOB    NOT NULL,
  record   BLOB    NOT NULL
);

-- How far the audit trail has been projected into AuditEvent resources:
-- the seq of the last record projected, written in the same transaction
-- as its AuditEvent.
CREATE TABLE audit_projection (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
