package fhirtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// RunSearchTests runs the fhir.Store search conformance suite against
// stores made by newStore. The resources carry hand-built index rows and
// the searches are hand-built fhir.Search values, so the suite tests the
// store alone (not the index extraction or the query parser); every
// expected answer was worked out by hand from the rules in
// https://hl7.org/fhir/R4/search.html and the doc comments of fhir.Index
// and fhir.Search. Results in the default order come in insertion order.
func RunSearchTests(t *testing.T, newStore NewStoreFunc) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	open := func(t *testing.T) (fhir.Store, *Clock) {
		c := NewClock(start)
		return newStore(t, c.Now), c
	}
	ctx := context.Background()

	t.Run("queries", func(t *testing.T) {
		s, clock := open(t)
		fx := loadClinic(t, s, clock)
		for _, group := range [][]searchCase{tokenCases(t), stringCases(t), referenceCases(t), dateCases(t, fx), numberCases(t), compositeCases(t), systemCases(t), sortCases(t)} {
			for _, c := range group {
				t.Run(c.name, func(t *testing.T) {
					q := c.q
					if q.Count == 0 {
						q.Count = 100
					}
					page, err := s.Search(ctx, &q, nil, false)
					if err != nil {
						t.Fatalf("Search: %v", err)
					}
					if got := refs(page.Matches); !slices.Equal(got, c.want) {
						t.Errorf("%s: got %v, want %v", c.name, got, c.want)
					}
				})
			}
		}
	})

	t.Run("restricted", func(t *testing.T) { runRestrictTests(t, open) })

	t.Run("paging", func(t *testing.T) {
		s, clock := open(t)
		loadClinic(t, s, clock)
		status := flagStatus()
		active := fhir.Search{Type: "Flag", Count: 2, Filters: []fhir.Filter{{Param: status, Values: []fhir.Value{tok("active")}}}}
		p1 := mustSearch(t, s, &active, nil, false)
		assertPage(t, "page 1", p1, []string{"Flag/flag-1", "Flag/flag-3"}, false, true)
		if p1.Total != -1 {
			t.Errorf("page 1 of 3, default total: Total %d, want -1 (not counted)", p1.Total)
		}
		p2 := mustSearch(t, s, &active, p1.Next, false)
		assertPage(t, "page 2", p2, []string{"Flag/flag-4", "Flag/flag-5"}, true, true)
		p3 := mustSearch(t, s, &active, p2.Next, false)
		assertPage(t, "page 3", p3, []string{"Flag/flag-6"}, true, false)
		b2 := mustSearch(t, s, &active, p3.Prev, true)
		assertPage(t, "back to page 2", b2, []string{"Flag/flag-4", "Flag/flag-5"}, true, true)
		b1 := mustSearch(t, s, &active, b2.Prev, true)
		assertPage(t, "back to page 1", b1, []string{"Flag/flag-1", "Flag/flag-3"}, false, true)
		again := mustSearch(t, s, &active, b1.Next, false)
		assertPage(t, "forward again from page 1", again, []string{"Flag/flag-4", "Flag/flag-5"}, true, true)

		// Sorted by family: c Jones, d O'Brien, a Smith, b Smithson.
		family := sp(t, "Patient", "family")
		byFamily := fhir.Search{Type: "Patient", Count: 1, Sort: []fhir.SortKey{{Param: family}}}
		var got []string
		var last *fhir.SearchPage
		for cur := fhir.Cursor(nil); ; {
			p := mustSearch(t, s, &byFamily, cur, false)
			got = append(got, refs(p.Matches)...)
			last = p
			if p.Next == nil {
				break
			}
			cur = p.Next
		}
		if want := []string{"Patient/pat-c", "Patient/pat-d", "Patient/pat-a", "Patient/pat-b"}; !slices.Equal(got, want) {
			t.Errorf("_sort=family, _count=1, forward: %v, want %v", got, want)
		}
		got = nil
		for cur := last.Prev; cur != nil; {
			p := mustSearch(t, s, &byFamily, cur, true)
			got = append(got, refs(p.Matches)...)
			cur = p.Prev
		}
		if want := []string{"Patient/pat-a", "Patient/pat-d", "Patient/pat-c"}; !slices.Equal(got, want) {
			t.Errorf("_sort=family, _count=1, backward from the last page: %v, want %v", got, want)
		}

		// Descending, with a resource that has no value (pat-d, last).
		byBirth := fhir.Search{Type: "Patient", Count: 3, Sort: []fhir.SortKey{{Param: sp(t, "Patient", "birthdate"), Descending: true}}}
		q1 := mustSearch(t, s, &byBirth, nil, false)
		assertPage(t, "_sort=-birthdate page 1", q1, []string{"Patient/pat-b", "Patient/pat-c", "Patient/pat-a"}, false, true)
		q2 := mustSearch(t, s, &byBirth, q1.Next, false)
		assertPage(t, "_sort=-birthdate page 2", q2, []string{"Patient/pat-d"}, true, false)
		qb := mustSearch(t, s, &byBirth, q2.Prev, true)
		assertPage(t, "_sort=-birthdate back to page 1", qb, []string{"Patient/pat-b", "Patient/pat-c", "Patient/pat-a"}, false, true)

		// The last match deleted: the page after page 2 is empty, and its
		// previous page ends with page 2's last match.
		remove(t, s, clock, "Flag", "flag-6")
		empty := mustSearch(t, s, &active, p2.Next, false)
		assertPage(t, "empty page after a delete", empty, nil, true, false)
		back := mustSearch(t, s, &active, empty.Prev, true)
		assertPage(t, "back from the empty page", back, []string{"Flag/flag-4", "Flag/flag-5"}, true, true)
		fwd := mustSearch(t, s, &active, back.Next, false)
		assertPage(t, "forward again to the empty page", fwd, nil, true, false)
		lastPage := mustSearch(t, s, &active, nil, true)
		assertPage(t, "backward without a cursor: the last page", lastPage, []string{"Flag/flag-4", "Flag/flag-5"}, true, false)
		if _, err := s.Search(ctx, &active, fhir.Cursor("not a cursor"), false); !isIssue(err, fhir.IssueInvalid) {
			t.Errorf("Search with a malformed cursor: err %v, want an invalid issue", err)
		}
		if _, err := s.Search(ctx, &byFamily, p1.Next, false); !isIssue(err, fhir.IssueInvalid) {
			t.Errorf("Search sorted by family with a cursor of an unsorted search: err %v, want an invalid issue", err)
		}
	})

	t.Run("paging while writing", func(t *testing.T) {
		s, clock := open(t)
		tag := func(n int) *fhir.Index {
			return &fhir.Index{Tokens: []fhir.IndexToken{{Param: "_tag", System: "urn:test", Code: "batch"}, {Param: "identifier", Code: fmt.Sprint("n", n)}}}
		}
		var ids []string
		for i := range 10 {
			id := fmt.Sprint("w", i)
			ids = append(ids, id)
			put(t, s, clock, "Patient", id, tag(i))
		}
		q := fhir.Search{Type: "Patient", Count: 3, Filters: []fhir.Filter{{Param: sp(t, "Patient", "_tag"), Values: []fhir.Value{tokS("urn:test", "batch")}}}}
		seen := map[string]int{}
		var cur fhir.Cursor
		for step := 0; ; step++ {
			p := mustSearch(t, s, &q, cur, false)
			for _, r := range p.Matches {
				seen[r.ID]++
			}
			if p.Next == nil {
				break
			}
			cur = p.Next
			// Between pages: a new resource, an update of one already
			// seen and of one not yet seen, a delete of one not yet seen.
			put(t, s, clock, "Patient", fmt.Sprint("new", step), tag(100+step))
			put(t, s, clock, "Patient", ids[step], tag(step))
			put(t, s, clock, "Patient", ids[8-step], tag(8-step))
			if step == 0 {
				remove(t, s, clock, "Patient", "w9")
			}
		}
		for _, id := range ids[:9] {
			if seen[id] != 1 {
				t.Errorf("paging while writing: %s (existed throughout) seen %d times, want once", id, seen[id])
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("paging while writing: %s seen %d times", id, n)
			}
		}
		if seen["w9"] != 0 {
			t.Errorf("paging while writing: w9, deleted before its page, was returned")
		}
	})

	t.Run("totals", func(t *testing.T) {
		s, clock := open(t)
		loadClinic(t, s, clock)
		active := []fhir.Filter{{Param: flagStatus(), Values: []fhir.Value{tok("active")}}}
		for _, c := range []struct {
			name    string
			count   int
			total   fhir.TotalMode
			want    int
			matches int
		}{
			{"accurate", 2, fhir.TotalAccurate, 5, 2},
			{"estimate", 2, fhir.TotalEstimate, 5, 2},
			{"none", 10, fhir.TotalNone, -1, 5},
			{"default, all on the page", 10, fhir.TotalDefault, 5, 5},
			{"default, more pages", 2, fhir.TotalDefault, -1, 2},
			{"count 0, accurate", 0, fhir.TotalAccurate, 5, 0},
			{"count 0, default", 0, fhir.TotalDefault, 5, 0},
		} {
			q := fhir.Search{Type: "Flag", Filters: active, Count: c.count, Total: c.total}
			p := mustSearch(t, s, &q, nil, false)
			if p.Total != c.want || len(p.Matches) != c.matches {
				t.Errorf("status=active, _count=%d, _total=%q: total %d with %d matches, want %d with %d", c.count, c.total, p.Total, len(p.Matches), c.want, c.matches)
			}
			if c.count == 0 && (p.Next != nil || p.Prev != nil) {
				t.Errorf("_count=0: next %v prev %v, want none", p.Next, p.Prev)
			}
		}
		q := fhir.Search{Type: "Flag", Filters: active, Count: 2, Total: fhir.TotalDefault}
		p1 := mustSearch(t, s, &q, nil, false)
		if p := mustSearch(t, s, &q, p1.Next, false); p.Total != -1 {
			t.Errorf("page 2, default total: %d, want -1", p.Total)
		}
	})

	t.Run("includes", func(t *testing.T) {
		s, clock := open(t)
		loadClinic(t, s, clock)
		flagSubject, flagPatient := sp(t, "Flag", "subject"), sp(t, "Flag", "patient")
		patientOrg := sp(t, "Patient", "organization")
		id := func(ids ...string) []fhir.Filter {
			var vs []fhir.Value
			for _, i := range ids {
				vs = append(vs, tok(i))
			}
			return []fhir.Filter{{Param: sp(t, "Flag", "_id"), Values: vs}}
		}
		active := []fhir.Filter{{Param: flagStatus(), Values: []fhir.Value{tok("active")}}}
		for _, c := range []struct {
			name     string
			q        fhir.Search
			matches  []string
			included []string
		}{
			{"_include=Flag:subject", fhir.Search{Type: "Flag", Filters: id("flag-1"), Include: []fhir.Include{{Source: "Flag", Param: flagSubject}}},
				[]string{"Flag/flag-1"}, []string{"Patient/pat-a"}},
			{"_include=Flag:subject, several, a deleted target left out", fhir.Search{Type: "Flag", Filters: active, Include: []fhir.Include{{Source: "Flag", Param: flagSubject}}},
				[]string{"Flag/flag-1", "Flag/flag-3", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6"},
				[]string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c", "Group/grp-1"}},
			{"_include=Flag:subject:Group", fhir.Search{Type: "Flag", Filters: active, Include: []fhir.Include{{Source: "Flag", Param: flagSubject, TargetType: "Group"}}},
				[]string{"Flag/flag-1", "Flag/flag-3", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6"}, []string{"Group/grp-1"}},
			{"_include=Flag:*", fhir.Search{Type: "Flag", Filters: id("flag-1"), Include: []fhir.Include{{Source: "Flag"}}},
				[]string{"Flag/flag-1"}, []string{"Organization/la-1", "Patient/pat-a"}},
			{"_include of a deleted resource", fhir.Search{Type: "Flag", Filters: id("flag-6"), Include: []fhir.Include{{Source: "Flag", Param: flagSubject}}},
				[]string{"Flag/flag-6"}, nil},
			{"_revinclude=Flag:patient", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: sp(t, "Patient", "_id"), Values: []fhir.Value{tok("pat-a")}}},
				RevInclude: []fhir.Include{{Source: "Flag", Param: flagPatient}}},
				[]string{"Patient/pat-a"}, []string{"Flag/flag-1", "Flag/flag-2"}},
			{"_revinclude=Flag:*", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: sp(t, "Patient", "_id"), Values: []fhir.Value{tok("pat-b")}}},
				RevInclude: []fhir.Include{{Source: "Flag"}, {Source: "Encounter"}}},
				[]string{"Patient/pat-b"}, []string{"Flag/flag-3", "Encounter/enc-2"}},
			{"_include:iterate", fhir.Search{Type: "Flag", Filters: id("flag-1"),
				Include: []fhir.Include{{Source: "Flag", Param: flagPatient}, {Source: "Patient", Param: patientOrg, Iterate: true}}},
				[]string{"Flag/flag-1"}, []string{"Patient/pat-a", "Organization/la-1"}},
			{"_include without iterate applies to matches only", fhir.Search{Type: "Flag", Filters: id("flag-1"),
				Include: []fhir.Include{{Source: "Flag", Param: flagPatient}, {Source: "Patient", Param: patientOrg}}},
				[]string{"Flag/flag-1"}, []string{"Patient/pat-a"}},
			{"_revinclude:iterate", fhir.Search{Type: "Organization", Filters: []fhir.Filter{{Param: sp(t, "Organization", "_id"), Values: []fhir.Value{tok("la-1")}}},
				RevInclude: []fhir.Include{{Source: "Patient", Param: patientOrg, Iterate: true}, {Source: "Flag", Param: flagPatient, Iterate: true}}},
				[]string{"Organization/la-1"}, []string{"Patient/pat-a", "Flag/flag-1", "Flag/flag-2"}},
			{"included resources are never matches", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: sp(t, "Patient", "_id"), Values: []fhir.Value{tok("pat-a"), tok("pat-b")}}},
				RevInclude: []fhir.Include{{Source: "Flag", Param: flagPatient}},
				Include:    []fhir.Include{{Source: "Flag", Param: flagPatient, Iterate: true}}},
				[]string{"Patient/pat-a", "Patient/pat-b"}, []string{"Flag/flag-1", "Flag/flag-2", "Flag/flag-3"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				q := c.q
				q.Count = 100
				p := mustSearch(t, s, &q, nil, false)
				if got := refs(p.Matches); !slices.Equal(got, c.matches) {
					t.Errorf("matches %v, want %v", got, c.matches)
				}
				if got := refs(p.Included); !slices.Equal(got, c.included) {
					t.Errorf("included %v, want %v", got, c.included)
				}
			})
		}
		// Includes follow the page, not the whole result.
		q := fhir.Search{Type: "Flag", Filters: active, Count: 2, Include: []fhir.Include{{Source: "Flag", Param: flagSubject}}}
		p1 := mustSearch(t, s, &q, nil, false)
		p2 := mustSearch(t, s, &q, p1.Next, false)
		if got, want := refs(p1.Included), []string{"Patient/pat-a", "Patient/pat-b"}; !slices.Equal(got, want) {
			t.Errorf("page 1 included %v, want %v", got, want)
		}
		if got, want := refs(p2.Included), []string{"Patient/pat-c", "Group/grp-1"}; !slices.Equal(got, want) {
			t.Errorf("page 2 included %v, want %v", got, want)
		}
		for _, r := range append(p1.Included, p1.Matches...) {
			if r.JSON == nil || r.VersionID != 1 || r.LastUpdated.IsZero() {
				t.Errorf("%s: version %d, lastUpdated %v, json %q; want the stored version", r.Ref(), r.VersionID, r.LastUpdated, r.JSON)
			}
		}
	})

	t.Run("updates replace index rows", func(t *testing.T) {
		s, clock := open(t)
		family := sp(t, "Patient", "family")
		byFamily := func(name string) fhir.Search {
			return fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Param: family, Values: []fhir.Value{str(name)}}}}
		}
		named := func(name string) *fhir.Index {
			return &fhir.Index{Strings: []fhir.IndexString{{Param: "family", Norm: fhir.NormalizeString(name), Exact: name}}}
		}
		put(t, s, clock, "Patient", "x", named("Smithson"))
		put(t, s, clock, "Patient", "y", named("Taylor"))
		put(t, s, clock, "Patient", "x", named("Taylor"))
		assertSearch(t, s, "family=smithson after the update", byFamily("smithson"), nil)
		assertSearch(t, s, "family=taylor after the update", byFamily("taylor"), []string{"Patient/x", "Patient/y"})
		remove(t, s, clock, "Patient", "x")
		assertSearch(t, s, "family=taylor after deleting x", byFamily("taylor"), []string{"Patient/y"})
		put(t, s, clock, "Patient", "x", named("Taylor"))
		// Re-created, x keeps its place in insertion order, before y.
		assertSearch(t, s, "family=taylor after re-creating x", byFamily("taylor"), []string{"Patient/x", "Patient/y"})
		put(t, s, clock, "Patient", "y", nil)
		assertSearch(t, s, "family=taylor after y's update without index", byFamily("taylor"), []string{"Patient/x"})
	})

	t.Run("failed write leaves no index rows", func(t *testing.T) {
		s, clock := open(t)
		gender, active := sp(t, "Patient", "gender"), sp(t, "Patient", "active")
		boom := errors.New("boom")
		err := s.Write(ctx, func(tx fhir.Tx) error {
			r := &fhir.Resource{Type: "Patient", ID: "z", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: []byte(`{"resourceType":"Patient"}`),
				Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "gender", Code: "x"}}}}
			if err := tx.Put(r); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Write: %v, want boom", err)
		}
		// Parameters first seen in the failed write must not be confused
		// with those written next.
		put(t, s, clock, "Patient", "w", &fhir.Index{Tokens: []fhir.IndexToken{{Param: "active", Code: "x"}}})
		put(t, s, clock, "Patient", "v", &fhir.Index{Tokens: []fhir.IndexToken{{Param: "gender", Code: "x"}}})
		q := func(p *fhir.SearchParam) fhir.Search {
			return fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Param: p, Values: []fhir.Value{tok("x")}}}}
		}
		assertSearch(t, s, "active=x", q(active), []string{"Patient/w"})
		assertSearch(t, s, "gender=x", q(gender), []string{"Patient/v"})
	})

	t.Run("reindex", func(t *testing.T) {
		s, clock := open(t)
		for _, id := range []string{"r1", "r2", "r3", "r4"} {
			put(t, s, clock, "Patient", id, nil)
		}
		remove(t, s, clock, "Patient", "r3")
		var indexed []string
		var calls [][2]int
		err := s.Reindex(ctx, func(typ string, body []byte) (*fhir.Index, error) {
			indexed = append(indexed, typ)
			return &fhir.Index{Tokens: []fhir.IndexToken{{Param: "gender", Code: "unknown"}}}, nil
		}, func(done, total int) { calls = append(calls, [2]int{done, total}) })
		if err != nil {
			t.Fatalf("Reindex: %v", err)
		}
		if len(indexed) != 3 {
			t.Errorf("Reindex called index %d times, want 3 (the current, not deleted, resources)", len(indexed))
		}
		if len(calls) == 0 || calls[len(calls)-1] != [2]int{3, 3} {
			t.Errorf("Reindex progress calls %v, want the last to be (3, 3)", calls)
		}
		q := fhir.Search{Type: "Patient", Count: 10, Filters: []fhir.Filter{{Param: sp(t, "Patient", "gender"), Values: []fhir.Value{tok("unknown")}}}}
		assertSearch(t, s, "gender=unknown after reindex", q, []string{"Patient/r1", "Patient/r2", "Patient/r4"})
		boom := errors.New("boom")
		if err := s.Reindex(ctx, func(string, []byte) (*fhir.Index, error) { return nil, boom }, nil); !errors.Is(err, boom) {
			t.Errorf("Reindex with a failing index: %v, want boom", err)
		}
	})

	t.Run("unsupported and invalid", func(t *testing.T) {
		s, clock := open(t)
		loadClinic(t, s, clock)
		name, gender := sp(t, "Patient", "name"), sp(t, "Patient", "gender")
		for _, c := range []struct {
			name string
			q    fhir.Search
			code fhir.IssueType
		}{
			{"_text has no index", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: sp(t, "Patient", "_text"), Values: []fhir.Value{str("smith")}}}}, fhir.IssueNotSupported},
			{"token :above", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: gender, Modifier: "above", Values: []fhir.Value{tok("female")}}}}, fhir.IssueNotSupported},
			{"string :below", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: name, Modifier: "below", Values: []fhir.Value{str("smith")}}}}, fhir.IssueNotSupported},
			{"_sort on a composite", fhir.Search{Type: "Observation", Sort: []fhir.SortKey{{Param: sp(t, "Observation", "code-value-quantity")}}}, fhir.IssueNotSupported},
			{"non-common parameter across all types", fhir.Search{Filters: []fhir.Filter{{Param: gender, Values: []fhir.Value{tok("female")}}}}, fhir.IssueNotSupported},
			{"token without code or system", fhir.Search{Type: "Patient", Filters: []fhir.Filter{{Param: gender, Values: []fhir.Value{{}}}}}, fhir.IssueInvalid},
		} {
			q := c.q
			q.Count = 10
			_, err := s.Search(ctx, &q, nil, false)
			if !isIssue(err, c.code) {
				t.Errorf("%s: err %v, want issue %s", c.name, err, c.code)
			}
			if err != nil && strings.Contains(err.Error(), "smith") {
				t.Errorf("%s: error %q shows the search value", c.name, err)
			}
		}
	})
}

