package synthetic

import (
	"time"
)

// Attendances: children's unscheduled-care attendances (about 6 million a
// year in England, each a CP-IS lookup), over the week before the reference
// day, following the daily curve of paediatric emergency attendances (quiet
// at night, rising from 8 am, highest late morning and early evening) and
// the weekly one (busiest on Sundays and Mondays). Children with a current
// plan attend more often than others.

// shareFlaggedAttendance is the share of attendances by a child with a
// current plan: about four times their share of the child population
// (about 1.1%).
const shareFlaggedAttendance = 0.04

// hourWeights is the relative number of attendances starting in each hour.
var hourWeights = [24]float64{
	2.2, 1.6, 1.2, 1.0, 0.9, 0.9, 1.1, 1.8, 3.2, 4.6, 5.4, 5.6,
	5.2, 4.9, 4.8, 4.9, 5.3, 5.8, 6.0, 5.7, 4.9, 4.0, 3.3, 2.7,
}

// dayWeights is the relative number by weekday, Sunday first
// (time.Weekday order).
var dayWeights = [7]float64{1.06, 1.12, 1.0, 0.98, 0.97, 0.96, 0.97}

// weekCurve returns the cumulative weights of the 168 hours of a week,
// indexed by weekday (Sunday 0) times 24 plus the hour.
func weekCurve() []float64 {
	cum := make([]float64, 7*24)
	sum := 0.0
	for d := range 7 {
		for h := range 24 {
			sum += dayWeights[d] * hourWeights[h]
			cum[d*24+h] = sum
		}
	}
	return cum
}

// Attendance is one unscheduled-care attendance.
type Attendance struct {
	Index int
	// Subject is the index of the child's subject: below Children a seeded
	// child with a current plan, else a child the seeded set does not
	// hold.
	Subject   int
	NHSNumber string
	Site      *Site
	// Start and End are the arrival and the departure.
	Start, End time.Time
}

// Attendance returns attendance k, in the week before the reference day.
// Its first call generates every seeded subject once (FlaggedSubjects).
func (g *Generator) Attendance(k int) Attendance {
	r := g.rng(streamAttendance, k)
	slot := pickCum(g.weekCum, r.Float64())
	wd, hour := time.Weekday(slot/24), slot%24
	// The day of the week before the reference day with that weekday.
	back := (int(g.now.Weekday())-int(wd)+6)%7 + 1
	start := g.now.AddDate(0, 0, -back).Add(time.Duration(hour)*time.Hour + time.Duration(r.IntN(3600))*time.Second)
	end := start.Add(time.Duration(30+r.IntN(330)) * time.Minute)
	a := Attendance{Index: k, Start: start, End: end, Site: &g.sites[pickCum(g.cumSite, r.Float64())]}
	flagged := g.FlaggedSubjects()
	if u := r.Float64(); u < shareFlaggedAttendance && len(flagged) > 0 {
		a.Subject = int(flagged[r.IntN(len(flagged))])
	} else {
		a.Subject = g.UnseededSubject(r.Uint64())
	}
	a.NHSNumber = g.NHSNumber(a.Subject)
	return a
}

// UnseededSubject maps any u to a subject index the seeded set does not
// hold, below the upload band (UploadBand), so that no upload of new
// children (cpis bench) ever gives it a record.
func (g *Generator) UnseededSubject(u uint64) int {
	lo, _ := g.UploadBand()
	return g.cfg.Children + int(u%uint64(lo-g.cfg.Children))
}

// UploadBand is the range [lo, hi) of subject indexes kept for new
// children that uploads add to a seeded set: the top of the NHS numbers,
// apart from the seeded children and UnseededSubject's.
func (g *Generator) UploadBand() (lo, hi int) {
	hi = len(g.serials)
	band := min(uploadBand, (hi-g.cfg.Children)/2)
	return hi - band, hi
}

// uploadBand is how many subject indexes the upload band holds at most;
// it is half of those above the seeded children when that is less (with
// the national set of 250,000 children, about 330,000: some 16 fifteen-
// second mixed bench runs, of about 20,000 new children each, before
// uploads come round to the same children).
const uploadBand = 1_000_000

// EncounterJSON returns the CPIS-Encounter of the attendance.
func (g *Generator) EncounterJSON(a Attendance) []byte { return encode(g.encounterOf(&a)) }

// encounterOf is the CPIS-Encounter of a: the subject by NHS number (the
// site's system knows the child by it, not by a CP-IS id), the site by
// reference and ODS code.
func (g *Generator) encounterOf(a *Attendance) *encounter {
	set := a.Site.Setting
	return &encounter{
		ResourceType:    "Encounter",
		Meta:            g.profile("Encounter"),
		Status:          "finished",
		Class:           coding{System: systemActCode, Code: set.Class, Display: classDisplay[set.Class]},
		ServiceType:     codeableConcept{Coding: []coding{{System: systemSNOMED, Code: set.Code, Display: set.Display}}},
		Subject:         reference{Identifier: nhsIdentifier(a.NHSNumber)},
		Period:          period{Start: a.Start.Format(time.RFC3339), End: a.End.Format(time.RFC3339)},
		ServiceProvider: reference{Reference: "Organization/" + a.Site.ID, Identifier: odsIdentifier(a.Site.ODSCode), Display: a.Site.Name},
	}
}
