package access

import (
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
)

// Code systems the policy reads.
const (
	// ODSSystem identifies organisations by ODS code.
	ODSSystem = "https://fhir.nhs.uk/Id/ods-organization-code"
	// NHSNumberSystem identifies patients by NHS number.
	NHSNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"
	// AccessEventSystem and AccessEventCode are the AuditEvent.type of the
	// CP-IS access history (an unscheduled lookup of a child), which
	// clinicians and councils may read; the other AuditEvents (the
	// security audit) are for administrators.
	AccessEventSystem = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	AccessEventCode   = "access"
)

// referenceTypes are conformance and terminology resources: readable by
// every principal, written by admins only.
var referenceTypes = set("StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "CapabilityStatement",
	"ConceptMap", "NamingSystem", "OperationDefinition", "CompartmentDefinition", "ImplementationGuide")

// directoryTypes describe organisations and staff, not children: readable
// by every principal.
var directoryTypes = set("Organization", "Location", "HealthcareService", "Practitioner", "PractitionerRole", "Endpoint")

// owners maps each type a council may hold to the search parameter whose
// value names the owning council: a reference whose identifier is the
// council's ODS code (param:identifier=ods|CODE), or for Subscription a
// meta.tag with that code (_tag=ods|CODE). A council reads the resources of
// these types that it owns, and writes those it may write (laWrites).
var owners = map[string]string{
	"Patient":          "organization",          // Patient.managingOrganization
	"Flag":             "author",                // Flag.author
	"CarePlan":         "author",                // CarePlan.author (CP-IS parameter)
	"CareTeam":         "managing-organization", // CareTeam.managingOrganization (CP-IS parameter)
	"Communication":    "recipient",             // Communication.recipient: notifications to the council
	"Subscription":     "_tag",                  // Subscription.meta.tag
	"AuditEvent":       "_tag",                  // access history: meta.tag of each council whose records were seen
	"Organization":     "identifier",            // the council's own Organization
	"PractitionerRole": "organization",          // its social workers' roles
}

// laWrites are the types a council writes (its own records only).
var laWrites = set("Patient", "Flag", "CarePlan", "CareTeam", "Subscription", "Organization", "PractitionerRole")

// childTypes are the CP-IS data a clinician reads about one child at a
// time, with the reference parameter that names the child.
var childTypes = map[string]string{
	"Patient":   "",
	"Flag":      "subject",
	"CarePlan":  "subject",
	"CareTeam":  "subject",
	"Encounter": "subject",
	// The access history (AuditEvents of the access type only): the
	// national GET AuditEvent?patient:identifier=.
	"AuditEvent": "patient",
}

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Policy decides what principals may do. It is safe for concurrent use.
type Policy struct {
	reg *fhir.SearchRegistry
	ix  *fhir.Indexer

	scopes sync.Map // "Type?query" -> []fhir.Filter (or error): parsed scope restrictions

	static    sync.Map // *smart.Principal -> *principalStatics
	statCount atomic.Int64
}

// New returns the policy over the search parameters of reg (nil: the
// generated R4 table with the CP-IS parameters).
func New(reg *fhir.SearchRegistry) *Policy {
	if reg == nil {
		reg = fhir.NewSearchRegistry()
	}
	return &Policy{reg: reg, ix: fhir.NewIndexer(reg)}
}

func forbidden(format string, args ...any) *fhir.Error {
	return fhir.Errorf(fhir.IssueForbidden, format, args...)
}

// errNoPrincipal fails every request that carries no verified principal.
var errNoPrincipal = forbidden("the request carries no verified principal; access is denied")

// readable reports whether p's role reads resources of typ at all (some of
// them, for a council's owned types).
func readable(p *smart.Principal, typ string) bool {
	if referenceTypes[typ] || directoryTypes[typ] {
		return true
	}
	switch p.Role {
	case smart.RoleAdmin:
		return true
	case smart.RoleLA:
		_, ok := owners[typ]
		return ok
	case smart.RoleClinicianScheduled, smart.RoleClinicianUnscheduled:
		_, ok := childTypes[typ]
		return ok
	}
	return false
}

