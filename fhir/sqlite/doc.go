// Package sqlite implements fhir.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go) in WAL mode.
//
// One writer goroutine owns the only write connection and commits with
// group commit: write functions that queue while a commit is being made
// durable are run together, each inside its own savepoint, and share the
// next commit and its fsync (synchronous=FULL). A write is acknowledged only
// after that commit returns. Reads use a pool of read-only connections and
// never wait for the writer.
package sqlite
