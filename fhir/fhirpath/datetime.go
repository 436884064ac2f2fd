package fhirpath

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	dateRE     = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?$`)
	dateTimeRE = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2}(T(\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?)?$`)
	timeRE     = regexp.MustCompile(`^\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?$`)
)

// dateTimeLiteral parses the text after @ of a date, dateTime or time
// literal. See https://hl7.org/fhirpath/N1/#date.
func dateTimeLiteral(s string) (Node, error) {
	if m, ok := parseMoment(s, strings.HasPrefix(s, "T")); !ok || m.f[1] > 12 || m.f[2] > 31 || m.f[3] > 23 || m.f[4] > 59 || m.f[5] > 59 {
		return Node{}, fmt.Errorf("bad date/time literal @%s", s)
	}
	switch {
	case strings.HasPrefix(s, "T"):
		if !timeRE.MatchString(s[1:]) {
			return Node{}, fmt.Errorf("bad time literal @%s", s)
		}
		return Node{Type: TypeTime, Value: s[1:]}, nil
	case dateRE.MatchString(s):
		return Node{Type: TypeDate, Value: s}, nil
	case dateTimeRE.MatchString(s):
		return Node{Type: TypeDateTime, Value: strings.TrimSuffix(s, "T")}, nil
	}
	return Node{}, fmt.Errorf("bad date/time literal @%s", s)
}

// moment is a partial date and time: fields up to prec are set.
type moment struct {
	f     [7]int // year, month, day, hour, minute, second, millisecond
	prec  int    // number of fields set; seconds and milliseconds count as one precision
	tz    bool
	tzMin int
}

// parseMoment parses an ISO 8601 date, dateTime or (isTime) time.
func parseMoment(s string, isTime bool) (moment, bool) {
	var m moment
	start := 0
	if isTime {
		start = 3
		s = strings.TrimPrefix(s, "T")
	}
	if i := strings.IndexAny(s, "Z+"); i >= 0 || (!isTime && strings.LastIndexByte(s, '-') > 10) {
		if i < 0 {
			i = strings.LastIndexByte(s, '-')
		}
		tz := s[i:]
		s = s[:i]
		m.tz = true
		if tz != "Z" {
			if len(tz) != 6 {
				return m, false
			}
			h, err1 := strconv.Atoi(tz[1:3])
			mi, err2 := strconv.Atoi(tz[4:6])
			if err1 != nil || err2 != nil {
				return m, false
			}
			m.tzMin = h*60 + mi
			if tz[0] == '-' {
				m.tzMin = -m.tzMin
			}
		}
	}
	seps := []byte{'-', '-', 'T', ':', ':', '.'}
	field := start
	for s != "" && field < 7 {
		end := len(s)
		if field < 6 {
			if j := strings.IndexByte(s, seps[field]); j >= 0 {
				end = j
			}
		}
		part := s[:end]
		if field == 6 {
			for len(part) < 3 {
				part += "0"
			}
			part = part[:3]
		}
		v, err := strconv.Atoi(part)
		if err != nil {
			return m, false
		}
		m.f[field] = v
		field++
		if end == len(s) {
			break
		}
		s = s[end+1:]
	}
	m.prec = min(field, 6)
	if isTime {
		m.prec -= start
	}
	return m, true
}

