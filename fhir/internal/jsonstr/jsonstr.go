// Package jsonstr decodes the escapes of JSON strings for the project's
// one-pass JSON readers (the fast FHIR parser and the FHIRPath decoder).
package jsonstr

import (
	"unicode/utf16"
	"unicode/utf8"
)

// AppendUnescaped appends to dst the decoded rest of the JSON string in b
// from offset i (inside the string, after its opening quote) up to its
// closing quote, and returns dst and the offset after that quote. ok is
// false for what encoding/json would refuse (a control character, an
// unknown escape, a bad \u escape, an unterminated string) and for a lone
// UTF-16 surrogate, which encoding/json replaces but the readers leave to
// their slower fallbacks. The bytes are not checked to be valid UTF-8.
func AppendUnescaped(dst, b []byte, i int) (out []byte, next int, ok bool) {
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return dst, i + 1, true
		case c < 0x20:
			return dst, i, false
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return dst, i, false
		}
		e := b[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(b, i)
			if !ok {
				return dst, i, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
					return dst, i, false
				}
				r2, ok := hex4(b, i+2)
				if !ok {
					return dst, i, false
				}
				i += 6
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return dst, i, false
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, i, false
		}
	}
	return dst, i, false
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
