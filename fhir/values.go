package fhir

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// NormalizeString returns s as string search compares it: accents and
// other combining marks removed, case folded, leading and trailing white
// space trimmed and inner runs of white space made one space. Index
// extraction and query parsing both use it, so that "Zoë" finds "zoe".
// See https://hl7.org/fhir/R4/search.html#string.
func NormalizeString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		// ToLower(ToUpper(r)) folds case to the common lower form ("ſ" and
		// "S" to "s", the Kelvin sign to "k"); SimpleFold would move on
		// along the fold orbit instead ("s" to "ſ").
		b.WriteRune(unicode.ToLower(unicode.ToUpper(r)))
	}
	return b.String()
}

// DateRange returns the range of instants, in Unix milliseconds with both
// ends inclusive, that a FHIR date, dateTime or instant covers by its
// precision: "2020" covers the whole year, "2020-03-04T10:00" the minute,
// "2020-03-04T10:00:00.123Z" one millisecond. A value without a time zone is
// taken in loc (UTC when nil). ok is false if s is not such a value.
// See https://hl7.org/fhir/R4/search.html#date.
func DateRange(s string, loc *time.Location) (low, high int64, ok bool) {
	if loc == nil {
		loc = time.UTC
	}
	date, clock, hasTime := strings.Cut(s, "T")
	var y, m, d int
	var next func(time.Time) time.Time
	switch len(date) {
	case 4:
		y, ok = atoiN(date, 4)
		m, d = 1, 1
		next = func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }
	case 7:
		var ok2 bool
		y, ok = atoiN(date[:4], 4)
		m, ok2 = atoiN(date[5:], 2)
		ok = ok && ok2 && date[4] == '-' && m >= 1 && m <= 12
		d = 1
		next = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	case 10:
		var ok2, ok3 bool
		y, ok = atoiN(date[:4], 4)
		m, ok2 = atoiN(date[5:7], 2)
		d, ok3 = atoiN(date[8:], 2)
		ok = ok && ok2 && ok3 && date[4] == '-' && date[7] == '-' && m >= 1 && m <= 12 && d >= 1 && d <= daysIn(y, m)
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }
	}
	if !ok || (hasTime && len(date) != 10) {
		return 0, 0, false
	}
	if !hasTime {
		start := time.Date(y, time.Month(m), d, 0, 0, 0, 0, loc)
		return start.UnixMilli(), next(start).UnixMilli() - 1, true
	}
	// Time zone: Z, +hh:mm or -hh:mm at the end.
	zone := loc
	switch {
	case strings.HasSuffix(clock, "Z"):
		zone, clock = time.UTC, clock[:len(clock)-1]
	case len(clock) > 6 && (clock[len(clock)-6] == '+' || clock[len(clock)-6] == '-') && clock[len(clock)-3] == ':':
		tz := clock[len(clock)-6:]
		hh, ok1 := atoiN(tz[1:3], 2)
		mm, ok2 := atoiN(tz[4:], 2)
		if !ok1 || !ok2 || hh > 14 || mm > 59 {
			return 0, 0, false
		}
		off := hh*3600 + mm*60
		if tz[0] == '-' {
			off = -off
		}
		zone, clock = time.FixedZone("", off), clock[:len(clock)-6]
	}
	frac := ""
	if i := strings.IndexByte(clock, '.'); i >= 0 {
		clock, frac = clock[:i], clock[i+1:]
		if frac == "" {
			return 0, 0, false
		}
		for _, c := range frac {
			if c < '0' || c > '9' {
				return 0, 0, false
			}
		}
	}
	var hh, mi, ss int
	var width time.Duration
	switch len(clock) {
	case 5:
		var ok2 bool
		hh, ok = atoiN(clock[:2], 2)
		mi, ok2 = atoiN(clock[3:], 2)
		ok = ok && ok2 && clock[2] == ':' && frac == ""
		width = time.Minute
	case 8:
		var ok2, ok3 bool
		hh, ok = atoiN(clock[:2], 2)
		mi, ok2 = atoiN(clock[3:5], 2)
		ss, ok3 = atoiN(clock[6:], 2)
		ok = ok && ok2 && ok3 && clock[2] == ':' && clock[5] == ':'
		width = time.Second
	default:
		ok = false
	}
	if !ok || hh > 23 || mi > 59 || ss > 60 {
		return 0, 0, false
	}
	ns := 0
	if frac != "" {
		digits := min(len(frac), 3)
		v, _ := strconv.Atoi(frac[:digits])
		for i := digits; i < 3; i++ {
			v *= 10
		}
		ns = v * int(time.Millisecond)
		width = time.Millisecond
		if digits < 3 {
			width = time.Duration(math.Pow10(3-digits)) * time.Millisecond
		}
	}
	start := time.Date(y, time.Month(m), d, hh, mi, ss, ns, zone)
	return start.UnixMilli(), start.Add(width).UnixMilli() - 1, true
}

func atoiN(s string, n int) (int, bool) {
	if len(s) != n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(y, m int) int {
	return time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// NumberRange returns the value of a decimal written as s and the range its
// precision implies, [low, high): "100" gives 100 in [99.5, 100.5), "1.50"
// 1.5 in [1.495, 1.505), "1e2" 100 in [50, 150). ok is false if s is not a
// decimal. See https://hl7.org/fhir/R4/search.html#number.
func NumberRange(s string) (value, low, high float64, ok bool) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) || s == "" || strings.ContainsAny(s, "xXpP_") || strings.HasPrefix(s, "+") {
		return 0, 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, 0, 0, false
		}
		exp = e
	}
	decimals := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		decimals = len(mant) - i - 1
	}
	half := 0.5 * math.Pow10(exp-decimals)
	return v, v - half, v + half, true
}
