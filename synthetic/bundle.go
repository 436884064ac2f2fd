package synthetic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
)

// bundle is a transaction Bundle to send.
// See https://hl7.org/fhir/R4/bundle.html and
// https://hl7.org/fhir/R4/http.html#transaction.
type bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Entry        []bundleEntry `json:"entry"`
}

type bundleEntry struct {
	FullURL  string        `json:"fullUrl,omitempty"`
	Resource any           `json:"resource"`
	Request  bundleRequest `json:"request"`
}

type bundleRequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	IfNoneExist string `json:"ifNoneExist,omitempty"`
}

// encode marshals v as compact JSON without HTML escaping.
func encode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only the package's own types are encoded: they always marshal.
		panic(fmt.Sprintf("synthetic: encode: %v", err))
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// SetupBundle returns the transaction Bundle that writes the councils and
// sites as Organizations and the councils' social workers as
// PractitionerRoles, each by PUT under its fixed id (so that sending it
// again changes nothing but versions). It has Councils + social workers +
// Sites entries (1,656 for the national set).
func (g *Generator) SetupBundle() []byte {
	b := bundle{ResourceType: "Bundle", Type: "transaction"}
	put := func(typ, id string, res any) {
		b.Entry = append(b.Entry, bundleEntry{Resource: res, Request: bundleRequest{Method: "PUT", URL: typ + "/" + id}})
	}
	for i := range g.councils {
		c := &g.councils[i]
		put("Organization", c.ID, g.councilOrganization(c))
		for k := 0; k < c.SocialWorkers; k++ {
			put("PractitionerRole", c.SocialWorkerRoleID(k), g.socialWorkerRole(c, k))
		}
	}
	for i := range g.sites {
		put("Organization", g.sites[i].ID, g.siteOrganization(&g.sites[i]))
	}
	return encode(b)
}

// SetupEntries returns the number of entries of SetupBundle.
func (g *Generator) SetupEntries() int {
	n := len(g.sites)
	for _, c := range g.councils {
		n += 1 + c.SocialWorkers
	}
	return n
}

// Item is one record of an upload: record Record of subject Subject.
type Item struct {
	Subject int32
	Record  int8
}

// Upload is one council upload: a transaction Bundle of up to
// ChildrenPerBundle records, each a Patient (conditional create on the NHS
// number), a Flag, a CarePlan and a CareTeam.
type Upload struct {
	// Council is the council sending it (the author of its records).
	Council int
	Items   []Item
}

// Entries returns the number of entries of the upload's Bundle.
func (u *Upload) Entries() int { return 4 * len(u.Items) }

// Uploads returns the uploads of the seeded set: each council's records in
// subject order, cut into Bundles of ChildrenPerBundle, the councils taking
// turns (a child with records from two councils is in two councils'
// uploads, and its Patient is created once). It generates every subject.
func (g *Generator) Uploads() []Upload {
	per := make([][]Item, len(g.councils))
	for i := 0; i < g.cfg.Children; i++ {
		s := g.Subject(i)
		for k, r := range s.Records {
			per[r.Council] = append(per[r.Council], Item{Subject: int32(i), Record: int8(k)})
		}
	}
	var out []Upload
	size := g.cfg.ChildrenPerBundle
	for round := 0; ; round++ {
		more := false
		for c, items := range per {
			lo := round * size
			if lo >= len(items) {
				continue
			}
			more = true
			out = append(out, Upload{Council: c, Items: items[lo:min(lo+size, len(items))]})
		}
		if !more {
			return out
		}
	}
}

// NewChildrenUpload returns an upload of the first records of n subjects
// from subject from on: with from at or beyond Children, children the
// seeded set does not hold (each record by its own council).
func (g *Generator) NewChildrenUpload(from, n int) Upload {
	u := Upload{Council: -1, Items: make([]Item, n)}
	for k := range n {
		u.Items[k] = Item{Subject: int32(from + k)}
	}
	return u
}

// UploadBundle returns the transaction Bundle of the upload. Within it,
// entry 4j is subject j's Patient (POST with ifNoneExist on the NHS number),
// then its Flag (flag-detail pointing at the CarePlan), CarePlan (pointing
// at the CareTeam) and CareTeam, all referencing each other by urn:uuid.
func (g *Generator) UploadBundle(u Upload) []byte {
	b := bundle{ResourceType: "Bundle", Type: "transaction", Entry: make([]bundleEntry, 0, 4*len(u.Items))}
	for j, it := range u.Items {
		s := g.Subject(int(it.Subject))
		rec := &s.Records[it.Record]
		c := &g.councils[rec.Council]
		urn := func(k int) string { return fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", 4*j+k) }
		p, f, cp, ct := urn(0), urn(1), urn(2), urn(3)
		b.Entry = append(b.Entry,
			bundleEntry{FullURL: p, Resource: g.patientOf(&s), Request: bundleRequest{Method: "POST", URL: "Patient",
				IfNoneExist: "identifier=" + url.QueryEscape(SystemNHSNumber+"|"+s.NHSNumber)}},
			bundleEntry{FullURL: f, Resource: g.flagOf(&s, rec, c, p, cp), Request: bundleRequest{Method: "POST", URL: "Flag"}},
			bundleEntry{FullURL: cp, Resource: g.carePlanOf(&s, rec, c, p, ct), Request: bundleRequest{Method: "POST", URL: "CarePlan"}},
			bundleEntry{FullURL: ct, Resource: g.careTeamOf(&s, rec, c, p), Request: bundleRequest{Method: "POST", URL: "CareTeam"}},
		)
	}
	return encode(b)
}

// AttendanceBundle returns a transaction Bundle that POSTs attendances
// from to from+n-1 as Encounters.
func (g *Generator) AttendanceBundle(from, n int) []byte {
	b := bundle{ResourceType: "Bundle", Type: "transaction", Entry: make([]bundleEntry, n)}
	for k := range n {
		a := g.Attendance(from + k)
		b.Entry[k] = bundleEntry{Resource: g.encounterOf(&a), Request: bundleRequest{Method: "POST", URL: "Encounter"}}
	}
	return encode(b)
}