// searchCase is one search and the ids it must find, in order.
type searchCase struct {
	name string
	q    fhir.Search
	want []string
}

// clinic is the fixture loadClinic writes.
type clinic struct {
	at map[string]time.Time // lastUpdated by Type/id
}

// NHS numbers from the 999 range, with their Modulus 11 check digits.
const (
	nhsA = "9990000018"
	nhsB = "9990000026"
	nhsC = "9990000034"
	nhsD = "9990000042"
	nhsE = "9990000050"

	nhsSystem    = "https://fhir.nhs.uk/Id/nhs-number"
	v20203       = "http://terminology.hl7.org/CodeSystem/v2-0203"
	genderSystem = "http://hl7.org/fhir/administrative-gender"
	ucum         = "http://unitsofmeasure.org"
	loinc        = "http://loinc.org"
	ukCore       = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
	cpisPat      = "https://example.org/fhir/StructureDefinition/cpis-patient"
	cpisFlag     = "https://fhir.nhs.uk/StructureDefinition/CPIS-Flag"
	flagCat      = "http://terminology.hl7.org/CodeSystem/flag-category"
	otherPatEx   = "https://other.example/fhir/Patient/ext-1"
)

// loadClinic writes, in this order (which is the default result order):
// Organizations la-1 (Northshire Council) and la-2 (Southshire Council);
// Patients pat-a..pat-e; Group grp-1; Flags flag-1..flag-8; Encounters
// enc-1, enc-2; RiskAssessments ra-1..ra-4; Observations obs-1..obs-4;
// then deletes pat-e and flag-7. The clock moves a minute before each
// write.
//
//	patient  NHS      family    given  gender  birthdate   organization  _profile
//	pat-a    ..0018   Smith     Anna   female  2015-04-01  la-1          UKCore-Patient
//	pat-b    ..0026   Smithson  Ben    male    2016-06-15  la-2          cpis-patient
//	pat-c    ..0034   Jones     Zoë    female  2015
//	pat-d    ..0042   O'Brien   Chloé
//	pat-e    ..0050   Smith     Eve    male    2015-04-01  (deleted)
//
// pat-a also has identifier urn:la:north|A1 (type MR), pat-b
// urn:la:north|LOCAL-4 and pat-d LOCAL-4 without a system.
//
//	flag    subject           status            date (period)            author  other
//	flag-1  Patient/pat-a     active            2024-01-01 ->            la-1    category safety, _profile CPIS-Flag
//	flag-2  Patient/pat-a     inactive          2023-01-01..2023-06-30   la-2    category clinical
//	flag-3  Patient/pat-b     active            2024-03-01..2024-03-31
//	flag-4  Patient/pat-c     active
//	flag-5  Group/grp-1       active
//	flag-6  Patient/pat-e     active
//	flag-7  Patient/pat-d     active            (deleted)
//	flag-8  https://other.example/fhir/Patient/ext-1  entered-in-error
//
// Flags 1, 2, 3 and 6 carry subject:identifier rows with their patient's
// NHS number; flags with a Patient subject have patient rows too.
func loadClinic(t *testing.T, s fhir.Store, clock *Clock) *clinic {
	t.Helper()
	fx := &clinic{at: map[string]time.Time{}}
	w := func(typ, id string, idx *fhir.Index) {
		r := put(t, s, clock, typ, id, idx)
		fx.at[r.Ref()] = r.LastUpdated
	}
	day := func(s string) fhir.IndexDate {
		lo, hi, ok := fhir.DateRange(s, nil)
		if !ok {
			t.Fatalf("bad date %q", s)
		}
		return fhir.IndexDate{Low: lo, High: hi}
	}
	dateRow := func(param, from, to string) fhir.IndexDate {
		d := fhir.IndexDate{Param: param, Low: day(from).Low, High: fhir.MaxDate}
		if to != "" {
			d.High = day(to).High
		}
		return d
	}
	named := func(family, given string) []fhir.IndexString {
		ss := []fhir.IndexString{
			{Param: "family", Norm: fhir.NormalizeString(family), Exact: family},
			{Param: "given", Norm: fhir.NormalizeString(given), Exact: given},
			{Param: "name", Norm: fhir.NormalizeString(family), Exact: family},
			{Param: "name", Norm: fhir.NormalizeString(given), Exact: given},
		}
		return ss
	}
	birth := func(s string) []fhir.IndexDate {
		d := day(s)
		d.Param = "birthdate"
		return []fhir.IndexDate{d}
	}
	nhs := func(n string) fhir.IndexToken {
		return fhir.IndexToken{Param: "identifier", System: nhsSystem, Code: n}
	}
	ref := func(param, typ, id string) fhir.IndexReference {
		return fhir.IndexReference{Param: param, Type: typ, ID: id}
	}

	w("Organization", "la-1", &fhir.Index{Strings: []fhir.IndexString{{Param: "name", Norm: "northshire council", Exact: "Northshire Council"}}})
	w("Organization", "la-2", &fhir.Index{Strings: []fhir.IndexString{{Param: "name", Norm: "southshire council", Exact: "Southshire Council"}}})
	w("Patient", "pat-a", &fhir.Index{
		Tokens: []fhir.IndexToken{nhs(nhsA), {Param: "identifier", System: "urn:la:north", Code: "A1"},
			{Param: "identifier:of-type", System: v20203, Code: "MR|A1"}, {Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "female"}},
		Strings:    named("Smith", "Anna"),
		Dates:      birth("2015-04-01"),
		References: []fhir.IndexReference{ref("organization", "Organization", "la-1")},
		URIs:       []fhir.IndexURI{{Param: "_profile", URI: ukCore}},
	})
	w("Patient", "pat-b", &fhir.Index{
		Tokens:     []fhir.IndexToken{nhs(nhsB), {Param: "identifier", System: "urn:la:north", Code: "LOCAL-4"}, {Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "male"}},
		Strings:    named("Smithson", "Ben"),
		Dates:      birth("2016-06-15"),
		References: []fhir.IndexReference{ref("organization", "Organization", "la-2")},
		URIs:       []fhir.IndexURI{{Param: "_profile", URI: cpisPat}},
	})
	w("Patient", "pat-c", &fhir.Index{
		Tokens:  []fhir.IndexToken{nhs(nhsC), {Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "female"}},
		Strings: named("Jones", "Zoë"),
		Dates:   birth("2015"),
	})
	w("Patient", "pat-d", &fhir.Index{
		Tokens:  []fhir.IndexToken{nhs(nhsD), {Param: "identifier", Code: "LOCAL-4"}},
		Strings: named("O'Brien", "Chloé"),
	})
	w("Patient", "pat-e", &fhir.Index{
		Tokens:  []fhir.IndexToken{nhs(nhsE), {Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "male"}},
		Strings: named("Smith", "Eve"),
		Dates:   birth("2015-04-01"),
		URIs:    []fhir.IndexURI{{Param: "_profile", URI: ukCore}},
	})
	w("Group", "grp-1", &fhir.Index{})

	status := func(code string) fhir.IndexToken {
		return fhir.IndexToken{Param: "status", System: "http://hl7.org/fhir/flag-status", Code: code}
	}
	subjectID := func(n string) fhir.IndexToken {
		return fhir.IndexToken{Param: "subject:identifier", System: nhsSystem, Code: n}
	}
	patientRefs := func(id string) []fhir.IndexReference {
		return []fhir.IndexReference{ref("subject", "Patient", id), ref("patient", "Patient", id)}
	}
	w("Flag", "flag-1", &fhir.Index{
		Tokens:     []fhir.IndexToken{status("active"), subjectID(nhsA), {Param: "category", System: flagCat, Code: "safety"}},
		Strings:    []fhir.IndexString{{Param: "category:text", Norm: "safety", Exact: "Safety"}},
		References: append(patientRefs("pat-a"), ref("author", "Organization", "la-1")),
		Dates:      []fhir.IndexDate{dateRow("date", "2024-01-01", "")},
		URIs:       []fhir.IndexURI{{Param: "_profile", URI: cpisFlag}},
	})
	w("Flag", "flag-2", &fhir.Index{
		Tokens:     []fhir.IndexToken{status("inactive"), subjectID(nhsA), {Param: "category", System: flagCat, Code: "clinical"}},
		Strings:    []fhir.IndexString{{Param: "category:text", Norm: "clinical", Exact: "Clinical"}},
		References: append(patientRefs("pat-a"), ref("author", "Organization", "la-2")),
		Dates:      []fhir.IndexDate{dateRow("date", "2023-01-01", "2023-06-30")},
	})
	w("Flag", "flag-3", &fhir.Index{
		Tokens:     []fhir.IndexToken{status("active"), subjectID(nhsB)},
		References: patientRefs("pat-b"),
		Dates:      []fhir.IndexDate{dateRow("date", "2024-03-01", "2024-03-31")},
	})
	w("Flag", "flag-4", &fhir.Index{Tokens: []fhir.IndexToken{status("active")}, References: patientRefs("pat-c")})
	w("Flag", "flag-5", &fhir.Index{Tokens: []fhir.IndexToken{status("active")}, References: []fhir.IndexReference{ref("subject", "Group", "grp-1")}})
	w("Flag", "flag-6", &fhir.Index{Tokens: []fhir.IndexToken{status("active"), subjectID(nhsE)}, References: patientRefs("pat-e")})
	w("Flag", "flag-7", &fhir.Index{Tokens: []fhir.IndexToken{status("active")}, References: patientRefs("pat-d")})
	w("Flag", "flag-8", &fhir.Index{
		Tokens:     []fhir.IndexToken{status("entered-in-error")},
		References: []fhir.IndexReference{{Param: "subject", Type: "Patient", ID: "ext-1", URL: otherPatEx}},
	})
	w("Encounter", "enc-1", &fhir.Index{
		Tokens:     []fhir.IndexToken{{Param: "status", Code: "finished"}},
		References: patientRefs("pat-a"),
		Dates:      []fhir.IndexDate{{Param: "date", Low: day("2025-02-03").Low + 10*3600000, High: day("2025-02-03").Low + 11*3600000}},
	})
	w("Encounter", "enc-2", &fhir.Index{Tokens: []fhir.IndexToken{{Param: "status", Code: "in-progress"}}, References: patientRefs("pat-b")})

	prob := func(v, lo, hi float64) *fhir.Index {
		return &fhir.Index{Numbers: []fhir.IndexNumber{{Param: "probability", Value: v, Low: lo, High: hi}}}
	}
	w("RiskAssessment", "ra-1", prob(0.2, 0.15, 0.25))
	w("RiskAssessment", "ra-2", prob(0.25, 0.245, 0.255))
	w("RiskAssessment", "ra-3", prob(100, 99.5, 100.5))
	w("RiskAssessment", "ra-4", &fhir.Index{})

	code := func(c string) fhir.IndexPart {
		return fhir.IndexPart{Type: fhir.SearchParamToken, System: loinc, Code: c}
	}
	qty := func(v, lo, hi float64, unit string) fhir.IndexPart {
		return fhir.IndexPart{Type: fhir.SearchParamQuantity, Value: v, Low: lo, High: hi, System: ucum, Code: unit}
	}
	w("Observation", "obs-1", &fhir.Index{
		Tokens:     []fhir.IndexToken{{Param: "code", System: loinc, Code: "15074-8"}},
		Quantities: []fhir.IndexQuantity{{Param: "value-quantity", Value: 5.4, Low: 5.35, High: 5.45, System: ucum, Code: "mmol/L", Unit: "mmol/l"}},
		Composites: []fhir.IndexComposite{{Param: "code-value-quantity", Parts: []fhir.IndexPart{code("15074-8"), qty(5.4, 5.35, 5.45, "mmol/L")}}},
	})
	w("Observation", "obs-2", &fhir.Index{
		Quantities: []fhir.IndexQuantity{{Param: "value-quantity", Value: 6, Low: 5.95, High: 6.05, System: ucum, Code: "mg", Unit: "mg"}},
		Composites: []fhir.IndexComposite{{Param: "code-value-quantity", Parts: []fhir.IndexPart{code("2345-7"), qty(6, 5.95, 6.05, "mg")}}},
	})
	w("Observation", "obs-3", &fhir.Index{
		Quantities: []fhir.IndexQuantity{{Param: "value-quantity", Value: 5.4, Low: 5.35, High: 5.45, Unit: "mmol/L"}},
	})
	w("Observation", "obs-4", &fhir.Index{
		Composites: []fhir.IndexComposite{
			{Param: "code-value-quantity", Parts: []fhir.IndexPart{code("A-1"), qty(1, 0.5, 1.5, "mg")}},
			{Param: "code-value-quantity", Parts: []fhir.IndexPart{code("B-2"), qty(9, 8.5, 9.5, "mg")}},
		},
	})
	remove(t, s, clock, "Patient", "pat-e")
	remove(t, s, clock, "Flag", "flag-7")
	return fx
}

