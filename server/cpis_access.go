package server

// The CP-IS access history and the national access-history API (DOMAIN.md
// rules 2, 3 and 4; NHS England's CP-IS API guide, GET AuditEvent;
// https://hl7.org/fhir/R4/auditevent.html; README "CP-IS workflow"):
//
//   - Every read by a clinician in an unscheduled-care setting
//     (IsUnscheduledAccessEvent true or missing) that gives it CP-IS
//     records (Flag, CarePlan, CareTeam, a council's Patient): a lookup,
//     another search naming the child, a read by id, a vread, an instance
//     history, the GET entries of a Bundle. It writes one access
//     AuditEvent per child and council whose records it saw: the national
//     shape (type iso-21089-lifecycle access, the child as agent PAT by NHS
//     number, the viewer as agent ASSIGNED, a PractitionerRole made from
//     the token: user id, SDS job role, organisation), the records seen as
//     entities, and meta.tag the council's ODS code (so the council reads
//     it) and listed or repeat (the first look by that person at those
//     records in 24 hours, or a later one; a record is a council's plan,
//     whichever of its Flag, CarePlan and CareTeam was read).
//   - The request's read-trail record keeps what they are made of; the
//     access queue (cpis_access_queue.go) writes them after the answer,
//     with the lookup's notifications (notifyContact, the care
//     organisation being the viewer's), many lookups to a commit. A
//     lookup that finds a record pays no store write of its own.
//   - GET AuditEvent?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|X
//     by a clinician or a council answers the 25 newest listed accesses,
//     newest first, each with its viewer's PractitionerRole (search.mode
//     include), whether or not the request asks for the _include.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/access"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// The tags of access AuditEvents.
const (
	// AccessTagSystem is the meta.tag system that tells the first look by
	// a person at a child's records in 24 hours (code listed, the ones the
	// national API lists) from later looks (code repeat).
	AccessTagSystem = "https://fhir.cpis-fhir.org/CodeSystem/cpis-access-history"
	accessListed    = "listed"
	accessRepeat    = "repeat"
	// maxAccessHistory is how many accesses the national API lists.
	maxAccessHistory = 25

	sdsUserSystem    = "https://fhir.nhs.uk/Id/sds-user-id"
	sdsJobRoleSystem = "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode"
	roleClassSystem  = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
)

// accessRead is what an unscheduled clinician's request read of CP-IS
// records: what its access history entries and notifications are made of.
// The request collects the children, councils and records
// (collectAccess), which its read-trail record keeps (accessIntent); the
// access queue completes the rest (completeAccess) and writes them
// (cpis_access_queue.go).
type accessRead struct {
	viewer   string // the principal's subject (user id)
	sdsRole  string // the viewer's SDS job role
	site     string // the viewer's organisation's ODS code
	at       time.Time
	children []*childAccess
	// Completed by completeAccess.
	siteName string
	roleRef  string         // PractitionerRole/id of the viewer
	role     *fhir.Resource // the viewer's PractitionerRole, to put when missing
}

// childAccess is what a request read of one child's records: one group
// per council.
type childAccess struct {
	nhs    string
	groups []*accessGroup
	byODS  map[string]*accessGroup
}

// accessGroup is one council's records of a child seen by a request,
// with the id of its AuditEvent and (completed) its two versions (first
// look, and a look again within 24 hours): the writer puts one.
type accessGroup struct {
	ods            string
	id             string
	records        []seenRecord
	listed, repeat *fhir.Resource
}

// seenRecord is a CP-IS record a clinician was given, as the access
// history keeps it.
type seenRecord struct {
	ref  string // Type/id
	plan string // the plan type (SNOMED CT code); "" for a Patient
}

// seenRecords is what one read (a search, a read by id, a Bundle entry)
// gave a clinician: resources, and the child's NHS number when the read
// named it (a lookup); "" when each record's subject tells.
type seenRecords struct {
	nhs     string
	records []*fhir.Resource
}

// unscheduledViewer returns the principal of c when the CP-IS records it
// reads enter the access history (DOMAIN.md rule 3): a clinician in an
// unscheduled-care setting whose request does not say
// IsUnscheduledAccessEvent: false. A clinician in a scheduled setting
// (GP in hours, 0-19 services) reads silently whatever the header says.
func unscheduledViewer(c *gin.Context) *smart.Principal {
	p := principalOf(c.Request.Context())
	if p == nil || p.Role != smart.RoleClinicianUnscheduled {
		return nil
	}
	if u, _ := unscheduledHeader(c); !u {
		return nil // a scheduled (silent) read: security audit only
	}
	return p
}

