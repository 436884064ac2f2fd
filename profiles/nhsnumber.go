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
	for i := 0; i < 10; i++ {
		if s[i] < '0' || s[i] > '9' {
			return "an NHS number has only digits"
		}
	}
	check, ok := NHSCheckDigit(s[:9])
	if !ok {
		return "the NHS number has no valid check digit (Modulus 11 gives 10)"
	}
	if s[9] != check {
		return "the NHS number fails the Modulus 11 check digit"
	}
	return ""
}

// NHSCheckDigit returns the check digit ('0' to '9') that completes the
// nine digits nine into an NHS number (see NHSNumberProblem); ok is false
// when nine is not nine digits or when Modulus 11 gives 10, so that no NHS
// number starts with them.
func NHSCheckDigit(nine string) (digit byte, ok bool) {
	if len(nine) != 9 {
		return 0, false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := nine[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		sum += int(c-'0') * (10 - i)
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return 0, false
	}
	return byte('0' + check), true
}

// ValidNHSNumber reports whether s is a 10-digit NHS number with a valid
// Modulus 11 check digit (see NHSNumberProblem).
func ValidNHSNumber(s string) bool { return NHSNumberProblem(s) == "" }