func tokenCases(t *testing.T) []searchCase {
	status, identifier, gender := flagStatus(), sp(t, "Patient", "identifier"), sp(t, "Patient", "gender")
	category, id := sp(t, "Flag", "category"), sp(t, "Patient", "_id")
	f := func(p *fhir.SearchParam, mod string, vs ...fhir.Value) []fhir.Filter {
		return []fhir.Filter{{Param: p, Modifier: mod, Values: vs}}
	}
	return []searchCase{
		{"token code", fhir.Search{Type: "Flag", Filters: f(status, "", tok("active"))},
			[]string{"Flag/flag-1", "Flag/flag-3", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6"}},
		{"token codes ORed", fhir.Search{Type: "Flag", Filters: f(status, "", tok("active"), tok("inactive"))},
			[]string{"Flag/flag-1", "Flag/flag-2", "Flag/flag-3", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6"}},
		{"token code in any system", fhir.Search{Type: "Patient", Filters: f(identifier, "", tok(nhsA))}, []string{"Patient/pat-a"}},
		{"token system|code", fhir.Search{Type: "Patient", Filters: f(identifier, "", tokS(nhsSystem, nhsB))}, []string{"Patient/pat-b"}},
		{"token system|code, other system", fhir.Search{Type: "Patient", Filters: f(identifier, "", tokS("urn:other", nhsB))}, nil},
		{"token |code (no system)", fhir.Search{Type: "Patient", Filters: f(identifier, "", tokS("", "LOCAL-4"))}, []string{"Patient/pat-d"}},
		{"token code with and without system", fhir.Search{Type: "Patient", Filters: f(identifier, "", tok("LOCAL-4"))}, []string{"Patient/pat-b", "Patient/pat-d"}},
		{"token system| (any code)", fhir.Search{Type: "Patient", Filters: f(identifier, "", fhir.Value{System: nhsSystem, HasSystem: true})},
			[]string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c", "Patient/pat-d"}},
		{"token system| of a local system", fhir.Search{Type: "Patient", Filters: f(identifier, "", fhir.Value{System: "urn:la:north", HasSystem: true})},
			[]string{"Patient/pat-a", "Patient/pat-b"}},
		{"token :not keeps resources without the element", fhir.Search{Type: "Patient", Filters: f(gender, "not", tok("male"))},
			[]string{"Patient/pat-a", "Patient/pat-c", "Patient/pat-d"}},
		{"token :not of two codes", fhir.Search{Type: "Flag", Filters: f(status, "not", tok("active"), tok("inactive"))}, []string{"Flag/flag-8"}},
		{"token :not", fhir.Search{Type: "Flag", Filters: f(status, "not", tok("active"))}, []string{"Flag/flag-2", "Flag/flag-8"}},
		// :in and :not-in: the parser has expanded the value sets into
		// system|code values, possibly none.
		{"token :in", fhir.Search{Type: "Patient", Filters: f(gender, "in", tokS(genderSystem, "female"), tokS(genderSystem, "other"))},
			[]string{"Patient/pat-a", "Patient/pat-c"}},
		{"token :in, code in another system", fhir.Search{Type: "Patient", Filters: f(gender, "in", tokS("urn:other", "female"))}, nil},
		{"token :in of two codes", fhir.Search{Type: "Flag", Filters: f(status, "in", tokS("http://hl7.org/fhir/flag-status", "inactive"), tokS("http://hl7.org/fhir/flag-status", "entered-in-error"))},
			[]string{"Flag/flag-2", "Flag/flag-8"}},
		{"token :in matches a row without a system by code", fhir.Search{Type: "Encounter", Filters: f(sp(t, "Encounter", "status"), "in", tokS("http://hl7.org/fhir/encounter-status", "finished"))},
			[]string{"Encounter/enc-1"}},
		{"token :in over two systems", fhir.Search{Type: "Flag", Filters: f(category, "in", tokS(flagCat, "safety"), tokS("urn:other", "clinical"))}, []string{"Flag/flag-1"}},
		{"token :in of an empty value set", fhir.Search{Type: "Patient", Filters: f(gender, "in")}, nil},
		{"token :not-in keeps resources without the element", fhir.Search{Type: "Patient", Filters: f(gender, "not-in", tokS(genderSystem, "male"), tokS(genderSystem, "other"))},
			[]string{"Patient/pat-a", "Patient/pat-c", "Patient/pat-d"}},
		{"token :not-in of an empty value set", fhir.Search{Type: "Patient", Filters: f(gender, "not-in")},
			[]string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c", "Patient/pat-d"}},
		{"token :text starts-with", fhir.Search{Type: "Flag", Filters: f(category, "text", str("saf"))}, []string{"Flag/flag-1"}},
		{"token :text folds case", fhir.Search{Type: "Flag", Filters: f(category, "text", str("CLIN"))}, []string{"Flag/flag-2"}},
		{"token :of-type", fhir.Search{Type: "Patient", Filters: f(identifier, "of-type", tokS(v20203, "MR|A1"))}, []string{"Patient/pat-a"}},
		{"token :of-type, other value", fhir.Search{Type: "Patient", Filters: f(identifier, "of-type", tokS(v20203, "MR|A2"))}, nil},
		{"token :missing=true", fhir.Search{Type: "Patient", Filters: f(gender, "missing", fhir.Value{Missing: true})}, []string{"Patient/pat-d"}},
		{"token :missing=false", fhir.Search{Type: "Patient", Filters: f(gender, "missing", fhir.Value{Missing: false})},
			[]string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c"}},
		{"_id", fhir.Search{Type: "Patient", Filters: f(id, "", tok("pat-b"), tok("pat-c"))}, []string{"Patient/pat-b", "Patient/pat-c"}},
		{"_id:not", fhir.Search{Type: "Patient", Filters: f(id, "not", tok("pat-b"))}, []string{"Patient/pat-a", "Patient/pat-c", "Patient/pat-d"}},
		{"_id of a deleted resource", fhir.Search{Type: "Patient", Filters: f(id, "", tok("pat-e"))}, nil},
		{"_id of another type", fhir.Search{Type: "Flag", Filters: f(sp(t, "Flag", "_id"), "", tok("pat-a"))}, nil},
		{"two filters ANDed", fhir.Search{Type: "Patient", Filters: append(f(gender, "", tok("female")), f(identifier, "", tok(nhsC))...)}, []string{"Patient/pat-c"}},
		{"no filter", fhir.Search{Type: "Patient"}, []string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c", "Patient/pat-d"}},
	}
}

func stringCases(t *testing.T) []searchCase {
	name, family, given, orgName := sp(t, "Patient", "name"), sp(t, "Patient", "family"), sp(t, "Patient", "given"), sp(t, "Organization", "name")
	f := func(p *fhir.SearchParam, mod string, vs ...fhir.Value) []fhir.Filter {
		return []fhir.Filter{{Param: p, Modifier: mod, Values: vs}}
	}
	return []searchCase{
		{"string starts-with", fhir.Search{Type: "Patient", Filters: f(name, "", str("smi"))}, []string{"Patient/pat-a", "Patient/pat-b"}},
		{"string starts-with folds case", fhir.Search{Type: "Patient", Filters: f(name, "", str("SMITH"))}, []string{"Patient/pat-a", "Patient/pat-b"}},
		{"string ignores accents", fhir.Search{Type: "Patient", Filters: f(name, "", str("Zoë"))}, []string{"Patient/pat-c"}},
		{"string finds accented by unaccented", fhir.Search{Type: "Patient", Filters: f(given, "", str("chloe"))}, []string{"Patient/pat-d"}},
		{"string values ORed", fhir.Search{Type: "Patient", Filters: f(name, "", str("smith"), str("jones"))}, []string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c"}},
		{"string :exact", fhir.Search{Type: "Patient", Filters: f(family, "exact", str("Smith"))}, []string{"Patient/pat-a"}},
		{"string :exact is case-sensitive", fhir.Search{Type: "Patient", Filters: f(family, "exact", str("smith"))}, nil},
		{"string :contains", fhir.Search{Type: "Patient", Filters: f(name, "contains", str("son"))}, []string{"Patient/pat-b"}},
		{"string :contains, several", fhir.Search{Type: "Patient", Filters: f(name, "contains", str("O"))}, []string{"Patient/pat-b", "Patient/pat-c", "Patient/pat-d"}},
		{"string starts-with is not contains", fhir.Search{Type: "Organization", Filters: f(orgName, "", str("council"))}, nil},
		{"string :contains across words", fhir.Search{Type: "Organization", Filters: f(orgName, "contains", str("council"))}, []string{"Organization/la-1", "Organization/la-2"}},
		{"string with a space", fhir.Search{Type: "Organization", Filters: f(orgName, "", str("Northshire  C"))}, []string{"Organization/la-1"}},
		{"string :missing=true", fhir.Search{Type: "Patient", Filters: f(family, "missing", fhir.Value{Missing: true})}, nil},
	}
}

func referenceCases(t *testing.T) []searchCase {
	subject, patient, author := sp(t, "Flag", "subject"), sp(t, "Flag", "patient"), sp(t, "Flag", "author")
	identifier, pname, org := sp(t, "Patient", "identifier"), sp(t, "Patient", "name"), sp(t, "Patient", "organization")
	orgName := sp(t, "Organization", "name")
	f := func(p *fhir.SearchParam, mod string, vs ...fhir.Value) []fhir.Filter {
		return []fhir.Filter{{Param: p, Modifier: mod, Values: vs}}
	}
	chain := func(p *fhir.SearchParam, typ string, inner fhir.Filter) []fhir.Filter {
		return []fhir.Filter{{Param: p, Chain: []fhir.ChainTarget{{Type: typ, Filter: inner}}}}
	}
	has := func(typ string, ref *fhir.SearchParam, inner fhir.Filter) []fhir.Filter {
		return []fhir.Filter{{Has: &fhir.HasFilter{Type: typ, Ref: ref, Filter: inner}}}
	}
	status := flagStatus()
	return []searchCase{
		{"reference Type/id", fhir.Search{Type: "Flag", Filters: f(subject, "", ref("Patient", "pat-a"))}, []string{"Flag/flag-1", "Flag/flag-2"}},
		{"reference id", fhir.Search{Type: "Flag", Filters: f(subject, "", ref("", "pat-a"))}, []string{"Flag/flag-1", "Flag/flag-2"}},
		{"reference ids ORed", fhir.Search{Type: "Flag", Filters: f(subject, "", ref("Patient", "pat-a"), ref("Patient", "pat-b"))},
			[]string{"Flag/flag-1", "Flag/flag-2", "Flag/flag-3"}},
		{"reference :Patient", fhir.Search{Type: "Flag", Filters: f(subject, "Patient", ref("", "pat-b"))}, []string{"Flag/flag-3"}},
		{"reference :Group", fhir.Search{Type: "Flag", Filters: f(subject, "Group", ref("", "grp-1"))}, []string{"Flag/flag-5"}},
		{"reference :Patient with a Group id", fhir.Search{Type: "Flag", Filters: f(subject, "Patient", ref("", "grp-1"))}, nil},
		{"reference absolute URL", fhir.Search{Type: "Flag", Filters: f(subject, "", fhir.Value{URL: otherPatEx})}, []string{"Flag/flag-8"}},
		{"reference to a deleted resource still matches", fhir.Search{Type: "Flag", Filters: f(subject, "", ref("Patient", "pat-e"))}, []string{"Flag/flag-6"}},
		{"reference :identifier", fhir.Search{Type: "Flag", Filters: f(subject, "identifier", tokS(nhsSystem, nhsA))}, []string{"Flag/flag-1", "Flag/flag-2"}},
		{"reference :identifier, code only", fhir.Search{Type: "Flag", Filters: f(subject, "identifier", tok(nhsE))}, []string{"Flag/flag-6"}},
		{"reference :identifier and token", fhir.Search{Type: "Flag", Filters: append(f(subject, "identifier", tokS(nhsSystem, nhsA)), f(status, "", tok("active"))...)},
			[]string{"Flag/flag-1"}},
		{"reference :missing=true", fhir.Search{Type: "Flag", Filters: f(author, "missing", fhir.Value{Missing: true})},
			[]string{"Flag/flag-3", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6", "Flag/flag-8"}},
		{"reference :missing=false", fhir.Search{Type: "Flag", Filters: f(author, "missing", fhir.Value{Missing: false})}, []string{"Flag/flag-1", "Flag/flag-2"}},
		{"chain patient.identifier", fhir.Search{Type: "Flag", Filters: chain(patient, "Patient", fhir.Filter{Param: identifier, Values: []fhir.Value{tokS(nhsSystem, nhsA)}})},
			[]string{"Flag/flag-1", "Flag/flag-2"}},
		{"chain to a deleted resource", fhir.Search{Type: "Flag", Filters: chain(patient, "Patient", fhir.Filter{Param: identifier, Values: []fhir.Value{tok(nhsE)}})}, nil},
		{"chain patient.name", fhir.Search{Type: "Flag", Filters: chain(patient, "Patient", fhir.Filter{Param: pname, Values: []fhir.Value{str("smith")}})},
			[]string{"Flag/flag-1", "Flag/flag-2", "Flag/flag-3"}},
		{"chain of two", fhir.Search{Type: "Flag", Filters: chain(patient, "Patient", fhir.Filter{Param: org, Chain: []fhir.ChainTarget{
			{Type: "Organization", Filter: fhir.Filter{Param: orgName, Values: []fhir.Value{str("north")}}}}})},
			[]string{"Flag/flag-1", "Flag/flag-2"}},
		{"chain and a token", fhir.Search{Type: "Flag", Filters: append(chain(patient, "Patient", fhir.Filter{Param: pname, Values: []fhir.Value{str("smith")}}), f(status, "", tok("inactive"))...)},
			[]string{"Flag/flag-2"}},
		{"_has", fhir.Search{Type: "Patient", Filters: has("Flag", patient, fhir.Filter{Param: status, Values: []fhir.Value{tok("inactive")}})}, []string{"Patient/pat-a"}},
		{"_has ignores deleted referrers and targets", fhir.Search{Type: "Patient", Filters: has("Flag", patient, fhir.Filter{Param: status, Values: []fhir.Value{tok("active")}})},
			[]string{"Patient/pat-a", "Patient/pat-b", "Patient/pat-c"}},
		{"_has nested", fhir.Search{Type: "Organization", Filters: has("Patient", org, fhir.Filter{Has: &fhir.HasFilter{Type: "Flag", Ref: patient,
			Filter: fhir.Filter{Param: status, Values: []fhir.Value{tok("inactive")}}}})}, []string{"Organization/la-1"}},
		{"_has on an identifier", fhir.Search{Type: "Organization", Filters: has("Patient", org, fhir.Filter{Param: identifier, Values: []fhir.Value{tok(nhsB)}})},
			[]string{"Organization/la-2"}},
		{"compartment Patient/pat-a/Flag", fhir.Search{Type: "Flag", Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "pat-a"}}, []string{"Flag/flag-1", "Flag/flag-2"}},
		{"compartment Patient/pat-a/Encounter", fhir.Search{Type: "Encounter", Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "pat-a"}}, []string{"Encounter/enc-1"}},
		{"compartment and a filter", fhir.Search{Type: "Flag", Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "pat-a"}, Filters: f(status, "", tok("active"))},
			[]string{"Flag/flag-1"}},
		{"compartment {def}", fhir.Search{Type: "Encounter", Compartment: &fhir.CompartmentRef{Type: "Encounter", ID: "enc-1"}}, []string{"Encounter/enc-1"}},
		{"compartment without the type", fhir.Search{Type: "Organization", Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "pat-a"}}, nil},
		{"compartment across types", fhir.Search{Compartment: &fhir.CompartmentRef{Type: "Patient", ID: "pat-a"}}, []string{"Flag/flag-1", "Flag/flag-2", "Encounter/enc-1"}},
	}
}

func dateCases(t *testing.T, fx *clinic) []searchCase {
	birth, date, lu := sp(t, "Patient", "birthdate"), sp(t, "Flag", "date"), sp(t, "Patient", "_lastUpdated")
	f := func(p *fhir.SearchParam, vs ...fhir.Value) []fhir.Filter {
		return []fhir.Filter{{Param: p, Values: vs}}
	}
	d := func(prefix fhir.Prefix, s string) fhir.Value { return dateValue(t, prefix, s) }
	at := func(prefix fhir.Prefix, ref string) fhir.Value {
		ms := fx.at[ref].UnixMilli()
		return fhir.Value{Prefix: prefix, DateLow: ms, DateHigh: ms}
	}
	a, b, c := "Patient/pat-a", "Patient/pat-b", "Patient/pat-c"
	return []searchCase{
		{"date year contains day and year", fhir.Search{Type: "Patient", Filters: f(birth, d("", "2015"))}, []string{a, c}},
		{"date eq day", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixEq, "2015-04-01"))}, []string{a}},
		{"date ne", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixNe, "2015"))}, []string{b}},
		{"date gt", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixGt, "2015-06-30"))}, []string{b, c}},
		{"date lt", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixLt, "2015-06-30"))}, []string{a, c}},
		{"date ge", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixGe, "2015-12-31"))}, []string{b, c}},
		{"date le", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixLe, "2015-01-01"))}, []string{c}},
		{"date sa", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixSa, "2015"))}, []string{b}},
		{"date eb", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixEb, "2016"))}, []string{a, c}},
		{"date ap", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixAp, "2016-06-10"))}, []string{b, c}},
		{"date values ORed", fhir.Search{Type: "Patient", Filters: f(birth, d("", "2015-04-01"), d("", "2016-06-15"))}, []string{a, b}},
		{"date gt with a time zone", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixGt, "2015-04-01T23:30:00-01:00"))}, []string{b, c}},
		{"date gt in UTC", fhir.Search{Type: "Patient", Filters: f(birth, d(fhir.PrefixGt, "2015-04-01T23:30:00Z"))}, []string{a, b, c}},
		{"period ge, open end", fhir.Search{Type: "Flag", Filters: f(date, d(fhir.PrefixGe, "2024-02-01"))}, []string{"Flag/flag-1", "Flag/flag-3"}},
		{"period eq month", fhir.Search{Type: "Flag", Filters: f(date, d("", "2024-03"))}, []string{"Flag/flag-3"}},
		{"period lt", fhir.Search{Type: "Flag", Filters: f(date, d(fhir.PrefixLt, "2023-06-01"))}, []string{"Flag/flag-2"}},
		{"period eb", fhir.Search{Type: "Flag", Filters: f(date, d(fhir.PrefixEb, "2024-01-01"))}, []string{"Flag/flag-2"}},
		{"period sa", fhir.Search{Type: "Flag", Filters: f(date, d(fhir.PrefixSa, "2023-12-31"))}, []string{"Flag/flag-1", "Flag/flag-3"}},
		{"period ANDed: a range", fhir.Search{Type: "Flag", Filters: append(f(date, d(fhir.PrefixGe, "2024-01-01")), f(date, d(fhir.PrefixLe, "2024-02-01"))...)},
			[]string{"Flag/flag-1"}},
		{"_lastUpdated lt", fhir.Search{Type: "Patient", Filters: f(lu, at(fhir.PrefixLt, c))}, []string{a, b}},
		{"_lastUpdated ge", fhir.Search{Type: "Patient", Filters: f(lu, at(fhir.PrefixGe, c))}, []string{c, "Patient/pat-d"}},
		{"_lastUpdated eq", fhir.Search{Type: "Patient", Filters: f(lu, at("", b))}, []string{b}},
	}
}

