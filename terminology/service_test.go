package terminology_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/terminology"
)

func TestValidateCode(t *testing.T) {
	s := terminology.New()
	ctx := context.Background()
	tests := []struct {
		name, vs, system, code string
		in                     bool
		display                string
	}{
		{"CPP", terminology.ValueSetChildProtectionPlan, terminology.SystemSNOMED, "342191000000101", true, "Subject to child protection plan"},
		{"LAC", terminology.ValueSetChildProtectionPlan, terminology.SystemSNOMED, "764841000000100", true, "Looked after child"},
		{"unborn", terminology.ValueSetChildProtectionPlan, terminology.SystemSNOMED, "818901000000100", true, "Unborn child subject to child protection plan"},
		{"versioned value set URL", terminology.ValueSetChildProtectionPlan + "|1.0.0", terminology.SystemSNOMED, "342191000000101", true, "Subject to child protection plan"},
		{"other SNOMED code", terminology.ValueSetChildProtectionPlan, terminology.SystemSNOMED, "22298006", false, ""},
		{"plan code under the wrong system", terminology.ValueSetChildProtectionPlan, "https://snomed.info/sct", "342191000000101", false, ""},
		{"flag category", terminology.ValueSetFlagCategoryPatient, terminology.SystemFlagCategoryPatient, "child-protection-information-system-flag", true, "Child Protection Information System Flag"},
		{"flag category unknown", terminology.ValueSetFlagCategoryPatient, terminology.SystemFlagCategoryPatient, "cpis", false, ""},
		{"verified NHS number", terminology.ValueSetNHSNumberVerification, terminology.SystemNHSNumberVerification, "01", true, "Number present and verified"},
		{"not traced NHS number", terminology.ValueSetNHSNumberVerification, terminology.SystemNHSNumberVerification, "02", true, "Number present but not traced"},
		{"verification status 09", terminology.ValueSetNHSNumberVerification, terminology.SystemNHSNumberVerification, "09", false, ""},
		{"verification null flavor NI", terminology.ValueSetNHSNumberVerification, "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "NI", true, "NoInformation"},
		{"verification null flavor UNK not included", terminology.ValueSetNHSNumberVerification, "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", false, ""},
		{"care setting emergency department", terminology.ValueSetCareSettingType, terminology.SystemSNOMED, "310000008", true, "Accident and Emergency service"},
		{"flag status", terminology.ValueSetFlagStatus, "http://hl7.org/fhir/flag-status", "entered-in-error", true, "Entered in Error"},
		{"flag status other system", terminology.ValueSetFlagStatus, "http://hl7.org/fhir/event-status", "active", false, ""},
		{"care plan intent list", "http://hl7.org/fhir/ValueSet/care-plan-intent", "http://hl7.org/fhir/request-intent", "plan", true, "Plan"},
		{"care plan intent outside list", "http://hl7.org/fhir/ValueSet/care-plan-intent", "http://hl7.org/fhir/request-intent", "directive", false, ""},
		{"mobile phone use", terminology.ValueSetContactPointUse, "http://hl7.org/fhir/contact-point-use", "mobile", true, "Mobile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, display, err := s.ValidateCode(ctx, tt.vs, tt.system, tt.code)
			if err != nil {
				t.Fatalf("ValidateCode(%s, %s|%s): %v", tt.vs, tt.system, tt.code, err)
			}
			if in != tt.in || display != tt.display {
				t.Errorf("ValidateCode(%s, %s|%s) = %v %q, want %v %q", tt.vs, tt.system, tt.code, in, display, tt.in, tt.display)
			}
		})
	}
}

func TestValidateCode_Errors(t *testing.T) {
	s := terminology.New()
	_, _, err := s.ValidateCode(context.Background(), "https://example.org/ValueSet/none", terminology.SystemSNOMED, "1")
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Code != fhir.IssueNotFound {
		t.Errorf("ValidateCode(unknown value set): err %v, want *fhir.Error not-found", err)
	}
	_, _, err = s.ValidateCode(context.Background(), terminology.ValueSetFlagStatus, "http://hl7.org/fhir/flag-status", "")
	if !errors.As(err, &fe) || fe.Code != fhir.IssueInvalid {
		t.Errorf("ValidateCode(empty code): err %v, want *fhir.Error invalid", err)
	}
}

