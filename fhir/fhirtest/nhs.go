package fhirtest

import (
	"fmt"
	"strconv"
)

// NHSNumber returns the test NHS number with the 6-digit serial n: "999",
// the serial and the Modulus 11 check digit (weights 10 to 2 over the nine
// digits, check = 11 - sum mod 11, 11 becomes 0). ok is false when the
// check would be 10, which no valid number has. Numbers in the 999 range
// pass the check but are never issued, so tests use only them.
func NHSNumber(n int) (nhs string, ok bool) {
	if n < 0 || n > 999_999 {
		return "", false
	}
	digits := fmt.Sprintf("999%06d", n)
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(digits[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return "", false
	}
	return digits + strconv.Itoa(check), true
}
