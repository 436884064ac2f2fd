package server

// CP-IS notifications (DOMAIN.md rule 4): an unscheduled contact with a
// child who holds a current CP-IS record (an Encounter posted by an
// unscheduled-care organisation, or an unscheduled CP-IS read, see
// cpis_access.go) makes
// one Communication per council holding a current record, written in the
// same store transaction as the contact, so that an acknowledged contact
// never lacks its notifications. At most one per (child, care
// organisation, council) in 24 hours: before writing, a search inside the
// transaction looks for a notification with the same subject, sender and
// recipient sent in the last 24 hours. The store has one writer, so no
// other write comes between that search and the write: two contacts at
// once make one notification.
// See https://hl7.org/fhir/R4/communication.html and README "CP-IS workflow".

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/server/smart"
)

// Code systems and codes of the CP-IS workflow (nhsNumberSystem is in
// auditevent.go).
const (
	odsSystem      = "https://fhir.nhs.uk/Id/ods-organization-code"
	flagCodeSystem = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
	flagDetailURL  = "http://hl7.org/fhir/StructureDefinition/flag-detail"
	snomedSystem   = "http://snomed.info/sct"
	categorySystem = "http://terminology.hl7.org/CodeSystem/communication-category"
	notifyWindow   = 24 * time.Hour
)

var planNames = map[string]string{
	planCPP:    "Child Protection Plan",
	planLAC:    "Looked After Child",
	planUnborn: "Unborn Child Protection Plan",
}

// contact is an unscheduled contact with a child: what a notification is
// about.
type contact struct {
	// Child is the current version of the child's Patient; nil when no
	// Patient has the child's NHS number (records may name the child by
	// NHS number only).
	Child *fhir.Resource
	// NHS is the child's NHS number when Child is nil.
	NHS string
	// SiteODS is the care organisation's ODS code; SiteRef its
	// Organization (Organization/id) when known, SiteName its name.
	SiteODS, SiteRef, SiteName string
	// Setting names the care setting (Encounter.serviceType), if known.
	Setting string
	// At is the time the contact was recorded: the notification's sent
	// time, from which the 24 hours run.
	At time.Time
	// Started is when the contact began (Encounter.period.start), for the
	// text; zero means At.
	Started time.Time
	// Trigger is the contact's own resource: Encounter/id or
	// AuditEvent/id.
	Trigger string
	// Triggers, when set, gives the trigger per council ODS code (a
	// lookup's access AuditEvent is one per council); Trigger otherwise.
	Triggers map[string]string
	// Lookup is true for a CP-IS lookup (the text says so).
	Lookup bool
}

// jsonRef is the part of a Reference the workflow reads.
type jsonRef struct {
	Display    string `json:"display,omitempty"`
	Identifier *struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value,omitempty"`
	} `json:"identifier,omitempty"`
	Reference string `json:"reference,omitempty"`
}

func (r *jsonRef) identifier(system string) string {
	if r == nil || r.Identifier == nil || r.Identifier.System != system {
		return ""
	}
	return r.Identifier.Value
}

type jsonCoding struct {
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
	System  string `json:"system,omitempty"`
}

type jsonConcept struct {
	Coding []jsonCoding `json:"coding,omitempty"`
	Text   string       `json:"text,omitempty"`
}

func (c jsonConcept) code(system string) string {
	for _, cd := range c.Coding {
		if cd.System == system {
			return cd.Code
		}
	}
	return ""
}

func (c jsonConcept) label() string {
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	for _, cd := range c.Coding {
		if cd.Code != "" {
			return cd.Code
		}
	}
	return ""
}

type jsonPeriod struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// flagRecord is the part of a CP-IS Flag the workflow reads.
type flagRecord struct {
	Status    string        `json:"status"`
	Code      jsonConcept   `json:"code"`
	Category  []jsonConcept `json:"category"`
	Subject   jsonRef       `json:"subject"`
	Author    *jsonRef      `json:"author"`
	Period    jsonPeriod    `json:"period"`
	Extension []struct {
		URL            string   `json:"url"`
		ValueReference *jsonRef `json:"valueReference"`
	} `json:"extension"`
}

