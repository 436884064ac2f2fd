// Package jsonstr decodes the escapes of JSON strings for the project's
// one-pass JSON readers (the fast FHIR parser and the FHIRPath decoder),
// and writes Go strings as JSON strings for its writers (the fast FHIR
// marshaller and the Bundle, cursor and audit encoders).
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

// AppendQuoted appends s to dst as a JSON string literal, in quotes, the
// bytes encoding/json writes for it: with html, as json.Marshal writes it
// (< > & escaped as \u003c \u003e \u0026); without, as a json.Encoder
// with SetEscapeHTML(false) writes it (google/fhir's output). In both,
// U+2028 and U+2029 are escaped and each byte of invalid UTF-8 is written
// as \ufffd.
func AppendQuoted(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	dst = AppendEscaped(dst, s, html)
	return append(dst, '"')
}

// AppendEscaped appends s to dst escaped as AppendQuoted escapes it, without
// the quotes, for a string literal written in parts.
func AppendEscaped(dst []byte, s string, html bool) []byte {
	safe := &safeSet
	if html {
		safe = &htmlSafeSet
	}
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				// The other control characters, and < > & with html.
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

const hexDigits = "0123456789abcdef"

// safeSet and htmlSafeSet hold, for each byte, whether AppendEscaped copies
// it as it is: the ASCII bytes other than the control characters, '"' and
// '\\', and for htmlSafeSet other than < > & too. Bytes from 0x80 are
// false, to be decoded as UTF-8. Indexed by a byte, they need no bounds
// check.
var safeSet, htmlSafeSet = safeSets()

func safeSets() (plain, html [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plain[c] = c != '"' && c != '\\'
		html[c] = plain[c] && c != '<' && c != '>' && c != '&'
	}
	return plain, html
}