func TestLookup(t *testing.T) {
	s := terminology.New()
	tests := []struct {
		system, code, display string
		ok                    bool
	}{
		{terminology.SystemSpineErrorOrWarningCode, "INVALID_SEARCH_DATA", "Invalid search data", true},
		{terminology.SystemSpineErrorOrWarningCode, "ACCESS_DENIED", "Access has been denied to process this request", true},
		{terminology.SystemSpineErrorOrWarningCode, "PRECONDITION_FAILED", "Precondition failed", true},
		{"https://fhir.nhs.uk/CodeSystem/England-SpineErrorOrWarningCode", "ACCESS_DENIED", "Access has been denied to process this request", true},
		{terminology.SystemSpineErrorOrWarningCode, "NO_SUCH_CODE", "", false},
		{terminology.SystemSDSJobRole, "R8000", "Clinical Practitioner Access Role", true},
		{terminology.SystemSDSJobRole, "R9999", "", false},
		{terminology.SystemFlagCategoryPatient, "child-protection-information-system-flag", "Child Protection Information System Flag", true},
		{terminology.SystemNHSNumberVerification, "08", "Trace postponed (baby under six weeks old)", true},
		{terminology.SystemSNOMED, "818901000000100", "Unborn child subject to child protection plan", true},
		{"http://hl7.org/fhir/administrative-gender", "female", "Female", true},
		{"http://example.org/unknown", "x", "", false},
	}
	for _, tt := range tests {
		display, ok := s.Lookup(tt.system, tt.code)
		if ok != tt.ok || display != tt.display {
			t.Errorf("Lookup(%s, %s) = %q %v, want %q %v", tt.system, tt.code, display, ok, tt.display, tt.ok)
		}
	}
}

func TestValueSetSystems(t *testing.T) {
	s := terminology.New()
	got := s.ValueSetSystems(terminology.ValueSetNHSNumberVerification)
	want := []string{
		"http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
		"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
		"https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusWales",
	}
	if len(got) != len(want) {
		t.Fatalf("ValueSetSystems(NHS number verification) = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ValueSetSystems(NHS number verification)[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if got := s.ValueSetSystems("https://example.org/ValueSet/none"); got != nil {
		t.Errorf("ValueSetSystems(unknown) = %v, want nil", got)
	}
	if !s.HasValueSet(terminology.ValueSetChildProtectionPlan + "|1.0.0") {
		t.Errorf("HasValueSet(plan types|1.0.0) = false, want true")
	}
}

// TestValueSetCodes checks the codes the search modifiers :in and :not-in
// expand a value set to: the plan types in compose order, the version held
// or none, nothing for another version or an unknown value set.
func TestValueSetCodes(t *testing.T) {
	s := terminology.New()
	var search fhir.ValueSetCodes = s.ValueSetCodes // the search registry's source
	plan := []fhir.Coding{
		{System: terminology.SystemSNOMED, Code: "342191000000101"},
		{System: terminology.SystemSNOMED, Code: "764841000000100"},
		{System: terminology.SystemSNOMED, Code: "818901000000100"},
	}
	for _, version := range []string{"", "1.0.0"} {
		got, ok := search(terminology.ValueSetChildProtectionPlan, version)
		if !ok || !slices.Equal(got, plan) {
			t.Errorf("ValueSetCodes(plan types, %q) = %v, %v; want %v, true", version, got, ok, plan)
		}
	}
	for _, tc := range []struct{ url, version string }{
		{terminology.ValueSetChildProtectionPlan, "2.0.0"},
		{"https://example.org/ValueSet/unknown", ""},
		{terminology.ValueSetChildProtectionPlan + "|1.0.0", ""}, // the version goes in its own argument
	} {
		if got, ok := search(tc.url, tc.version); ok {
			t.Errorf("ValueSetCodes(%s, %q) = %v, true; want not found", tc.url, tc.version, got)
		}
	}
}
