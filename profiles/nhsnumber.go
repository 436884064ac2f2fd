package profiles

// SystemNHSNumber is the identifier system of NHS numbers.
// See https://hl7.org/fhir/R4/datatypes.html#Identifier.
const SystemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"

// NHSNumberProblem says what is wrong with an NHS number: "" when it is
// well formed with a valid check digit, else a reason that does not
// repeat the number. The check is Modulus 11: digits 1 to 9 are weighted 10
// down to 2, the sum is taken modulo 11, the check digit is 11 minus the
// remainder, 11 becomes 0 and 10 means the number is invalid.
// Numbers starting 999 pass the check (they are test numbers, never issued).
func NHSNumberProblem(s string) string {
	if len(s) != 10 {
		return "an NHS number has 10 digits"
	}
	sum := 0
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "an NHS number has only digits"
		}
		if i < 9 {
			sum += int(c-'0') * (10 - i)
		}
	}
	check := 11 - sum%11
	switch {
	case check == 11:
		check = 0
	case check == 10:
		return "the NHS number has no valid check digit (Modulus 11 gives 10)"
	}
	if int(s[9]-'0') != check {
		return "the NHS number fails the Modulus 11 check digit"
	}
	return ""
}

// ValidNHSNumber reports whether s is a 10-digit NHS number with a valid
// Modulus 11 check digit (see NHSNumberProblem).
func ValidNHSNumber(s string) bool { return NHSNumberProblem(s) == "" }
