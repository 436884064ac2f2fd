package fhir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	patientpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// AppendJSONForTest is appendJSON, for the external tests.
func AppendJSONForTest(dst []byte, m protoreflect.Message) ([]byte, bool) { return appendJSON(dst, m) }

// GoogleMarshalForTest is google/fhir's JSON of m: Marshal for a
// ContainedResource, MarshalResource for a resource. It changes m (google/fhir
// drops the primitiveHasNoValue extensions and rewrites typed references).
// A panic (as on a code enum of an unknown number) is returned as an error.
func GoogleMarshalForTest(c *Codec, m proto.Message) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("google/fhir panics: %v", r)
		}
	}()
	if cr, ok := m.(*bcrpb.ContainedResource); ok {
		return c.m.Marshal(cr)
	}
	return c.m.MarshalResource(m)
}

// fmDiff describes where got and want first differ, with context.
func fmDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-40)
	return fmt.Sprintf("first difference at byte %d (got %d bytes, want %d)\n got: …%s…\nwant: …%s…",
		i, len(got), len(want), got[from:min(len(got), i+40)], want[from:min(len(want), i+40)])
}

// fmCheck compares appendJSON with google/fhir on m (a ContainedResource or
// a resource), which it leaves as it was. It reports whether appendJSON
// declined.
func fmCheck(t testing.TB, c *Codec, name string, m proto.Message) (declined bool) {
	t.Helper()
	before := proto.Clone(m)
	prefix := []byte("prefix")
	got, ok := appendJSON(prefix[:len(prefix):len(prefix)], m.ProtoReflect())
	if !proto.Equal(m, before) {
		t.Errorf("%s: appendJSON changed the message", name)
	}
	want, err := GoogleMarshalForTest(c, proto.Clone(m))
	switch {
	case !ok:
		if !bytes.Equal(got, prefix) {
			t.Errorf("%s: appendJSON declined but changed dst", name)
		}
		return true
	case err != nil:
		t.Errorf("%s: appendJSON gave %d bytes where google/fhir fails: %v", name, len(got), err)
	case !bytes.HasPrefix(got, prefix):
		t.Errorf("%s: appendJSON lost dst", name)
	case !bytes.Equal(got[len(prefix):], want):
		t.Errorf("%s: %s", name, fmDiff(got[len(prefix):], want))
	}
	return false
}

func fmCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFastMarshal_Examples compares appendJSON with google/fhir on every R4
// example of the repository and of the shared package, in both forms (the
// ContainedResource of Marshal and the resource of MarshalMessage).
func TestFastMarshal_Examples(t *testing.T) {
	shared := os.Getenv("CPIS_R4_EXAMPLES")
	if shared == "" {
		shared = filepath.Join("..", "..", "shared", "fhir-r4", "examples")
	}
	for _, dir := range []string{filepath.Join("..", "testdata", "r4-examples"), shared} {
		t.Run(filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir), func(t *testing.T) {
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				msg := fmt.Sprintf("the comparison over the shared R4 examples was not done: %s is absent (set CPIS_R4_EXAMPLES to the examples folder)", dir)
				if os.Getenv("CI") != "" {
					t.Fatal(msg)
				}
				t.Skip(msg)
			}
			fmExamples(t, dir)
		})
	}
}

// TestFastMarshal_NoGetters runs the repository's examples and the
// mutations with the primitives' id and extensions read through
// protoreflect rather than their getters.
func TestFastMarshal_NoGetters(t *testing.T) {
	fmNoGetters.Store(true)
	defer fmNoGetters.Store(false)
	fmExamples(t, filepath.Join("..", "testdata", "r4-examples"))
	TestFastMarshal_Mutations(t)
}

