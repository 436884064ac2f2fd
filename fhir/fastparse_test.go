package fhir_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/synthetic"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// asGoogle checks the fast path against google/fhir on one body: when the
// fast path takes it, google/fhir must take it too (no parse error) and
// give an equal proto. It reports whether the fast path took it.
func asGoogle(t testing.TB, c *fhir.Codec, name string, body []byte) bool {
	t.Helper()
	fast, ok := fhir.FastParse(body)
	if !ok {
		return false
	}
	want, err := c.GoogleUnmarshal(body)
	if err != nil {
		t.Errorf("%s: the fast path took a body google/fhir rejects (%v)", name, err)
		return true
	}
	if !proto.Equal(fast, want) {
		t.Errorf("%s: the fast path's proto differs from google/fhir's:\n%s", name, firstDiff(prototext.Format(fast), prototext.Format(want)))
	}
	return true
}

// firstDiff shows the first line where two texts differ, with context.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			from := max(0, i-3)
			return fmt.Sprintf("line %d\n got: %q\nwant: %q\ncontext (want):\n%s", i+1, gl, wl, strings.Join(w[from:min(len(w), i+1)], "\n"))
		}
	}
	return "(texts equal)"
}

func newTestCodec(t testing.TB) *fhir.Codec {
	t.Helper()
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFastParse_Examples runs the R4 examples in the repository and, when
// present, the 720 of the shared package through both parsers. Most must
// take the fast path, so that the comparison covers the types and shapes
// they hold.
func TestFastParse_Examples(t *testing.T) {
	c := newTestCodec(t)
	dirs := []string{filepath.Join("..", "testdata", "r4-examples")}
	shared := filepath.Join("..", "..", "shared", "fhir-r4", "examples")
	if fi, err := os.Stat(shared); err == nil && fi.IsDir() {
		dirs = append(dirs, shared)
	} else if os.Getenv("CI") != "" {
		t.Fatalf("CI: %s is absent", shared)
	} else {
		t.Logf("the 720 shared R4 examples were not compared: %s is absent", shared)
	}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no examples in %s: %v", dir, err)
		}
		var took, valid int
		for _, f := range files {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.GoogleUnmarshal(body); err == nil {
				valid++
			}
			if asGoogle(t, c, filepath.Base(f), body) {
				took++
			}
		}
		t.Logf("%s: %d files, %d parsed by google/fhir, %d by the fast path", dir, len(files), valid, took)
		if took < valid*3/4 {
			t.Errorf("%s: the fast path took %d of the %d examples google/fhir parses; want at least 3/4", dir, took, valid)
		}
	}
}

