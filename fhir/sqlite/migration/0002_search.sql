-- Search: a stable integer row key per resource, and one index table per
-- search value type. See https://hl7.org/fhir/R4/search.html.

-- The latest version of each resource. rid is the resource's row key: it is
-- given when the resource is first written and never changes for a
-- (type, id), also across a delete and a re-create, so index rows and
-- paging cursors refer to it. Ascending rid is insertion order.
CREATE TABLE res (
  rid          INTEGER PRIMARY KEY,
  type         TEXT    NOT NULL,
  id           TEXT    NOT NULL,
  version      INTEGER NOT NULL,
  seq          INTEGER NOT NULL, -- history.seq of the latest version
  last_updated INTEGER NOT NULL, -- Unix milliseconds
  deleted      INTEGER NOT NULL, -- 1 when the latest version is a delete
  UNIQUE (type, id)
);
-- A type's current resources in insertion order: searches without a
-- selective filter walk it, and stop once the page is full.
CREATE INDEX res_type ON res (type, deleted, rid);

-- Copy the resources over in insertion order (the seq of each one's first
-- version), so that rid order is the order they were created in.
INSERT INTO res (type, id, version, seq, last_updated, deleted)
SELECT r.type, r.id, r.version, r.seq, h.last_updated, h.method = 'DELETE'
FROM resource r
JOIN history h ON h.seq = r.seq
ORDER BY (SELECT min(f.seq) FROM history f WHERE f.type = r.type AND f.id = r.id);
DROP TABLE resource;

-- Search parameter keys: index rows carry pid, not the type and code. The
-- parameters defined on every resource (names starting with "_") have an
-- empty type, so that a system search finds them across types.
CREATE TABLE search_param (
  pid  INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  code TEXT NOT NULL,
  UNIQUE (type, code)
);

-- Small settings of the store, such as the index extraction version.
CREATE TABLE store_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Index rows exist only for current, not deleted, versions: a write
-- replaces the rows of the resource's rid. Each table has a lookup index
-- led by (pid, value) and one led by rid (replacing rows, EXISTS checks
-- and sort keys of one resource).

-- token: Coding, Identifier, ContactPoint, code, boolean, id, string.
CREATE TABLE idx_token (
  pid    INTEGER NOT NULL,
  code   TEXT    NOT NULL,
  system TEXT    NOT NULL,
  rid    INTEGER NOT NULL,
  PRIMARY KEY (pid, code, system, rid)
) WITHOUT ROWID;
CREATE INDEX idx_token_rid ON idx_token (rid, pid, code, system);

-- string: norm is the normalised value (starts-with and contains), exact
-- the value as written (:exact).
CREATE TABLE idx_string (
  pid   INTEGER NOT NULL,
  norm  TEXT    NOT NULL,
  exact TEXT    NOT NULL,
  rid   INTEGER NOT NULL,
  PRIMARY KEY (pid, norm, exact, rid)
) WITHOUT ROWID;
CREATE INDEX idx_string_rid ON idx_string (rid, pid, norm);

-- reference: ref_type and ref_id for relative references (and absolute
-- ones whose last two segments are a type and an id), url for absolute
-- URLs and canonicals ('' when none), version a canonical's |version.
CREATE TABLE idx_reference (
  pid      INTEGER NOT NULL,
  ref_id   TEXT    NOT NULL,
  ref_type TEXT    NOT NULL,
  url      TEXT    NOT NULL,
  version  TEXT    NOT NULL,
  rid      INTEGER NOT NULL,
  PRIMARY KEY (pid, ref_id, ref_type, url, version, rid)
) WITHOUT ROWID;
CREATE INDEX idx_reference_rid ON idx_reference (rid, pid);
CREATE INDEX idx_reference_url ON idx_reference (pid, url, version) WHERE url <> '';

-- date: the range of instants covered, Unix milliseconds, both ends
-- inclusive.
CREATE TABLE idx_date (
  pid  INTEGER NOT NULL,
  low  INTEGER NOT NULL,
  high INTEGER NOT NULL,
  rid  INTEGER NOT NULL,
  PRIMARY KEY (pid, low, high, rid)
) WITHOUT ROWID;
CREATE INDEX idx_date_high ON idx_date (pid, high);
CREATE INDEX idx_date_rid ON idx_date (rid, pid);

-- number: value, and the range [low, high) its precision implies.
CREATE TABLE idx_number (
  pid   INTEGER NOT NULL,
  value REAL    NOT NULL,
  low   REAL    NOT NULL,
  high  REAL    NOT NULL,
  rid   INTEGER NOT NULL,
  PRIMARY KEY (pid, value, low, high, rid)
) WITHOUT ROWID;
CREATE INDEX idx_number_rid ON idx_number (rid, pid);

-- quantity: as number, with the unit's system and code and the unit text.
CREATE TABLE idx_quantity (
  pid    INTEGER NOT NULL,
  value  REAL    NOT NULL,
  low    REAL    NOT NULL,
  high   REAL    NOT NULL,
  system TEXT    NOT NULL,
  code   TEXT    NOT NULL,
  unit   TEXT    NOT NULL,
  rid    INTEGER NOT NULL,
  PRIMARY KEY (pid, value, low, high, system, code, unit, rid)
) WITHOUT ROWID;
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, pid);

-- uri: as written.
CREATE TABLE idx_uri (
  pid INTEGER NOT NULL,
  uri TEXT    NOT NULL,
  rid INTEGER NOT NULL,
  PRIMARY KEY (pid, uri, rid)
) WITHOUT ROWID;
CREATE INDEX idx_uri_rid ON idx_uri (rid, pid);

-- composite: one row per component (part, from 0) of each composite value
-- (cid, numbered within the resource), with the columns of the
-- component's type named as in the tables above (a date part keeps its
-- range in low and high).
CREATE TABLE idx_composite (
  rid      INTEGER NOT NULL,
  pid      INTEGER NOT NULL,
  cid      INTEGER NOT NULL,
  part     INTEGER NOT NULL,
  system   TEXT    NOT NULL,
  code     TEXT    NOT NULL,
  unit     TEXT    NOT NULL,
  norm     TEXT    NOT NULL,
  exact    TEXT    NOT NULL,
  ref_type TEXT    NOT NULL,
  ref_id   TEXT    NOT NULL,
  url      TEXT    NOT NULL,
  uri      TEXT    NOT NULL,
  value    REAL    NOT NULL,
  low      NUMERIC NOT NULL,
  high     NUMERIC NOT NULL,
  PRIMARY KEY (rid, pid, cid, part)
) WITHOUT ROWID;
CREATE INDEX idx_composite_code ON idx_composite (pid, part, code, rid);
