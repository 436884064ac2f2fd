// Package fhir is a FHIR R4 engine that knows nothing of CP-IS or HTTP.
//
// It holds the resource model (google/fhir protos and the canonical JSON
// bytes stored for each version), parsing and validation (Codec), the
// errors every interaction can return (Error, with an OperationOutcome
// issue type), and the storage boundary (Store and Tx) that the SQL
// adapters in fhir/sqlite and fhir/postgres implement.
//
// Everything in this package is usable as a library: it imports only the
// standard library and google/fhir.
package fhir
