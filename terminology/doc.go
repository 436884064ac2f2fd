// Package terminology holds the CodeSystems and ValueSets the CP-IS server
// knows, embedded in the binary as JSON, and answers code-membership and
// lookup questions on them.
//
// The content is the CP-IS plan types (SNOMED CT, ValueSet
// https://fhir.nhs.uk/England/ValueSet/England-ChildProtectionPlan), the
// England patient flag categories, the UK Core NHS number verification
// status (England and Wales), the UK Core care setting types, a subset of
// the SDS job roles, the Spine error or warning codes, and the R4 value sets
// of the required bindings of the resources CP-IS profiles (data/SOURCES.md
// names every input).
//
// A value set whose compose uses a filter (the SNOMED CT ones) is answered
// from its stored expansion; any other value set from its compose: whole
// code systems (with their nested concepts) and concept lists.
// See https://hl7.org/fhir/R4/valueset.html#compositions and
// https://hl7.org/fhir/R4/valueset-operation-validate-code.html.
//
// Expand, LookupCode and Subsumes answer $expand, $lookup and $subsumes;
// the hierarchy Subsumes uses is concept nesting and `parent` properties.
// Definitions gives the embedded resources, which the server writes into
// its store at start (server/terminology.go) so that they can be read and
// searched.
// See https://hl7.org/fhir/R4/terminology-service.html.
package terminology
