package access_test

import (
	"net/url"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/access"
	"github.com/cpis-fhir/cpis/server/smart"
)

func TestNarrow(t *testing.T) {
	reg := fhir.NewSearchRegistry()
	pl := access.New(reg)
	nhs := access.NHSNumberSystem + "|9990000018"
	clin := principal(t, smart.RoleClinicianUnscheduled, "RXX01")
	la := principal(t, smart.RoleLA, "E09000001")
	admin := principal(t, smart.RoleAdmin, "")
	for _, c := range []struct {
		name   string
		p      *smart.Principal
		typ    string
		query  string
		denied bool
	}{
		{"no principal", nil, "Flag", "status=active", true},
		{"clinician by NHS number", clin, "Flag", "subject:identifier=" + url.QueryEscape(nhs), false},
		{"clinician national CareTeam", clin, "CareTeam", "patient:identifier=" + url.QueryEscape(nhs), false},
		{"clinician Patient by NHS number", clin, "Patient", "identifier=" + url.QueryEscape(nhs), false},
		{"clinician Patient by other identifier", clin, "Patient", "identifier=x|1", true},
		{"clinician chained", clin, "Flag", "patient.identifier=" + url.QueryEscape(nhs), false},
		{"clinician by Patient id", clin, "Flag", "patient=p1", false},
		{"clinician subject by bare id", clin, "Flag", "subject=p1", true},
		{"clinician two children", clin, "Flag", "subject:identifier=" + url.QueryEscape(nhs+",9990000026"), true},
		{"clinician listing", clin, "Flag", "status=active", true},
		{"clinician reverse chain only", clin, "Patient", "_has:Flag:patient:status=active", true},
		{"clinician Communication", clin, "Communication", "subject=Patient/p1", true},
		{"clinician Organization", clin, "Organization", "name=x", false},
		{"council listing", la, "Flag", "status=active", false},
		{"council Encounter", la, "Encounter", "status=arrived", true},
		{"council AuditEvent", la, "AuditEvent", "", false},
		{"clinician AuditEvent of no child", clin, "AuditEvent", "type=rest", true},
		{"clinician access history", clin, "AuditEvent", "patient:identifier=" + url.QueryEscape(nhs), false},
		{"admin AuditEvent", admin, "AuditEvent", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			vals, _ := url.ParseQuery(c.query)
			q, err := fhir.ParseSearch(c.typ, vals, fhir.SearchOptions{Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			err = pl.Narrow(c.p, q)
			if denied := fhir.ErrorCode(err) == fhir.IssueForbidden; denied != c.denied || (err != nil && !denied) {
				t.Fatalf("Narrow %s?%s: %v, want denied %v", c.typ, c.query, err, c.denied)
			}
			if err != nil {
				return
			}
			switch {
			case c.p.Role == smart.RoleAdmin && q.Restrict != nil:
				t.Errorf("admin with system/*.*: restriction %v, want none", q.Restrict)
			case c.p.Role != smart.RoleAdmin && (q.Restrict == nil || !q.Restrict.Reaches(c.typ) || (q.Restrict.Reaches("AuditEvent") && !accessOnly(auditFilters(q.Restrict)))):
				t.Errorf("restriction %+v: want one that reaches %s and of AuditEvents at most the access history", q.Restrict, c.typ)
			}
		})
	}
}

func auditFilters(r *fhir.Restriction) []fhir.Filter {
	fs, _ := r.Filters("AuditEvent")
	return fs
}

// accessOnly reports whether the filters keep the access history's
// AuditEvents only (type iso-21089-lifecycle access), not the security
// audit.
func accessOnly(fs []fhir.Filter) bool {
	for _, f := range fs {
		if f.Param != nil && f.Param.Name == "type" && len(f.Values) == 1 &&
			f.Values[0].System == access.AccessEventSystem && f.Values[0].Code == access.AccessEventCode {
			return true
		}
	}
	return false
}
