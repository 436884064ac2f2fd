package fhirtest

import (
	"context"
	"slices"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// runRestrictTests checks fhir.Search.Restrict and fhir.Filter.Any: two
// councils' Patients and Flags (owned through Flag.author and
// Patient.managingOrganization identifiers), a Communication and an
// Organization. A restricted search never matches, chains through, reaches
// by _has or includes a resource the Restriction excludes, and pages and
// totals count only what it allows.
func runRestrictTests(t *testing.T, open func(t *testing.T) (fhir.Store, *Clock)) {
	s, clock := open(t)
	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	const nhs = "https://fhir.nhs.uk/Id/nhs-number"
	owned := func(param, code string) fhir.IndexToken {
		return fhir.IndexToken{Param: param + ":identifier", System: ods, Code: code}
	}
	put(t, s, clock, "Organization", "la-a", &fhir.Index{Tokens: []fhir.IndexToken{{Param: "identifier", System: ods, Code: "A"}}})
	put(t, s, clock, "Organization", "la-b", &fhir.Index{Tokens: []fhir.IndexToken{{Param: "identifier", System: ods, Code: "B"}}})
	for _, c := range []struct{ id, la, num string }{{"a1", "A", "9990000018"}, {"a2", "A", "9990000026"}, {"b1", "B", "9990000018"}, {"b2", "B", "9990000034"}} {
		put(t, s, clock, "Patient", c.id, &fhir.Index{
			Tokens:     []fhir.IndexToken{{Param: "identifier", System: nhs, Code: c.num}, owned("organization", c.la)},
			References: []fhir.IndexReference{{Param: "organization", Type: "Organization", ID: "la-" + string(rune(c.la[0]+32))}},
		})
		put(t, s, clock, "Flag", "f-"+c.id, &fhir.Index{
			Tokens: []fhir.IndexToken{{Param: "status", Code: "active"}, owned("author", c.la),
				{Param: "subject:identifier", System: nhs, Code: c.num}},
			References: []fhir.IndexReference{{Param: "subject", Type: "Patient", ID: c.id}, {Param: "patient", Type: "Patient", ID: c.id},
				{Param: "author", Type: "Organization", ID: "la-" + string(rune(c.la[0]+32))}},
		})
	}
	// Council A's Flag about council B's Patient: chains and includes from it
	// must not reach that Patient.
	put(t, s, clock, "Flag", "f-x", &fhir.Index{
		Tokens:     []fhir.IndexToken{owned("author", "A")},
		References: []fhir.IndexReference{{Param: "subject", Type: "Patient", ID: "b2"}, {Param: "patient", Type: "Patient", ID: "b2"}, {Param: "author", Type: "Organization", ID: "la-a"}},
	})
	put(t, s, clock, "Communication", "c1", &fhir.Index{References: []fhir.IndexReference{{Param: "subject", Type: "Patient", ID: "a1"}}})

	author := sp(t, "Flag", "author")
	org := sp(t, "Patient", "organization")
	subject := sp(t, "Flag", "subject")
	patient := sp(t, "Flag", "patient")
	identifier := sp(t, "Patient", "identifier")
	status := flagStatus()
	ownedBy := func(p *fhir.SearchParam, code string) fhir.Filter {
		return fhir.Filter{Param: p, Modifier: "identifier", Values: []fhir.Value{tokS(ods, code)}}
	}
	councilA := &fhir.Restriction{Types: map[string][]fhir.Filter{
		"Patient":      {ownedBy(org, "A")},
		"Flag":         {ownedBy(author, "A")},
		"Organization": nil,
	}}
	active := fhir.Filter{Param: status, Values: []fhir.Value{tok("active")}}
	ctx := context.Background()
	for _, c := range []struct {
		name         string
		q            fhir.Search
		want, inc    []string
		total        int
		wantTotalSet bool
	}{
		{name: "Flag?status=active", q: fhir.Search{Type: "Flag", Filters: []fhir.Filter{active}, Total: fhir.TotalAccurate},
			want: []string{"Flag/f-a1", "Flag/f-a2"}, total: 2, wantTotalSet: true},
		{name: "Flag?patient.identifier=X (child of both)", q: fhir.Search{Type: "Flag", Filters: []fhir.Filter{{Param: patient, Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{tokS(nhs, "9990000018")}}}}}}},
			want: []string{"Flag/f-a1"}},
		{name: "Flag?patient.identifier=X (child of B only)", q: fhir.Search{Type: "Flag", Filters: []fhir.Filter{{Param: patient, Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{tokS(nhs, "9990000034")}}}}}}}},
		{name: "Patient?_has:Flag:patient:status=active", q: fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Has: &fhir.HasFilter{Type: "Flag", Ref: patient, Filter: active}}}},
			want: []string{"Patient/a1", "Patient/a2"}},
		{name: "Organization?_revinclude=Flag:author", q: fhir.Search{Type: "Organization", RevInclude: []fhir.Include{{Source: "Flag", Param: author}}},
			want: []string{"Organization/la-a", "Organization/la-b"}, inc: []string{"Flag/f-a1", "Flag/f-a2", "Flag/f-x"}},
		{name: "Organization?_revinclude=Flag:author&_include:iterate=Flag:subject", q: fhir.Search{Type: "Organization",
			RevInclude: []fhir.Include{{Source: "Flag", Param: author}}, Include: []fhir.Include{{Source: "Flag", Param: subject, Iterate: true}}},
			want: []string{"Organization/la-a", "Organization/la-b"}, inc: []string{"Flag/f-a1", "Flag/f-a2", "Flag/f-x", "Patient/a1", "Patient/a2"}},
		{name: "Patient?_revinclude=Communication:subject (type not reached)", q: fhir.Search{Type: "Patient",
			RevInclude: []fhir.Include{{Source: "Communication", Param: sp(t, "Communication", "subject")}}},
			want: []string{"Patient/a1", "Patient/a2"}},
		{name: "Communication (type not reached)", q: fhir.Search{Type: "Communication"}},
		{name: "system search", q: fhir.Search{Types: []string{"Patient", "Communication"}}, want: []string{"Patient/a1", "Patient/a2"}},
		{name: "system search, all types", q: fhir.Search{}, want: []string{"Organization/la-a", "Organization/la-b", "Patient/a1", "Flag/f-a1", "Patient/a2", "Flag/f-a2", "Flag/f-x"}},
		{name: "compartment Patient/b1/Flag", q: fhir.Search{Type: "Flag", Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "b1"}}},
		{name: "Any: Flag owned by A or about b2", q: fhir.Search{Type: "Flag", Restrict: &fhir.Restriction{Types: map[string][]fhir.Filter{
			"Flag": {{Any: []fhir.Filter{ownedBy(author, "A"), {Param: subject, Values: []fhir.Value{ref("Patient", "b2")}}}}}}}},
			want: []string{"Flag/f-a1", "Flag/f-a2", "Flag/f-b2", "Flag/f-x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := c.q
			q.Count = 100
			if q.Restrict == nil {
				q.Restrict = councilA
			}
			page, err := s.Search(ctx, &q, nil, false)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if got := refs(page.Matches); !slices.Equal(got, c.want) {
				t.Errorf("matches %v, want %v", got, c.want)
			}
			if got := refs(page.Included); !slices.Equal(got, c.inc) {
				t.Errorf("included %v, want %v", got, c.inc)
			}
			if c.wantTotalSet && page.Total != c.total {
				t.Errorf("total %d, want %d", page.Total, c.total)
			}
		})
	}

	t.Run("chain from an allowed Flag to a Patient not reached", func(t *testing.T) {
		q := fhir.Search{Type: "Flag", Count: 10, Restrict: councilA, Filters: []fhir.Filter{{Param: patient, Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{tokS(nhs, "9990000034")}}}}}}}
		if got := refs(mustSearch(t, s, &q, nil, false).Matches); len(got) != 0 {
			t.Errorf("matches %v, want none (Flag/f-x refers to council B's Patient)", got)
		}
		q.Restrict = nil
		if got := refs(mustSearch(t, s, &q, nil, false).Matches); !slices.Equal(got, []string{"Flag/f-b2", "Flag/f-x"}) {
			t.Errorf("unrestricted: matches %v, want [Flag/f-b2 Flag/f-x]", got)
		}
	})
	t.Run("paging counts only what is reached", func(t *testing.T) {
		q := fhir.Search{Type: "Flag", Count: 1, Filters: []fhir.Filter{active}, Restrict: councilA}
		p1 := mustSearch(t, s, &q, nil, false)
		assertPage(t, "page 1", p1, []string{"Flag/f-a1"}, false, true)
		p2 := mustSearch(t, s, &q, p1.Next, false)
		assertPage(t, "page 2", p2, []string{"Flag/f-a2"}, true, false)
	})
	t.Run("inside a write", func(t *testing.T) {
		mustWrite(t, s, func(tx fhir.Tx) error {
			q := fhir.Search{Type: "Flag", Count: 10, Filters: []fhir.Filter{active}, Restrict: councilA}
			page, err := tx.Search(&q, nil, false)
			if err != nil {
				return err
			}
			if got := refs(page.Matches); !slices.Equal(got, []string{"Flag/f-a1", "Flag/f-a2"}) {
				t.Errorf("Tx.Search restricted: %v", got)
			}
			return nil
		})
	})
}