func numberCases(t *testing.T) []searchCase {
	prob, vq := sp(t, "RiskAssessment", "probability"), sp(t, "Observation", "value-quantity")
	f := func(p *fhir.SearchParam, vs ...fhir.Value) []fhir.Filter {
		return []fhir.Filter{{Param: p, Values: vs}}
	}
	n := func(prefix fhir.Prefix, s string) fhir.Value { return numberValue(t, prefix, s) }
	q := func(prefix fhir.Prefix, s, system, code string) fhir.Value {
		v := numberValue(t, prefix, s)
		v.UnitSystem, v.UnitCode = system, code
		return v
	}
	r1, r2, r3 := "RiskAssessment/ra-1", "RiskAssessment/ra-2", "RiskAssessment/ra-3"
	return []searchCase{
		{"number eq by precision", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n("", "0.2"))}, []string{r1}},
		{"number eq, more precise", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixEq, "0.25"))}, []string{r2}},
		{"number eq integer", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n("", "100"))}, []string{r3}},
		{"number eq exponent", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n("", "1e2"))}, []string{r3}},
		{"number ne", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixNe, "0.2"))}, []string{r2, r3}},
		{"number gt", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixGt, "0.2"))}, []string{r2, r3}},
		{"number ge", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixGe, "0.25"))}, []string{r2, r3}},
		{"number lt", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixLt, "0.25"))}, []string{r1}},
		{"number le", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixLe, "0.25"))}, []string{r1, r2}},
		{"number sa", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixSa, "0.2"))}, []string{r2, r3}},
		{"number eb", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixEb, "0.25"))}, []string{r1}},
		{"number ap", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixAp, "100"))}, []string{r3}},
		{"number ap small", fhir.Search{Type: "RiskAssessment", Filters: f(prob, n(fhir.PrefixAp, "0.22"))}, []string{r1}},
		{"number :missing", fhir.Search{Type: "RiskAssessment", Filters: []fhir.Filter{{Param: prob, Modifier: "missing", Values: []fhir.Value{{Missing: true}}}}}, []string{"RiskAssessment/ra-4"}},
		{"quantity any unit", fhir.Search{Type: "Observation", Filters: f(vq, q("", "5.4", "", ""))}, []string{"Observation/obs-1", "Observation/obs-3"}},
		{"quantity system and code", fhir.Search{Type: "Observation", Filters: f(vq, q("", "5.4", ucum, "mmol/L"))}, []string{"Observation/obs-1"}},
		{"quantity code or unit", fhir.Search{Type: "Observation", Filters: f(vq, q("", "5.4", "", "mmol/L"))}, []string{"Observation/obs-1", "Observation/obs-3"}},
		{"quantity gt", fhir.Search{Type: "Observation", Filters: f(vq, q(fhir.PrefixGt, "5.5", "", ""))}, []string{"Observation/obs-2"}},
		{"quantity lt with unit", fhir.Search{Type: "Observation", Filters: f(vq, q(fhir.PrefixLt, "6", ucum, "mg"))}, nil},
		{"quantity le with unit", fhir.Search{Type: "Observation", Filters: f(vq, q(fhir.PrefixLe, "6", ucum, "mg"))}, []string{"Observation/obs-2"}},
	}
}

