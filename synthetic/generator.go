package synthetic

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// National figures (DOMAIN.md, "Scale"): the defaults of Config.
const (
	// NationalCouncils is the number of councils with children's services.
	NationalCouncils = 152
	// NationalSites is the number of unscheduled-care sites.
	NationalSites = 1200
	// NationalChildren is the number of subjects of the national data set:
	// about 136,000 with current plans and the rest with plans ended in the
	// last year.
	NationalChildren = 250_000
	// ChildrenPerBundle is the number of children a council upload holds
	// when Config.ChildrenPerBundle is zero.
	ChildrenPerBundle = 25
)

// Proportions of the plans (DOMAIN.md): per 136,000 current records about
// 84,000 looked after, 50,000 child protection and 2,000 unborn plans;
// about 136,000 of 250,000 records are current, the others ended within the
// last year. A small share of children hold a second record from another
// council.
const (
	shareLAC       = 84_000.0 / 136_000
	shareCPP       = 50_000.0 / 136_000
	shareActive    = 136_000.0 / 250_000
	shareSecond    = 0.02
	maxChildren    = 800_000
	planYears      = 5   // plans start within the last five years
	endedDays      = 365 // ended plans ended within the last year
	unbornMaxDays  = 240 // a current unborn plan started within eight months
	unbornTermDays = 270
)

// Config sets what a Generator produces. Seed, Children and Now decide
// everything; the same Config gives the same data.
type Config struct {
	// Seed selects the data set.
	Seed uint64
	// Children is the number of subjects (children, and pregnant women for
	// unborn plans); zero means NationalChildren.
	Children int
	// Councils and Sites are the numbers of councils (at most 152) and of
	// unscheduled-care sites (at most 2,500); zero means the national
	// figures.
	Councils, Sites int
	// ChildrenPerBundle is the number of children per council upload; zero
	// means 25.
	ChildrenPerBundle int
	// Now is the reference day: dates are days before it (its time of day
	// is dropped, in UTC). It must be set.
	Now time.Time
	// OmitProfiles leaves out the meta.profile claims, so that a server
	// validates only what it checks by content (CP-IS Flags); the
	// resources still conform.
	OmitProfiles bool
}

// Generator produces a data set. It is safe for concurrent use once made.
type Generator struct {
	cfg        Config
	now        time.Time
	serials    []int32 // valid NHS serials in the seed's order
	councils   []Council
	cumCouncil []float64
	sites      []Site
	cumSite    []float64
	weekCum    []float64 // cumulative attendance weight by hour of the week
	flagOnce   sync.Once
	flagged    []int32 // subjects with a current record, made by flagOnce
}

// New returns the Generator of cfg.
func New(cfg Config) (*Generator, error) {
	if cfg.Children == 0 {
		cfg.Children = NationalChildren
	}
	if cfg.Councils == 0 {
		cfg.Councils = NationalCouncils
	}
	if cfg.Sites == 0 {
		cfg.Sites = NationalSites
	}
	if cfg.ChildrenPerBundle == 0 {
		cfg.ChildrenPerBundle = ChildrenPerBundle
	}
	switch {
	case cfg.Children < 0 || cfg.Children > maxChildren:
		return nil, fmt.Errorf("synthetic: children must be between 1 and %d", maxChildren)
	case cfg.Councils < 0 || cfg.Councils > NationalCouncils:
		return nil, fmt.Errorf("synthetic: councils must be between 1 and %d", NationalCouncils)
	case cfg.Sites < 0 || cfg.Sites > maxSites:
		return nil, fmt.Errorf("synthetic: sites must be between 1 and %d", maxSites)
	case cfg.ChildrenPerBundle < 0 || cfg.ChildrenPerBundle > 2000:
		return nil, errors.New("synthetic: children per Bundle must be between 1 and 2000")
	case cfg.Now.IsZero():
		return nil, errors.New("synthetic: the reference day (Now) must be set")
	}
	y, m, d := cfg.Now.UTC().Date()
	g := &Generator{cfg: cfg, now: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
	g.permuteNHS()
	g.makeCouncils()
	g.makeSites()
	g.weekCum = weekCurve()
	return g, nil
}

// Config returns the configuration in force, defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Now returns the reference day.
func (g *Generator) Now() time.Time { return g.now }

// Stream constants keep the draws of different things apart.
const (
	streamNHS uint64 = 0x6e68735f7065726d + iota
	streamSubject
	streamCouncil
	streamSite
	streamAttendance
)

// rng returns the generator of item i of a stream.
func (g *Generator) rng(stream uint64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(g.cfg.Seed^stream, uint64(i)))
}

