package server

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNHSNumbersIn: the query scan finds what the regular expression over
// the decoded bars found before it.
func TestNHSNumbersIn(t *testing.T) {
	re := regexp.MustCompile(`nhs-number\|([0-9]{10})`)
	for _, q := range []string{
		"",
		"subject:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018&status=active",
		"patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018",
		"identifier=https://fhir.nhs.uk/Id/nhs-number%7c9990000026,https://fhir.nhs.uk/Id/nhs-number|9990000034",
		"identifier=nhs-number|999000001&x=nhs-number|99900000181",
		"identifier=nhs-number%7C12345abcde&nhs-number&nhs-numbernhs-number|9990000042",
		"a=nhs-number%7",
	} {
		var want []string
		for _, m := range re.FindAllStringSubmatch(strings.ReplaceAll(strings.ReplaceAll(q, "%7C", "|"), "%7c", "|"), -1) {
			want = append(want, m[1])
		}
		if got := nhsNumbersIn(q); !slices.Equal(got, want) {
			t.Errorf("nhsNumbersIn(%q) = %q, want %q", q, got, want)
		}
	}
}
