// Package smart is SMART on FHIR for the CP-IS server: the principal a
// verified access token stands for, SMART scopes (v1 and v2), token
// verification (golang-jwt, used only here) and the built-in authorization
// server.
//
// See https://hl7.org/fhir/smart-app-launch/ (SMART App Launch 2.0).
package smart
