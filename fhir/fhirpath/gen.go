package fhirpath

//go:generate go run ./internal/gen -in internal/gen/definitions/structuredefinitions-r4.ndjson -out model_gen.go

// elementDef describes one element of a FHIR type or backbone element, as
// recorded in the generated elements table.
type elementDef struct {
	// types lists the element's FHIR type codes; more than one only for a
	// choice element.
	types []string
	// choice reports a choice element (value[x]) whose JSON name carries
	// the type as a suffix (valueQuantity).
	choice bool
	// path is the model path holding the element's children when it is a
	// backbone element or a contentReference ("Questionnaire.item").
	path string
}

// typeKind is the StructureDefinition kind of a type.
type typeKind uint8

const (
	kindUnknown typeKind = iota
	kindPrimitive
	kindComplex
	kindResource
)