func (f *flagRecord) plan() string {
	for _, c := range f.Category {
		if code := c.code(snomedSystem); planNames[code] != "" {
			return code
		}
	}
	return ""
}

func (f *flagRecord) detail() string {
	for _, e := range f.Extension {
		if e.URL == flagDetailURL && e.ValueReference != nil {
			return e.ValueReference.Reference
		}
	}
	return ""
}

// current reports whether the CP-IS record is in force on day
// (YYYY-MM-DD): a CP-IS Flag, active and not ended before it.
func (f *flagRecord) current(day string) bool {
	if f.Status != "active" || f.Code.code(flagCodeSystem) != cpisFlagCode {
		return false
	}
	end := f.Period.End
	if len(end) > 10 {
		end = end[:10]
	}
	return end == "" || end >= day
}

// patientRecord is the part of a Patient the workflow reads.
type patientRecord struct {
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Name []struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Text   string   `json:"text"`
	} `json:"name"`
	BirthDate string `json:"birthDate"`
	Link      []struct {
		Other jsonRef `json:"other"`
		Type  string  `json:"type"`
	} `json:"link"`
}

func (p *patientRecord) nhs() string {
	for _, id := range p.Identifier {
		if id.System == nhsNumberSystem {
			return id.Value
		}
	}
	return ""
}

func (p *patientRecord) name() string {
	if len(p.Name) == 0 {
		return ""
	}
	n := p.Name[0]
	if n.Text != "" {
		return n.Text
	}
	return strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
}

// sysSearch runs, inside tx and without any principal's restriction, the
// search typ?params ANDed with the disjunction of the searches in any
// (each its own typ?query).
func (s *Server) sysSearch(tx fhir.Tx, typ string, params url.Values, any ...url.Values) ([]*fhir.Resource, error) {
	q, err := fhir.ParseSearch(typ, params, fhir.SearchOptions{Registry: s.registry, Strict: true, MaxCount: s.cfg.MaxCount})
	if err != nil {
		return nil, err
	}
	if len(any) > 0 {
		var or []fhir.Filter
		for _, a := range any {
			p, err := fhir.ParseSearch(typ, a, fhir.SearchOptions{Registry: s.registry, Strict: true})
			if err != nil {
				return nil, err
			}
			if len(p.Filters) != 1 {
				return nil, fmt.Errorf("sysSearch: a part of a disjunction must be one filter")
			}
			or = append(or, p.Filters[0])
		}
		q.Filters = append(q.Filters, fhir.Filter{Any: or})
	}
	q.Total = fhir.TotalNone
	page, err := tx.Search(q, nil, false)
	if err != nil {
		return nil, err
	}
	return page.Matches, nil
}

// currentRecords returns the child's current CP-IS Flags on day: those
// whose subject is the child's Patient, names its NHS number, or is
// another Patient with the same NHS number (each council may send its
// own Patient of the child).
func (s *Server) currentRecords(tx fhir.Tx, child *fhir.Resource, nhs, day string) ([]*fhir.Resource, []*flagRecord, error) {
	var or []url.Values
	if child != nil {
		or = append(or, url.Values{"subject": {child.Ref()}})
	}
	if nhs != "" {
		or = append(or, url.Values{"subject:identifier": {nhsNumberSystem + "|" + nhs}},
			url.Values{"subject:Patient.identifier": {nhsNumberSystem + "|" + nhs}})
	}
	if len(or) == 0 {
		return nil, nil, nil
	}
	rs, err := s.sysSearch(tx, "Flag", url.Values{"_count": {"100"}}, or...)
	if err != nil {
		return nil, nil, err
	}
	var keep []*fhir.Resource
	var flags []*flagRecord
	for _, r := range rs {
		var f flagRecord
		if json.Unmarshal(r.JSON, &f) != nil || !f.current(day) {
			continue
		}
		keep, flags = append(keep, r), append(flags, &f)
	}
	return keep, flags, nil
}

// council is a council holding current records of a child.
type council struct {
	ods, ref, name string
	// subject is the Patient the council's records name (each council
	// may hold its own Patient of the child), else the child's.
	subject string
	flags   []*fhir.Resource
	parsed  []*flagRecord
}