// permuteNHS orders the 999 serials by an affine permutation drawn from the
// seed and keeps the valid ones: subject i has the i-th.
func (g *Generator) permuteNHS() {
	r := g.rng(streamNHS, 0)
	a := 1 + 2*r.IntN(nhsSerials/2)
	for a%5 == 0 {
		a = 1 + 2*r.IntN(nhsSerials/2)
	}
	b := r.IntN(nhsSerials)
	g.serials = make([]int32, 0, nhsSerials*10/11+1000)
	for k := 0; k < nhsSerials; k++ {
		s := (a*k + b) % nhsSerials
		if validNHSSerial(s) {
			g.serials = append(g.serials, int32(s))
		}
	}
}

// NHSNumber returns the NHS number of subject i; i may go beyond Children
// (subjects not in the seeded set), up to NHSNumbers().
func (g *Generator) NHSNumber(i int) string {
	s, _ := nhsNumber(int(g.serials[i]))
	return s
}

// NHSNumbers returns the number of subjects that have an NHS number: the
// valid numbers of the 999 range (about 909,000).
func (g *Generator) NHSNumbers() int { return len(g.serials) }

// PlanType is a CP-IS plan type (DOMAIN.md, "Who is covered").
type PlanType int

// The plan types.
const (
	LookedAfter PlanType = iota
	ChildProtection
	Unborn
)

// Code returns the SNOMED CT code of the plan type.
func (t PlanType) Code() string {
	switch t {
	case ChildProtection:
		return "342191000000101"
	case Unborn:
		return "818901000000100"
	}
	return "764841000000100"
}

// Display returns the SNOMED CT display of the plan type.
func (t PlanType) Display() string {
	switch t {
	case ChildProtection:
		return "Subject to child protection plan"
	case Unborn:
		return "Unborn child subject to child protection plan"
	}
	return "Looked after child"
}

// String returns a short name: LAC, CPP or unborn.
func (t PlanType) String() string {
	switch t {
	case ChildProtection:
		return "CPP"
	case Unborn:
		return "unborn"
	}
	return "LAC"
}

// Record is one CP-IS record: a plan held by one council.
type Record struct {
	Council int
	Plan    PlanType
	// Active is true for a current plan, false for one ended within the
	// last year.
	Active bool
	// Start is the plan start; End the end (zero when open; always set for
	// an unborn plan, and then in the future while the plan is current).
	Start, End time.Time
}

// Subject is a child, or a pregnant woman for an unborn plan.
type Subject struct {
	Index     int
	NHSNumber string
	Given     string
	Family    string
	Gender    string // "female" or "male"
	BirthDate time.Time
	// Records holds one record, or two from two councils.
	Records []Record
}

// Flagged reports whether the subject has a current record (an active
// Flag).
func (s *Subject) Flagged() bool {
	for _, r := range s.Records {
		if r.Active {
			return true
		}
	}
	return false
}

// ageBucket is a share of subjects and an age range in years [lo, hi).
type ageBucket struct{ share, lo, hi float64 }

// Ages of children on plans (published national statistics, rounded):
// children on protection plans are younger than looked-after children.
var (
	agesCPP = []ageBucket{{0.10, 0, 1}, {0.28, 1, 5}, {0.32, 5, 10}, {0.26, 10, 16}, {0.04, 16, 18}}
	agesLAC = []ageBucket{{0.05, 0, 1}, {0.14, 1, 5}, {0.18, 5, 10}, {0.38, 10, 16}, {0.25, 16, 18}}
	// agesMother are the ages of pregnant women at the plan start.
	agesMother = []ageBucket{{0.20, 15, 20}, {0.50, 20, 30}, {0.30, 30, 42}}
)

// under18Days is the largest age in days that is under 18 on any calendar.
const under18Days = 18*365 - 1

// ageDays draws an age in days from the buckets.
func ageDays(r *rand.Rand, buckets []ageBucket) int {
	u := r.Float64()
	b := buckets[len(buckets)-1]
	for _, x := range buckets {
		if u < x.share {
			b = x
			break
		}
		u -= x.share
	}
	d := int((b.lo + r.Float64()*(b.hi-b.lo)) * 365.25)
	if b.hi <= 18 && d > under18Days {
		d = under18Days
	}
	return d
}