func compositeCases(t *testing.T) []searchCase {
	cvq := sp(t, "Observation", "code-value-quantity")
	part := func(code string, prefix fhir.Prefix, n, unit string) fhir.Value {
		q := numberValue(t, prefix, n)
		q.UnitSystem, q.UnitCode = ucum, unit
		return fhir.Value{Parts: []fhir.Value{tok(code), q}}
	}
	f := func(vs ...fhir.Value) []fhir.Filter { return []fhir.Filter{{Param: cvq, Values: vs}} }
	profile := sp(t, "Patient", "_profile")
	u := func(mod, uri string) []fhir.Filter {
		return []fhir.Filter{{Param: profile, Modifier: mod, Values: []fhir.Value{{URI: uri}}}}
	}
	return []searchCase{
		{"composite", fhir.Search{Type: "Observation", Filters: f(part("15074-8", "", "5.4", "mmol/L"))}, []string{"Observation/obs-1"}},
		{"composite parts from different rows do not match", fhir.Search{Type: "Observation", Filters: f(part("A-1", "", "9", "mg"))}, nil},
		{"composite parts from one row", fhir.Search{Type: "Observation", Filters: f(part("A-1", "", "1", "mg"))}, []string{"Observation/obs-4"}},
		{"composite with a prefix", fhir.Search{Type: "Observation", Filters: f(part("B-2", fhir.PrefixGt, "5", "mg"))}, []string{"Observation/obs-4"}},
		{"composite values ORed", fhir.Search{Type: "Observation", Filters: f(part("A-1", "", "9", "mg"), part("2345-7", "", "6", "mg"))}, []string{"Observation/obs-2"}},
		{"uri", fhir.Search{Type: "Patient", Filters: u("", ukCore)}, []string{"Patient/pat-a"}},
		{"uri is not a prefix match", fhir.Search{Type: "Patient", Filters: u("", "https://fhir.hl7.org.uk/StructureDefinition/UKCore")}, nil},
		{"uri :below", fhir.Search{Type: "Patient", Filters: u("below", "https://fhir.hl7.org.uk/")}, []string{"Patient/pat-a"}},
		{"uri :below, wide", fhir.Search{Type: "Patient", Filters: u("below", "https://")}, []string{"Patient/pat-a", "Patient/pat-b"}},
		{"uri :above", fhir.Search{Type: "Patient", Filters: u("above", ukCore+"/v2")}, []string{"Patient/pat-a"}},
	}
}

