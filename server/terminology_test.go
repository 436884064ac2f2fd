package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
)

const (
	vsPlan       = "https://fhir.nhs.uk/England/ValueSet/England-ChildProtectionPlan"
	sct          = "http://snomed.info/sct"
	csFlagCat    = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
	csIntent     = "http://hl7.org/fhir/request-intent"
	codeCPP      = "342191000000101"
	codeLAC      = "764841000000100"
	codeUnborn   = "818901000000100"
	cpisFlagCode = "child-protection-information-system-flag"
)

// parameters decodes a Parameters answer, checking it is valid R4, into
// name -> value (valueBoolean, valueString or valueCode).
func parameters(tb testing.TB, res *response) map[string]any {
	tb.Helper()
	codec, _ := fhir.NewCodec()
	if _, err := codec.Parse(res.Body); err != nil {
		tb.Fatalf("%s: %s is not valid R4: %v", res.Request.URL, res.Body, err)
	}
	var p struct {
		ResourceType string
		Parameter    []map[string]any
	}
	if err := json.Unmarshal(res.Body, &p); err != nil || p.ResourceType != "Parameters" {
		tb.Fatalf("%s: body %s, want Parameters", res.Request.URL, res.Body)
	}
	out := map[string]any{}
	for _, q := range p.Parameter {
		for k, v := range q {
			if k != "name" {
				out[q["name"].(string)] = v
			}
		}
	}
	return out
}

type expansion struct {
	ResourceType, URL string
	Expansion         struct {
		Total, Offset int
		Contains      []struct{ System, Code, Display string }
	}
}

func expand(tb testing.TB, res *response) *expansion {
	tb.Helper()
	codec, _ := fhir.NewCodec()
	if _, err := codec.Parse(res.Body); err != nil {
		tb.Fatalf("%s: %s is not valid R4: %v", res.Request.URL, res.Body, err)
	}
	var e expansion
	if err := json.Unmarshal(res.Body, &e); err != nil || e.ResourceType != "ValueSet" {
		tb.Fatalf("%s: body %s, want a ValueSet", res.Request.URL, res.Body)
	}
	return &e
}

func (e *expansion) codes() []string {
	var out []string
	for _, c := range e.Expansion.Contains {
		out = append(out, c.Code)
	}
	return out
}

func TestTerminology_Resources(t *testing.T) {
	ts := startServer(t, server.Config{})
	b := getBundle(t, ts.Base+"/ValueSet?url="+url.QueryEscape(vsPlan))
	if got := b.ids("match"); !reflect.DeepEqual(got, []string{"ValueSet/England-ChildProtectionPlan"}) {
		t.Errorf("ValueSet?url=England-ChildProtectionPlan: %v, want [ValueSet/England-ChildProtectionPlan]", got)
	}
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"CodeSystem?name=RequestIntent", []string{"CodeSystem/request-intent"}},
		{"ValueSet?version=1.0.0", []string{"ValueSet/England-ChildProtectionPlan"}},
		{"CodeSystem?url=" + url.QueryEscape(csFlagCat), []string{"CodeSystem/England-FlagCategoryPatient"}},
		{"CodeSystem?version=1.0.0&_sort=_id", []string{"CodeSystem/England-SpineErrorOrWarningCode", "CodeSystem/UKCore-SpineErrorOrWarningCode"}},
	} {
		if got := getBundle(t, ts.Base+"/"+tt.query).ids("match"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.query, got, tt.want)
		}
	}
	if n := len(getBundle(t, ts.Base+"/CodeSystem?_count=100").Entry); n != 32 {
		t.Errorf("CodeSystems: %d, want the 32 embedded", n)
	}
	if n := len(getBundle(t, ts.Base+"/ValueSet?_count=100").Entry); n != 30 {
		t.Errorf("ValueSets: %d, want the 30 embedded", n)
	}
	do(t, http.MethodGet, ts.Base+"/CodeSystem/request-intent/_history", "").wantStatus(t, http.StatusOK)

	// A second start over the same store writes nothing new.
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.New(ts.Store, codec, server.Config{Now: ts.Clock.Now}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, http.MethodGet, ts.Base+"/ValueSet/England-ChildProtectionPlan", "").wantStatus(t, http.StatusOK).Header.Get("ETag"); v != `W/"1"` {
		t.Errorf("ValueSet/England-ChildProtectionPlan after a second start: ETag %s, want W/\"1\"", v)
	}
}

