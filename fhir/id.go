package fhir

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// NewID returns a new resource id: a version 7 UUID (RFC 9562 §5.7), a
// 48-bit Unix millisecond timestamp followed by 74 random bits, which fits
// the R4 id pattern [A-Za-z0-9\-\.]{1,64}. Ids made later sort after
// earlier ones (to the millisecond), so the store's B-trees keyed by id
// (and by references to new resources) grow at their right edge instead
// of at random pages: a commit dirties far fewer pages. The id tells when
// the resource was created, as its first meta.lastUpdated does.
func NewID() string {
	return newID(time.Now())
}

func newID(t time.Time) string {
	var b [16]byte
	rand.Read(b[6:])
	ms := uint64(t.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ValidID reports whether s matches the R4 id pattern [A-Za-z0-9\-\.]{1,64}.
// See https://hl7.org/fhir/R4/datatypes.html#id.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
