-- How far the read trail (the journal beside the database, audit.go) has
-- been projected into AuditEvent resources: the seq of the last entry
-- projected and the byte position after it, written in the same
-- transaction as its AuditEvent.
CREATE TABLE audit_read_projection (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  pos INTEGER NOT NULL
);
