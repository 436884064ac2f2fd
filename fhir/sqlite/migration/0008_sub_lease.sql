-- Leases of the subscription engine (server/subscription) when several
-- server processes share this store: the process whose owner id holds the
-- lease "match" matches the outbox, the one holding "sub/<id>" delivers
-- that subscription's notifications. A lease lapses at until (Unix
-- milliseconds) unless its owner renews it, so a dead process's leases go
-- to the others.
CREATE TABLE sub_lease (
  name  TEXT    PRIMARY KEY,
  owner TEXT    NOT NULL,
  until INTEGER NOT NULL
) WITHOUT ROWID;
