package synthetic_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/synthetic"
	"github.com/cpis-fhir/cpis/terminology"
)

// today is the fixed reference day of the tests.
var today = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func newGenerator(t *testing.T, cfg synthetic.Config) *synthetic.Generator {
	t.Helper()
	if cfg.Now.IsZero() {
		cfg.Now = today
	}
	g, err := synthetic.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return g
}

func TestGenerator_Deterministic(t *testing.T) {
	cfg := synthetic.Config{Seed: 7, Children: 600}
	a, b := newGenerator(t, cfg), newGenerator(t, cfg)
	if !bytes.Equal(a.SetupBundle(), b.SetupBundle()) {
		t.Error("SetupBundle differs between two generators of the same config")
	}
	ua, ub := a.Uploads(), b.Uploads()
	if len(ua) != len(ub) || len(ua) == 0 {
		t.Fatalf("Uploads: %d and %d Bundles, want the same, more than 0", len(ua), len(ub))
	}
	for i := range ua {
		if !bytes.Equal(a.UploadBundle(ua[i]), b.UploadBundle(ub[i])) {
			t.Fatalf("UploadBundle %d differs between two generators of the same config", i)
		}
	}
	if !bytes.Equal(a.AttendanceBundle(0, 50), b.AttendanceBundle(0, 50)) {
		t.Error("AttendanceBundle differs between two generators of the same config")
	}
	// Built in another order (subjects generated out of order, flagged
	// list made first), the bytes are still the same.
	c := newGenerator(t, cfg)
	c.FlaggedSubjects()
	uc := c.Uploads()
	for i := len(uc) - 1; i >= 0; i-- {
		if !bytes.Equal(c.UploadBundle(uc[i]), a.UploadBundle(ua[i])) {
			t.Fatalf("UploadBundle %d differs when the Bundles are built in reverse order", i)
		}
	}

	other := newGenerator(t, synthetic.Config{Seed: 8, Children: 600})
	uo := other.Uploads()
	if bytes.Equal(other.UploadBundle(uo[0]), a.UploadBundle(ua[0])) {
		t.Error("seeds 7 and 8 give the same first upload")
	}
	same := 0
	for i := range 600 {
		if other.NHSNumber(i) == a.NHSNumber(i) {
			same++
		}
	}
	if same > 6 {
		t.Errorf("seeds 7 and 8: %d of 600 subjects share their NHS number, want almost none", same)
	}
}

func TestGenerator_NHSNumbers(t *testing.T) {
	g := newGenerator(t, synthetic.Config{Seed: 1, Children: 1000})
	if n := g.NHSNumbers(); n < 900_000 || n > 920_000 {
		t.Errorf("NHSNumbers() = %d, want the about 909,000 valid numbers of the 999 range", n)
	}
	seen := map[string]int{}
	for i := 0; i < g.NHSNumbers(); i++ {
		nhs := g.NHSNumber(i)
		if !strings.HasPrefix(nhs, "999") || !profiles.ValidNHSNumber(nhs) {
			t.Fatalf("NHSNumber(%d) = %q: want a 999-range number with a valid check digit", i, nhs)
		}
		if j, dup := seen[nhs]; dup {
			t.Fatalf("NHSNumber(%d) = NHSNumber(%d) = %s, want distinct numbers", i, j, nhs)
		}
		seen[nhs] = i
	}
	lo, hi := g.UploadBand()
	if hi != g.NHSNumbers() || lo <= 1000 || lo >= hi {
		t.Fatalf("UploadBand() = [%d, %d), want a band at the top of [1000, %d)", lo, hi, g.NHSNumbers())
	}
	for k := range 1000 {
		// Below the upload band: an upload never gives an unseeded
		// subject a record.
		if i := g.UnseededSubject(uint64(k) * 7919); i < 1000 || i >= lo {
			t.Fatalf("UnseededSubject(%d) = %d, want in [1000, %d)", k*7919, i, lo)
		}
	}
}