// ownedFilter is the filter that keeps the resources of typ owned by the
// council ods.
func (pl *Policy) ownedFilter(typ, ods string) fhir.Filter {
	name := owners[typ]
	sp, _ := pl.reg.Lookup(typ, name)
	v := fhir.Value{System: ODSSystem, HasSystem: true, Code: ods}
	switch name {
	case "_tag", "identifier":
		return fhir.Filter{Param: sp, Values: []fhir.Value{v}}
	}
	return fhir.Filter{Param: sp, Modifier: "identifier", Values: []fhir.Value{v}}
}

// scopeFilters returns whether p's scopes grant perm on typ and, when every
// scope that does is restricted (a v2 search restriction, or a patient/
// scope on CP-IS child data, which covers the launch patient only), the
// filters that narrow typ to what they cover (the first such scope's
// filters when several restrict differently, which is never wider than any
// of them). A patient/ scope without a launch patient grants nothing.
func (pl *Policy) scopeFilters(p *smart.Principal, typ string, perm smart.Perm) (bool, []fhir.Filter, error) {
	if referenceTypes[typ] && perm&(smart.PermCreate|smart.PermUpdate|smart.PermDelete) == 0 {
		// Conformance and terminology resources are readable by every
		// principal, whatever its scopes.
		return true, nil, nil
	}
	var restricted []fhir.Filter
	found := false
	for _, sc := range p.Scopes {
		if !sc.Allows(typ, perm) {
			continue
		}
		var fs []fhir.Filter
		if _, child := childTypes[typ]; child && sc.Context == smart.ContextPatient {
			// A patient/ scope covers the launch patient's data only.
			id := p.Launch["patient"]
			if id == "" {
				continue
			}
			fs = append(fs, pl.pinFilter(typ, &childPin{id: id}))
		}
		if sc.Query != nil {
			q, err := pl.scopeQuery(typ, sc.Query)
			if err != nil {
				return false, nil, err
			}
			fs = append(fs, q...)
		}
		if fs == nil {
			return true, nil, nil
		}
		if !found {
			restricted, found = fs, true
		}
	}
	return found, restricted, nil
}

func (pl *Policy) scopeQuery(typ string, q url.Values) ([]fhir.Filter, error) {
	key := typ + "?" + q.Encode()
	if v, ok := pl.scopes.Load(key); ok {
		if err, bad := v.(error); bad {
			return nil, err
		}
		return v.([]fhir.Filter), nil
	}
	s, err := fhir.ParseSearch(typ, q, fhir.SearchOptions{Registry: pl.reg, Strict: true})
	var out any = err
	if err == nil {
		if len(s.Include) > 0 || len(s.RevInclude) > 0 || len(s.Sort) > 0 {
			err = forbidden("the token's scope for %s restricts by something other than search filters", typ)
			out = err
		} else {
			out = s.Filters
		}
	} else {
		err = forbidden("the token's scope for %s has a search restriction this server cannot apply", typ)
		out = err
	}
	pl.scopes.Store(key, out)
	if err != nil {
		return nil, err
	}
	return s.Filters, nil
}

// Narrow checks that p may run the search q and narrows it: it sets
// q.Restrict to what p may reach (matches, chains, _has, includes), so that
// the store never returns a forbidden resource. Errors: IssueForbidden when
// p's role or scopes do not allow searching the type, or (a clinician) when
// the search does not name one child by NHS number or id.
func (pl *Policy) Narrow(p *smart.Principal, q *fhir.Search) error {
	if p == nil {
		return errNoPrincipal
	}
	types := q.Types
	if q.Type != "" {
		types = []string{q.Type}
	}
	if len(types) == 0 && p.Role != smart.RoleAdmin {
		return forbidden("a search across all types is for administrators; name the type")
	}
	var pin *childPin
	if p.Role == smart.RoleClinicianScheduled || p.Role == smart.RoleClinicianUnscheduled {
		pin = findPin(q)
	}
	for _, t := range types {
		if !readable(p, t) {
			return forbidden("the %s role may not search %s", p.Role, t)
		}
		if ok, _, err := pl.scopeFilters(p, t, smart.PermSearch); err != nil {
			return err
		} else if !ok {
			return forbidden("the access token's scopes do not allow searching %s", t)
		}
		if _, child := childTypes[t]; child && pin == nil && (p.Role == smart.RoleClinicianScheduled || p.Role == smart.RoleClinicianUnscheduled) {
			return forbidden("a clinician's search of %s must name one child: by NHS number (such as %s?%s) or by the Patient's id", t, t, pinExample(t))
		}
	}
	r, err := pl.restriction(p, pin)
	if err != nil {
		return err
	}
	q.Restrict = r
	return nil
}