// councilOf returns the ODS code, Organization and name of a Flag's author.
func (s *Server) councilOf(tx fhir.Tx, f *flagRecord) (ods, ref, name string) {
	if f.Author == nil {
		return "", "", ""
	}
	ods, ref, name = f.Author.identifier(odsSystem), f.Author.Reference, f.Author.Display
	var org *fhir.Resource
	if typ, id, ok := strings.Cut(ref, "/"); ok && typ == "Organization" {
		if r, err := tx.Read(typ, id); err == nil && !r.Deleted() {
			org = r
		}
	} else if ods != "" {
		if rs, err := s.sysSearch(tx, "Organization", url.Values{"identifier": {odsSystem + "|" + ods}, "_count": {"1"}}); err == nil && len(rs) == 1 {
			org = rs[0]
		}
	}
	if org != nil {
		var o struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
			Name       string                           `json:"name"`
		}
		if json.Unmarshal(org.JSON, &o) == nil {
			for _, id := range o.Identifier {
				if id.System == odsSystem && ods == "" {
					ods = id.Value
				}
			}
			if o.Name != "" {
				name = o.Name
			}
		}
		ref = org.Ref()
	}
	return ods, ref, name
}

// notifyContact writes, inside tx, the Communications the contact k is due
// (DOMAIN.md rule 4): one per council holding a current record of the
// child, unless that council was told of a contact of the child with the
// same care organisation in the 24 hours before k.At. It returns the
// number of current records the child holds (0: nothing is due) and the
// Communications written. tx must be able to write Communications (the
// service's own transaction, not a principal's view).
func (s *Server) notifyContact(tx fhir.Tx, k contact) (records int, sent []*fhir.Resource, err error) {
	var pt patientRecord
	nhs := k.NHS
	if k.Child != nil {
		if err := json.Unmarshal(k.Child.JSON, &pt); err != nil {
			return 0, nil, fmt.Errorf("notify: read child: %w", err)
		}
		if n := pt.nhs(); n != "" {
			nhs = n
		}
	}
	rs, flags, err := s.currentRecords(tx, k.Child, nhs, k.At.UTC().Format(time.DateOnly))
	if err != nil || len(rs) == 0 {
		return 0, nil, err
	}
	var councils []*council
	byODS := map[string]*council{}
	for i, f := range flags {
		ods, ref, name := s.councilOf(tx, f)
		key := ods
		if key == "" {
			key = ref
		}
		if key == "" {
			continue // no author to tell: the profile makes this impossible
		}
		c := byODS[key]
		if c == nil {
			c = &council{ods: ods, ref: ref, name: name}
			if k.Child != nil {
				c.subject = k.Child.Ref()
			}
			if strings.HasPrefix(f.Subject.Reference, "Patient/") {
				c.subject = f.Subject.Reference
			}
			byODS[key] = c
			councils = append(councils, c)
		}
		c.flags, c.parsed = append(c.flags, rs[i]), append(c.parsed, f)
	}
	for _, c := range councils {
		told, err := s.toldSince(tx, c, nhs, k.SiteODS, k.At.Add(-notifyWindow))
		if err != nil {
			return 0, nil, err
		}
		if told {
			continue
		}
		r, err := s.writeNotification(tx, k, &pt, nhs, c)
		if err != nil {
			return 0, nil, err
		}
		sent = append(sent, r)
	}
	return len(rs), sent, nil
}

