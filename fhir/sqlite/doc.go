// Package sqlite implements fhir.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go) in WAL mode.
//
// One writer goroutine owns the only write connection and commits with
// group commit: write functions that queue while a commit is being made
// durable are run together, each inside its own savepoint, and share the
// next commit and its fsync (synchronous=FULL); small writes queued with
// large ones (fhir.WithLargeWrite) are committed first. A write is acknowledged only
// after that commit returns. Reads use a pool of read-only connections and
// never wait for the writer. The WAL is copied into the database file in
// the background, on a connection of its own (checkpoint.go).
//
// # Search
//
// Every resource has a row in res with a stable integer key, rid, given
// when it is first written and kept across updates, deletes and
// re-creation; ascending rid is insertion order, the default search order
// and the key of keyset paging. The search index of the current version
// (fhir.Index) is kept in one table per value type (idx_token, idx_string,
// idx_reference, idx_date, idx_number, idx_quantity, idx_uri,
// idx_composite), each row carrying the rid and a parameter key (pid, from
// search_param), written in the same savepoint as the resource: an update
// replaces the rid's rows, a delete removes them, so index rows exist only
// for current, not deleted, versions. Each table has a primary key led by
// (pid, value), for lookups, and an index led by rid, for replacing rows,
// EXISTS checks and sort values.
//
// Search turns a fhir.Search into one SQL query (search.go, with one file
// per parameter type) whose most selective filter drives it through the
// index tables; statements are prepared once and cached by SQL text. The
// store never runs ANALYZE: with sqlite_stat4 present modernc re-prepares
// statements on every use, so the query shapes fix the join order instead.
// See https://hl7.org/fhir/R4/search.html.
package sqlite