// accessHistory is the filter that keeps the AuditEvents of the access
// history (type iso-21089-lifecycle access), not the security audit.
func (pl *Policy) accessHistory() fhir.Filter {
	sp, _ := pl.reg.Lookup("AuditEvent", "type")
	return fhir.Filter{Param: sp, Values: []fhir.Value{{System: AccessEventSystem, HasSystem: true, Code: AccessEventCode}}}
}

func pinExample(t string) string {
	switch t {
	case "Patient":
		return "identifier=" + NHSNumberSystem + "|{nhs}"
	case "AuditEvent":
		return "patient:identifier=" + NHSNumberSystem + "|{nhs}"
	}
	return "subject:identifier=" + NHSNumberSystem + "|{nhs}"
}

// restriction is what p may reach: nil for an admin whose scopes allow
// reading everything. The part that does not depend on the search (every
// type but the child types, which a clinician reaches only for the pinned
// child) is made once per principal (statics) and shared as the Base.
func (pl *Policy) restriction(p *smart.Principal, pin *childPin) (*fhir.Restriction, error) {
	st, err := pl.statics(p)
	if err != nil || st.all {
		return nil, err
	}
	clinician := p.Role == smart.RoleClinicianScheduled || p.Role == smart.RoleClinicianUnscheduled
	if !clinician || pin == nil {
		return st.base, nil
	}
	// The child types' filters are made for the types the search asks
	// for, not all of them (a lookup asks for one or two of eight).
	return &fhir.Restriction{Base: st.base, Pinned: func(t string) ([]fhir.Filter, bool) {
		fs, ok := st.child[t]
		if !ok {
			return nil, false
		}
		return append([]fhir.Filter{pl.pinFilter(t, pin)}, fs...), true
	}}, nil
}

// principalStatics is the part of a principal's restriction that does
// not depend on the search.
type principalStatics struct {
	all   bool                     // an admin who reads everything: no restriction
	base  *fhir.Restriction        // every reachable type but a clinician's child types
	child map[string][]fhir.Filter // a clinician's child types: the filters beside the pin
}

// maxStatics bounds the principals whose statics are kept; past it the
// cache starts again (principals are kept by the token cache, so the same
// one comes back while its token is used).
const maxStatics = 10_000

// statics returns p's principalStatics, made on first use.
func (pl *Policy) statics(p *smart.Principal) (*principalStatics, error) {
	if v, ok := pl.static.Load(p); ok {
		return v.(*principalStatics), nil
	}
	st, err := pl.makeStatics(p)
	if err != nil {
		return nil, err
	}
	if pl.statCount.Add(1) > maxStatics {
		pl.static.Clear()
		pl.statCount.Store(1)
	}
	pl.static.Store(p, st)
	return st, nil
}

func (pl *Policy) makeStatics(p *smart.Principal) (*principalStatics, error) {
	if p.Role == smart.RoleAdmin {
		if ok, fs, err := pl.scopeFilters(p, "*", smart.PermRead); err == nil && ok && fs == nil && allTypes(p) {
			return &principalStatics{all: true}, nil
		}
	}
	st := &principalStatics{base: &fhir.Restriction{Types: make(map[string][]fhir.Filter, 32)}}
	clinician := p.Role == smart.RoleClinicianScheduled || p.Role == smart.RoleClinicianUnscheduled
	for _, t := range candidates(p.Role) {
		if !readable(p, t) {
			continue
		}
		ok, sf, err := pl.scopeFilters(p, t, smart.PermRead)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var fs []fhir.Filter
		if p.Role == smart.RoleLA {
			if _, owned := owners[t]; owned && !directoryTypes[t] {
				if p.ODS == "" {
					continue
				}
				fs = append(fs, pl.ownedFilter(t, p.ODS))
			}
		}
		if t == "AuditEvent" {
			fs = append(fs, pl.accessHistory())
		}
		fs = append(fs, sf...)
		fs = fs[:len(fs):len(fs)] // shared: an append copies
		if _, child := childTypes[t]; child && clinician {
			if st.child == nil {
				st.child = map[string][]fhir.Filter{}
			}
			st.child[t] = fs
			continue
		}
		st.base.Types[t] = fs
	}
	return st, nil
}

