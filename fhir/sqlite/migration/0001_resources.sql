-- Every version of every resource, in commit order. seq is the global,
-- gap-free commit sequence number (the outbox order); body is the canonical
-- JSON, NULL for a delete.
CREATE TABLE history (
  seq          INTEGER PRIMARY KEY,
  type         TEXT    NOT NULL,
  id           TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  last_updated INTEGER NOT NULL, -- Unix milliseconds, non-decreasing with seq
  method       TEXT    NOT NULL,
  body         BLOB,
  UNIQUE (type, id, version)
);
CREATE INDEX history_type ON history (type, seq);
CREATE INDEX history_last_updated ON history (last_updated, seq);

-- The latest version of each resource.
CREATE TABLE resource (
  type    TEXT    NOT NULL,
  id      TEXT    NOT NULL,
  version INTEGER NOT NULL,
  seq     INTEGER NOT NULL,
  PRIMARY KEY (type, id)
) WITHOUT ROWID;