func TestTerminology_Expand(t *testing.T) {
	ts := startServer(t, server.Config{})
	q := "/ValueSet/$expand?url=" + url.QueryEscape(vsPlan)
	tests := []struct {
		name, method, path, body string
		total, offset            int
		codes                    []string
	}{
		{"all", "GET", q, "", 3, 0, []string{codeCPP, codeLAC, codeUnborn}},
		{"filter unborn", "GET", q + "&filter=unborn", "", 1, 0, []string{codeUnborn}},
		{"filter upper case", "GET", q + "&filter=LOOKED", "", 1, 0, []string{codeLAC}},
		{"page", "GET", q + "&count=1&offset=1", "", 3, 1, []string{codeLAC}},
		{"instance", "GET", "/ValueSet/England-ChildProtectionPlan/$expand?filter=plan", "", 2, 0, []string{codeCPP, codeUnborn}},
		{"POST", "POST", "/ValueSet/$expand", `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + vsPlan + `"},{"name":"filter","valueString":"unborn"},{"name":"count","valueInteger":5}]}`, 1, 0, []string{codeUnborn}},
		{"whole code system", "GET", "/ValueSet/$expand?url=" + url.QueryEscape("http://hl7.org/fhir/ValueSet/flag-status"), "", 3, 0, []string{"active", "inactive", "entered-in-error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expand(t, do(t, tt.method, ts.Base+tt.path, tt.body).wantStatus(t, http.StatusOK))
			if e.Expansion.Total != tt.total || e.Expansion.Offset != tt.offset || !reflect.DeepEqual(e.codes(), tt.codes) {
				t.Errorf("%s %s: total %d offset %d codes %v, want %d %d %v", tt.method, tt.path, e.Expansion.Total, e.Expansion.Offset, e.codes(), tt.total, tt.offset, tt.codes)
			}
		})
	}
	e := expand(t, do(t, "GET", ts.Base+q+"&filter=unborn", "").wantStatus(t, http.StatusOK))
	if c := e.Expansion.Contains[0]; e.URL != vsPlan || c.System != sct || c.Display != "Unborn child subject to child protection plan" {
		t.Errorf("expand filter unborn: url %s, %+v; want the plan value set and SNOMED CT %s with its display", e.URL, c, codeUnborn)
	}
	errorsTests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown value set", "GET", "/ValueSet/$expand?url=https://example.org/ValueSet/none", "", 404, "not-found"},
		{"no url", "GET", "/ValueSet/$expand", "", 400, "required"},
		{"negative count", "GET", q + "&count=-1", "", 400, "invalid"},
		{"bad offset", "GET", q + "&offset=x", "", 400, "invalid"},
		{"other type", "GET", "/Patient/$expand?url=" + url.QueryEscape(vsPlan), "", 404, "not-found"},
		{"unknown id", "GET", "/ValueSet/none/$expand", "", 404, "not-found"},
		{"body not Parameters", "POST", "/ValueSet/$expand", `{"resourceType":"Patient"}`, 400, "structure"},
	}
	for _, tt := range errorsTests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, _ := do(t, tt.method, ts.Base+tt.path, tt.body).wantStatus(t, tt.status).outcome(t)
			if code != tt.code {
				t.Errorf("%s %s: issue %s, want %s", tt.method, tt.path, code, tt.code)
			}
		})
	}
}

