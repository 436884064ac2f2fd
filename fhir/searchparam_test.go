package fhir_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// The counts below were checked against the hl7.fhir.r4.core 4.0.1 package
// independently of the generator: CodeSystem-resource-types lists 148
// codes, of which Resource and DomainResource are abstract, leaving 146;
// CapabilityStatement-base lists 1,697 type-specific parameters over 145
// types (all but Parameters, which has none).
const (
	wantResourceTypes  = 146
	wantSpecificParams = 1697 + wantCPISParams
	// The CP-IS parameters shipped in internal/gen/cpis: Flag status,
	// category and detail, Encounter service-type, CarePlan author,
	// CareTeam managing-organization.
	wantCPISParams = 6
	// Binary, Bundle and Parameters are not DomainResources, so _text
	// does not apply to them.
	wantNotDomainResources = 3
	// _content, _filter, _has, _id, _lastUpdated, _list, _profile,
	// _query, _security, _source, _tag, _type (base Resource).
	wantResourceParams = 12
)

func TestResourceTypes(t *testing.T) {
	if got := len(fhir.ResourceTypes); got != wantResourceTypes {
		t.Errorf("len(ResourceTypes) = %d, want %d", got, wantResourceTypes)
	}
	if !slices.IsSorted(fhir.ResourceTypes) {
		t.Error("ResourceTypes is not sorted")
	}
	if got := len(slices.Compact(slices.Clone(fhir.ResourceTypes))); got != len(fhir.ResourceTypes) {
		t.Errorf("ResourceTypes has %d distinct names, want %d", got, len(fhir.ResourceTypes))
	}
	for _, rt := range fhir.ResourceTypes {
		if !fhir.IsResourceType(rt) {
			t.Errorf("IsResourceType(%q) = false for a member of ResourceTypes", rt)
		}
	}
}