func TestGenerator_Proportions(t *testing.T) {
	const n = 40_000
	g := newGenerator(t, synthetic.Config{Seed: 3, Children: n})
	var records, current, lac, cpp, unborn, second int
	yearAgo, fiveYearsAgo := today.AddDate(-1, 0, 0), today.AddDate(-5, 0, 0)
	councils := map[int]int{}
	for i := range n {
		s := g.Subject(i)
		if len(s.Records) == 2 {
			second++
			if s.Records[0].Council == s.Records[1].Council {
				t.Fatalf("subject %d: two records from council %d, want two councils", i, s.Records[0].Council)
			}
		}
		for _, r := range s.Records {
			records++
			councils[r.Council]++
			if r.Start.Before(fiveYearsAgo) || r.Start.After(today) || r.Start.Before(s.BirthDate) {
				t.Fatalf("subject %d: plan starts %s, want within the last 5 years and after the birth %s", i, r.Start, s.BirthDate)
			}
			if !r.End.IsZero() && r.End.Before(r.Start) {
				t.Fatalf("subject %d: plan ends %s before it starts %s", i, r.End, r.Start)
			}
			if r.Plan == synthetic.Unborn {
				if s.Gender != "female" || r.End.IsZero() {
					t.Fatalf("subject %d: unborn plan on a %s subject, end %v: want a woman and an end date", i, s.Gender, r.End)
				}
			} else if !r.Start.Before(s.BirthDate.AddDate(18, 0, 0)) {
				t.Fatalf("subject %d: %s plan starts %s, at 18 or over (born %s)", i, r.Plan, r.Start, s.BirthDate)
			}
			if !r.Active {
				if r.End.Before(yearAgo) || r.End.After(today) {
					t.Fatalf("subject %d: ended plan ends %s, want within the last year", i, r.End)
				}
				continue
			}
			if r.Plan != synthetic.Unborn && !today.Before(s.BirthDate.AddDate(18, 0, 0)) {
				t.Fatalf("subject %d: current %s plan of a person of 18 or over (born %s)", i, r.Plan, s.BirthDate)
			}
			current++
			switch r.Plan {
			case synthetic.LookedAfter:
				lac++
			case synthetic.ChildProtection:
				cpp++
			case synthetic.Unborn:
				unborn++
			}
		}
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
		}
	}
	// DOMAIN.md: 84,000 LAC, 50,000 CPP and 2,000 unborn per 136,000
	// current records; about 136,000 current of 250,000 records.
	near("current / records", float64(current)/float64(records), 136.0/250, 0.02)
	near("LAC / current", float64(lac)/float64(current), 84.0/136, 0.02)
	near("CPP / current", float64(cpp)/float64(current), 50.0/136, 0.02)
	near("unborn / current", float64(unborn)/float64(current), 2.0/136, 0.004)
	near("children with two records / children", float64(second)/n, 0.02, 0.01)
	if len(councils) != synthetic.NationalCouncils {
		t.Errorf("records come from %d councils, want all %d", len(councils), synthetic.NationalCouncils)
	}
	flagged := g.FlaggedSubjects()
	near("flagged subjects / subjects", float64(len(flagged))/n, 0.55, 0.03)
}

// resource is the part of a Bundle entry the validity test reads.
type entry struct {
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
}

func TestGenerator_ResourcesValid(t *testing.T) {
	term := terminology.New()
	v, err := profiles.New(term)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, omit := range []bool{false, true} {
		t.Run(fmt.Sprintf("OmitProfiles=%v", omit), func(t *testing.T) {
			checkResourcesValid(t, v, codec, newGenerator(t, synthetic.Config{Seed: 11, Children: 800, OmitProfiles: omit}), omit)
		})
	}
}