func systemCases(t *testing.T) []searchCase {
	profile, id := sp(t, "Patient", "_profile"), sp(t, "Patient", "_id")
	identifier := sp(t, "Patient", "identifier")
	return []searchCase{
		{"all types, common parameter", fhir.Search{Filters: []fhir.Filter{{Param: profile, Modifier: "below", Values: []fhir.Value{{URI: "https://"}}}}},
			[]string{"Patient/pat-a", "Patient/pat-b", "Flag/flag-1"}},
		{"all types, _id", fhir.Search{Filters: []fhir.Filter{{Param: id, Values: []fhir.Value{tok("pat-a"), tok("flag-2")}}}}, []string{"Patient/pat-a", "Flag/flag-2"}},
		{"_type Patient,Flag with a parameter of each", fhir.Search{Types: []string{"Patient", "Flag"}, Filters: []fhir.Filter{{Param: identifier, Values: []fhir.Value{tok(nhsA)}}}},
			[]string{"Patient/pat-a"}},
		{"_type Organization,Group", fhir.Search{Types: []string{"Organization", "Group"}}, []string{"Organization/la-1", "Organization/la-2", "Group/grp-1"}},
	}
}

func sortCases(t *testing.T) []searchCase {
	key := func(typ, name string, desc bool) fhir.SortKey {
		return fhir.SortKey{Param: sp(t, typ, name), Descending: desc}
	}
	a, b, c, d := "Patient/pat-a", "Patient/pat-b", "Patient/pat-c", "Patient/pat-d"
	return []searchCase{
		{"_sort string", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "family", false)}}, []string{c, d, a, b}},
		{"_sort string descending", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "family", true)}}, []string{b, a, d, c}},
		{"_sort date, missing last", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "birthdate", false)}}, []string{c, a, b, d}},
		{"_sort date descending by the end", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "birthdate", true)}}, []string{b, c, a, d}},
		{"_sort token, ties in insertion order", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "gender", false)}}, []string{a, c, b, d}},
		{"_sort token descending, ties in insertion order", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "gender", true)}}, []string{b, a, c, d}},
		{"_sort two keys", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "gender", false), key("Patient", "birthdate", true)}}, []string{c, a, b, d}},
		{"_sort _id descending", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "_id", true)}}, []string{d, c, b, a}},
		{"_sort _lastUpdated descending", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "_lastUpdated", true)}}, []string{d, c, b, a}},
		{"_sort period descending", fhir.Search{Type: "Flag", Sort: []fhir.SortKey{key("Flag", "date", true)}},
			[]string{"Flag/flag-1", "Flag/flag-3", "Flag/flag-2", "Flag/flag-4", "Flag/flag-5", "Flag/flag-6", "Flag/flag-8"}},
		{"_sort reference", fhir.Search{Type: "Flag", Sort: []fhir.SortKey{key("Flag", "subject", false)}},
			[]string{"Flag/flag-5", "Flag/flag-8", "Flag/flag-1", "Flag/flag-2", "Flag/flag-3", "Flag/flag-4", "Flag/flag-6"}},
		{"_sort number descending", fhir.Search{Type: "RiskAssessment", Sort: []fhir.SortKey{key("RiskAssessment", "probability", true)}},
			[]string{"RiskAssessment/ra-3", "RiskAssessment/ra-2", "RiskAssessment/ra-1", "RiskAssessment/ra-4"}},
		{"_sort with a filter", fhir.Search{Type: "Patient", Sort: []fhir.SortKey{key("Patient", "family", true)},
			Filters: []fhir.Filter{{Param: sp(t, "Patient", "name"), Values: []fhir.Value{str("smith")}}}}, []string{b, a}},
	}
}