func TestIsResourceType(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Patient", true},
		{"Flag", true},
		{"Observation", true},
		{"Bundle", true},
		{"Binary", true},
		{"Parameters", true},
		{"MedicinalProductPharmaceutical", true},
		{"Nope", false},
		{"", false},
		{"patient", false},
		{"Resource", false},
		{"DomainResource", false},
		{"HumanName", false},
		{"Flag ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fhir.IsResourceType(tc.name); got != tc.want {
				t.Errorf("IsResourceType(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestLookupSearchParam(t *testing.T) {
	allComparators := []string{"eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap"}
	for _, tc := range []struct {
		resourceType, name string
		want               fhir.SearchParam // compared field by field, Components apart
	}{
		// Flag, the resource CP-IS exchanges.
		{"Flag", "patient", fhir.SearchParam{Name: "patient", URL: "http://hl7.org/fhir/SearchParameter/clinical-patient", Type: fhir.SearchParamReference,
			Expression: "Flag.subject.where(resolve() is Patient)", XPathUsage: "normal", Targets: []string{"Group", "Patient"}, MultipleOr: true, MultipleAnd: true}},
		{"Flag", "subject", fhir.SearchParam{Name: "subject", URL: "http://hl7.org/fhir/SearchParameter/Flag-subject", Type: fhir.SearchParamReference,
			Expression: "Flag.subject", XPathUsage: "normal", Targets: []string{"Group", "Location", "Medication", "Organization", "Patient", "PlanDefinition", "Practitioner", "Procedure"},
			MultipleOr: true, MultipleAnd: true}},
		{"Flag", "date", fhir.SearchParam{Name: "date", URL: "http://hl7.org/fhir/SearchParameter/clinical-date", Type: fhir.SearchParamDate,
			Expression: "Flag.period", XPathUsage: "normal", Comparators: allComparators, MultipleOr: true, MultipleAnd: true}},
		{"Flag", "encounter", fhir.SearchParam{Name: "encounter", URL: "http://hl7.org/fhir/SearchParameter/clinical-encounter", Type: fhir.SearchParamReference,
			Expression: "Flag.encounter", XPathUsage: "normal", Targets: []string{"Encounter", "EpisodeOfCare"}, MultipleOr: true, MultipleAnd: true}},
		{"Flag", "author", fhir.SearchParam{Name: "author", URL: "http://hl7.org/fhir/SearchParameter/Flag-author", Type: fhir.SearchParamReference,
			Expression: "Flag.author", XPathUsage: "normal", Targets: []string{"Device", "Organization", "Patient", "Practitioner", "PractitionerRole"}, MultipleOr: true, MultipleAnd: true}},
		{"Flag", "identifier", fhir.SearchParam{Name: "identifier", URL: "http://hl7.org/fhir/SearchParameter/Flag-identifier", Type: fhir.SearchParamToken,
			Expression: "Flag.identifier", XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
		{"Flag", "_id", fhir.SearchParam{Name: "_id", URL: "http://hl7.org/fhir/SearchParameter/Resource-id", Type: fhir.SearchParamToken,
			Expression: "Resource.id", XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
		{"Flag", "_lastUpdated", fhir.SearchParam{Name: "_lastUpdated", URL: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", Type: fhir.SearchParamDate,
			Expression: "Resource.meta.lastUpdated", XPathUsage: "normal", Comparators: allComparators, MultipleOr: true, MultipleAnd: true}},
		{"Flag", "_text", fhir.SearchParam{Name: "_text", URL: "http://hl7.org/fhir/SearchParameter/DomainResource-text", Type: fhir.SearchParamString,
			XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
		{"Flag", "_has", fhir.SearchParam{Name: "_has", URL: "http://hl7.org/fhir/SearchParameter/Resource-has", Type: fhir.SearchParamSpecial,
			MultipleOr: true, MultipleAnd: true}},

		// Other resources.
		{"Patient", "identifier", fhir.SearchParam{Name: "identifier", URL: "http://hl7.org/fhir/SearchParameter/Patient-identifier", Type: fhir.SearchParamToken,
			Expression: "Patient.identifier", XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
		{"Patient", "phonetic", fhir.SearchParam{Name: "phonetic", URL: "http://hl7.org/fhir/SearchParameter/individual-phonetic", Type: fhir.SearchParamString,
			Expression: "Patient.name", XPathUsage: "phonetic", MultipleOr: true, MultipleAnd: true}},
		{"CareTeam", "patient", fhir.SearchParam{Name: "patient", URL: "http://hl7.org/fhir/SearchParameter/clinical-patient", Type: fhir.SearchParamReference,
			Expression: "CareTeam.subject.where(resolve() is Patient)", XPathUsage: "normal", Targets: []string{"Group", "Patient"}, MultipleOr: true, MultipleAnd: true}},
		{"AllergyIntolerance", "code", fhir.SearchParam{Name: "code", URL: "http://hl7.org/fhir/SearchParameter/clinical-code", Type: fhir.SearchParamToken,
			Expression: "AllergyIntolerance.code | AllergyIntolerance.reaction.substance", XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
		{"Observation", "value-quantity", fhir.SearchParam{Name: "value-quantity", URL: "http://hl7.org/fhir/SearchParameter/Observation-value-quantity", Type: fhir.SearchParamQuantity,
			Expression: "(Observation.value as Quantity) | (Observation.value as SampledData)", XPathUsage: "normal", Comparators: allComparators, MultipleOr: true, MultipleAnd: true}},
		{"Location", "near", fhir.SearchParam{Name: "near", URL: "http://hl7.org/fhir/SearchParameter/Location-near", Type: fhir.SearchParamSpecial,
			Expression: "Location.position", XPathUsage: "nearby", MultipleOr: true, MultipleAnd: true}},
		{"Bundle", "_id", fhir.SearchParam{Name: "_id", URL: "http://hl7.org/fhir/SearchParameter/Resource-id", Type: fhir.SearchParamToken,
			Expression: "Resource.id", XPathUsage: "normal", MultipleOr: true, MultipleAnd: true}},
	} {
		t.Run(tc.resourceType+" "+tc.name, func(t *testing.T) {
			got, ok := fhir.LookupSearchParam(tc.resourceType, tc.name)
			if !ok {
				t.Fatalf("LookupSearchParam(%q, %q): not found", tc.resourceType, tc.name)
			}
			checkParam(t, tc.resourceType, *got, tc.want)
		})
	}
}

// checkParam compares every field of got and want but Components.
func checkParam(t *testing.T, resourceType string, got, want fhir.SearchParam) {
	t.Helper()
	for _, f := range []struct {
		field     string
		got, want any
	}{
		{"Name", got.Name, want.Name},
		{"URL", got.URL, want.URL},
		{"Type", got.Type, want.Type},
		{"Expression", got.Expression, want.Expression},
		{"XPathUsage", got.XPathUsage, want.XPathUsage},
		{"Targets", got.Targets, want.Targets},
		{"Modifiers", got.Modifiers, want.Modifiers},
		{"Comparators", got.Comparators, want.Comparators},
		{"MultipleOr", got.MultipleOr, want.MultipleOr},
		{"MultipleAnd", got.MultipleAnd, want.MultipleAnd},
	} {
		g, w := f.got, f.want
		if gs, ok := g.([]string); ok {
			g, w = strings.Join(gs, ","), strings.Join(w.([]string), ",")
		}
		if g != w {
			t.Errorf("%s %s: %s = %q, want %q", resourceType, want.Name, f.field, g, w)
		}
	}
}

func TestLookupSearchParam_composite(t *testing.T) {
	for _, tc := range []struct {
		resourceType, name string
		want               []fhir.SearchParamComponent
		wantMultipleOr     bool
	}{
		{"Observation", "code-value-quantity", []fhir.SearchParamComponent{
			{Definition: "http://hl7.org/fhir/SearchParameter/clinical-code", Expression: "code", Name: "code", Type: fhir.SearchParamToken},
			{Definition: "http://hl7.org/fhir/SearchParameter/Observation-value-quantity", Expression: "value.as(Quantity)", Name: "value-quantity", Type: fhir.SearchParamQuantity},
		}, false},
		{"Observation", "component-code-value-concept", []fhir.SearchParamComponent{
			{Definition: "http://hl7.org/fhir/SearchParameter/Observation-component-code", Expression: "code", Name: "component-code", Type: fhir.SearchParamToken},
			{Definition: "http://hl7.org/fhir/SearchParameter/Observation-component-value-concept", Expression: "value.as(CodeableConcept)", Name: "component-value-concept", Type: fhir.SearchParamToken},
		}, false},
	} {
		t.Run(tc.resourceType+" "+tc.name, func(t *testing.T) {
			got, ok := fhir.LookupSearchParam(tc.resourceType, tc.name)
			if !ok {
				t.Fatalf("LookupSearchParam(%q, %q): not found", tc.resourceType, tc.name)
			}
			if got.Type != fhir.SearchParamComposite {
				t.Errorf("%s %s: Type = %q, want %q", tc.resourceType, tc.name, got.Type, fhir.SearchParamComposite)
			}
			if !slices.Equal(got.Components, tc.want) {
				t.Errorf("%s %s: Components = %+v, want %+v", tc.resourceType, tc.name, got.Components, tc.want)
			}
			if got.MultipleOr != tc.wantMultipleOr {
				t.Errorf("%s %s: MultipleOr = %v, want %v", tc.resourceType, tc.name, got.MultipleOr, tc.wantMultipleOr)
			}
		})
	}
}

func TestLookupSearchParam_notFound(t *testing.T) {
	for _, tc := range []struct{ resourceType, name string }{
		{"Flag", "nope"},
		{"Flag", ""},
		{"Flag", "Patient"},
		{"Nope", "_id"},
		{"", "_id"},
		{"Resource", "_id"},
		{"Bundle", "_text"},     // Bundle is not a DomainResource
		{"Patient", "age"},      // experimental extension parameter
		{"Flag", "_count"},      // a result parameter, not a search parameter
		{"Condition", "_sort"},  // likewise
		{"Patient", "_include"}, // likewise
	} {
		t.Run(tc.resourceType+" "+tc.name, func(t *testing.T) {
			if got, ok := fhir.LookupSearchParam(tc.resourceType, tc.name); ok || got != nil {
				t.Errorf("LookupSearchParam(%q, %q) = %v, %v, want nil, false", tc.resourceType, tc.name, got, ok)
			}
		})
	}
}

func TestSearchParams(t *testing.T) {
	for _, tc := range []struct {
		resourceType string
		want         []string
	}{
		{"Flag", []string{"_content", "_filter", "_has", "_id", "_lastUpdated", "_list", "_profile", "_query", "_security", "_source", "_tag", "_text", "_type",
			"author", "category", "date", "detail", "encounter", "identifier", "patient", "status", "subject"}},
		{"Parameters", []string{"_content", "_filter", "_has", "_id", "_lastUpdated", "_list", "_profile", "_query", "_security", "_source", "_tag", "_type"}},
		{"Nope", nil},
	} {
		t.Run(tc.resourceType, func(t *testing.T) {
			var got []string
			for _, p := range fhir.SearchParams(tc.resourceType) {
				got = append(got, p.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("SearchParams(%q) names = %q, want %q", tc.resourceType, got, tc.want)
			}
		})
	}
}

// Known quirks of the R4 definitions, kept as published.
var (
	// R4 roots every expression at the resource type but this one.
	relativeExpression = map[string]bool{"InsurancePlan name": true}
	// A reference to a canonical URL, so no resource types.
	noTargets = map[string]bool{"RequestGroup instantiates-canonical": true}
)

// TestSearchParams_all checks invariants over the whole table.
func TestSearchParams_all(t *testing.T) {
	var total, specific int
	for _, rt := range fhir.ResourceTypes {
		ps := fhir.SearchParams(rt)
		total += len(ps)
		if !slices.IsSortedFunc(ps, func(a, b *fhir.SearchParam) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("SearchParams(%q) is not sorted by name", rt)
		}
		for i, p := range ps {
			if i > 0 && ps[i-1].Name == p.Name {
				t.Errorf("SearchParams(%q): %s twice", rt, p.Name)
			}
			if got, ok := fhir.LookupSearchParam(rt, p.Name); !ok || got != p {
				t.Errorf("LookupSearchParam(%q, %q) = %p, %v, want %p, true", rt, p.Name, got, ok, p)
			}
			if (p.Type == fhir.SearchParamComposite) != (len(p.Components) > 0) {
				t.Errorf("%s %s: Type %s with %d components", rt, p.Name, p.Type, len(p.Components))
			}
			if p.Type == fhir.SearchParamReference && len(p.Targets) == 0 && !noTargets[rt+" "+p.Name] {
				t.Errorf("%s %s: reference without Targets", rt, p.Name)
			}
			if !strings.HasPrefix(p.Name, "_") {
				specific++
			}
			if strings.HasPrefix(p.Expression, "Resource.") || relativeExpression[rt+" "+p.Name] {
				continue
			}
			// Narrowed expressions mention only this resource type at the
			// start of each union member.
			for m := range strings.SplitSeq(p.Expression, " | ") {
				if p.Expression == "" {
					break
				}
				s := strings.TrimLeft(m, "(")
				if s != rt && !strings.HasPrefix(s, rt+".") && !strings.HasPrefix(s, rt+" ") {
					t.Errorf("%s %s: expression %q has member %q for another type", rt, p.Name, p.Expression, m)
				}
			}
		}
	}
	wantTotal := wantSpecificParams + wantResourceParams*wantResourceTypes + (wantResourceTypes - wantNotDomainResources)
	if total != wantTotal {
		t.Errorf("total search parameter entries = %d, want %d", total, wantTotal)
	}
	// No type-specific parameter name starts with "_".
	if specific != wantSpecificParams {
		t.Errorf("type-specific search parameter entries = %d, want %d", specific, wantSpecificParams)
	}
}

// TestSearchParams_shared checks that callers cannot change the table
// through the returned slice.
func TestSearchParams_shared(t *testing.T) {
	ps := fhir.SearchParams("Flag")
	ps[0] = nil
	if fhir.SearchParams("Flag")[0] == nil {
		t.Error("SearchParams(\"Flag\") returned the table's own slice")
	}
}

func TestCompartmentParams(t *testing.T) {
	for _, tc := range []struct {
		compartment, resourceType string
		want                      []string
	}{
		{"Patient", "Flag", []string{"patient"}},
		{"Patient", "Patient", []string{"link"}},
		{"Patient", "Observation", []string{"subject", "performer"}},
		{"Patient", "Encounter", []string{"patient"}},
		{"Patient", "Organization", nil},
		{"Practitioner", "Flag", []string{"author"}},
		{"Device", "Flag", []string{"author"}},
		{"Encounter", "Flag", nil},
		{"Encounter", "Encounter", []string{"{def}"}},
		{"RelatedPerson", "RelatedPerson", []string{"{def}"}},
		{"RelatedPerson", "Flag", nil},
		{"Nope", "Flag", nil},
		{"Patient", "Nope", nil},
		{"patient", "Flag", nil},
	} {
		t.Run(tc.compartment+" "+tc.resourceType, func(t *testing.T) {
			got := fhir.CompartmentParams(tc.compartment, tc.resourceType)
			if !slices.Equal(got, tc.want) {
				t.Errorf("CompartmentParams(%q, %q) = %q, want %q", tc.compartment, tc.resourceType, got, tc.want)
			}
		})
	}
}

// TestCompartmentParams_resolve checks that every compartment parameter is
// a search parameter of its resource type.
func TestCompartmentParams_resolve(t *testing.T) {
	for _, c := range []string{"Device", "Encounter", "Patient", "Practitioner", "RelatedPerson"} {
		n := 0
		for _, rt := range fhir.ResourceTypes {
			for _, name := range fhir.CompartmentParams(c, rt) {
				n++
				if name == "{def}" {
					continue
				}
				p, ok := fhir.LookupSearchParam(rt, name)
				if !ok {
					t.Errorf("CompartmentParams(%q, %q): %s is not a search parameter", c, rt, name)
					continue
				}
				if p.Type != fhir.SearchParamReference {
					t.Errorf("CompartmentParams(%q, %q): %s has type %s, want reference", c, rt, name, p.Type)
				}
			}
		}
		if n == 0 {
			t.Errorf("compartment %s: no parameters", c)
		}
	}
}
