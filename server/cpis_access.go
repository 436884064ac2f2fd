package server

// The CP-IS access history and the national access-history API (DOMAIN.md
// rules 2, 3 and 4; NHS England's CP-IS API guide, GET AuditEvent;
// https://hl7.org/fhir/R4/auditevent.html; README "CP-IS workflow"):
//
//   - Every unscheduled CP-IS lookup of a child by a clinician
//     (IsUnscheduledAccessEvent true or missing) that finds a record writes
//     one access AuditEvent per council whose records it saw: the national
//     shape (type iso-21089-lifecycle access, the child as agent PAT by NHS
//     number, the viewer as agent ASSIGNED, a PractitionerRole made from
//     the token: user id, SDS job role, organisation), the records seen as
//     entities, and meta.tag the council's ODS code (so the council reads
//     it) and listed or repeat (the first look by that person at those
//     records in 24 hours, or a later one).
//   - They are written in the same store transaction as the request's
//     audit record and the lookup's notifications (notifyContact, the care
//     organisation being the viewer's), so a lookup that finds a record
//     pays one durable write and a lookup that finds none pays nothing
//     more than before.
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

// accessRead is an unscheduled lookup that found records: what its
// access history entries and notifications are made of, prepared before
// the store's writer runs them.
type accessRead struct {
	nhs      string
	viewer   string // the principal's subject (user id)
	site     string // the viewer's organisation's ODS code
	siteName string
	at       time.Time
	roleRef  string         // PractitionerRole/id of the viewer
	role     *fhir.Resource // the viewer's PractitionerRole, to put when missing
	groups   []*accessGroup
}

// accessGroup is one council's records seen by a lookup, with the two
// versions of its AuditEvent (first look, and a look again within 24
// hours): the writer puts one.
type accessGroup struct {
	ods            string
	records        []string
	listed, repeat *fhir.Resource
}

