package fhir_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/synthetic"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
)

// These tests are outside package fhir because synthetic imports it.

func fmSynthetic(t testing.TB) *synthetic.Generator {
	t.Helper()
	g, err := synthetic.New(synthetic.Config{Seed: 1, Children: 2000, Now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func fmSynthCodec(t testing.TB) *fhir.Codec {
	t.Helper()
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fmSynthDiff describes where got and want first differ, with context.
func fmSynthDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-40)
	return fmt.Sprintf("first difference at byte %d (got %d bytes, want %d)\n got: …%s…\nwant: …%s…",
		i, len(got), len(want), got[from:min(len(got), i+40)], want[from:min(len(want), i+40)])
}

// fmSynthTake requires appendJSON to take m and give google/fhir's bytes.
func fmSynthTake(t *testing.T, c *fhir.Codec, name string, m proto.Message) {
	t.Helper()
	got, ok := fhir.AppendJSONForTest(nil, m.ProtoReflect())
	want, err := fhir.GoogleMarshalForTest(c, proto.Clone(m))
	switch {
	case err != nil:
		t.Errorf("%s: google/fhir: %v", name, err)
	case !ok:
		t.Errorf("%s: appendJSON declined", name)
	case !bytes.Equal(got, want):
		t.Errorf("%s: %s", name, fmSynthDiff(got, want))
	}
}

// TestFastMarshal_Synthetic requires appendJSON to take all the synthetic
// CP-IS data (the uploads, the setup Bundle and attendances' Encounters),
// whole Bundles and each entry's resource, and give google/fhir's bytes.
func TestFastMarshal_Synthetic(t *testing.T) {
	g := fmSynthetic(t)
	c := fmSynthCodec(t)
	bodies := map[string][]byte{"setup": g.SetupBundle()}
	for i, u := range g.Uploads() {
		bodies[fmt.Sprintf("upload %d", i)] = g.UploadBundle(u)
	}
	for k := range 200 {
		bodies[fmt.Sprintf("encounter %d", k)] = g.EncounterJSON(g.Attendance(k))
	}
	resources := 0
	for name, body := range bodies {
		p, err := c.Parse(body)
		if err != nil {
			t.Fatalf("%s: parse: %v", name, err)
		}
		fmSynthTake(t, c, name, p.Proto())
		fmSynthTake(t, c, name+" (resource)", p.Message())
		resources++
		b, ok := p.Message().(*bcrpb.Bundle)
		if !ok {
			continue
		}
		for j, e := range b.GetEntry() {
			if e.GetResource() == nil {
				continue
			}
			en := fmt.Sprintf("%s entry %d", name, j)
			fmSynthTake(t, c, en, e.GetResource())
			cr := e.GetResource().ProtoReflect()
			fd := cr.WhichOneof(cr.Descriptor().Oneofs().Get(0))
			if fd == nil {
				t.Fatalf("%s: no resource in the entry", en)
			}
			fmSynthTake(t, c, en+" (resource)", cr.Get(fd).Message().Interface())
			resources++
		}
	}
	t.Logf("compared %d bodies, %d resources", len(bodies), resources)
}

// BenchmarkMarshal_UploadBundle compares google/fhir's marshaller with
// appendJSON on one council upload Bundle (25 children, 100 entries).
//
//	go test ./fhir -run '^$' -bench Marshal_UploadBundle -count 3
func BenchmarkMarshal_UploadBundle(b *testing.B) {
	g := fmSynthetic(b)
	c := fmSynthCodec(b)
	body := g.UploadBundle(g.Uploads()[0])
	parse := func() *fhir.Parsed {
		p, err := c.Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	b.Run("google", func(b *testing.B) {
		// google/fhir rewrites the typed references of the proto it
		// marshals the first time; later rounds see the rewritten ones.
		m := parse().Proto()
		b.ReportAllocs()
		for b.Loop() {
			out, err := fhir.GoogleMarshalForTest(c, m)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(out)))
		}
	})
	// fast appends to nil, as Codec.Marshal does; fast_reuse to a buffer
	// kept from round to round.
	b.Run("fast", func(b *testing.B) {
		m := parse().Proto().ProtoReflect()
		b.ReportAllocs()
		for b.Loop() {
			out, ok := fhir.AppendJSONForTest(nil, m)
			if !ok {
				b.Fatal("appendJSON declined")
			}
			b.SetBytes(int64(len(out)))
		}
	})
	b.Run("fast_reuse", func(b *testing.B) {
		m := parse().Proto().ProtoReflect()
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			out, ok := fhir.AppendJSONForTest(buf[:0], m)
			if !ok {
				b.Fatal("appendJSON declined")
			}
			buf = out
			b.SetBytes(int64(len(out)))
		}
	})
}