// checkResourcesValid checks every resource of g's Bundles against its
// CP-IS profile, and that it claims it unless omit.
func checkResourcesValid(t *testing.T, v *profiles.Validator, codec *fhir.Codec, g *synthetic.Generator, omit bool) {
	t.Helper()
	bundles := [][]byte{g.SetupBundle(), g.AttendanceBundle(0, 300)}
	for _, u := range g.Uploads() {
		bundles = append(bundles, g.UploadBundle(u))
	}
	counts := map[string]int{}
	for bi, b := range bundles {
		// The strict R4 parser takes the whole Bundle.
		if _, err := codec.Parse(b); err != nil {
			t.Fatalf("Bundle %d: the R4 parser refuses it: %v", bi, err)
		}
		var bundle struct {
			Type  string  `json:"type"`
			Entry []entry `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
		if bundle.Type != "transaction" {
			t.Fatalf("Bundle %d: type %q, want transaction", bi, bundle.Type)
		}
		for ei, e := range bundle.Entry {
			var res struct {
				ResourceType string `json:"resourceType"`
				Meta         struct {
					Profile []string `json:"profile"`
				} `json:"meta"`
			}
			if err := json.Unmarshal(e.Resource, &res); err != nil {
				t.Fatal(err)
			}
			want := v.ProfileFor(res.ResourceType)
			if want == "" || omit && len(res.Meta.Profile) != 0 || !omit && (len(res.Meta.Profile) != 1 || res.Meta.Profile[0] != want) {
				t.Fatalf("Bundle %d entry %d: %s claims %v, want its CP-IS profile %q (omitted: %v)", bi, ei, res.ResourceType, res.Meta.Profile, want, omit)
			}
			for _, is := range v.Validate(e.Resource, want) {
				if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal || is.Severity == fhir.SeverityWarning {
					t.Errorf("Bundle %d entry %d (%s): %s %s %v %s", bi, ei, res.ResourceType, is.Severity, is.Code, is.Expression, is.Diagnostics)
				}
			}
			if res.ResourceType == "Patient" && (e.Request.Method != "POST" || !strings.HasPrefix(e.Request.IfNoneExist, "identifier=")) {
				t.Errorf("Bundle %d entry %d: Patient request %+v, want a POST with ifNoneExist on the NHS number", bi, ei, e.Request)
			}
			counts[res.ResourceType]++
		}
	}
	for _, typ := range []string{"Organization", "PractitionerRole", "Patient", "Flag", "CarePlan", "CareTeam", "Encounter"} {
		if counts[typ] == 0 {
			t.Errorf("no %s generated", typ)
		}
	}
	if counts["Flag"] != counts["CarePlan"] || counts["Flag"] != counts["CareTeam"] || counts["Flag"] < 800 {
		t.Errorf("Flags %d, CarePlans %d, CareTeams %d: want one of each per record, at least 800", counts["Flag"], counts["CarePlan"], counts["CareTeam"])
	}
	if counts["Organization"] != synthetic.NationalCouncils+synthetic.NationalSites {
		t.Errorf("%d Organizations, want %d councils and %d sites", counts["Organization"], synthetic.NationalCouncils, synthetic.NationalSites)
	}
}

func TestGenerator_Attendances(t *testing.T) {
	g := newGenerator(t, synthetic.Config{Seed: 5, Children: 5000})
	const n = 20_000
	var byHour [24]int
	flagged := 0
	sites := map[string]int{}
	weekAgo := today.AddDate(0, 0, -7)
	for k := range n {
		a := g.Attendance(k)
		if a.Start.Before(weekAgo) || !a.Start.Before(today) || !a.End.After(a.Start) {
			t.Fatalf("attendance %d: %s to %s, want a start in the week before %s and an end after it", k, a.Start, a.End, today)
		}
		byHour[a.Start.Hour()]++
		if a.Subject < 5000 {
			s := g.Subject(a.Subject)
			if !s.Flagged() {
				t.Fatalf("attendance %d: seeded subject %d has no current plan", k, a.Subject)
			}
			flagged++
		}
		sites[a.Site.Setting.Code]++
	}
	// Children with a plan are over-represented: 4% of attendances, against
	// about 1% of children.
	if share := float64(flagged) / n; share < 0.03 || share > 0.05 {
		t.Errorf("flagged share of attendances %.3f, want about 0.04", share)
	}
	// The daily curve: late morning and early evening are several times
	// busier than the small hours.
	if byHour[11] < 3*byHour[4] || byHour[18] < 3*byHour[4] {
		t.Errorf("attendances by hour %v: want 11:00 and 18:00 at least three times 04:00", byHour)
	}
	if sites["310000008"] < sites["829961000000104"] {
		t.Errorf("attendances by setting %v: want A&E busier than out-of-hours services", sites)
	}
}

func TestNew_Errors(t *testing.T) {
	for _, cfg := range []synthetic.Config{
		{Children: 10},                             // no reference day
		{Children: -1, Now: today},                 // negative
		{Children: 900_000, Now: today},            // beyond the 999 range's share
		{Children: 10, Councils: 153, Now: today},  // more councils than England
		{Children: 10, Sites: 100_000, Now: today}, // more sites than the codes
	} {
		if _, err := synthetic.New(cfg); err == nil {
			t.Errorf("New(%+v): no error, want one", cfg)
		}
	}
}