// candidates lists the types a role may read: every type for an admin,
// else the reference and directory types and the role's own.
func candidates(role smart.Role) []string {
	switch role {
	case smart.RoleAdmin:
		return fhir.ResourceTypes
	case smart.RoleLA:
		return laCandidates
	}
	return clinicianCandidates
}

var laCandidates, clinicianCandidates = func() (la, cl []string) {
	for _, t := range fhir.ResourceTypes {
		public := referenceTypes[t] || directoryTypes[t]
		if _, ok := owners[t]; ok || public {
			la = append(la, t)
		}
		if _, ok := childTypes[t]; ok || public {
			cl = append(cl, t)
		}
	}
	return la, cl
}()

// allTypes reports whether p has an unrestricted read scope on every type.
func allTypes(p *smart.Principal) bool {
	for _, sc := range p.Scopes {
		if sc.Type == "*" && sc.Query == nil && sc.Context != smart.ContextPatient && sc.Perms&smart.PermRead != 0 {
			return true
		}
	}
	return false
}

// CanRead reports whether p may see the version r (read, vread, history,
// a Bundle's read entry, a notification). Errors: IssueForbidden when p's
// role or scopes never allow reading r's type; IssueNotFound when p may not
// know that r exists (another council's record). A deleted version is
// judged by the version before it, which prev returns (nil: none).
func (pl *Policy) CanRead(p *smart.Principal, r *fhir.Resource, prev func() *fhir.Resource) error {
	if p == nil {
		return errNoPrincipal
	}
	if !readable(p, r.Type) {
		return forbidden("the %s role may not read %s", p.Role, r.Type)
	}
	ok, sf, err := pl.scopeFilters(p, r.Type, smart.PermRead)
	if err != nil {
		return err
	}
	if !ok {
		return forbidden("the access token's scopes do not allow reading %s", r.Type)
	}
	var fs []fhir.Filter
	if p.Role == smart.RoleLA && !directoryTypes[r.Type] && !referenceTypes[r.Type] {
		fs = append(fs, pl.ownedFilter(r.Type, p.ODS))
	}
	if r.Type == "AuditEvent" && p.Role != smart.RoleAdmin {
		fs = append(fs, pl.accessHistory())
	}
	fs = append(fs, sf...)
	if len(fs) == 0 {
		return nil
	}
	if r.Deleted() {
		if prev == nil {
			return notFound(r.Type)
		}
		if r = prev(); r == nil || r.Deleted() {
			return notFound(r0Type(r))
		}
	}
	idx, err := pl.index(r)
	if err != nil {
		return err
	}
	if p.Role == smart.RoleLA && p.ODS == "" {
		return notFound(r.Type)
	}
	for i := range fs {
		if !matches(&fs[i], r.ID, idx) {
			return notFound(r.Type)
		}
	}
	return nil
}

func r0Type(r *fhir.Resource) string {
	if r == nil {
		return "Resource"
	}
	return r.Type
}

// notFound is the store's own answer for a missing resource, so that a
// hidden one reads the same.
func notFound(typ string) error {
	return fhir.Errorf(fhir.IssueNotFound, "%s: no resource with this id", typ)
}

func (pl *Policy) index(r *fhir.Resource) (*fhir.Index, error) {
	if r.Index != nil {
		return r.Index, nil
	}
	idx, err := pl.ix.Index(r.Type, r.JSON)
	if err != nil {
		return nil, fmt.Errorf("access: index %s: %w", r.Type, err)
	}
	return idx, nil
}