// flagStatus is the CP-IS parameter Flag.status, which R4 does not define.
func flagStatus() *fhir.SearchParam {
	return &fhir.SearchParam{Name: "status", Type: fhir.SearchParamToken, Expression: "Flag.status"}
}

// sp returns the R4 search parameter name of typ.
func sp(t *testing.T, typ, name string) *fhir.SearchParam {
	t.Helper()
	p, ok := fhir.LookupSearchParam(typ, name)
	if !ok {
		t.Fatalf("no search parameter %s on %s", name, typ)
	}
	return p
}

func tok(code string) fhir.Value { return fhir.Value{Code: code} }

func tokS(system, code string) fhir.Value {
	return fhir.Value{System: system, HasSystem: true, Code: code}
}

func str(s string) fhir.Value { return fhir.Value{Norm: fhir.NormalizeString(s), Exact: s} }

func ref(typ, id string) fhir.Value { return fhir.Value{RefType: typ, RefID: id} }

func dateValue(t *testing.T, prefix fhir.Prefix, s string) fhir.Value {
	t.Helper()
	lo, hi, ok := fhir.DateRange(s, nil)
	if !ok {
		t.Fatalf("bad date %q", s)
	}
	return fhir.Value{Prefix: prefix, DateLow: lo, DateHigh: hi}
}

