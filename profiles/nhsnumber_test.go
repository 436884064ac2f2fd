package profiles_test

import (
	"testing"

	"github.com/cpis-fhir/cpis/profiles"
)

// The check digits below were worked by hand: for 999000001 the weighted
// sum is 9*10 + 9*9 + 9*8 + 1*2 = 245, 245 mod 11 = 3, 11 - 3 = 8.
func TestNHSNumberProblem(t *testing.T) {
	tests := []struct {
		name, number string
		valid        bool
	}{
		{"valid 999 range", "9990000018", true},
		{"valid 999 range 2", "9990000026", true},
		{"valid 999 range 3", "9990000034", true},
		{"check 11 becomes 0", "9990000050", true}, // sum 253 = 23*11
		{"bad check digit", "9990000017", false},
		{"bad check digit 2", "9990000027", false},
		{"check 10 is invalid", "9990000000", false}, // sum 243, 243 mod 11 = 1, 11 - 1 = 10
		{"nine digits", "999000001", false},
		{"eleven digits", "99900000180", false},
		{"spaces", "999 000 0018", false},
		{"letter", "99900000A8", false},
		{"empty", "", false},
		{"non-ASCII digit", "999000001٨", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := profiles.NHSNumberProblem(tt.number)
			if (p == "") != tt.valid {
				t.Errorf("NHSNumberProblem(%q) = %q, want valid %v", tt.number, p, tt.valid)
			}
			if profiles.ValidNHSNumber(tt.number) != tt.valid {
				t.Errorf("ValidNHSNumber(%q) = %v, want %v", tt.number, !tt.valid, tt.valid)
			}
		})
	}
}
