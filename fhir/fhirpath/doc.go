// Package fhirpath evaluates FHIRPath expressions on FHIR R4 resources in
// their JSON form.
//
// It implements FHIRPath N1 (https://hl7.org/fhirpath/N1/) with the FHIR
// R4 additions (https://hl7.org/fhir/R4/fhirpath.html) that search
// parameters and profile invariants use. An expression is compiled once
// with Parse and then evaluated any number of times, concurrently if need
// be:
//
//	x, err := fhirpath.Parse("Patient.identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number')")
//	root, err := fhirpath.Decode(body)
//	items, err := x.Evaluate(root)
//
// Each item of the result (a Node) carries its FHIR type name, its JSON
// value and its path in the resource, so that a search indexer can turn it
// into token, string, date, reference, quantity, number or uri values.
//
// # Types
//
// Element types come from a table generated from the R4 StructureDefinitions
// (model_gen.go, see internal/gen). A choice element is found by its base
// name and typed by its JSON suffix: Observation.value finds valueQuantity,
// typed Quantity, and is, as and ofType() test it. The type of a resource
// (the root, contained resources, Bundle.entry.resource) is its
// resourceType. A leading type name (Patient.name) selects the focus if it
// is of that type, so an expression may or may not start with it. Values
// computed by the expression have System types (System.String...).
//
// as applies to every item of its input, like ofType(), because R4 search
// parameters apply it to collections (Observation.component.value as
// Quantity); FHIRPath N1 would make that an error.
//
// # resolve()
//
// resolve() cannot fetch resources. A local reference "#id" resolves to the
// contained resource of %resource. Any other Reference (or reference
// string) resolves to a stub resource {"resourceType": T, "id": id}, where
// T comes from the reference (Patient/1, https://server/fhir/Patient/1,
// Patient/1/_history/2) or from Reference.type, so that
// "subject.where(resolve() is Patient)" works. A reference whose type
// cannot be told resolves to nothing.
//
// # Not supported
//
//   - memberOf(), subsumes(), subsumedBy(), conformsTo(), htmlChecks(),
//     elementDefinition(), slice() and checkModifiers() parse but fail with
//     ErrUnsupported when evaluated.
//   - Quantity comparison needs equal units; there is no UCUM conversion.
//   - Primitive extensions (_birthDate) are reachable through extension and
//     id of the primitive, but a primitive with only an extension and no
//     value is not part of any result.
//   - Variables other than %resource, %rootResource, %context, %ucum,
//     %sct, %loinc, %`vs-name` and %`ext-name`; aggregate(), sort() and
//     the FHIRPath 2.0 additions.
//
// Decimals keep their JSON text (json.Number); arithmetic on decimals uses
// float64.
package fhirpath
