package fhir

import (
	"context"
	"time"
)

// Store keeps resources and their version history durably. Implementations
// (fhir/sqlite, fhir/postgres) are safe for concurrent use and all pass
// fhirtest.RunStoreTests.
type Store interface {
	// Read returns the latest version of type/id, which is a delete marker
	// (Method MethodDelete, nil JSON) if the resource was deleted last.
	// Errors: IssueNotFound when no version exists.
	Read(ctx context.Context, typ, id string) (*Resource, error)

	// VRead returns one version of type/id.
	// Errors: IssueNotFound when the version does not exist.
	VRead(ctx context.Context, typ, id string, version int64) (*Resource, error)

	// History returns versions, newest first, as HistoryQuery selects.
	History(ctx context.Context, q HistoryQuery) (*HistoryPage, error)

	// Write runs fn in one durable transaction and returns fn's error, or
	// the commit's. Everything fn writes commits together or not at all;
	// Write returns nil only once the commit is durable. Concurrent Writes
	// may share one commit (group commit) but never see each other's
	// uncommitted writes.
	Write(ctx context.Context, fn func(tx Tx) error) error

	// Search returns the page of s that starts after cursor (nil: the
	// first page); backward asks for the page that ends before cursor
	// instead. Only current, not deleted, versions match. Errors:
	// IssueInvalid for a cursor the store did not make; IssueNotSupported
	// for a search the store cannot run (the message names the parameter).
	// See https://hl7.org/fhir/R4/search.html.
	Search(ctx context.Context, s *Search, cursor Cursor, backward bool) (*SearchPage, error)

	// Reindex recomputes the index rows of every current resource with
	// index (called with each resource's type and canonical JSON), in
	// batches, calling progress after each batch with the number done and
	// the total. Writes may go on meanwhile.
	Reindex(ctx context.Context, index func(typ string, body []byte) (*Index, error), progress func(done, total int)) error

	// Ready reports whether the store can serve reads and writes.
	Ready(ctx context.Context) error

	// Close waits for queued writes, then releases the store.
	Close() error
}

// Tx is a write transaction, valid only inside the function given to
// Store.Write and not safe for concurrent use.
type Tx interface {
	// Read returns the latest version of type/id as Store.Read does,
	// including this transaction's own writes.
	Read(typ, id string) (*Resource, error)

	// Put stores r as the next version of r.Type/r.ID. r.VersionID must be
	// one more than the latest stored version (1 for a new resource), and
	// r.LastUpdated must be Now(). Put sets r.Seq.
	Put(r *Resource) error

	// Now returns the commit time of the transaction, the lastUpdated of
	// everything it writes. It never goes backwards between transactions.
	Now() time.Time

	// Search runs s as Store.Search does, but inside the transaction: it
	// sees the transaction's own writes, and no other write can come
	// between the search and the transaction's later Puts. Conditional
	// create, update, delete and patch search this way, which makes them
	// race-free (fifty identical conditional creates at once make one
	// resource). Errors are those of Store.Search.
	// See https://hl7.org/fhir/R4/http.html#cond-update and
	// https://hl7.org/fhir/R4/http.html#ccreate.
	Search(s *Search, cursor Cursor, backward bool) (*SearchPage, error)
}

// HistoryQuery selects versions for a history interaction.
// See https://hl7.org/fhir/R4/http.html#history.
type HistoryQuery struct {
	// Type and ID narrow the history to a type or an instance; both empty
	// means the whole system.
	Type, ID string
	// Since keeps versions last updated at or after it; zero keeps all.
	Since time.Time
	// Before keeps versions with Seq below it (a paging cursor); zero
	// keeps all.
	Before int64
	// Count is the page size.
	Count int
}

// HistoryPage is one page of history, newest first. Next is the cursor
// (HistoryQuery.Before) of the following page, zero on the last page.
type HistoryPage struct {
	Versions []*Resource
	Next     int64
}

// largeWriteKey marks a context whose write is large (WithLargeWrite).
type largeWriteKey struct{}

// LargeWriteEntries is the number of entries written from which a
// transaction's write is large: a council upload writes 100.
const LargeWriteEntries = 20

// WithLargeWrite marks the write made with ctx as large. A store whose
// writes share commits (fhir/sqlite) may commit the small writes queued
// with it first, so that one resource's write (an attendance) does not
// wait for a council upload that happened to queue at the same moment.
// Writes queued together are concurrent, so either order is theirs.
func WithLargeWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, largeWriteKey{}, true)
}

// IsLargeWrite reports whether ctx was marked by WithLargeWrite.
func IsLargeWrite(ctx context.Context) bool {
	v, _ := ctx.Value(largeWriteKey{}).(bool)
	return v
}
