package fhir

import (
	"strconv"
	"time"
)

// Method says how a version came about; it is the Bundle.entry.request.method
// of the version in a history Bundle.
type Method string

// The methods that create versions.
const (
	MethodCreate Method = "POST"
	MethodUpdate Method = "PUT"
	MethodDelete Method = "DELETE"
)

// Resource is one stored version of a resource. JSON holds the canonical
// JSON bytes produced once at write time, with id and meta.versionId and
// meta.lastUpdated set; it is nil for a delete. Readers serve JSON as it is,
// without parsing it again.
type Resource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	Method      Method
	JSON        []byte
	// Seq is the store's global, gap-free commit sequence number of this
	// version: versions committed later have larger numbers.
	Seq int64
	// Index holds the search index values of the version. Service sets it
	// on writes and stores keep it in their index tables (nil writes no
	// index rows, as for a delete); reads leave it nil.
	Index *Index
}

// Deleted reports whether this version records a delete.
func (r *Resource) Deleted() bool { return r.Method == MethodDelete }

// Ref returns the relative reference Type/id.
func (r *Resource) Ref() string { return r.Type + "/" + r.ID }

// VersionRef returns Type/id/_history/n.
func (r *Resource) VersionRef() string {
	return r.Ref() + "/_history/" + strconv.FormatInt(r.VersionID, 10)
}

// ETag returns the weak entity tag of the version, W/"n".
func (r *Resource) ETag() string { return `W/"` + strconv.FormatInt(r.VersionID, 10) + `"` }

// FormatInstant formats t as a FHIR instant in UTC with millisecond
// precision, the form meta.lastUpdated takes.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
