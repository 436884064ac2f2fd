// Package profiles holds the CP-IS StructureDefinitions (JSON, embedded)
// and a validator that checks FHIR R4 resources against them.
//
// # Profiles
//
// Each profile constrains an R4 base resource and follows the national
// shape it names in its description (UK Core, NHS England Patient Flags):
// CPIS-Patient, CPIS-Flag, CPIS-CarePlan, CPIS-CareTeam, CPIS-Organization,
// CPIS-Encounter, CPIS-Communication, CPIS-AuditEvent and
// CPIS-PractitionerRole, each at
// https://fhir.cpis-fhir.org/StructureDefinition/<id>. They are written as
// differentials (definitions/*.json); New builds their snapshots by merging
// each differential onto the R4 base elements (base/r4.json.gz, trimmed
// from hl7.fhir.r4.core 4.0.1 by profiles/internal/gen) by element id, creating slices where a
// differential names them and unfolding a data type's elements where a
// differential reaches inside it (Patient.identifier:nhsNumber.system).
// See https://hl7.org/fhir/R4/profiling.html#snapshot.
//
// # Validation
//
// Validator.Validate reports, as OperationOutcome issues with the FHIRPath of
// the element concerned (Flag.category[0], Patient.identifier[0].value):
//   - cardinality (min and max) of every element of the snapshot, slices
//     included;
//   - fixed[x] (exact) and pattern[x] (contained) values;
//   - slices discriminated by value or pattern on a child (identifier.system,
//     coding.system, extension url, telecom system and use) or by type on
//     $this; open and closed rules;
//   - type choices: a choice element in a type the profile does not allow;
//   - bindings through package terminology: required (error when no code
//     is in the value set), extensible (error when a code from the value
//     set's own systems is not in it), preferred (information);
//   - reference target types of literal references (Type/id, absolute URLs,
//     contained #id) and of Reference.type; urn:uuid and identifier-only
//     references are accepted;
//   - invariants written in FHIRPath (package fhir/fhirpath), on the
//     resource or on each value of their element;
//   - the Modulus 11 check digit of every NHS number in the resource, with
//     Details INVALID_SEARCH_DATA.
//
// # Validation against the R4 base
//
// Validator.ValidateBase checks any resource against the R4
// StructureDefinition of its type (every resource type and complex data
// type of hl7.fhir.r4.core 4.0.1, in base/r4.json.gz): the cardinality of
// every element, descending into data types, backbone elements, elements
// defined by a contentReference (Questionnaire.item.item), contained
// resources and the resources of Bundle entries and Parameters; bindings
// to the value sets the terminology service holds; reference target types;
// and the R4 invariants, evaluated with fhir/fhirpath (a nested resource
// other than a contained one is its own %resource). ele-1 and ext-1 are
// checked natively; txt-1 and txt-2 (htmlChecks()) and que-7 (`is Boolean`
// on a FHIR boolean) are not checked, as the evaluator cannot run them.
// Every official R4 example passes but those that really break an R4 rule
// (base_test.go lists them).
//
// Not checked by either: extension definitions other than what a profile
// states inline, bindings to value sets the terminology service does not
// hold, and what the strict parser already enforces (unknown elements,
// primitive formats); Validate does not repeat the base checks below the
// elements a profile constrains. The server enforces the profiles on
// writes and answers $validate with both (see server/validate.go and
// server/operation_validate.go).
//
// See https://hl7.org/fhir/R4/validation.html.
package profiles