// day returns the day n days before the reference day.
func (g *Generator) day(n int) time.Time { return g.now.AddDate(0, 0, -n) }

// between draws a day uniformly between from and to days ago (from >= to).
func between(r *rand.Rand, from, to int) int {
	if from <= to {
		return to
	}
	return to + r.IntN(from-to+1)
}

// Subject returns subject i. For i < Children it is a subject of the
// seeded set; beyond, it is a subject that the set does not hold (new
// children for load tests), up to NHSNumbers().
func (g *Generator) Subject(i int) Subject {
	r := g.rng(streamSubject, i)
	s := Subject{Index: i, NHSNumber: g.NHSNumber(i)}
	// Every draw that decides the NHS number, the plans and whether they are
	// current comes before the council draws, so that the flagged subjects
	// do not depend on the number of councils.
	u := r.Float64()
	plan := LookedAfter
	switch {
	case u < shareLAC:
	case u < shareLAC+shareCPP:
		plan = ChildProtection
	default:
		plan = Unborn
	}
	first := Record{Plan: plan, Active: r.Float64() < shareActive}
	female := plan == Unborn || r.IntN(2) == 0
	s.Gender = "male"
	if female {
		s.Gender = "female"
	}
	s.Given = pick(r, givenNames(female))
	s.Family = pick(r, familyNames)
	fiveYears := planYears*365 + 1
	var birth int // days before now
	switch {
	case plan == Unborn && first.Active:
		start := r.IntN(unbornMaxDays + 1)
		first.Start, first.End = g.day(start), g.day(start-unbornTermDays)
		birth = start + ageDays(r, agesMother)
	case plan == Unborn:
		end := r.IntN(endedDays)
		start := end + 150 + r.IntN(unbornTermDays-150+1)
		first.Start, first.End = g.day(start), g.day(end)
		birth = start + ageDays(r, agesMother)
	case first.Active:
		birth = ageDays(r, agesOf(plan))
		first.Start = g.day(between(r, min(birth, fiveYears), 0))
	default:
		end := r.IntN(endedDays)
		birth = end + ageDays(r, agesOf(plan))
		first.Start = g.day(between(r, min(birth, fiveYears), end))
		first.End = g.day(end)
	}
	s.BirthDate = g.day(birth)
	s.Records = []Record{first}
	second := plan != Unborn && r.Float64() < shareSecond && birth <= under18Days
	var rec Record
	if second {
		rec = Record{Plan: ChildProtection, Active: r.Float64() < shareActive}
		if plan == ChildProtection {
			rec.Plan = LookedAfter
		}
		if rec.Active {
			rec.Start = g.day(between(r, min(birth, fiveYears), 0))
		} else {
			end := between(r, min(birth, endedDays-1), 0)
			rec.Start = g.day(between(r, min(birth, fiveYears), end))
			rec.End = g.day(end)
		}
	}
	n := g.cfg.Councils
	s.Records[0].Council = g.pickCouncil(r)
	if second && n > 1 {
		rec.Council = (s.Records[0].Council + 1 + r.IntN(n-1)) % n
		s.Records = append(s.Records, rec)
	}
	return s
}

func agesOf(p PlanType) []ageBucket {
	if p == ChildProtection {
		return agesCPP
	}
	return agesLAC
}

func pick(r *rand.Rand, names []string) string { return names[r.IntN(len(names))] }

// pickCouncil draws a council by size.
func (g *Generator) pickCouncil(r *rand.Rand) int {
	return pickCum(g.cumCouncil, r.Float64())
}

// pickCum returns the index whose cumulative weight first exceeds u times
// the total.
func pickCum(cum []float64, u float64) int {
	x := u * cum[len(cum)-1]
	i := sort.SearchFloat64s(cum, x)
	if i < len(cum) && cum[i] == x {
		i++
	}
	return min(i, len(cum)-1)
}

// FlaggedSubjects returns the seeded subjects with a current record, in
// index order. The first call generates every subject (about a second for
// the national set); later calls return the same slice, which must not be
// changed.
func (g *Generator) FlaggedSubjects() []int32 {
	g.flagOnce.Do(func() {
		g.flagged = make([]int32, 0, g.cfg.Children*6/10)
		for i := 0; i < g.cfg.Children; i++ {
			if s := g.Subject(i); s.Flagged() {
				g.flagged = append(g.flagged, int32(i))
			}
		}
	})
	return g.flagged
}
