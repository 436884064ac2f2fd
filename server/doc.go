// Package server is the CP-IS FHIR service over HTTP: gin routing with one
// file per FHIR interaction, request ids, content negotiation, limits and
// the single table that turns errors into statuses and OperationOutcomes.
package server