func fmExamples(t *testing.T, dir string) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no examples in %s", dir)
	}
	c := fmCodec(t)
	compared, rejected := 0, 0
	var declined []string
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Parse(body)
		if err != nil {
			rejected++
			continue
		}
		name := filepath.Base(f)
		compared++
		d1 := fmCheck(t, c, name, p.Proto())
		d2 := fmCheck(t, c, name+" (resource)", p.Message())
		if d1 != d2 {
			t.Errorf("%s: appendJSON declined the ContainedResource (%v) but not the resource (%v), or the reverse", name, d1, d2)
		}
		if d1 || d2 {
			declined = append(declined, name)
		}
	}
	sort.Strings(declined)
	t.Logf("%s: %d files, %d rejected by Parse, %d compared, %d declined %v", dir, len(files), rejected, compared, len(declined), declined)
	if len(declined)*20 > compared {
		t.Errorf("appendJSON declined %d of %d examples (more than 5%%): %s", len(declined), compared, strings.Join(declined, ", "))
	}
}

// TestFastMarshal_Concurrent marshals examples from several goroutines at
// once (run it with -race): the tables are shared.
func TestFastMarshal_Concurrent(t *testing.T) {
	c := fmCodec(t)
	var msgs []proto.Message
	var want [][]byte
	for _, name := range []string{"Patient-example.json", "Observation-example.json", "Bundle-bundle-example.json", "Medication-med0303.json"} {
		p := fmExample(t, c, name)
		w, err := GoogleMarshalForTest(c, proto.Clone(p.Proto()))
		if err != nil {
			t.Fatal(err)
		}
		msgs, want = append(msgs, p.Proto()), append(want, w)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := (g + i) % len(msgs)
				got, ok := appendJSON(nil, msgs[k].ProtoReflect())
				if !ok || !bytes.Equal(got, want[k]) {
					t.Errorf("goroutine %d, message %d: ok %v, bytes equal %v", g, k, ok, bytes.Equal(got, want[k]))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func fmParse(t *testing.T, c *Codec, body string) *Parsed {
	t.Helper()
	p, err := c.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return p
}

func fmExample(t *testing.T, c *Codec, name string) *Parsed {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "testdata", "r4-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Parse(body)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return p
}

var fmOddStrings = []string{
	"",
	"<b>&amp;</b> > 'x'",
	"line\u2028para\u2029end",
	"ctl \x00\x01\x07\b\f\n\r\t\x0b\x1f\x7f end",
	`quote " backslash \ slash /`,
	"bad utf-8 \xff\xfe \xe2\x82 end\xc3",
	"é ü 中文 🎉",
}

func fmNoValue() *dtpb.Extension {
	return &dtpb.Extension{
		Url:   &dtpb.Uri{Value: fmNoValueURL},
		Value: &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Boolean{Boolean: &dtpb.Boolean{Value: true}}},
	}
}

func fmTestExt(url string, v *dtpb.Extension_ValueX) *dtpb.Extension {
	return &dtpb.Extension{Url: &dtpb.Uri{Value: url}, Value: v}
}

// TestFastMarshal_Mutations sets odd values into parsed examples and
// compares again.
func TestFastMarshal_Mutations(t *testing.T) {
	c := fmCodec(t)
	mustTake := func(name string, m proto.Message) {
		t.Helper()
		if fmCheck(t, c, name, m) {
			t.Errorf("%s: appendJSON declined", name)
		}
	}
	mustDecline := func(name string, m proto.Message) {
		t.Helper()
		if !fmCheck(t, c, name, m) {
			t.Errorf("%s: appendJSON did not decline", name)
		}
	}

	t.Run("strings", func(t *testing.T) {
		for i, s := range fmOddStrings {
			p := fmExample(t, c, "Patient-example.json")
			pat := p.Message().(*patientpb.Patient)
			pat.Name[0].Family = &dtpb.String{Value: s}
			pat.Name[0].Given = append(pat.Name[0].Given, &dtpb.String{Value: s})
			pat.Id = &dtpb.Id{Value: s}
			pat.Telecom[0].Value = &dtpb.String{Value: s, Id: &dtpb.String{Value: s}}
			mustTake(fmt.Sprintf("string %d %q", i, s), p.Proto())
		}
	})

	t.Run("primitive extensions", func(t *testing.T) {
		p := fmExample(t, c, "Patient-example.json")
		pat := p.Message().(*patientpb.Patient)
		other := fmTestExt("http://example.org/x", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_StringValue{StringValue: &dtpb.String{Value: "x"}}})
		// Extension only, no value.
		pat.BirthDate.Extension = []*dtpb.Extension{fmNoValue(), other}
		// Value and id.
		pat.Gender.Id = &dtpb.String{Value: "g1"}
		// Repeated with holes: a value, an extension only, an id only.
		pat.Name[0].Given = []*dtpb.String{
			{Value: "a"},
			{Extension: []*dtpb.Extension{fmNoValue(), other}},
			{Value: "c", Id: &dtpb.String{Value: "c1"}},
			{Extension: []*dtpb.Extension{fmNoValue()}},
		}
		// Extensions only on every element.
		pat.Name[1].Given = []*dtpb.String{
			{Extension: []*dtpb.Extension{fmNoValue(), other}},
			{Extension: []*dtpb.Extension{other}, Value: "v"},
		}
		// The no-value extension alone: nothing at all.
		pat.Name[1].Family = &dtpb.String{Extension: []*dtpb.Extension{fmNoValue()}}
		mustTake("primitive extensions", p.Proto())
		mustTake("primitive extensions (resource)", p.Message())
	})

	t.Run("numbers", func(t *testing.T) {
		for _, d := range []string{"1.50", "-0.0", "0", "1e10", "1E+3", "-12.345e-7", "100000000000000000000000.000001"} {
			p := fmExample(t, c, "Observation-example.json")
			obs := p.Message().(*obspb.Observation)
			obs.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: &dtpb.Quantity{Value: &dtpb.Decimal{Value: d}}}}
			obs.Extension = append(obs.Extension,
				fmTestExt("http://example.org/int", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Integer{Integer: &dtpb.Integer{Value: -2147483648}}}),
				fmTestExt("http://example.org/int", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Integer{Integer: &dtpb.Integer{Value: -7}}}),
				fmTestExt("http://example.org/uint", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_UnsignedInt{UnsignedInt: &dtpb.UnsignedInt{Value: 4294967295}}}),
				fmTestExt("http://example.org/pos", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_PositiveInt{PositiveInt: &dtpb.PositiveInt{Value: 1}}}),
				fmTestExt("http://example.org/bool", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Boolean{Boolean: &dtpb.Boolean{Value: false}}}),
				fmTestExt("http://example.org/dec", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Decimal{Decimal: &dtpb.Decimal{Value: d}}}),
			)
			mustTake("decimal "+d, p.Proto())
		}
		for _, d := range []string{"", "abc", "1.", ".5", "01", "+1", "1.5 "} {
			p := fmExample(t, c, "Observation-example.json")
			obs := p.Message().(*obspb.Observation)
			obs.Value = &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Quantity{Quantity: &dtpb.Quantity{Value: &dtpb.Decimal{Value: d}}}}
			mustDecline(fmt.Sprintf("decimal %q", d), p.Proto())
		}
	})

	t.Run("times", func(t *testing.T) {
		us := int64(1_700_000_123_456_789) // 2023-11-14T22:15:23.456789Z
		zones := []string{"Z", "UTC", "+05:30", "-03:00", "+00:00", "-00:30", "+14:00", "Europe/London", "America/New_York", "Asia/Kolkata", ""}
		dtPrecs := []dtpb.DateTime_Precision{dtpb.DateTime_YEAR, dtpb.DateTime_MONTH, dtpb.DateTime_DAY, dtpb.DateTime_SECOND, dtpb.DateTime_MILLISECOND, dtpb.DateTime_MICROSECOND}
		for _, tz := range zones {
			for _, prec := range dtPrecs {
				for _, v := range []int64{us, us - us%1000, 0, -us, 86399_999_999, 1_000_000 * 253402300799} {
					p := fmExample(t, c, "Observation-example.json")
					obs := p.Message().(*obspb.Observation)
					obs.Effective = &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: &dtpb.DateTime{ValueUs: v, Timezone: tz, Precision: prec}}}
					ip := dtpb.Instant_Precision(max(int32(prec)-3, 1))
					obs.Issued = &dtpb.Instant{ValueUs: v, Timezone: tz, Precision: ip}
					dp := dtpb.Date_Precision(min(int32(prec), 3))
					tp := dtpb.Time_Precision(max(int32(prec)-3, 1))
					obs.Extension = append(obs.Extension,
						fmTestExt("http://example.org/date", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Date{Date: &dtpb.Date{ValueUs: v, Timezone: tz, Precision: dp}}}),
						fmTestExt("http://example.org/time", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Time{Time: &dtpb.Time{ValueUs: v % 86400_000_000, Precision: tp}}}),
					)
					mustTake(fmt.Sprintf("time %d tz %q precision %v", v, tz, prec), p.Proto())
				}
			}
		}
		// No precision, or a timezone google/fhir cannot read.
		p := fmExample(t, c, "Observation-example.json")
		obs := p.Message().(*obspb.Observation)
		obs.Issued = &dtpb.Instant{ValueUs: us, Timezone: "Z"}
		mustDecline("instant without precision", p.Proto())
		obs.Issued = &dtpb.Instant{ValueUs: us, Timezone: "Mars/Olympus", Precision: dtpb.Instant_SECOND}
		mustDecline("instant in an unknown zone", p.Proto())
	})

	t.Run("references", func(t *testing.T) {
		p := fmExample(t, c, "Observation-example.json")
		obs := p.Message().(*obspb.Observation)
		obs.Subject = &dtpb.Reference{Reference: &dtpb.Reference_PatientId{PatientId: &dtpb.ReferenceId{Value: "p<1>", History: &dtpb.Id{Value: "3"}, Id: &dtpb.String{Value: "lost"}}}, Display: &dtpb.String{Value: "d"}}
		obs.Performer = []*dtpb.Reference{
			{Reference: &dtpb.Reference_Fragment{Fragment: &dtpb.String{Value: "c1"}}},
			{Reference: &dtpb.Reference_Uri{Uri: &dtpb.String{Value: "http://x/Patient/1", Extension: []*dtpb.Extension{fmTestExt("http://example.org/x", &dtpb.Extension_ValueX{Choice: &dtpb.Extension_ValueX_Code{Code: &dtpb.Code{Value: "c"}}})}}}},
			{Reference: &dtpb.Reference_ResourceId{ResourceId: &dtpb.ReferenceId{Value: "r"}}},
			{Reference: &dtpb.Reference_PractitionerId{PractitionerId: &dtpb.ReferenceId{Value: "pr", History: &dtpb.Id{}}}},
			{Display: &dtpb.String{Value: "display only"}},
			{},
		}
		mustTake("references", p.Proto())
	})

	t.Run("codes and empty elements", func(t *testing.T) {
		p := fmExample(t, c, "Observation-example.json")
		obs := p.Message().(*obspb.Observation)
		obs.Meta = &dtpb.Meta{}
		obs.Status = &obspb.Observation_StatusCode{Id: &dtpb.String{Value: "no value"}}
		obs.Code.Coding = append(obs.Code.Coding, &dtpb.Coding{})
		mustTake("empty code and elements", p.Proto())
		obs.Status = &obspb.Observation_StatusCode{Value: 999}
		mustDecline("unknown code", p.Proto())
	})

	t.Run("base64", func(t *testing.T) {
		p := fmParse(t, c, `{"resourceType":"Patient","photo":[{"contentType":"image/png","data":"QUJD REVG R0hJ Sks="},{"data":"QUJDREVGR0hJSks="},{"data":""}]}`)
		mustTake("base64 with stride", p.Proto())
		pat := p.Message().(*patientpb.Patient)
		if len(pat.Photo[0].Data.GetExtension()) == 0 {
			t.Errorf("the parser kept no separator and stride extension")
		}
		mustTake("base64 with stride (resource)", p.Message())
	})

	t.Run("contained", func(t *testing.T) {
		p := fmParse(t, c, `{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Organization","id":"o1","name":"O"},{"resourceType":"Practitioner","id":"pr","name":[{"family":"F"}]}],"managingOrganization":{"reference":"#o1"},"generalPractitioner":[{"reference":"#pr"}]}`)
		mustTake("contained", p.Proto())
		pat := p.Message().(*patientpb.Patient)
		pat.Contained[0].TypeUrl = "type.googleapis.com/google.fhir.r4.core.Nope"
		mustDecline("contained of a bad type", p.Proto())
	})
}
