package smart_test

import (
	"testing"

	"github.com/cpis-fhir/cpis/server/smart"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		resource bool
		bad      bool
		typ      string
		perms    smart.Perm
	}{
		{raw: "patient/Flag.read", resource: true, typ: "Flag", perms: smart.PermRead | smart.PermSearch},
		{raw: "user/*.write", resource: true, typ: "*", perms: smart.PermCreate | smart.PermUpdate | smart.PermDelete},
		{raw: "system/*.*", resource: true, typ: "*", perms: smart.PermAll},
		{raw: "patient/Flag.rs", resource: true, typ: "Flag", perms: smart.PermRead | smart.PermSearch},
		{raw: "user/Encounter.c", resource: true, typ: "Encounter", perms: smart.PermCreate},
		{raw: "system/Communication.rs?recipient=Organization/la-x", resource: true, typ: "Communication", perms: smart.PermRead | smart.PermSearch},
		{raw: "openid"},
		{raw: "launch/patient"},
		{raw: "offline_access"},
		{raw: "patient/Flag.sr", resource: true, bad: true},
		{raw: "patient/Flag.rr", resource: true, bad: true},
		{raw: "patient/Flag.x", resource: true, bad: true},
		{raw: "patient/Flag", resource: true, bad: true},
		{raw: "patient/.rs", resource: true, bad: true},
		{raw: "patient/Flag.read?status=active", resource: true, bad: true},
	} {
		s, ok, err := smart.ParseScope(tc.raw)
		if ok != tc.resource || (err != nil) != tc.bad {
			t.Errorf("ParseScope(%q): ok %v err %v, want ok %v bad %v", tc.raw, ok, err, tc.resource, tc.bad)
			continue
		}
		if ok && !tc.bad && (s.Type != tc.typ || s.Perms != tc.perms) {
			t.Errorf("ParseScope(%q): type %q perms %b, want %q %b", tc.raw, s.Type, s.Perms, tc.typ, tc.perms)
		}
	}
}

func TestScopeCovers(t *testing.T) {
	parse := func(raw string) smart.Scope {
		s, _, err := smart.ParseScope(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		s, t string
		want bool
	}{
		{"patient/*.read", "patient/Flag.rs", true},
		{"patient/Flag.rs", "patient/Flag.r", true},
		{"patient/Flag.r", "patient/Flag.rs", false},
		{"patient/Flag.rs", "user/Flag.rs", false},
		{"system/Communication.rs?recipient=Organization/x", "system/Communication.rs", false},
		{"system/Communication.rs", "system/Communication.rs?recipient=Organization/x", true},
		{"system/Communication.rs?recipient=Organization/x", "system/Communication.r?recipient=Organization/x", true},
	} {
		if got := parse(tc.s).Covers(parse(tc.t)); got != tc.want {
			t.Errorf("%q covers %q: %v, want %v", tc.s, tc.t, got, tc.want)
		}
	}
}

func TestDefaultScope(t *testing.T) {
	for _, tc := range []struct {
		role  smart.Role
		typ   string
		perm  smart.Perm
		allow bool
	}{
		{smart.RoleAdmin, "AuditEvent", smart.PermSearch, true},
		{smart.RoleLA, "Flag", smart.PermCreate, true},
		{smart.RoleLA, "Encounter", smart.PermCreate, false},
		{smart.RoleLA, "Communication", smart.PermRead, true},
		{smart.RoleClinicianUnscheduled, "Flag", smart.PermSearch, true},
		{smart.RoleClinicianUnscheduled, "Flag", smart.PermUpdate, false},
		{smart.RoleClinicianScheduled, "Encounter", smart.PermCreate, true},
	} {
		scopes, _, err := smart.ParseScopes(smart.DefaultScope(tc.role))
		if err != nil || len(scopes) == 0 {
			t.Fatalf("DefaultScope(%s) = %q: %v", tc.role, smart.DefaultScope(tc.role), err)
		}
		p := smart.Principal{Role: tc.role, Scopes: scopes}
		if got := p.Allows(tc.typ, tc.perm); got != tc.allow {
			t.Errorf("DefaultScope(%s) allows %s %b: %v, want %v", tc.role, tc.typ, tc.perm, got, tc.allow)
		}
	}
}