func numberValue(t *testing.T, prefix fhir.Prefix, s string) fhir.Value {
	t.Helper()
	v, lo, hi, ok := fhir.NumberRange(s)
	if !ok {
		t.Fatalf("bad number %q", s)
	}
	return fhir.Value{Prefix: prefix, Number: v, Low: lo, High: hi}
}

// put writes the next version of typ/id (version 1 if it has none) with
// index rows idx, a minute after the last write.
func put(t *testing.T, s fhir.Store, clock *Clock, typ, id string, idx *fhir.Index) *fhir.Resource {
	t.Helper()
	clock.Add(time.Minute)
	var r *fhir.Resource
	mustWrite(t, s, func(tx fhir.Tx) error {
		version := int64(1)
		if cur, err := tx.Read(typ, id); err == nil {
			version = cur.VersionID + 1
		} else if !fhir.IsNotFound(err) {
			return err
		}
		r = &fhir.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: tx.Now(), Method: fhir.MethodUpdate,
			JSON: []byte(`{"resourceType":"` + typ + `","id":"` + id + `"}`), Index: idx}
		return tx.Put(r)
	})
	return r
}

// remove deletes typ/id.
func remove(t *testing.T, s fhir.Store, clock *Clock, typ, id string) {
	t.Helper()
	clock.Add(time.Minute)
	mustWrite(t, s, func(tx fhir.Tx) error {
		cur, err := tx.Read(typ, id)
		if err != nil {
			return err
		}
		return tx.Put(&fhir.Resource{Type: typ, ID: id, VersionID: cur.VersionID + 1, LastUpdated: tx.Now(), Method: fhir.MethodDelete})
	})
}

func mustSearch(t *testing.T, s fhir.Store, q *fhir.Search, cursor fhir.Cursor, backward bool) *fhir.SearchPage {
	t.Helper()
	p, err := s.Search(context.Background(), q, cursor, backward)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	return p
}

func assertSearch(t *testing.T, s fhir.Store, what string, q fhir.Search, want []string) {
	t.Helper()
	if got := refs(mustSearch(t, s, &q, nil, false).Matches); !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func assertPage(t *testing.T, what string, p *fhir.SearchPage, want []string, prev, next bool) {
	t.Helper()
	if got := refs(p.Matches); !slices.Equal(got, want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	if (p.Prev != nil) != prev || (p.Next != nil) != next {
		t.Errorf("%s: has previous %v, next %v; want %v, %v", what, p.Prev != nil, p.Next != nil, prev, next)
	}
}

func refs(rs []*fhir.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Ref())
	}
	return out
}

func isIssue(err error, code fhir.IssueType) bool {
	var fe *fhir.Error
	return errors.As(err, &fe) && fe.Code == code
}