// noteAccess prepares the access history of the lookup lk that found page
// when it is an unscheduled clinician's: the request's audit record is
// then written with it (auditRequest), or, without an audit trail, it is
// written here. A lookup with no match returns at once.
func (s *Server) noteAccess(c *gin.Context, lk *lookup, page *fhir.SearchPage) error {
	if lk == nil || len(page.Matches) == 0 {
		return nil
	}
	p := principalOf(c.Request.Context())
	if p == nil || (p.Role != smart.RoleClinicianUnscheduled && p.Role != smart.RoleClinicianScheduled) {
		return nil
	}
	if u, _ := unscheduledHeader(c); !u {
		return nil // a scheduled (silent) read: security audit only
	}
	ctx := c.Request.Context()
	a, err := s.prepareAccess(ctx, p, lk.nhs, append(append([]*fhir.Resource(nil), page.Matches...), page.Included...))
	if err != nil || a == nil {
		return err
	}
	if ev := auditEventOf(ctx); ev != nil {
		ev.mu.Lock()
		ev.access = a
		ev.mu.Unlock()
		return nil
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

// prepareAccess builds the access AuditEvents of a lookup by p of the
// child nhs that returned rs (matches and includes): one per council
// whose CP-IS records it saw; nil when it saw none.
func (s *Server) prepareAccess(ctx context.Context, p *smart.Principal, nhs string, rs []*fhir.Resource) (*accessRead, error) {
	a := &accessRead{nhs: nhs, viewer: p.Subject, site: p.ODS, at: s.cfg.Now()}
	byODS := map[string]*accessGroup{}
	for _, r := range rs {
		if !lookupTypes[r.Type] {
			continue
		}
		ods := recordOwner(r)
		g := byODS[ods]
		if g == nil {
			g = &accessGroup{ods: ods}
			byODS[ods] = g
			a.groups = append(a.groups, g)
		}
		g.records = append(g.records, r.Ref())
	}
	if len(a.groups) == 0 {
		return nil, nil
	}
	if p.ODS != "" {
		rs, err := s.store.Search(ctx, &fhir.Search{Type: "Organization", Count: 1, Total: fhir.TotalNone, Filters: []fhir.Filter{s.odsFilter(p.ODS)}}, nil, false)
		if err != nil {
			return nil, err
		}
		if len(rs.Matches) == 1 {
			var o struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(rs.Matches[0].JSON, &o) == nil {
				a.siteName = o.Name
			}
		}
	}
	id := viewerRoleID(p)
	a.roleRef = "PractitionerRole/" + id
	if _, err := s.store.Read(ctx, "PractitionerRole", id); fhir.IsNotFound(err) {
		if a.role, err = s.viewerRole(id, p, a.siteName); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	for _, g := range a.groups {
		var err error
		if g.listed, g.repeat, err = s.accessEvents(a, g); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (s *Server) odsFilter(ods string) fhir.Filter {
	sp, _ := s.registry.Lookup("Organization", "identifier")
	return fhir.Filter{Param: sp, Values: []fhir.Value{{System: odsSystem, HasSystem: true, Code: ods}}}
}

// recordOwner is the ODS code of the council that owns a CP-IS record
// (Flag and CarePlan author, CareTeam managingOrganization).
func recordOwner(r *fhir.Resource) string {
	var rec struct {
		Author               *jsonRef  `json:"author"`
		ManagingOrganization []jsonRef `json:"managingOrganization"`
	}
	if json.Unmarshal(r.JSON, &rec) != nil {
		return ""
	}
	if ods := rec.Author.identifier(odsSystem); ods != "" {
		return ods
	}
	for i := range rec.ManagingOrganization {
		if ods := rec.ManagingOrganization[i].identifier(odsSystem); ods != "" {
			return ods
		}
	}
	return ""
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

// accessEvents returns the two versions of group g's AuditEvent, which
// differ by their listed/repeat tag only.
func (s *Server) accessEvents(a *accessRead, g *accessGroup) (listed, repeat *fhir.Resource, err error) {
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
	type entity struct {
		What ref `json:"what"`
	}
	tags := []coding{{System: AccessTagSystem, Code: accessListed, Display: accessTagDisplay}}
	if g.ods != "" {
		tags = append(tags, coding{System: odsSystem, Code: g.ods})
	}
	ents := []entity{{What: ref{Type: "Patient", Identifier: &ident{nhsNumberSystem, a.nhs}}}}
	for _, r := range g.records {
		ents = append(ents, entity{What: ref{Reference: r}})
	}
	ae := map[string]any{
		"resourceType": "AuditEvent",
		"meta":         map[string]any{"tag": tags},
		"type":         coding{Code: access.AccessEventCode, Display: "Access/View Record Lifecycle Event", System: access.AccessEventSystem},
		"action":       "R",
		"recorded":     fhir.FormatInstant(a.at),
		"outcome":      "0",
		"agent": []agent{
			{Type: concept{[]coding{{"PAT", "patient", roleClassSystem}}}, Who: ref{Identifier: &ident{nhsNumberSystem, a.nhs}}},
			{Type: concept{[]coding{{"ASSIGNED", "assigned entity", roleClassSystem}}}, Who: ref{Reference: a.roleRef}, AltID: a.viewer, Requestor: true},
		},
		"source": map[string]any{"site": "cpis", "observer": ref{Reference: a.roleRef}},
		"entity": ents,
	}
	id := fhir.NewID()
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
// lookup is due. It returns the versions written ("Type/id/_history/n
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
	seen, err := s.seenSince(tx, a.nhs, a.viewer, a.at.Add(-notifyWindow))
	if err != nil {
		return nil, err
	}
	triggers := map[string]string{}
	for _, g := range a.groups {
		r := g.repeat
		for _, rec := range g.records {
			if !seen[rec] {
				r = g.listed
			}
			seen[rec] = true
		}
		if err := stx.Put(r); err != nil {
			return nil, err
		}
		triggers[g.ods] = r.Ref()
	}
	k := contact{Child: s.contactChild(tx, &jsonRef{Identifier: &struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	}{nhsNumberSystem, a.nhs}}), NHS: a.nhs, SiteODS: a.site, SiteName: a.siteName, At: a.at, Lookup: true, Triggers: triggers}
	if _, _, err := s.notifyContact(stx, k); err != nil {
		return nil, err
	}
	return at.written, nil
}

// seenSince returns the records (Type/id) that viewer looked at about the
// child nhs at or after since, by the listed entries of the access
// history: a look is listed when it is the first in 24 hours since the
// last listed one, so that a person who looks every 23 hours is listed
// once a day.
func (s *Server) seenSince(tx fhir.Tx, nhs, viewer string, since time.Time) (map[string]bool, error) {
	seen := map[string]bool{}
	q, err := fhir.ParseSearch("AuditEvent", url.Values{
		"patient:identifier": {nhsNumberSystem + "|" + nhs},
		"type":               {access.AccessEventSystem + "|" + access.AccessEventCode},
		"date":               {"ge" + fhir.FormatInstant(since)},
		"_tag":               {AccessTagSystem + "|" + accessListed},
		"_count":             {"100"},
	}, fhir.SearchOptions{Registry: s.registry, Strict: true})
	if err != nil {
		return nil, err
	}
	q.Total = fhir.TotalNone
	var cursor fhir.Cursor
	for {
		page, err := tx.Search(q, cursor, false)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Matches {
			var ae struct {
				Agent []struct {
					AltID     string `json:"altId"`
					Requestor bool   `json:"requestor"`
				} `json:"agent"`
				Entity []struct {
					What jsonRef `json:"what"`
				} `json:"entity"`
			}
			if json.Unmarshal(r.JSON, &ae) != nil {
				continue
			}
			mine := false
			for _, ag := range ae.Agent {
				mine = mine || (ag.Requestor && ag.AltID == viewer)
			}
			if !mine {
				continue
			}
			for _, e := range ae.Entity {
				if e.What.Reference != "" {
					seen[e.What.Reference] = true
				}
			}
		}
		if page.Next == nil {
			return seen, nil
		}
		cursor = page.Next
	}
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