// toldSince reports whether council c was sent a notification about its
// Patient of the child (or the NHS number nhs, when the council's records
// name no Patient) for a contact with the care organisation site at or
// after since. The search is by the child's Patient alone (few
// notifications each); sender, recipient and time are compared here,
// because an ODS code or a time range shared by many notifications is a
// poor index to start from.
func (s *Server) toldSince(tx fhir.Tx, c *council, nhs, site string, since time.Time) (bool, error) {
	by := url.Values{"subject": {c.subject}, "_count": {"100"}}
	if c.subject == "" {
		by = url.Values{"subject:identifier": {nhsNumberSystem + "|" + nhs}, "_count": {"100"}}
	}
	told := false
	err := s.eachMatch(tx, "Communication", by, func(r *fhir.Resource) bool {
		var n struct {
			Category  []jsonConcept `json:"category"`
			Sender    jsonRef       `json:"sender"`
			Recipient []jsonRef     `json:"recipient"`
			Sent      string        `json:"sent"`
		}
		if json.Unmarshal(r.JSON, &n) != nil || n.Sender.identifier(odsSystem) != site {
			return true
		}
		if t, err := time.Parse(time.RFC3339Nano, n.Sent); err != nil || t.Before(since) {
			return true
		}
		notification := false
		for _, cat := range n.Category {
			notification = notification || cat.code(categorySystem) == "notification"
		}
		for _, rc := range n.Recipient {
			if notification && ((c.ods != "" && rc.identifier(odsSystem) == c.ods) || (c.ods == "" && rc.Reference == c.ref)) {
				told = true
				return false
			}
		}
		return true
	})
	return told, err
}

// eachMatch runs the search typ?params (strict) inside tx and calls fn with
// every match, page after page, until fn returns false.
func (s *Server) eachMatch(tx fhir.Tx, typ string, params url.Values, fn func(*fhir.Resource) bool) error {
	q, err := fhir.ParseSearch(typ, params, fhir.SearchOptions{Registry: s.registry, Strict: true})
	if err != nil {
		return err
	}
	q.Total = fhir.TotalNone
	var cursor fhir.Cursor
	for {
		page, err := tx.Search(q, cursor, false)
		if err != nil {
			return err
		}
		for _, r := range page.Matches {
			if !fn(r) {
				return nil
			}
		}
		if page.Next == nil {
			return nil
		}
		cursor = page.Next
	}
}

// socialWorker returns the PractitionerRole a council registered for its
// notifications: its newest active PractitionerRole whose organization is
// the council (by ODS code or Organization); "" when it has none.
func (s *Server) socialWorker(tx fhir.Tx, c *council) string {
	var or []url.Values
	if c.ods != "" {
		or = append(or, url.Values{"organization:identifier": {odsSystem + "|" + c.ods}})
	}
	if strings.HasPrefix(c.ref, "Organization/") {
		or = append(or, url.Values{"organization": {c.ref}})
	}
	if len(or) == 0 {
		return ""
	}
	rs, err := s.sysSearch(tx, "PractitionerRole", url.Values{"active": {"true"}, "_sort": {"-_lastUpdated"}, "_count": {"1"}}, or...)
	if err != nil || len(rs) == 0 {
		return ""
	}
	return rs[0].Ref()
}

// The Communication written to a council is built from these types, whose
// fields are declared in the order of their JSON names: encoding/json then
// writes the canonical JSON that the codec would (sorted keys, no HTML
// escaping), so that the notification costs no parse inside the store's
// single writer (TestCPIS_NotificationCanonical checks the equality).
type (
	outIdentifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	outRef struct {
		Display    string         `json:"display,omitempty"`
		Identifier *outIdentifier `json:"identifier,omitempty"`
		Reference  string         `json:"reference,omitempty"`
	}
	outCoding struct {
		Code    string `json:"code"`
		Display string `json:"display"`
		System  string `json:"system"`
	}
	outConcept struct {
		Coding []outCoding `json:"coding"`
	}
	outMeta struct {
		LastUpdated string   `json:"lastUpdated"`
		Profile     []string `json:"profile"`
		VersionID   string   `json:"versionId"`
	}
	outPayload struct {
		ContentString string `json:"contentString"`
	}
	notification struct {
		About        []outRef     `json:"about"`
		Category     []outConcept `json:"category"`
		Encounter    *outRef      `json:"encounter,omitempty"`
		ID           string       `json:"id"`
		Meta         outMeta      `json:"meta"`
		Payload      []outPayload `json:"payload"`
		Recipient    []outRef     `json:"recipient"`
		ResourceType string       `json:"resourceType"`
		Sender       outRef       `json:"sender"`
		Sent         string       `json:"sent"`
		Status       string       `json:"status"`
		Subject      outRef       `json:"subject"`
	}
)

