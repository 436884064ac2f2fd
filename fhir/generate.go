package fhir

// The tables in resourcetypes_gen.go, searchparams_gen.go and
// compartments_gen.go come from the R4 definitions copied into
// internal/gen/r4; see internal/gen/SOURCES.md.

//go:generate go run ./internal/gen