func TestTerminology_ValidateCode(t *testing.T) {
	ts := startServer(t, server.Config{})
	q := "/ValueSet/$validate-code?url=" + url.QueryEscape(vsPlan) + "&system=" + url.QueryEscape(sct)
	p := parameters(t, do(t, "GET", ts.Base+q+"&code="+codeCPP, "").wantStatus(t, http.StatusOK))
	if p["result"] != true || p["display"] != "Subject to child protection plan" {
		t.Errorf("validate-code %s: %v, want result true and its display", codeCPP, p)
	}
	p = parameters(t, do(t, "GET", ts.Base+q+"&code=123", "").wantStatus(t, http.StatusOK))
	if p["result"] != false || p["message"] == nil || p["display"] != nil {
		t.Errorf("validate-code 123: %v, want result false with a message", p)
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + vsPlan + `"},{"name":"coding","valueCoding":{"system":"` + sct + `","code":"` + codeLAC + `"}}]}`
	p = parameters(t, do(t, "POST", ts.Base+"/ValueSet/$validate-code", body).wantStatus(t, http.StatusOK))
	if p["result"] != true || p["display"] != "Looked after child" {
		t.Errorf("POST validate-code coding %s: %v, want result true", codeLAC, p)
	}
	p = parameters(t, do(t, "GET", ts.Base+"/ValueSet/England-ChildProtectionPlan/$validate-code?system=https://snomed.info/sct&code="+codeCPP, "").wantStatus(t, http.StatusOK))
	if p["result"] != false {
		t.Errorf("instance validate-code under the wrong system: %v, want result false", p)
	}
	do(t, "GET", ts.Base+q, "").wantStatus(t, http.StatusBadRequest)
	do(t, "GET", ts.Base+"/ValueSet/$validate-code?url=https://example.org/ValueSet/none&system=x&code=1", "").wantStatus(t, http.StatusNotFound)
}

func TestTerminology_Lookup(t *testing.T) {
	ts := startServer(t, server.Config{})
	want := map[string]any{"name": "EnglandFlagCategoryPatient", "version": "0.5.0", "display": "Child Protection Information System Flag"}
	p := parameters(t, do(t, "GET", ts.Base+"/CodeSystem/$lookup?system="+url.QueryEscape(csFlagCat)+"&code="+cpisFlagCode, "").wantStatus(t, http.StatusOK))
	if !reflect.DeepEqual(p, want) {
		t.Errorf("lookup flag category: %v, want %v", p, want)
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"coding","valueCoding":{"system":"` + csFlagCat + `","code":"` + cpisFlagCode + `"}}]}`
	if p := parameters(t, do(t, "POST", ts.Base+"/CodeSystem/$lookup", body).wantStatus(t, http.StatusOK)); !reflect.DeepEqual(p, want) {
		t.Errorf("POST lookup flag category: %v, want %v", p, want)
	}
	p = parameters(t, do(t, "GET", ts.Base+"/CodeSystem/$lookup?system="+url.QueryEscape(sct)+"&code="+codeUnborn, "").wantStatus(t, http.StatusOK))
	if want := (map[string]any{"name": "SNOMED CT", "display": "Unborn child subject to child protection plan"}); !reflect.DeepEqual(p, want) {
		t.Errorf("lookup SNOMED %s: %v, want %v", codeUnborn, p, want)
	}
	do(t, "GET", ts.Base+"/CodeSystem/$lookup?system="+url.QueryEscape(csFlagCat)+"&code=cpis", "").wantStatus(t, http.StatusNotFound)
	do(t, "GET", ts.Base+"/CodeSystem/$lookup?system=https://example.org/cs&code=1", "").wantStatus(t, http.StatusNotFound)
	do(t, "GET", ts.Base+"/CodeSystem/$lookup?code=1", "").wantStatus(t, http.StatusBadRequest)
	do(t, "GET", ts.Base+"/ValueSet/$lookup?system="+url.QueryEscape(csFlagCat)+"&code="+cpisFlagCode, "").wantStatus(t, http.StatusNotFound)
}

func TestTerminology_Subsumes(t *testing.T) {
	ts := startServer(t, server.Config{})
	// request-intent nests original-order, reflex-order and filler-order
	// under order, and instance-order under filler-order.
	for _, tt := range []struct{ a, b, want string }{
		{"order", "order", "equivalent"},
		{"order", "instance-order", "subsumes"},
		{"instance-order", "filler-order", "subsumed-by"},
		{"plan", "order", "not-subsumed"},
		{"reflex-order", "instance-order", "not-subsumed"},
	} {
		q := "/CodeSystem/$subsumes?system=" + url.QueryEscape(csIntent) + "&codeA=" + tt.a + "&codeB=" + tt.b
		if p := parameters(t, do(t, "GET", ts.Base+q, "").wantStatus(t, http.StatusOK)); p["outcome"] != tt.want {
			t.Errorf("subsumes %s %s: %v, want outcome %s", tt.a, tt.b, p, tt.want)
		}
	}
	body := `{"resourceType":"Parameters","parameter":[{"name":"codingA","valueCoding":{"system":"` + csIntent + `","code":"original-order"}},{"name":"codingB","valueCoding":{"system":"` + csIntent + `","code":"order"}}]}`
	if p := parameters(t, do(t, "POST", ts.Base+"/CodeSystem/$subsumes", body).wantStatus(t, http.StatusOK)); p["outcome"] != "subsumed-by" {
		t.Errorf("POST subsumes original-order order: %v, want subsumed-by", p)
	}
	// A flat code system: only equal codes are related.
	q := "/CodeSystem/$subsumes?system=" + url.QueryEscape(csFlagCat) + "&codeA=" + cpisFlagCode + "&codeB=" + cpisFlagCode
	if p := parameters(t, do(t, "GET", ts.Base+q, "").wantStatus(t, http.StatusOK)); p["outcome"] != "equivalent" {
		t.Errorf("subsumes flag category with itself: %v, want equivalent", p)
	}
	do(t, "GET", ts.Base+"/CodeSystem/$subsumes?system="+url.QueryEscape(csIntent)+"&codeA=order&codeB=nope", "").wantStatus(t, http.StatusNotFound)
	do(t, "GET", ts.Base+"/CodeSystem/$subsumes?system="+url.QueryEscape(csIntent)+"&codeA=order", "").wantStatus(t, http.StatusBadRequest)
}

func TestTerminology_CapabilityStatement(t *testing.T) {
	ts := startServer(t, server.Config{})
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type      string
				Operation []struct{ Name string }
			}
		}
	}
	json.Unmarshal(do(t, http.MethodGet, ts.Base+"/metadata", "").wantStatus(t, http.StatusOK).Body, &cs)
	want := map[string][]string{
		"ValueSet":   {"validate", "expand", "validate-code"},
		"CodeSystem": {"validate", "lookup", "subsumes"},
		"Patient":    {"validate"},
	}
	for _, r := range cs.Rest[0].Resource {
		w, ok := want[r.Type]
		if !ok {
			continue
		}
		var got []string
		for _, o := range r.Operation {
			got = append(got, o.Name)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s operations %v, want %v", r.Type, got, w)
		}
		delete(want, r.Type)
	}
	if len(want) > 0 {
		t.Errorf("CapabilityStatement lacks %v", want)
	}
}
