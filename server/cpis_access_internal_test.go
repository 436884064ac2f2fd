package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server/smart"
)

// TestAccess_CanonicalAsCodec holds stampNew's JSON (encoded directly,
// see its comment) equal, byte for byte, to the codec's canonical JSON of
// the same resource (parse, stamp, marshal), for the access history's
// AuditEvents and PractitionerRoles of varied viewers and records.
func TestAccess_CanonicalAsCodec(t *testing.T) {
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 3, 1, 9, 0, 0, 123_000_000, time.UTC)
	s, err := New(st, codec, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	same := func(r *fhir.Resource) {
		t.Helper()
		p, err := codec.Parse(r.JSON)
		if err != nil {
			t.Fatalf("%s: the codec refuses it: %v\n%s", r.Type, err, r.JSON)
		}
		p.Stamp(r.ID, 1, now)
		want, err := codec.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.JSON) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", r.Type, r.JSON, want)
		}
	}
	for _, p := range []*smart.Principal{
		{Subject: "dr-1", ODS: "RXX01", SDSRole: "R8000"},
		{Subject: "nurse <a&b> \"q\" é 中", ODS: "R9A01"},
	} {
		for _, name := range []string{"", "Barking & Dagenham <A&E> – Ward 7 é"} {
			role, err := s.viewerRole("pr-1", p, name)
			if err != nil {
				t.Fatal(err)
			}
			same(role)
			for _, g := range []*accessGroup{
				{ods: "E09000001", id: "ae-1", records: []seenRecord{{ref: "Flag/f1", plan: "1110331000000105"}}},
				{id: "ae-2", records: []seenRecord{{ref: "Flag/f1", plan: "1110331000000105"}, {ref: "CarePlan/c1", plan: "1110341000000104"}, {ref: "CareTeam/t1"}, {ref: "Patient/p1"}}},
			} {
				a := &accessRead{viewer: p.Subject, site: p.ODS, siteName: name, at: now, roleRef: "PractitionerRole/pr-1"}
				listed, repeat, err := s.accessEvents(a, "9990000018", g)
				if err != nil {
					t.Fatal(err)
				}
				same(listed)
				same(repeat)
			}
		}
	}
}
