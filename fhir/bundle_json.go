package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/cpis-fhir/cpis/fhir/internal/jsonstr"
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
	dst = jsonstr.AppendQuoted(dst, b.ResourceType, true)
	if b.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = jsonstr.AppendQuoted(dst, b.ID, true)
	}
	if b.Meta != nil {
		dst = append(dst, `,"meta":{`...)
		if b.Meta.LastUpdated != "" {
			dst = append(dst, `"lastUpdated":`...)
			dst = jsonstr.AppendQuoted(dst, b.Meta.LastUpdated, true)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"type":`...)
	dst = jsonstr.AppendQuoted(dst, b.Type, true)
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
			dst = jsonstr.AppendQuoted(dst, l.Relation, true)
			dst = append(dst, `,"url":`...)
			dst = jsonstr.AppendQuoted(dst, l.URL, true)
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
		dst = jsonstr.AppendQuoted(dst, e.FullURL, true)
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
			dst = jsonstr.AppendQuoted(dst, e.Search.Mode, true)
		}
		dst = append(dst, '}')
	}
	if e.Request != nil {
		field("request")
		dst = append(dst, `{"method":`...)
		dst = jsonstr.AppendQuoted(dst, e.Request.Method, true)
		dst = append(dst, `,"url":`...)
		dst = jsonstr.AppendQuoted(dst, e.Request.URL, true)
		dst = append(dst, '}')
	}
	if r := e.Response; r != nil {
		field("response")
		dst = append(dst, `{"status":`...)
		dst = jsonstr.AppendQuoted(dst, r.Status, true)
		for _, f := range [...]struct{ name, v string }{{"location", r.Location}, {"etag", r.Etag}, {"lastModified", r.LastModified}} {
			if f.v != "" {
				dst = append(dst, `,"`...)
				dst = append(dst, f.name...)
				dst = append(dst, `":`...)
				dst = jsonstr.AppendQuoted(dst, f.v, true)
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
func AppendJSONString(dst []byte, s string) []byte { return jsonstr.AppendQuoted(dst, s, true) }