// noteAccess prepares the access history of what the request c read
// (seen), when it is an unscheduled clinician's and read CP-IS records
// (Flag, CarePlan, CareTeam, a council's Patient): the request's audit
// record is then written with it (auditRequest), or, without an audit
// trail, it is written here. A read of no record returns at once.
func (s *Server) noteAccess(c *gin.Context, seen ...seenRecords) error {
	n := 0
	for _, sr := range seen {
		n += len(sr.records)
	}
	if n == 0 {
		return nil
	}
	p := unscheduledViewer(c)
	if p == nil {
		return nil
	}
	ctx := c.Request.Context()
	a := s.collectAccess(ctx, p, seen)
	if a == nil {
		return nil
	}
	if ev := auditEventOf(ctx); ev != nil {
		ev.mu.Lock()
		if ev.access == nil {
			ev.access = a
		} else {
			ev.access.children = append(ev.access.children, a.children...)
		}
		ev.mu.Unlock()
		return nil
	}
	if err := s.completeAccess(ctx, a, newViewerCache()); err != nil {
		return err
	}
	return s.store.Write(context.WithoutCancel(ctx), func(tx fhir.Tx) error {
		_, err := s.writeAccess(tx, a)
		return err
	})
}

// viewerRoleID is the id of the PractitionerRole that stands for a
// principal in the access history: a UUID made from its user id, job
// role and organisation, so that each viewer has one.
func viewerRoleID(p *smart.Principal) string {
	h := sha256.Sum256([]byte("cpis-viewer\x00" + p.Subject + "\x00" + p.SDSRole + "\x00" + p.ODS))
	h[6] = h[6]&0x0f | 0x50 // version 5 (name-based, SHA)
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// collectAccess returns the children, councils and records p's reads
// seen gave, each group with a new AuditEvent id; nil when they gave no
// CP-IS record.
func (s *Server) collectAccess(ctx context.Context, p *smart.Principal, seen []seenRecords) *accessRead {
	a := &accessRead{viewer: p.Subject, sdsRole: p.SDSRole, site: p.ODS, at: s.cfg.Now()}
	byChild := map[string]*childAccess{}
	patients := map[string]string{} // Patient/id -> NHS number
	for _, sr := range seen {
		for _, r := range sr.records {
			rec, ok := recordOf(r)
			if !ok {
				continue
			}
			nhs := sr.nhs
			if nhs == "" {
				nhs = s.childOf(ctx, rec, patients)
			}
			if nhs == "" {
				continue // no NHS number to file the access under
			}
			ch := byChild[nhs]
			if ch == nil {
				ch = &childAccess{nhs: nhs, byODS: map[string]*accessGroup{}}
				byChild[nhs] = ch
				a.children = append(a.children, ch)
			}
			ch.add(rec.ods, seenRecord{ref: r.Ref(), plan: rec.plan})
		}
	}
	if len(a.children) == 0 {
		return nil
	}
	return a
}

// viewerCache keeps, for the accesses one batch completes, the names of
// care organisations and the viewers' PractitionerRoles found missing.
type viewerCache struct {
	siteNames map[string]string
	roles     map[string]*fhir.Resource // id -> the role to put; nil when stored
}

func newViewerCache() *viewerCache {
	return &viewerCache{siteNames: map[string]string{}, roles: map[string]*fhir.Resource{}}
}

// completeAccess finds what the access history of a names besides what
// the request saw (the care organisation's name, the viewer's
// PractitionerRole) and builds its AuditEvents. vc keeps what it finds
// for the next.
func (s *Server) completeAccess(ctx context.Context, a *accessRead, vc *viewerCache) error {
	if name, ok := vc.siteNames[a.site]; ok {
		a.siteName = name
	} else if a.site != "" {
		rs, err := s.store.Search(ctx, &fhir.Search{Type: "Organization", Count: 1, Total: fhir.TotalNone, Filters: []fhir.Filter{s.odsFilter(a.site)}}, nil, false)
		if err != nil {
			return err
		}
		if len(rs.Matches) == 1 {
			var o struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(rs.Matches[0].JSON, &o) == nil {
				a.siteName = o.Name
			}
		}
		vc.siteNames[a.site] = a.siteName
	}
	p := &smart.Principal{Subject: a.viewer, SDSRole: a.sdsRole, ODS: a.site}
	id := viewerRoleID(p)
	a.roleRef = "PractitionerRole/" + id
	if role, ok := vc.roles[id]; ok {
		a.role = role
	} else {
		if _, err := s.store.Read(ctx, "PractitionerRole", id); fhir.IsNotFound(err) {
			if a.role, err = s.viewerRole(id, p, a.siteName); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		vc.roles[id] = a.role
	}
	for _, ch := range a.children {
		for _, g := range ch.groups {
			var err error
			if g.listed, g.repeat, err = s.accessEvents(a, ch.nhs, g); err != nil {
				return err
			}
		}
	}
	return nil
}

// add files the record rec of the council ods, once.
func (ch *childAccess) add(ods string, rec seenRecord) {
	g := ch.byODS[ods]
	if g == nil {
		g = &accessGroup{ods: ods, id: fhir.NewID()}
		ch.byODS[ods] = g
		ch.groups = append(ch.groups, g)
	}
	for _, x := range g.records {
		if x.ref == rec.ref {
			return
		}
	}
	g.records = append(g.records, rec)
}

// cpisRecord is what the access history reads of a CP-IS record.
type cpisRecord struct {
	ods     string  // the council that owns it
	plan    string  // the plan type; "" for a Patient
	nhs     string  // the child's NHS number, when the record gives it
	subject jsonRef // the child, for a record that does not give it
}

// recordOf reads r as a CP-IS record: a Flag, CarePlan or CareTeam (its
// council is the Flag's and CarePlan's author, the CareTeam's
// managingOrganization), or a Patient that a council manages. ok is false
// for anything else (another type, a deleted version, a Patient no
// council manages).
func recordOf(r *fhir.Resource) (rec cpisRecord, ok bool) {
	if r == nil || r.Deleted() {
		return rec, false
	}
	switch r.Type {
	case "Patient":
		var pt struct {
			patientRecord
			ManagingOrganization *jsonRef `json:"managingOrganization"`
		}
		if json.Unmarshal(r.JSON, &pt) != nil {
			return rec, false
		}
		rec.ods, rec.nhs = pt.ManagingOrganization.identifier(odsSystem), pt.nhs()
		return rec, rec.ods != ""
	case "Flag", "CarePlan", "CareTeam":
		var x struct {
			Author               *jsonRef      `json:"author"`
			ManagingOrganization []jsonRef     `json:"managingOrganization"`
			Subject              jsonRef       `json:"subject"`
			Category             []jsonConcept `json:"category"`
		}
		if json.Unmarshal(r.JSON, &x) != nil {
			return rec, false
		}
		rec.ods = x.Author.identifier(odsSystem)
		for i := range x.ManagingOrganization {
			if rec.ods == "" {
				rec.ods = x.ManagingOrganization[i].identifier(odsSystem)
			}
		}
		rec.plan = (&flagRecord{Category: x.Category}).plan()
		rec.nhs, rec.subject = x.Subject.identifier(nhsNumberSystem), x.Subject
		return rec, true
	}
	return rec, false
}

// childOf returns the NHS number of the child a record is about: its
// own, or that of the Patient its subject names (read once per request,
// kept in patients); "" when there is none.
func (s *Server) childOf(ctx context.Context, rec cpisRecord, patients map[string]string) string {
	if rec.nhs != "" {
		return rec.nhs
	}
	ref := rec.subject.Reference
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ != "Patient" || !fhir.ValidID(id) {
		return ""
	}
	if nhs, ok := patients[ref]; ok {
		return nhs
	}
	nhs := ""
	if r, err := s.store.Read(ctx, typ, id); err == nil && !r.Deleted() {
		var pt patientRecord
		if json.Unmarshal(r.JSON, &pt) == nil {
			nhs = pt.nhs()
		}
	}
	patients[ref] = nhs
	return nhs
}

func (s *Server) odsFilter(ods string) fhir.Filter {
	sp, _ := s.registry.Lookup("Organization", "identifier")
	return fhir.Filter{Param: sp, Values: []fhir.Value{{System: odsSystem, HasSystem: true, Code: ods}}}
}

// viewerRole is the PractitionerRole of a viewer, in the national
// example's shape: the user (SDS user id), the organisation (ODS code and
// name), the SDS job role.
func (s *Server) viewerRole(id string, p *smart.Principal, orgName string) (*fhir.Resource, error) {
	type ident struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type ref struct {
		Display    string `json:"display"`
		Identifier ident  `json:"identifier"`
	}
	if orgName == "" {
		orgName = p.ODS
	}
	pr := map[string]any{
		"resourceType": "PractitionerRole",
		"identifier":   []ident{{PrincipalSystem, p.Subject}},
		"practitioner": ref{"SDS user " + p.Subject, ident{sdsUserSystem, p.Subject}},
		"organization": ref{orgName, ident{odsSystem, p.ODS}},
	}
	if p.SDSRole != "" {
		pr["code"] = []jsonConcept{{Coding: []jsonCoding{{Code: p.SDSRole, Display: p.SDSRole, System: sdsJobRoleSystem}}}}
	}
	return s.stampNew("PractitionerRole", id, pr)
}

// stampNew returns the first version of the resource v, with id. v is
// built by this file in canonical form: maps, and structs whose fields are
// in the alphabetical order of their JSON names, with string and boolean
// values only; so encoding it with sorted map keys and no HTML escaping is
// the codec's canonical JSON, without the codec's parse (about 0.4 ms for
// an AuditEvent here). TestAccess_CanonicalAsCodec holds the two equal.
func (s *Server) stampNew(typ, id string, v map[string]any) (*fhir.Resource, error) {
	now := s.cfg.Now()
	meta, _ := v["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = "1"
	meta["lastUpdated"] = fhir.FormatInstant(now)
	v["meta"], v["id"] = meta, id
	b, err := canonicalJSON(v)
	if err != nil {
		return nil, err
	}
	idx, err := s.svc.Indexer.Index(typ, b)
	if err != nil {
		return nil, fmt.Errorf("access history: %s: %w", typ, err)
	}
	return &fhir.Resource{Type: typ, ID: id, VersionID: 1, LastUpdated: now, Method: fhir.MethodCreate, JSON: b, Index: idx}, nil
}

// canonicalJSON encodes v compactly, map keys sorted, without escaping
// HTML characters (as the codec writes them).
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// accessEvents returns the two versions of the AuditEvent of group g of
// the child nhs, which differ by their listed/repeat tag only. Each
// record seen is an entity, with its plan type as a detail (so that a
// later look at another resource of the same plan is known as a repeat).
func (s *Server) accessEvents(a *accessRead, nhs string, g *accessGroup) (listed, repeat *fhir.Resource, err error) {
	// Fields in the alphabetical order of their names (see stampNew).
	type coding struct {
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
		System  string `json:"system"`
	}
	type concept struct {
		Coding []coding `json:"coding"`
	}
	type ident struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type ref struct {
		Identifier *ident `json:"identifier,omitempty"`
		Reference  string `json:"reference,omitempty"`
		Type       string `json:"type,omitempty"`
	}
	type agent struct {
		AltID     string  `json:"altId,omitempty"`
		Requestor bool    `json:"requestor"`
		Type      concept `json:"type"`
		Who       ref     `json:"who"`
	}
	type detail struct {
		Type        string `json:"type"`
		ValueString string `json:"valueString"`
	}
	type entity struct {
		Detail []detail `json:"detail,omitempty"`
		What   ref      `json:"what"`
	}
	tags := []coding{{System: AccessTagSystem, Code: accessListed, Display: accessTagDisplay}}
	if g.ods != "" {
		tags = append(tags, coding{System: odsSystem, Code: g.ods})
	}
	ents := []entity{{What: ref{Type: "Patient", Identifier: &ident{nhsNumberSystem, nhs}}}}
	for _, r := range g.records {
		e := entity{What: ref{Reference: r.ref}}
		if r.plan != "" {
			e.Detail = []detail{{Type: planDetail, ValueString: r.plan}}
		}
		ents = append(ents, e)
	}
	ae := map[string]any{
		"resourceType": "AuditEvent",
		"meta":         map[string]any{"tag": tags},
		"type":         coding{Code: access.AccessEventCode, Display: "Access/View Record Lifecycle Event", System: access.AccessEventSystem},
		"action":       "R",
		"recorded":     fhir.FormatInstant(a.at),
		"outcome":      "0",
		"agent": []agent{
			{Type: concept{[]coding{{"PAT", "patient", roleClassSystem}}}, Who: ref{Identifier: &ident{nhsNumberSystem, nhs}}},
			{Type: concept{[]coding{{"ASSIGNED", "assigned entity", roleClassSystem}}}, Who: ref{Reference: a.roleRef}, AltID: a.viewer, Requestor: true},
		},
		"source": map[string]any{"site": "cpis", "observer": ref{Reference: a.roleRef}},
		"entity": ents,
	}
	id := g.id
	if listed, err = s.stampNew("AuditEvent", id, ae); err != nil {
		return nil, nil, err
	}
	if repeat = repeatOf(listed); repeat == nil {
		tags[0].Code = accessRepeat
		if repeat, err = s.stampNew("AuditEvent", id, ae); err != nil {
			return nil, nil, err
		}
	}
	return listed, repeat, nil
}

// planDetail is the AuditEvent.entity.detail type that carries the plan
// type (SNOMED CT code) of a record seen.
const planDetail = "cpis-plan-type"

// accessTagDisplay is the display of both access-history tags, so that
// they differ by their code alone.
const accessTagDisplay = "CP-IS access history"

// repeatOf returns the repeat version of the listed AuditEvent r without
// a second parse: its canonical JSON and index rows with the tag's code
// changed (the codes have the same length). nil if the tag is not found
// as expected.
func repeatOf(r *fhir.Resource) *fhir.Resource {
	from := []byte(`{"code":"` + accessListed + `","display":"` + accessTagDisplay + `","system":"` + AccessTagSystem + `"}`)
	to := []byte(`{"code":"` + accessRepeat + `","display":"` + accessTagDisplay + `","system":"` + AccessTagSystem + `"}`)
	if bytes.Count(r.JSON, from) != 1 || r.Index == nil {
		return nil
	}
	out := *r
	out.JSON = bytes.Replace(r.JSON, from, to, 1)
	idx := *r.Index
	idx.Tokens = append([]fhir.IndexToken(nil), r.Index.Tokens...)
	n := 0
	for i, t := range idx.Tokens {
		if t.Param == "_tag" && t.System == AccessTagSystem && t.Code == accessListed {
			idx.Tokens[i].Code = accessRepeat
			n++
		}
	}
	if n != 1 {
		return nil
	}
	out.Index = &idx
	return &out
}

// writeAccess writes, inside tx (the service's own transaction), the
// access history entries of a (the listed or the repeat version of each,
// by the viewer's looks at the same records in the 24 hours before), the
// viewer's PractitionerRole when it is new, and the notifications the
// read is due. It returns the versions written ("Type/id/_history/n
// METHOD", for the audit record).
func (s *Server) writeAccess(tx fhir.Tx, a *accessRead) ([]string, error) {
	at := &auditTx{Tx: tx, ev: &auditEvent{}}
	stx := &serviceTx{Tx: tx, audit: at}
	if a.role != nil {
		if _, err := tx.Read("PractitionerRole", a.role.ID); fhir.IsNotFound(err) {
			if err := stx.Put(a.role); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
	}
	for _, ch := range a.children {
		if err := s.writeChildAccess(stx, a, ch); err != nil {
			return nil, err
		}
	}
	return at.written, nil
}

// writeChildAccess writes the entries of one child's records, each
// listed unless the viewer saw all its records in the 24 hours before,
// and the notifications of that contact with the child.
func (s *Server) writeChildAccess(stx *serviceTx, a *accessRead, ch *childAccess) error {
	seen, err := s.seenSince(stx, ch.nhs, a.viewer, a.at.Add(-notifyWindow))
	if err != nil {
		return err
	}
	triggers := map[string]string{}
	for _, g := range ch.groups {
		r := g.repeat
		for _, rec := range g.records {
			if !seen.has(g.ods, rec) {
				r = g.listed
			}
		}
		for _, rec := range g.records {
			seen.add(g.ods, rec)
		}
		if err := stx.Put(r); err != nil {
			return err
		}
		triggers[g.ods] = r.Ref()
	}
	k := contact{Child: s.contactChild(stx, &jsonRef{Identifier: &struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	}{nhsNumberSystem, ch.nhs}}), NHS: ch.nhs, SiteODS: a.site, SiteName: a.siteName, At: a.at, Lookup: true, Triggers: triggers}
	_, _, err = s.notifyContact(stx, k)
	return err
}

// seenSet is what a viewer saw of a child's records: the records
// (Type/id), each council's plans ("ODS|plan") and the councils one of
// whose plans was seen ("ODS|*"). A record counts as seen when it, or
// another resource of the same plan of the same council, was; a council's
// Patient when one of that council's plans was.
type seenSet map[string]bool

func (ss seenSet) has(ods string, r seenRecord) bool {
	if ss[r.ref] {
		return true
	}
	if r.plan != "" {
		return ss[ods+"|"+r.plan]
	}
	return strings.HasPrefix(r.ref, "Patient/") && ss[ods+"|*"]
}

func (ss seenSet) add(ods string, r seenRecord) {
	ss[r.ref] = true
	if r.plan != "" {
		ss[ods+"|"+r.plan] = true
		ss[ods+"|*"] = true
	}
}

// seenSince returns what viewer looked at of the child nhs at or after
// since, by the listed entries of the access history: a look is listed
// when it is the first in 24 hours since the last listed one, so that a
// person who looks every 23 hours is listed once a day.
func (s *Server) seenSince(tx fhir.Tx, nhs, viewer string, since time.Time) (seenSet, error) {
	seen := seenSet{}
	err := s.eachMatch(tx, "AuditEvent", url.Values{
		"patient:identifier": {nhsNumberSystem + "|" + nhs},
		"type":               {access.AccessEventSystem + "|" + access.AccessEventCode},
		"date":               {"ge" + fhir.FormatInstant(since)},
		"_tag":               {AccessTagSystem + "|" + accessListed},
		"_count":             {"100"},
	}, func(r *fhir.Resource) bool {
		var ae struct {
			Meta struct {
				Tag []jsonCoding `json:"tag"`
			} `json:"meta"`
			Agent []struct {
				AltID     string `json:"altId"`
				Requestor bool   `json:"requestor"`
			} `json:"agent"`
			Entity []struct {
				What   jsonRef `json:"what"`
				Detail []struct {
					Type        string `json:"type"`
					ValueString string `json:"valueString"`
				} `json:"detail"`
			} `json:"entity"`
		}
		if json.Unmarshal(r.JSON, &ae) != nil {
			return true
		}
		mine := false
		for _, ag := range ae.Agent {
			mine = mine || (ag.Requestor && ag.AltID == viewer)
		}
		if !mine {
			return true
		}
		ods := ""
		for _, t := range ae.Meta.Tag {
			if t.System == odsSystem {
				ods = t.Code
			}
		}
		for _, e := range ae.Entity {
			if e.What.Reference == "" {
				continue
			}
			rec := seenRecord{ref: e.What.Reference}
			for _, d := range e.Detail {
				if d.Type == planDetail {
					rec.plan = d.ValueString
				}
			}
			seen.add(ods, rec)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return seen, nil
}

// accessHistoryParams turns a clinician's or a council's
// AuditEvent?patient:identifier= search into the national access-history
// search: the listed accesses only, newest first, at most 25 a page, with
// the viewers' PractitionerRoles. Other AuditEvent searches are left as
// they are (the policy narrows them).
func accessHistoryParams(p *smart.Principal, params url.Values) url.Values {
	if p == nil || p.Role == smart.RoleAdmin || len(params["patient:identifier"]) == 0 {
		return params
	}
	out := url.Values{}
	for k, vs := range params {
		if k == "_include" {
			continue // the national call's AuditEvent:entity-type=... include: always included
		}
		out[k] = vs
	}
	out.Set("_tag", AccessTagSystem+"|"+accessListed)
	out.Set("_sort", "-date")
	if n, err := strconv.Atoi(out.Get("_count")); err != nil || n > maxAccessHistory || n < 0 {
		out.Set("_count", strconv.Itoa(maxAccessHistory))
	}
	out.Set("_include", "AuditEvent:agent:PractitionerRole")
	return out
}

// countedRecords returns page, or, when it is a count alone (_summary=count,
// _count=0) that says the search q of the unscheduled viewer p (nil for
// another principal) matched something, the first page of what it
// counted: telling that a child has records is an access as showing them
// is. It costs a second search in that case only.
func (s *Server) countedRecords(ctx context.Context, p *smart.Principal, q *fhir.Search, page *fhir.SearchPage) (*fhir.SearchPage, error) {
	if p == nil || len(page.Matches) > 0 || page.Total <= 0 {
		return page, nil
	}
	all := *q
	all.Count, all.Total = maxCountedRecords, fhir.TotalNone
	return s.policy.Store(s.store, p).Search(ctx, &all, nil, false)
}

// maxCountedRecords bounds the records a count lists in the access history.
const maxCountedRecords = 100

// seenIn is what a search gave: its matches and includes, about the child
// the lookup lk named (nil when the search is not a lookup).
func seenIn(lk *lookup, page *fhir.SearchPage) seenRecords {
	sr := seenRecords{records: page.Matches}
	if len(page.Included) > 0 {
		sr.records = append(append([]*fhir.Resource(nil), page.Matches...), page.Included...)
	}
	if lk != nil {
		sr.nhs = lk.nhs
	}
	return sr
}
