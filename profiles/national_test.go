package profiles_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestValidate_NationalExamples validates the national CP-IS examples
// (testdata/national, see its SOURCES.md) against the CP-IS profiles. The
// ones that follow the national shapes pass; the national Flag lacks what
// CP-IS adds to the England Patient Flag (the plan type as category and the
// local authority as author).
func TestValidate_NationalExamples(t *testing.T) {
	v := newValidator(t)
	tests := []struct {
		file, profile string
		want          []want
	}{
		{"CPIS-CareTeam-Example", "CPIS-CareTeam", nil},
		{"CPIS-CarePlan-Example", "CPIS-CarePlan", nil},
		{"cpis-careteam-bundle-01-CareTeam", "CPIS-CareTeam", nil},
		{"cpis-auditevent-bundle-01-AuditEvent", "CPIS-AuditEvent", nil},
		{"cpis-auditevent-bundle-01-PractitionerRole", "CPIS-PractitionerRole", nil},
		{"CPIS-Flag-Example", "CPIS-Flag", []want{errAt(fhir.IssueRequired, "Flag.category"), errAt(fhir.IssueRequired, "Flag.author")}},
	}
	for _, tt := range tests {
		b, err := os.ReadFile("testdata/national/" + tt.file + ".json")
		if err != nil {
			t.Fatal(err)
		}
		issues := v.Validate(b, base+tt.profile)
		if g := got(issues); fmt.Sprint(g) != fmt.Sprint(tt.want) {
			t.Errorf("Validate(%s, %s): got %v, want %v", tt.file, tt.profile, g, tt.want)
		}
	}
}
