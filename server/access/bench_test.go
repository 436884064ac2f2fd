package access_test

import (
	"net/url"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/access"
	"github.com/cpis-fhir/cpis/server/smart"
)

func principal(tb testing.TB, role smart.Role, ods string) *smart.Principal {
	tb.Helper()
	scopes, _, err := smart.ParseScopes(smart.DefaultScope(role))
	if err != nil {
		tb.Fatal(err)
	}
	return &smart.Principal{Subject: "s", ClientID: "c", Role: role, ODS: ods, Scopes: scopes}
}

// BenchmarkPolicy_NarrowLookup is the policy's cost on the hot lookup: a
// clinician's Flag?subject:identifier=nhs|X&status=active (the search
// parsed once per request, as the server does, then narrowed).
func BenchmarkPolicy_NarrowLookup(b *testing.B) {
	reg := fhir.NewSearchRegistry()
	pl := access.New(reg)
	p := principal(b, smart.RoleClinicianUnscheduled, "RXX01")
	params := url.Values{"subject:identifier": {access.NHSNumberSystem + "|9990000018"}, "status": {"active"}}
	b.ReportAllocs()
	for b.Loop() {
		q, err := fhir.ParseSearch("Flag", params, fhir.SearchOptions{Registry: reg})
		if err != nil {
			b.Fatal(err)
		}
		if err := pl.Narrow(p, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolicy_NarrowOnly is Narrow alone on an already parsed search.
func BenchmarkPolicy_NarrowOnly(b *testing.B) {
	reg := fhir.NewSearchRegistry()
	pl := access.New(reg)
	for _, c := range []struct {
		name string
		p    *smart.Principal
	}{
		{"clinician", principal(b, smart.RoleClinicianUnscheduled, "RXX01")},
		{"council", principal(b, smart.RoleLA, "E09000001")},
		{"admin", principal(b, smart.RoleAdmin, "")},
	} {
		b.Run(c.name, func(b *testing.B) {
			q, err := fhir.ParseSearch("Flag", url.Values{"subject:identifier": {access.NHSNumberSystem + "|9990000018"}}, fhir.SearchOptions{Registry: reg})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				q.Restrict = nil
				if err := pl.Narrow(c.p, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPolicy_CanRead is a council's read of its own Flag (index
// extraction of the version included).
func BenchmarkPolicy_CanRead(b *testing.B) {
	reg := fhir.NewSearchRegistry()
	pl := access.New(reg)
	p := principal(b, smart.RoleLA, "E09000001")
	r := &fhir.Resource{Type: "Flag", ID: "f1", VersionID: 1, Method: fhir.MethodCreate, JSON: []byte(`{"resourceType":"Flag","id":"f1","status":"active",` +
		`"code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]},` +
		`"subject":{"reference":"Patient/p1"},"author":{"reference":"Organization/la-a","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"E09000001"}}}`)}
	b.ReportAllocs()
	for b.Loop() {
		if err := pl.CanRead(p, r, nil); err != nil {
			b.Fatal(err)
		}
	}
}
