package fhir

import (
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
)

// FastParse is fastParse, for the external tests.
func FastParse(body []byte) (*bcrpb.ContainedResource, bool) { return fastParse(body) }

// GoogleUnmarshal is google/fhir's parse of body alone, with its parse
// errors and without its validation (which runs after either parser).
func (c *Codec) GoogleUnmarshal(body []byte) (proto.Message, error) {
	return c.u.UnmarshalWithErrorReporter(body, &reporter{})
}

// PrepSlotsForTest is the number of uploads parsed and prepared at once.
func PrepSlotsForTest() int { return cap(prepSlots()) }