// compareDateTimes compares two dates, dateTimes or times. ok is false when
// the result is unknown because the values differ in precision and agree up
// to the coarser one. See https://hl7.org/fhirpath/N1/#datetime-equality.
func compareDateTimes(a, b string, isTime bool) (c int, ok bool) {
	ma, ok1 := parseMoment(a, isTime)
	mb, ok2 := parseMoment(b, isTime)
	if !ok1 || !ok2 {
		return strings.Compare(a, b), true
	}
	off := 0
	if isTime {
		off = 3
	}
	if ma.tz && mb.tz && ma.tzMin != mb.tzMin && ma.prec+off > 3 && mb.prec+off > 3 {
		ma, mb = ma.utc(), mb.utc()
	}
	n := min(ma.prec, mb.prec) + off
	for i := off; i < n+boolInt(n == 6); i++ {
		if ma.f[i] != mb.f[i] {
			if ma.f[i] < mb.f[i] {
				return -1, true
			}
			return 1, true
		}
	}
	if ma.prec != mb.prec {
		return 0, false
	}
	return 0, true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// utc shifts a moment with a time zone to UTC.
func (m moment) utc() moment {
	t := time.Date(m.f[0], time.Month(max(m.f[1], 1)), max(m.f[2], 1), m.f[3], m.f[4], m.f[5], m.f[6]*1e6, time.UTC)
	t = t.Add(-time.Duration(m.tzMin) * time.Minute)
	m.f = [7]int{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond() / 1e6}
	m.tzMin = 0
	return m
}

// addDuration adds (or subtracts) a calendar duration quantity to a date,
// dateTime or time. See https://hl7.org/fhirpath/N1/#date-time-arithmetic.
func addDuration(d, q Node, subtract bool) (Collection, error) {
	s := d.Value.(string)
	isTime := kindOf(d) == kTime
	m, ok := parseMoment(s, isTime)
	if !ok {
		return nil, fmt.Errorf("bad date/time %q", s)
	}
	qm := q.Object()
	v, iv, isInt, ok := number(Node{Value: qm["value"]})
	if !ok {
		return nil, fmt.Errorf("bad quantity value")
	}
	if !isInt {
		iv = int64(v)
	}
	if subtract {
		iv = -iv
	}
	n := int(iv)
	base := time.Date(m.f[0], time.Month(max(m.f[1], 1)), max(m.f[2], 1), m.f[3], m.f[4], m.f[5], m.f[6]*1e6, time.UTC)
	switch quantityUnit(qm) {
	case "a":
		base = base.AddDate(n, 0, 0)
	case "mo":
		base = base.AddDate(0, n, 0)
	case "wk":
		base = base.AddDate(0, 0, 7*n)
	case "d":
		base = base.AddDate(0, 0, n)
	case "h":
		base = base.Add(time.Duration(n) * time.Hour)
	case "min":
		base = base.Add(time.Duration(n) * time.Minute)
	case "s":
		base = base.Add(time.Duration(v * float64(time.Second)))
	case "ms":
		base = base.Add(time.Duration(n) * time.Millisecond)
	default:
		return nil, fmt.Errorf("cannot add %v to a date", qm["unit"])
	}
	layouts := []string{"2006", "2006-01", "2006-01-02", "2006-01-02T15", "2006-01-02T15:04", "2006-01-02T15:04:05.000"}
	prec := m.prec
	if isTime {
		prec += 3
	}
	out := base.Format(layouts[min(prec, 6)-1])
	if prec == 4 {
		out += ":00" // hour precision is not a valid dateTime; show minutes
	}
	if isTime {
		out = out[11:]
	}
	if m.tz {
		out += tzSuffix(s)
	}
	typ := d.Type
	return Collection{{Type: systemType(typ), Value: out}}, nil
}

func tzSuffix(s string) string {
	if strings.HasSuffix(s, "Z") {
		return "Z"
	}
	if len(s) > 6 && (s[len(s)-6] == '+' || s[len(s)-6] == '-') {
		return s[len(s)-6:]
	}
	return ""
}

// systemType maps a FHIR primitive type to the System type of its value.
func systemType(t string) string {
	switch t {
	case "date":
		return TypeDate
	case "dateTime", "instant":
		return TypeDateTime
	case "time":
		return TypeTime
	case "boolean":
		return TypeBoolean
	case "integer", "positiveInt", "unsignedInt":
		return TypeInteger
	case "decimal":
		return TypeDecimal
	}
	if isPrimitiveType(t) && !strings.HasPrefix(t, "System.") {
		return TypeString
	}
	return t
}