func identRef(ref, system, value, display string) outRef {
	r := outRef{Reference: ref, Display: display}
	if value != "" {
		r.Identifier = &outIdentifier{system, value}
	}
	return r
}

// writeNotification writes the Communication that tells council c of the
// contact k.
func (s *Server) writeNotification(tx fhir.Tx, k contact, pt *patientRecord, nhs string, c *council) (*fhir.Resource, error) {
	id, now := fhir.NewID(), tx.Now()
	n := notification{
		ResourceType: "Communication",
		ID:           id,
		Meta:         outMeta{LastUpdated: fhir.FormatInstant(now), Profile: []string{profileURL("CPIS-Communication")}, VersionID: "1"},
		Status:       "completed",
		Category:     []outConcept{{Coding: []outCoding{{System: categorySystem, Code: "notification", Display: "Notification"}}}},
		Subject:      identRef(c.subject, nhsNumberSystem, nhs, ""),
		Sent:         fhir.FormatInstant(k.At),
		Sender:       identRef(k.SiteRef, odsSystem, k.SiteODS, k.SiteName),
	}
	for _, f := range c.flags {
		n.About = append(n.About, outRef{Reference: f.Ref()})
	}
	trigger := k.Trigger
	if t, ok := k.Triggers[c.ods]; ok {
		trigger = t
	}
	switch {
	case strings.HasPrefix(trigger, "Encounter/"):
		n.Encounter = &outRef{Reference: trigger}
	case trigger != "":
		n.About = append(n.About, outRef{Reference: trigger})
	}
	n.Recipient = append(n.Recipient, identRef(c.ref, odsSystem, c.ods, c.name))
	if sw := s.socialWorker(tx, c); sw != "" {
		n.Recipient = append(n.Recipient, outRef{Reference: sw})
	}
	n.Payload = []outPayload{{notificationText(k, pt, nhs, c)}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	r := &fhir.Resource{Type: "Communication", ID: id, VersionID: 1, LastUpdated: now, Method: fhir.MethodCreate, JSON: b}
	var err error
	if r.Index, err = s.svc.Indexer.Index("Communication", b); err != nil {
		return nil, err
	}
	if err := tx.Put(r); err != nil {
		return nil, err
	}
	return r, nil
}

// notificationText is the payload a social worker acts on: who, where,
// when, which plan.
func notificationText(k contact, pt *patientRecord, nhs string, c *council) string {
	var b strings.Builder
	b.WriteString("CP-IS Access to Service Notification. ")
	who := "A child"
	if name := pt.name(); name != "" {
		who = name
	}
	fmt.Fprintf(&b, "%s (NHS number %s", who, nhs)
	if pt.BirthDate != "" {
		fmt.Fprintf(&b, ", born %s", pt.BirthDate)
	}
	if k.Lookup {
		b.WriteString(") was looked up in CP-IS by a clinician at ")
	} else {
		b.WriteString(") attended ")
	}
	site := k.SiteName
	if site == "" {
		site = "a care organisation"
	}
	fmt.Fprintf(&b, "%s (ODS %s)", site, k.SiteODS)
	if k.Setting != "" {
		fmt.Fprintf(&b, ", %s,", k.Setting)
	}
	when := k.Started
	if when.IsZero() {
		when = k.At
	}
	fmt.Fprintf(&b, " on %s UTC. ", when.UTC().Format("2006-01-02 15:04"))
	for i, f := range c.parsed {
		if i > 0 {
			b.WriteString(" ")
		}
		plan := planNames[f.plan()]
		if plan == "" {
			plan = "CP-IS plan"
		}
		fmt.Fprintf(&b, "Record: %s from %s", plan, f.Period.Start)
		if f.Period.End != "" {
			fmt.Fprintf(&b, " to %s", f.Period.End)
		}
		fmt.Fprintf(&b, " (%s).", c.flags[i].Ref())
	}
	return b.String()
}

// encounterContact is the part of an Encounter a notification reads.
type encounterContact struct {
	Subject         jsonRef       `json:"subject"`
	ServiceProvider jsonRef       `json:"serviceProvider"`
	ServiceType     *jsonConcept  `json:"serviceType"`
	Period          jsonPeriod    `json:"period"`
	Type            []jsonConcept `json:"type"`
}

// afterWrite is the service's hook inside every write of a request (see
// fhir.Service.AfterWrite): a new Encounter posted by an unscheduled-care
// clinician for a child with a current CP-IS record makes its
// notifications (notifyContact) and marks the request's answer (cpisNotes)
// so that the EPR is told to look the child up.
func (s *Server) afterWrite(p *smart.Principal, notes *cpisNotes) func(tx fhir.Tx, r *fhir.Resource) error {
	return func(tx fhir.Tx, r *fhir.Resource) error {
		if r.Type != "Encounter" || r.VersionID != 1 || p == nil || p.Role != smart.RoleClinicianUnscheduled {
			return nil
		}
		stx := systemTx(tx)
		var e encounterContact
		if err := json.Unmarshal(r.JSON, &e); err != nil {
			return fmt.Errorf("notify: read encounter: %w", err)
		}
		child := s.contactChild(stx, &e.Subject)
		nhs := e.Subject.identifier(nhsNumberSystem)
		if child == nil && (nhs == "" || !profiles.ValidNHSNumber(nhs)) {
			return nil
		}
		k := contact{Child: child, NHS: nhs, SiteODS: e.ServiceProvider.identifier(odsSystem), SiteRef: e.ServiceProvider.Reference,
			SiteName: e.ServiceProvider.Display, Trigger: r.Ref(), At: r.LastUpdated}
		if k.SiteODS == "" {
			k.SiteODS = p.ODS
		}
		if e.ServiceType != nil {
			k.Setting = e.ServiceType.label()
		}
		if t, err := time.Parse(time.RFC3339, e.Period.Start); err == nil {
			k.Started = t
		}
		if typ, id, ok := strings.Cut(k.SiteRef, "/"); ok && typ == "Organization" && k.SiteName == "" {
			if org, err := stx.Read(typ, id); err == nil && !org.Deleted() {
				var o struct {
					Name string `json:"name"`
				}
				if json.Unmarshal(org.JSON, &o) == nil {
					k.SiteName = o.Name
				}
			}
		}
		n, _, err := s.notifyContact(stx, k)
		if err != nil {
			return err
		}
		if n > 0 {
			notes.flagged(r.Ref())
		}
		return nil
	}
}

// contactChild returns the current Patient a contact's subject names: a
// literal Patient reference, or a Patient with the NHS number given in
// the reference's identifier. nil when there is none.
func (s *Server) contactChild(tx fhir.Tx, ref *jsonRef) *fhir.Resource {
	if typ, id, ok := strings.Cut(ref.Reference, "/"); ok && typ == "Patient" && fhir.ValidID(id) {
		if r, err := tx.Read(typ, id); err == nil && !r.Deleted() {
			return r
		}
	}
	if nhs := ref.identifier(nhsNumberSystem); nhs != "" {
		rs, err := s.sysSearch(tx, "Patient", url.Values{"identifier": {nhsNumberSystem + "|" + nhs}, "_count": {"1"}})
		if err == nil && len(rs) == 1 {
			return rs[0]
		}
	}
	return nil
}

// systemTx returns tx without the principal's checks (access.Store's
// transaction), keeping the audit record of what it writes (auditTx).
func systemTx(tx fhir.Tx) fhir.Tx {
	var at *auditTx
	for {
		switch t := tx.(type) {
		case *auditTx:
			at, tx = t, t.Tx
		case interface{ Unwrap() fhir.Tx }:
			tx = t.Unwrap()
		default:
			return &serviceTx{Tx: tx, audit: at}
		}
	}
}

// serviceTx is a transaction for the service's own writes inside a
// request's write; what it puts is listed in the request's audit record.
type serviceTx struct {
	fhir.Tx
	audit *auditTx
}

func (t *serviceTx) Put(r *fhir.Resource) error {
	if err := t.Tx.Put(r); err != nil {
		return err
	}
	if t.audit != nil {
		t.audit.written = append(t.audit.written, r.VersionRef()+" "+string(r.Method))
	}
	return nil
}