// TestFastParse_Synthetic requires the fast path to take every resource
// and Bundle of the synthetic CP-IS data: the uploads, the setup and
// attendances.
func TestFastParse_Synthetic(t *testing.T) {
	c := newTestCodec(t)
	g, err := synthetic.New(synthetic.Config{Seed: 3, Children: 1500, Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{"setup": g.SetupBundle(), "attendances": g.AttendanceBundle(0, 50)}
	for i, u := range g.Uploads() {
		bodies[fmt.Sprintf("upload %d", i)] = g.UploadBundle(u)
	}
	for k := 0; k < 200; k++ {
		bodies[fmt.Sprintf("encounter %d", k)] = g.EncounterJSON(g.Attendance(k))
	}
	for name, body := range bodies {
		if !asGoogle(t, c, name, body) {
			t.Errorf("%s: the fast path declined it", name)
		}
	}
}

// TestFastParse_Variants alters a Patient, an Encounter and an
// Observation in the ways clients write FHIR JSON, right and wrong. For
// each, the fast path either declines or agrees with google/fhir; the
// test also checks which it did, so that the comparison covers what the
// fast path claims to read and the declines stay declines.
func TestFastParse_Variants(t *testing.T) {
	c := newTestCodec(t)
	for _, v := range fastParseVariants() {
		took := asGoogle(t, c, v.name, []byte(v.body))
		if took != v.fast {
			t.Errorf("%s: fast path took it = %v, want %v", v.name, took, v.fast)
		}
	}
}

type variant struct {
	name string
	body string
	fast bool // whether the fast path takes it
}

const (
	basePatient = `{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2026-11-30T10:20:30.123Z","profile":["https://example.org/p"]},` +
		`"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}],"active":true,` +
		`"name":[{"use":"official","family":"Smith","given":["Ann","Marie"]}],"gender":"female","birthDate":"2017-02-21",` +
		`"managingOrganization":{"reference":"Organization/la-1"}}`
	baseEncounter = `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},` +
		`"subject":{"reference":"Patient/p1"},"period":{"start":"2026-11-30T10:20:30Z"},"serviceProvider":{"reference":"Organization/R9A01"}}`
	baseObservation = `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5,"comparator":"<","unit":"kg"}}`
)

func fastParseVariants() []variant {
	var vs []variant
	add := func(name, body string, fast bool) { vs = append(vs, variant{name, body, fast}) }
	sub := func(base, old, new string) string {
		if !strings.Contains(base, old) {
			panic("variant: " + old + " is not in the base")
		}
		return strings.Replace(base, old, new, 1)
	}
	add("patient", basePatient, true)
	add("encounter", baseEncounter, true)
	add("observation", baseObservation, true)
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(basePatient), "", " \t"); err != nil {
		panic(err)
	}
	add("pretty", pretty.String(), true)
	add("white space everywhere", strings.NewReplacer(`,"`, " ,\r\n\t\"", `":`, "\" :\n", "{", "{ ", "}", " }", "[", "[ ", "]", " ]").Replace(basePatient), true)
	add("leading and trailing white space", " \n\t"+basePatient+"\r\n ", true)

	// Dates.
	for _, d := range []struct {
		v    string
		fast bool
	}{{"2017", true}, {"2017-02", true}, {"2016-02-29", true}, {"2017-02-29", false}, {"2017-13-01", false},
		{"2017-02-00", false}, {"0000-01-01", false}, {"0001-01-01", true}, {"2017-2-21", false}, {"-2017", false},
		{"2017-02-21T10:00:00Z", false}, {"", false}, {"2017-04-31", false}} {
		add("birthDate "+d.v, sub(basePatient, `"2017-02-21"`, `"`+d.v+`"`), d.fast)
	}
	// Date-times and instants.
	for _, d := range []struct {
		v    string
		fast bool
	}{{"2026-11-30T10:20:30Z", true}, {"2026-11-30T10:20:30+01:00", true}, {"2026-11-30T10:20:30-05:30", true},
		{"2026-11-30T10:20:30+00:00", true}, {"2026-11-30T10:20:30-00:00", true}, {"2026-11-30T10:20:30+13:59", true},
		{"2026-11-30T10:20:30+14:00", false}, {"2026-11-30T10:20:30.1Z", true}, {"2026-11-30T10:20:30.12+02:00", true},
		{"2026-11-30T10:20:30.123Z", true}, {"2026-11-30T10:20:30.1234Z", true}, {"2026-11-30T10:20:30.123456Z", true},
		{"2026-11-30T10:20:30.1234567Z", false}, {"2026-11-30T10:20:30.Z", false}, {"2026-11-30T24:00:00Z", false},
		{"2026-11-30T10:20Z", false}, {"2026-11-30T10:20:30", false}, {"2026-11-30T10:20:60Z", false},
		{"2026-11-30", true}, {"2026-11", true}, {"2026", true}, {"2026-02-30T10:20:30Z", false},
		{"0001-01-01T00:00:00Z", true}, {"9999-12-31T23:59:59.999999-13:00", true}, {"2026-11-30t10:20:30Z", false}} {
		add("period.start "+d.v, sub(baseEncounter, `"2026-11-30T10:20:30Z"`, `"`+d.v+`"`), d.fast)
		instant := len(d.v) > 10 && d.fast
		add("meta.lastUpdated "+d.v, sub(basePatient, `"2026-11-30T10:20:30.123Z"`, `"`+d.v+`"`), instant)
	}
	// Strings.
	for _, s := range []struct {
		v    string
		fast bool
	}{{`Sm\u00efth`, true}, {`Sm\"ith\\ \/ \b\f\n\r\t`, true}, {`\ud83d\ude00`, true}, {`\ud83d`, false},
		{`\ude00x`, false}, {`\u00`, false}, {`\x41`, false}, {"Sm\tith", false}, {"Sm\u2028ith <&>", true},
		{"Smïth 😀", true}, {"", true}, {`\u0000`, true}} {
		add("family "+s.v, sub(basePatient, `"Smith"`, `"`+s.v+`"`), s.fast)
	}
	add("invalid UTF-8", sub(basePatient, `"Smith"`, "\"Sm\xffith\""), false)
	// Codes.
	for _, s := range []struct {
		v    string
		fast bool
	}{{"male", true}, {"other", true}, {"unknown", true}, {"Male", true}, {"MALE", true}, {"", false}, {"mal e", false}} {
		add("gender "+s.v, sub(basePatient, `"female"`, `"`+s.v+`"`), s.fast)
	}
	for _, s := range []string{"planned", "arrived", "triaged", "onleave", "finished", "cancelled", "entered-in-error", "unknown"} {
		add("status "+s, sub(baseEncounter, `"in-progress"`, `"`+s+`"`), true)
	}
	// google/fhir reads a code upper-cased, with - as _.
	add("status in_progress", sub(baseEncounter, `"in-progress"`, `"in_progress"`), true)
	for _, s := range []string{"<=", ">=", ">"} {
		add("comparator "+s, sub(baseObservation, `"<"`, `"`+s+`"`), true)
	}
	add("comparator LESS_THAN", sub(baseObservation, `"<"`, `"LESS_THAN"`), true)
	// Numbers and booleans.
	for _, s := range []struct {
		v    string
		fast bool
	}{{"1", true}, {"1.50", true}, {"-0.5", true}, {"0", true}, {"0.0", true}, {"123456789.123456789", true}, {"1e3", false},
		{"01", false}, {"1.", false}, {".5", false}, {"-", false}, {`"1.5"`, false}, {"1.5x", false}, {"true", false}} {
		add("value "+s.v, sub(baseObservation, `1.5`, s.v), s.fast)
	}
	for _, s := range []struct {
		v    string
		fast bool
	}{{"5", true}, {"-5", true}, {"0", true}, {"2147483647", true}, {"-2147483647", true}, {"2147483648", false},
		{"-0", false}, {"1.0", false}, {"05", false}, {`"5"`, false}, {"99999999999999999999", false}} {
		add("valueInteger "+s.v, sub(baseObservation, `"valueQuantity":{"value":1.5,"comparator":"<","unit":"kg"}`, `"valueInteger":`+s.v), s.fast)
		add("multipleBirthInteger "+s.v, sub(basePatient, `"active":true`, `"multipleBirthInteger":`+s.v), s.fast)
	}
	for _, s := range []struct {
		v    string
		fast bool
	}{{"1", true}, {"0", false}, {"-1", false}, {"2147483647", true}} {
		add("Bundle.total "+s.v+" (unsignedInt)", `{"resourceType":"Bundle","type":"searchset","total":`+s.v+`}`, s.v != "-1")
		add("Patient.photo.size "+s.v+" (unsignedInt)", sub(basePatient, `"active":true`, `"photo":[{"contentType":"image/png","size":`+s.v+`}]`), s.v != "-1")
		add("valueRange with Sampled dimensions "+s.v+" (positiveInt)", sub(baseObservation, `"valueQuantity":{"value":1.5,"comparator":"<","unit":"kg"}`,
			`"valueSampledData":{"origin":{"value":0},"period":1,"dimensions":`+s.v+`}`), s.fast)
	}
	for _, s := range []struct {
		v    string
		fast bool
	}{{"false", true}, {"true", true}, {`"true"`, false}, {"True", false}, {"1", false}, {"truex", false}, {"null", false}} {
		add("active "+s.v, sub(basePatient, `"active":true`, `"active":`+s.v), s.fast)
	}
	// References.
	for _, s := range []struct {
		v    string
		fast bool
	}{{"Organization/la-1/_history/2", true}, {"urn:uuid:00000000-0000-4000-8000-000000000001", true}, {"#org", true},
		{"https://example.org/fhir/Organization/1", true}, {"Foo/1", true}, {"Organization/", true}, {"Organization/1/2", true}, {"", true}} {
		add("reference "+s.v, sub(basePatient, `"Organization/la-1"`, `"`+s.v+`"`), s.fast)
	}
	add("reference with identifier and display", sub(basePatient, `{"reference":"Organization/la-1"}`,
		`{"reference":"Organization/la-1","type":"Organization","identifier":{"system":"s","value":"v"},"display":"D"}`), true)
	// Choices and extensions.
	add("deceasedBoolean", sub(basePatient, `"active":true`, `"deceasedBoolean":false`), true)
	add("deceasedDateTime", sub(basePatient, `"active":true`, `"deceasedDateTime":"2020-01-01T00:00:00Z"`), true)
	add("two deceased[x]", sub(basePatient, `"active":true`, `"deceasedBoolean":false,"deceasedDateTime":"2020"`), false)
	add("deceasedString (no such type)", sub(basePatient, `"active":true`, `"deceasedString":"x"`), false)
	add("extension", sub(basePatient, `"active":true`,
		`"extension":[{"url":"https://example.org/a","valueCodeableConcept":{"coding":[{"system":"s","code":"c"}]}},`+
			`{"url":"https://example.org/b","extension":[{"url":"x","valueString":"y"},{"url":"z","valueReference":{"reference":"Patient/2"}}]}]`), true)
	add("primitive extension", sub(basePatient, `"birthDate":"2017-02-21"`,
		`"birthDate":"2017-02-21","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"2017-02-21T10:00:00Z"}]}`), false)
	add("contained", sub(basePatient, `"active":true`, `"contained":[{"resourceType":"Organization","id":"org","name":"O"},{"resourceType":"Patient","active":false}]`), true)
	add("contained, resourceType not first", sub(basePatient, `"active":true`, `"contained":[{"id":"org","resourceType":"Organization"}]`), false)
	add("Bundle with entries", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":`+basePatient+
		`,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=a|b"}},{"resource":`+baseEncounter+`,"request":{"method":"PUT","url":"Encounter/e1"}}]}`, true)
	add("Bundle entry without resourceType first", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"id":"x","resourceType":"Patient"}}]}`, false)
	// Structure.
	add("resourceType not first", `{"id":"p1","resourceType":"Patient"}`, false)
	add("no resourceType", `{"id":"p1"}`, false)
	add("unknown resourceType", `{"resourceType":"Patiant"}`, false)
	add("resourceType not a string", `{"resourceType":1}`, false)
	add("only resourceType", `{"resourceType":"Patient"}`, true)
	add("unknown key", sub(basePatient, `"active":true`, `"activ":true`), false)
	add("upper-case key", sub(basePatient, `"active":true`, `"Active":true`), false)
	add("escaped key", sub(basePatient, `"active":true`, `"act\u0069ve":true`), false)
	add("duplicate key", sub(basePatient, `"active":true`, `"active":true,"active":false`), false)
	add("duplicate list", sub(basePatient, `"active":true`, `"name":[{"family":"X"}]`), false)
	add("null", sub(basePatient, `"active":true`, `"active":null`), false)
	add("empty array", sub(basePatient, `"given":["Ann","Marie"]`, `"given":[]`), false)
	add("empty object", sub(basePatient, `{"use":"official","family":"Smith","given":["Ann","Marie"]}`, `{}`), true)
	add("object for a list", sub(basePatient, `["Ann","Marie"]`, `"Ann"`), false)
	add("list for an object", sub(basePatient, `{"reference":"Organization/la-1"}`, `[{"reference":"Organization/la-1"}]`), false)
	add("object for a string", sub(basePatient, `"Smith"`, `{"x":1}`), false)
	add("trailing comma in an object", sub(basePatient, `"female",`, `"female",,`), false)
	add("trailing comma in a list", sub(basePatient, `"Marie"]`, `"Marie",]`), false)
	add("missing colon", sub(basePatient, `"gender":`, `"gender" `), false)
	add("trailing data", basePatient+"x", false)
	add("two objects", basePatient+basePatient, false)
	add("cut short", basePatient[:len(basePatient)-1], false)
	add("not an object", `["Patient"]`, false)
	deep := `{"url":"u","valueString":"v"}`
	for i := 0; i < 40; i++ {
		deep = `{"url":"u","extension":[` + deep + `]}`
	}
	add("extensions nested 40 deep", sub(basePatient, `"active":true`, `"extension":[`+deep+`]`), false)
	shallow := `{"url":"u","valueString":"v"}`
	for i := 0; i < 10; i++ {
		shallow = `{"url":"u","extension":[` + shallow + `]}`
	}
	add("extensions nested 10 deep", sub(basePatient, `"active":true`, `"extension":[`+shallow+`]`), true)
	return vs
}

// FuzzFastParse checks the fast path against google/fhir on whatever the
// fuzzer makes of the variants:
//
//	go test ./fhir -run '^$' -fuzz FuzzFastParse -fuzztime 5m
func FuzzFastParse(f *testing.F) {
	for _, v := range fastParseVariants() {
		f.Add([]byte(v.body))
	}
	c := newTestCodec(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		asGoogle(t, c, "fuzz input", body)
	})
}

// BenchmarkParse_UploadBundle parses one synthetic council upload (25
// children, 100 entries) with google/fhir alone and with the codec (the
// fast path, then the validation both run):
//
//	go test ./fhir -run '^$' -bench Parse_UploadBundle -count 5
func BenchmarkParse_UploadBundle(b *testing.B) {
	c := newTestCodec(b)
	g, err := synthetic.New(synthetic.Config{Seed: 1, Children: 10_000, Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	body := g.UploadBundle(g.Uploads()[3])
	b.Run("google", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := c.GoogleUnmarshal(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := c.Parse(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
