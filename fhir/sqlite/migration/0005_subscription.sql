-- The subscription engine's durable state (server/subscription; see
-- https://hl7.org/fhir/R4/subscription.html). The matcher follows history
-- in seq order from its cursor and appends, in the same transaction that
-- moves the cursor, one sub_event row per notification: a subscription's
-- event numbers are gap-free from 1.

-- The matcher's cursor: every history row with seq <= seq has been matched.
CREATE TABLE sub_cursor (
  name TEXT    PRIMARY KEY,
  seq  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sub_cursor (name, seq) SELECT 'match', coalesce(max(seq), 0) FROM history;

-- One row per subscription that ever had a notification or a state change:
-- events is the last event number given, delivered the last one the
-- receiver acknowledged (or that was withheld), status and error what the
-- engine last decided.
CREATE TABLE sub_state (
  id         TEXT    PRIMARY KEY,
  events     INTEGER NOT NULL DEFAULT 0,
  delivered  INTEGER NOT NULL DEFAULT 0,
  status     TEXT    NOT NULL DEFAULT '',
  error      TEXT    NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL DEFAULT 0 -- Unix milliseconds
) WITHOUT ROWID;

-- The notifications of each subscription, by event number.
CREATE TABLE sub_event (
  sub     TEXT    NOT NULL,
  num     INTEGER NOT NULL,
  seq     INTEGER NOT NULL, -- history.seq of the version notified
  type    TEXT    NOT NULL,
  id      TEXT    NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (sub, num)
) WITHOUT ROWID;