// CanWrite reports whether p may put next (a new version, or a delete
// marker) over cur (the current version; nil or a delete marker when the
// resource does not exist). Errors: IssueForbidden, with the reason.
func (pl *Policy) CanWrite(p *smart.Principal, cur, next *fhir.Resource) error {
	if p == nil {
		return errNoPrincipal
	}
	typ := next.Type
	exists := cur != nil && !cur.Deleted()
	perm, what := smart.PermCreate, "create"
	switch {
	case next.Deleted():
		perm, what = smart.PermDelete, "delete"
	case exists:
		perm, what = smart.PermUpdate, "update"
	}
	ok, sf, err := pl.scopeFilters(p, typ, perm)
	if err != nil {
		return err
	}
	if !ok {
		return forbidden("the access token's scopes do not allow %s of %s", what, typ)
	}
	var versions []*fhir.Resource
	if exists {
		versions = append(versions, cur)
	}
	if !next.Deleted() {
		versions = append(versions, next)
	}
	for _, v := range versions {
		idx, err := pl.index(v)
		if err != nil {
			return err
		}
		for i := range sf {
			if !matches(&sf[i], v.ID, idx) {
				return forbidden("the access token's scope for %s does not cover this resource", typ)
			}
		}
	}
	switch p.Role {
	case smart.RoleAdmin:
		return nil
	case smart.RoleLA:
		if !laWrites[typ] {
			return forbidden("a council may not write %s resources", typ)
		}
		if p.ODS == "" {
			return forbidden("the council principal has no ODS code")
		}
		own := pl.ownedFilter(typ, p.ODS)
		for _, v := range versions {
			idx, err := pl.index(v)
			if err != nil {
				return err
			}
			if !matches(&own, v.ID, idx) {
				if v == cur {
					return forbidden("this %s is not a record of council %s; a council writes only its own records", typ, p.ODS)
				}
				return forbidden("a council writes only its own records: %s", ownerHint(typ, p.ODS))
			}
		}
		return nil
	case smart.RoleClinicianScheduled, smart.RoleClinicianUnscheduled:
		if typ != "Encounter" || exists || next.Deleted() {
			return forbidden("a clinician may only create Encounters")
		}
		if p.ODS == "" {
			return forbidden("the clinician principal has no organisation ODS code")
		}
		sp, _ := pl.reg.Lookup("Encounter", "service-provider")
		f := fhir.Filter{Param: sp, Modifier: "identifier", Values: []fhir.Value{{System: ODSSystem, HasSystem: true, Code: p.ODS}}}
		idx, err := pl.index(next)
		if err != nil {
			return err
		}
		if !matches(&f, next.ID, idx) {
			return forbidden("an Encounter's serviceProvider must carry the identifier %s|%s of the clinician's organisation", ODSSystem, p.ODS)
		}
		return nil
	}
	return forbidden("the %s role may not write", p.Role)
}

// ownerHint says where a record of typ names its owning council.
func ownerHint(typ, ods string) string {
	el := map[string]string{
		"Patient": "Patient.managingOrganization", "Flag": "Flag.author", "CarePlan": "CarePlan.author",
		"CareTeam": "CareTeam.managingOrganization", "PractitionerRole": "PractitionerRole.organization",
	}[typ]
	switch typ {
	case "Organization":
		return fmt.Sprintf("Organization.identifier must include %s|%s", ODSSystem, ods)
	case "Subscription":
		return fmt.Sprintf("Subscription.meta.tag must include %s|%s", ODSSystem, ods)
	}
	return fmt.Sprintf("%s must carry the identifier %s|%s", el, ODSSystem, ods)
}

// History checks a history interaction: system and type history are for
// administrators (type history also for everyone on reference and
// directory types); an instance's history is checked version by version
// with CanRead.
func (pl *Policy) History(p *smart.Principal, typ, id string) error {
	if p == nil {
		return errNoPrincipal
	}
	if typ != "" {
		if !readable(p, typ) {
			return forbidden("the %s role may not read %s", p.Role, typ)
		}
		if ok, _, err := pl.scopeFilters(p, typ, smart.PermRead); err != nil {
			return err
		} else if !ok {
			return forbidden("the access token's scopes do not allow reading %s", typ)
		}
	}
	if id != "" || p.Role == smart.RoleAdmin {
		if p.Role == smart.RoleAdmin && (typ == "" && !allTypes(p)) {
			return forbidden("the history of the whole system needs a scope on every type")
		}
		return nil
	}
	if typ != "" && (referenceTypes[typ] || directoryTypes[typ]) {
		return nil
	}
	return forbidden("the history of a whole type or of the system is for administrators; ask for one resource's history")
}
