package synthetic

import (
	"strconv"

	"github.com/cpis-fhir/cpis/profiles"
)

// nhsSerials is the size of the 999 test range: "999" and six digits.
const nhsSerials = 1_000_000

// nhsNumber returns the test NHS number "999", the six-digit serial and
// the Modulus 11 check digit (weights 10 to 2 over the nine digits, check =
// 11 - sum mod 11, 11 becomes 0). ok is false when the check would be 10,
// which no valid number has. Numbers in the 999 range pass the check but
// are never issued.
func nhsNumber(serial int) (nhs string, ok bool) {
	var d [10]byte
	d[0], d[1], d[2] = '9', '9', '9'
	n := serial
	for i := 8; i >= 3; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	check, ok := profiles.NHSCheckDigit(string(d[:9]))
	if !ok {
		return "", false
	}
	d[9] = check
	return string(d[:]), true
}

// validNHSSerial reports whether the serial gives a valid number.
func validNHSSerial(serial int) bool {
	_, ok := nhsNumber(serial)
	return ok
}

// itoa3 formats n with at least three digits.
func itoa3(n int) string {
	s := strconv.Itoa(n)
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}
