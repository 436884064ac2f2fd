package terminology_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/terminology"
)

func TestExpand(t *testing.T) {
	s := terminology.New()
	sct := terminology.SystemSNOMED
	cpp := terminology.Concept{System: sct, Code: "342191000000101", Display: "Subject to child protection plan"}
	lac := terminology.Concept{System: sct, Code: "764841000000100", Display: "Looked after child"}
	unborn := terminology.Concept{System: sct, Code: "818901000000100", Display: "Unborn child subject to child protection plan"}
	fs := "http://hl7.org/fhir/flag-status"
	tests := []struct {
		name, vs, filter string
		offset, count    int
		total            int
		want             []terminology.Concept
	}{
		{"plan types", terminology.ValueSetChildProtectionPlan, "", 0, -1, 3, []terminology.Concept{cpp, lac, unborn}},
		{"filter unborn", terminology.ValueSetChildProtectionPlan, "UNBORN", 0, -1, 1, []terminology.Concept{unborn}},
		{"filter on code", terminology.ValueSetChildProtectionPlan, "7648", 0, -1, 1, []terminology.Concept{lac}},
		{"filter plan", terminology.ValueSetChildProtectionPlan, "protection plan", 0, -1, 2, []terminology.Concept{cpp, unborn}},
		{"page", terminology.ValueSetChildProtectionPlan, "", 1, 1, 3, []terminology.Concept{lac}},
		{"count 0", terminology.ValueSetChildProtectionPlan, "", 0, 0, 3, nil},
		{"offset past the end", terminology.ValueSetChildProtectionPlan, "", 5, 10, 3, nil},
		{"whole code system", terminology.ValueSetFlagStatus + "|4.0.1", "", 0, -1, 3, []terminology.Concept{
			{System: fs, Code: "active", Display: "Active"}, {System: fs, Code: "inactive", Display: "Inactive"}, {System: fs, Code: "entered-in-error", Display: "Entered in Error"}}},
		{"no match", terminology.ValueSetFlagStatus, "zzz", 0, -1, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := s.Expand(context.Background(), tt.vs, tt.filter, tt.offset, tt.count)
			if err != nil {
				t.Fatalf("Expand(%s, %q): %v", tt.vs, tt.filter, err)
			}
			if e.Total != tt.total || e.Offset != tt.offset {
				t.Errorf("Expand(%s, %q): total %d offset %d, want %d %d", tt.vs, tt.filter, e.Total, e.Offset, tt.total, tt.offset)
			}
			if !reflect.DeepEqual(e.Contains, tt.want) {
				t.Errorf("Expand(%s, %q) contains %v, want %v", tt.vs, tt.filter, e.Contains, tt.want)
			}
		})
	}
	_, err := s.Expand(context.Background(), "https://example.org/ValueSet/none", "", 0, -1)
	if fe := (*fhir.Error)(nil); !errors.As(err, &fe) || fe.Code != fhir.IssueNotFound {
		t.Errorf("Expand(unknown): err %v, want not-found", err)
	}
}

func TestLookupCode(t *testing.T) {
	s := terminology.New()
	got, err := s.LookupCode(context.Background(), terminology.SystemFlagCategoryPatient, "child-protection-information-system-flag")
	if err != nil {
		t.Fatal(err)
	}
	want := &terminology.LookupResult{Name: "EnglandFlagCategoryPatient", Version: "0.5.0", Display: "Child Protection Information System Flag"}
	if *got != *want {
		t.Errorf("LookupCode(flag category) = %+v, want %+v", *got, *want)
	}
	got, err = s.LookupCode(context.Background(), terminology.SystemSNOMED, "818901000000100")
	if err != nil {
		t.Fatal(err)
	}
	want = &terminology.LookupResult{Name: "SNOMED CT", Display: "Unborn child subject to child protection plan"}
	if *got != *want {
		t.Errorf("LookupCode(SNOMED) = %+v, want %+v", *got, *want)
	}
	for _, c := range [][2]string{{terminology.SystemFlagCategoryPatient, "cpis"}, {"https://example.org/cs", "1"}, {terminology.SystemSNOMED, "22298006"}} {
		_, err := s.LookupCode(context.Background(), c[0], c[1])
		if fe := (*fhir.Error)(nil); !errors.As(err, &fe) || fe.Code != fhir.IssueNotFound {
			t.Errorf("LookupCode(%s|%s): err %v, want not-found", c[0], c[1], err)
		}
	}
}

func TestSubsumes(t *testing.T) {
	s := terminology.New()
	ri := "http://hl7.org/fhir/request-intent"
	tests := []struct{ system, a, b, want string }{
		{ri, "order", "order", terminology.Equivalent},
		{ri, "order", "original-order", terminology.Subsumes},
		{ri, "order", "instance-order", terminology.Subsumes}, // two levels down
		{ri, "instance-order", "order", terminology.SubsumedBy},
		{ri, "filler-order", "instance-order", terminology.Subsumes},
		{ri, "original-order", "filler-order", terminology.NotSubsumed},
		{ri, "plan", "order", terminology.NotSubsumed},
		{"http://hl7.org/fhir/care-plan-activity-status", "not-started", "not-started", terminology.Equivalent},
		{"http://hl7.org/fhir/flag-status", "active", "inactive", terminology.NotSubsumed},
	}
	for _, tt := range tests {
		got, err := s.Subsumes(context.Background(), tt.system, tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("Subsumes(%s, %s, %s) = %q, %v; want %q", tt.system, tt.a, tt.b, got, err, tt.want)
		}
	}
	for _, c := range [][3]string{{ri, "order", "nope"}, {terminology.SystemSNOMED, "342191000000101", "342191000000101"}} {
		_, err := s.Subsumes(context.Background(), c[0], c[1], c[2])
		if fe := (*fhir.Error)(nil); !errors.As(err, &fe) || fe.Code != fhir.IssueNotFound {
			t.Errorf("Subsumes(%v): err %v, want not-found", c, err)
		}
	}
}

func TestDefinitions(t *testing.T) {
	defs := terminology.New().Definitions()
	if len(defs) != 62 {
		t.Errorf("Definitions: %d, want the 62 embedded files (32 CodeSystems, 30 ValueSets)", len(defs))
	}
	for _, d := range defs {
		if !fhir.ValidID(d.ID) || d.URL == "" || (d.Type != "CodeSystem" && d.Type != "ValueSet") {
			t.Errorf("Definition %s/%s (%s): want a valid id, url and type", d.Type, d.ID, d.URL)
		}
	}
}

func BenchmarkExpand_Filter(b *testing.B) {
	s := terminology.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		// UKCore-CareSettingType: 419 SNOMED CT codes, all scanned.
		if _, err := s.Expand(ctx, terminology.ValueSetCareSettingType, "emergency", 0, 20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubsumes(b *testing.B) {
	s := terminology.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Subsumes(ctx, "http://hl7.org/fhir/request-intent", "order", "instance-order"); err != nil {
			b.Fatal(err)
		}
	}
}
