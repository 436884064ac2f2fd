package synthetic

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// maxSites is the most unscheduled-care sites the ODS-style codes cover.
const maxSites = 2500

// Council is a local authority with children's services.
type Council struct {
	Index int
	// ID is the Organization's id, "la-" and the ODS code.
	ID string
	// ODSCode is an ODS-style code in the ranges of English councils
	// (E06 unitary, E08 metropolitan, E09 London, E10 county), numbered from
	// 901 so that no code is a real council's.
	ODSCode string
	Name    string
	// OfficeHours and EmergencyDuty are the phone numbers of the
	// children's social care team in and out of office hours (Ofcom's
	// ranges for drama, never allocated).
	OfficeHours, EmergencyDuty string
	// SocialWorkers is the number of social-worker PractitionerRoles the
	// council registers (1 to 3).
	SocialWorkers int
	weight        float64
}

// TeamName is the name of the council's children's social care team.
func (c *Council) TeamName() string { return c.Name + " Children's Social Care" }

// councilSeries are the series of council codes, their count and the shape
// of their names. The counts add up to 152.
var councilSeries = []struct {
	prefix string
	n      int
	name   string // %s is the place
	scale  float64
}{
	{"E06", 59, "%s Council", 1},
	{"E08", 36, "%s Metropolitan Borough Council", 1.6},
	{"E09", 33, "London Borough of %s", 0.8},
	{"E10", 24, "%sshire County Council", 3.2},
}

// makeCouncils makes the councils. They do not depend on the seed: they
// stand for England's councils, which every data set shares.
func (g *Generator) makeCouncils() {
	r := rand.New(rand.NewPCG(streamCouncil, 0))
	places := make([]string, 0, len(placeHeads)*len(placeTails))
	for _, h := range placeHeads {
		for _, t := range placeTails {
			places = append(places, h+t)
		}
	}
	r.Shuffle(len(places), func(i, j int) { places[i], places[j] = places[j], places[i] })
	i := 0
	for _, s := range councilSeries {
		for k := 0; k < s.n && i < g.cfg.Councils; k++ {
			c := Council{
				Index:         i,
				ODSCode:       fmt.Sprintf("%s000%d", s.prefix, 901+k),
				Name:          fmt.Sprintf(s.name, places[i]),
				OfficeHours:   "01632 960" + itoa3(i+1),
				EmergencyDuty: "07700 900" + itoa3(i+1),
				SocialWorkers: 1 + i%3,
				weight:        s.scale * math.Exp(0.5*r.NormFloat64()),
			}
			c.ID = "la-" + c.ODSCode
			g.councils = append(g.councils, c)
			i++
		}
	}
	g.cumCouncil = make([]float64, len(g.councils))
	sum := 0.0
	for i, c := range g.councils {
		sum += c.weight
		g.cumCouncil[i] = sum
	}
}

// Councils returns the councils, in index order. The slice must not be
// changed.
func (g *Generator) Councils() []Council { return g.councils }

// SocialWorkerRoleID returns the id of the k-th social-worker
// PractitionerRole of council c.
func (c *Council) SocialWorkerRoleID(k int) string { return fmt.Sprintf("sw-%s-%d", c.ODSCode, k+1) }

// CareSetting is the kind of an unscheduled-care site: a care setting type
// (UK Core CareSettingType, SNOMED CT) and the Encounter class of its
// attendances (v3 ActCode).
type CareSetting struct {
	Code, Display string
	Class         string // EMER, AMB, ACUTE or FLD
	Label         string // the site's name ends with it
	share         float64
	busy          float64 // attendances per site, relative
}

// CareSettings are the unscheduled settings CP-IS serves (DOMAIN.md), with
// their share of the sites.
var CareSettings = []CareSetting{
	{"310000008", "Accident and Emergency service", "EMER", "Hospital Emergency Department", 0.15, 10},
	{"3751000175100", "Paediatric emergency medical service", "EMER", "Paediatric Emergency Department", 0.03, 6},
	{"409971007", "Emergency medicine service", "EMER", "Urgent Treatment Centre", 0.35, 2},
	{"829961000000104", "Out of hours service", "AMB", "Out of Hours GP Service", 0.20, 1},
	{"310066004", "Paediatric service", "ACUTE", "Paediatric Ward", 0.10, 1},
	{"714088003", "Midwifery service", "AMB", "Maternity Unit", 0.12, 1},
	{"792847005", "Emergency ambulance service", "FLD", "Ambulance Service", 0.05, 1.5},
}

// classDisplay is the display of a v3 ActCode Encounter class.
var classDisplay = map[string]string{"EMER": "emergency", "AMB": "ambulatory", "ACUTE": "inpatient acute", "FLD": "field"}

// Site is an unscheduled-care site.
type Site struct {
	Index int
	// ID is the Organization's id, "site-" and the ODS code.
	ID string
	// ODSCode is an ODS-style site code: "R9", a letter and two digits.
	ODSCode string
	Name    string
	Setting *CareSetting
	weight  float64
}

// makeSites makes the sites, which do not depend on the seed either.
func (g *Generator) makeSites() {
	r := rand.New(rand.NewPCG(streamSite, 0))
	g.sites = make([]Site, g.cfg.Sites)
	g.cumSite = make([]float64, g.cfg.Sites)
	sum := 0.0
	for i := range g.sites {
		u := r.Float64()
		set := &CareSettings[len(CareSettings)-1]
		for k := range CareSettings {
			if u < CareSettings[k].share {
				set = &CareSettings[k]
				break
			}
			u -= CareSettings[k].share
		}
		code := fmt.Sprintf("R9%c%02d", 'A'+i/99, i%99+1)
		place := placeHeads[r.IntN(len(placeHeads))] + placeTails[r.IntN(len(placeTails))]
		g.sites[i] = Site{Index: i, ID: "site-" + code, ODSCode: code, Name: place + " " + set.Label, Setting: set,
			weight: set.busy * math.Exp(0.4*r.NormFloat64())}
		sum += g.sites[i].weight
		g.cumSite[i] = sum
	}
}

// Sites returns the sites, in index order. The slice must not be changed.
func (g *Generator) Sites() []Site { return g.sites }
