package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// SubsettedSystem and SubsettedCode make the meta.tag that marks a resource
// returned with only some of its elements.
// See https://hl7.org/fhir/R4/search.html#summary.
const (
	SubsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	SubsettedCode   = "SUBSETTED"
)

// Subset returns the JSON of a resource of type typ cut down as _summary
// (mode) or _elements (elements, used when mode is SummaryNone) ask, and
// tagged SUBSETTED. SummaryNone with no elements, and SummaryFalse, return
// body unchanged. id, meta and the mandatory elements are always kept.
//   - SummaryTrue keeps the elements the R4 definition marks isSummary;
//   - SummaryText keeps text;
//   - SummaryData drops text;
//   - elements keeps the named top-level elements.
//
// See https://hl7.org/fhir/R4/search.html#summary and #elements.
func Subset(typ string, body []byte, mode SummaryMode, elements []string) ([]byte, error) {
	if mode == SummaryFalse || mode == SummaryCount || (mode == SummaryNone && len(elements) == 0) {
		return body, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]json.RawMessage
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("subset %s: %w", typ, err)
	}
	def := spElements[typ]
	keep := map[string]bool{"resourceType": true, "id": true, "meta": true}
	for _, e := range def.mandatory {
		keep[e] = true
	}
	switch mode {
	case SummaryTrue:
		for _, e := range def.summary {
			keep[e] = true
		}
	case SummaryText:
		keep["text"] = true
	case SummaryData:
		for k := range m {
			keep[strings.TrimPrefix(k, "_")] = k != "text"
		}
	default:
		for _, e := range elements {
			keep[e] = true
		}
	}
	for k := range m {
		if !kept(keep, strings.TrimPrefix(k, "_")) {
			delete(m, k)
		}
	}
	meta, err := tagSubsetted(m["meta"])
	if err != nil {
		return nil, fmt.Errorf("subset %s: %w", typ, err)
	}
	m["meta"] = meta
	return json.Marshal(m)
}

// kept reports whether the JSON element name is kept: named itself, or a
// choice element (deceasedBoolean for deceased[x], or deceased as a client
// writes it in _elements).
func kept(keep map[string]bool, name string) bool {
	if keep[name] {
		return true
	}
	for i := len(name) - 1; i > 0; i-- {
		if unicode.IsUpper(rune(name[i])) {
			base := name[:i]
			if keep[base+"[x]"] || keep[base] {
				return true
			}
		}
	}
	return false
}

func tagSubsetted(raw json.RawMessage) (json.RawMessage, error) {
	meta := map[string]json.RawMessage{}
	if len(raw) > 0 {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&meta); err != nil {
			return nil, err
		}
	}
	var tags []map[string]any
	if t, ok := meta["tag"]; ok {
		if err := json.Unmarshal(t, &tags); err != nil {
			return nil, err
		}
	}
	for _, t := range tags {
		if t["system"] == SubsettedSystem && t["code"] == SubsettedCode {
			return raw, nil
		}
	}
	tags = append(tags, map[string]any{"system": SubsettedSystem, "code": SubsettedCode})
	b, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	meta["tag"] = b
	return json.Marshal(meta)
}
