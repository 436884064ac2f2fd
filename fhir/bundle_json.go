package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// JSON returns the Bundle's JSON: the same bytes as json.Marshal(b), written
// without reflection and without running the entries' resources (already
// compact JSON from the store or the codec) through encoding/json's
// scanner, which was most of a search answer's encoding. A resource that
// is not compact, or holds a character encoding/json escapes for HTML, is
// passed through json.Compact and json.HTMLEscape, as json.Marshal does.
// TestBundle_JSONAsMarshal holds the two equal.
func (b *Bundle) JSON() ([]byte, error) {
	dst := make([]byte, 0, b.sizeHint())
	dst = append(dst, `{"resourceType":`...)
	dst = appendString(dst, b.ResourceType)
	if b.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, b.ID)
	}
	if b.Meta != nil {
		dst = append(dst, `,"meta":{`...)
		if b.Meta.LastUpdated != "" {
			dst = append(dst, `"lastUpdated":`...)
			dst = appendString(dst, b.Meta.LastUpdated)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, b.Type)
	if b.Total != nil {
		dst = append(dst, `,"total":`...)
		dst = strconv.AppendInt(dst, int64(*b.Total), 10)
	}
	if len(b.Link) > 0 {
		dst = append(dst, `,"link":[`...)
		for i, l := range b.Link {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"relation":`...)
			dst = appendString(dst, l.Relation)
			dst = append(dst, `,"url":`...)
			dst = appendString(dst, l.URL)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if len(b.Entry) > 0 {
		dst = append(dst, `,"entry":[`...)
		for i := range b.Entry {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = b.Entry[i].appendJSON(dst); err != nil {
				return nil, err
			}
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

func (b *Bundle) sizeHint() int {
	n := 128 + len(b.ID)
	for _, l := range b.Link {
		n += 32 + len(l.URL)
	}
	for i := range b.Entry {
		e := &b.Entry[i]
		n += 96 + len(e.FullURL) + len(e.Resource)
		if e.Request != nil {
			n += 32 + len(e.Request.URL)
		}
		if e.Response != nil {
			n += 96 + len(e.Response.Location) + len(e.Response.Outcome)
		}
	}
	return n
}

func (e *BundleEntry) appendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, '{')
	comma := false
	field := func(name string) {
		if comma {
			dst = append(dst, ',')
		}
		comma = true
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
	}
	var err error
	if e.FullURL != "" {
		field("fullUrl")
		dst = appendString(dst, e.FullURL)
	}
	if len(e.Resource) > 0 {
		field("resource")
		if dst, err = appendRaw(dst, e.Resource); err != nil {
			return nil, err
		}
	}
	if e.Search != nil {
		field("search")
		dst = append(dst, '{')
		if e.Search.Mode != "" {
			dst = append(dst, `"mode":`...)
			dst = appendString(dst, e.Search.Mode)
		}
		dst = append(dst, '}')
	}
	if e.Request != nil {
		field("request")
		dst = append(dst, `{"method":`...)
		dst = appendString(dst, e.Request.Method)
		dst = append(dst, `,"url":`...)
		dst = appendString(dst, e.Request.URL)
		dst = append(dst, '}')
	}
	if r := e.Response; r != nil {
		field("response")
		dst = append(dst, `{"status":`...)
		dst = appendString(dst, r.Status)
		for _, f := range [...]struct{ name, v string }{{"location", r.Location}, {"etag", r.Etag}, {"lastModified", r.LastModified}} {
			if f.v != "" {
				dst = append(dst, `,"`...)
				dst = append(dst, f.name...)
				dst = append(dst, `":`...)
				dst = appendString(dst, f.v)
			}
		}
		if len(r.Outcome) > 0 {
			dst = append(dst, `,"outcome":`...)
			if dst, err = appendRaw(dst, r.Outcome); err != nil {
				return nil, err
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// appendRaw appends raw JSON as json.Marshal does a json.RawMessage:
// compacted, with <, >, & and U+2028/U+2029 escaped.
func appendRaw(dst, raw []byte) ([]byte, error) {
	if compactPlain(raw) {
		return append(dst, raw...), nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return nil, err
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, c.Bytes())
	return append(dst, h.Bytes()...), nil
}

// compactPlain reports whether raw has no whitespace outside its strings
// and nothing json.Marshal would escape (<, >, &, U+2028, U+2029), so
// that it is what json.Marshal would write for it. It assumes raw is
// valid JSON, which every resource from the store or the codec is; when
// in doubt it says no.
func compactPlain(raw []byte) bool {
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return false
	}
	in := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9):
			return false
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return !in
}

// AppendJSONString appends s as a JSON string, the bytes encoding/json
// writes for it: HTML characters and U+2028/U+2029 escaped, invalid UTF-8
// as U+FFFD.
func AppendJSONString(dst []byte, s string) []byte { return appendString(dst, s) }

func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
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
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
