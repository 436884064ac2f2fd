// Package fhirtest holds the conformance suites every fhir.Store
// implementation runs: RunStoreTests.
package fhirtest
