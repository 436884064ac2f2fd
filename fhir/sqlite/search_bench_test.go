package sqlite_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// Search benchmarks on a store of N Patients, each with one Flag, and an
// Encounter for every 50th Patient (N from CPIS_BENCH_N, default 250,000),
// with hand-built index rows:
//
//	go test ./fhir/sqlite -run '^$' -bench Search -benchtime 3s
//
// The database is built once and kept in os.TempDir() under a name made of
// N and a hash of the migrations and of this data's version, so later runs
// reuse it (building 250,000 takes a few minutes). Each lookup asks for a
// random 999-range NHS number, 1% of them held by a Patient, as in
// production where most attendances are of children without a flag. The
// p50 and p95 metrics are the median and 95th percentile latency.

const (
	nhsSystem     = "https://fhir.nhs.uk/Id/nhs-number"
	benchDataVers = "1"
)

// nhsNumber returns the 999-range NHS number with the 6-digit serial n.
func nhsNumber(n int) (string, bool) { return fhirtest.NHSNumber(n) }

// flagStatus is the CP-IS Flag.status parameter, which R4 does not define.
var flagStatus = &fhir.SearchParam{Name: "status", Type: fhir.SearchParamToken, Expression: "Flag.status"}

func benchN(b *testing.B) int {
	n := 250000
	if v := os.Getenv("CPIS_BENCH_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			b.Fatalf("CPIS_BENCH_N=%q: want a number of at least 100", v)
		}
	}
	return n
}

// benchData is the data set: the NHS numbers held (by serial order) and
// some valid ones that nobody holds.
type benchData struct {
	held, free []string
}

func newBenchData(n int) *benchData {
	d := &benchData{}
	serial := 0
	for len(d.held) < n {
		if nhs, ok := nhsNumber(serial); ok {
			d.held = append(d.held, nhs)
		}
		serial++
	}
	for len(d.free) < 10000 && serial < 1000000 {
		if nhs, ok := nhsNumber(serial); ok {
			d.free = append(d.free, nhs)
		}
		serial++
	}
	return d
}

// pick returns a random NHS number, held by a Patient one time in 100.
func (d *benchData) pick(r *rand.Rand) string {
	if r.IntN(100) == 0 {
		return d.held[r.IntN(len(d.held))]
	}
	return d.free[r.IntN(len(d.free))]
}

func benchStore(b *testing.B) (*sqlite.Store, *benchData) {
	b.Helper()
	n := benchN(b)
	data := newBenchData(n)
	h := sha256.New()
	names, _ := filepath.Glob("migration/*.sql")
	for _, name := range names {
		body, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		h.Write(body)
	}
	h.Write([]byte(benchDataVers))
	path := filepath.Join(os.TempDir(), fmt.Sprintf("cpis-bench-search-%d-%s.db", n, hex.EncodeToString(h.Sum(nil))[:12]))
	if _, err := os.Stat(path); err != nil {
		start := time.Now()
		tmp := path + ".building"
		os.Remove(tmp)
		s, err := sqlite.Open(tmp, sqlite.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := buildBenchData(s, data); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
		b.Logf("built %d Patients and Flags in %v: %s", n, time.Since(start).Round(time.Second), path)
	}
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, data
}

func buildBenchData(s *sqlite.Store, data *benchData) error {
	patient, err := os.ReadFile("../../testdata/cpis/patient.json")
	if err != nil {
		return err
	}
	flag := []byte(`{"category":[{"coding":[{"code":"safety","display":"Safety","system":"http://terminology.hl7.org/CodeSystem/flag-category"}]}],"code":{"coding":[{"code":"CPP","display":"Child Protection Plan","system":"https://fhir.nhs.uk/CodeSystem/cpis-plan-type"}],"text":"Child Protection Plan"},"meta":{"profile":["https://fhir.nhs.uk/StructureDefinition/CPIS-Flag"]},"period":{"start":"2024-01-01"},"resourceType":"Flag","status":"active","subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"},"reference":"Patient/p0"}}`)
	encounter := []byte(`{"class":{"code":"EMER","system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"},"period":{"start":"2025-02-03T10:00:00Z"},"resourceType":"Encounter","status":"finished","subject":{"reference":"Patient/p0"}}`)
	day := int64(24 * time.Hour / time.Millisecond)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const batch = 2000
	ctx := context.Background()
	for start := 0; start < len(data.held); start += batch {
		err := s.Write(ctx, func(tx fhir.Tx) error {
			for i := start; i < min(start+batch, len(data.held)); i++ {
				nhs, pid := data.held[i], "p"+strconv.Itoa(i)
				born := time.Date(2010+i%15, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC).UnixMilli()
				p := &fhir.Resource{Type: "Patient", ID: pid, VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: patient, Index: &fhir.Index{
					Tokens: []fhir.IndexToken{
						{Param: "identifier", System: nhsSystem, Code: nhs},
						{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: []string{"female", "male"}[i%2]},
						{Param: "active", Code: "true"},
					},
					Strings: []fhir.IndexString{
						{Param: "family", Norm: "family" + strconv.Itoa(i%5000), Exact: "Family" + strconv.Itoa(i%5000)},
						{Param: "given", Norm: "given" + strconv.Itoa(i%700), Exact: "Given" + strconv.Itoa(i%700)},
						{Param: "name", Norm: "family" + strconv.Itoa(i%5000), Exact: "Family" + strconv.Itoa(i%5000)},
						{Param: "name", Norm: "given" + strconv.Itoa(i%700), Exact: "Given" + strconv.Itoa(i%700)},
					},
					Dates: []fhir.IndexDate{{Param: "birthdate", Low: born, High: born + day - 1}},
					URIs:  []fhir.IndexURI{{Param: "_profile", URI: "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"}},
				}}
				if err := tx.Put(p); err != nil {
					return err
				}
				from := base + int64(i)*60000
				f := &fhir.Resource{Type: "Flag", ID: "f" + strconv.Itoa(i), VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: flag, Index: &fhir.Index{
					Tokens: []fhir.IndexToken{
						{Param: "status", System: "http://hl7.org/fhir/flag-status", Code: "active"},
						{Param: "category", System: "http://terminology.hl7.org/CodeSystem/flag-category", Code: "safety"},
						{Param: "code", System: "https://fhir.nhs.uk/CodeSystem/cpis-plan-type", Code: "CPP"},
						{Param: "identifier", System: "https://example.org/la-flag-id", Code: "F" + strconv.Itoa(i)},
						{Param: "subject:identifier", System: nhsSystem, Code: nhs},
						{Param: "patient:identifier", System: nhsSystem, Code: nhs},
						{Param: "_tag", System: "https://fhir.nhs.uk/CodeSystem/cpis", Code: "cpis"},
					},
					Strings: []fhir.IndexString{
						{Param: "code:text", Norm: "child protection plan", Exact: "Child Protection Plan"},
						{Param: "category:text", Norm: "safety", Exact: "Safety"},
					},
					References: []fhir.IndexReference{
						{Param: "subject", Type: "Patient", ID: pid},
						{Param: "patient", Type: "Patient", ID: pid},
						{Param: "author", Type: "Organization", ID: "la-" + strconv.Itoa(i%150)},
					},
					Dates: []fhir.IndexDate{{Param: "date", Low: from, High: fhir.MaxDate}},
					URIs:  []fhir.IndexURI{{Param: "_profile", URI: "https://fhir.nhs.uk/StructureDefinition/CPIS-Flag"}},
				}}
				if err := tx.Put(f); err != nil {
					return err
				}
				if i%50 == 0 {
					e := &fhir.Resource{Type: "Encounter", ID: "e" + strconv.Itoa(i), VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: encounter, Index: &fhir.Index{
						Tokens: []fhir.IndexToken{
							{Param: "status", System: "http://hl7.org/fhir/encounter-status", Code: "finished"},
							{Param: "class", System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "EMER"},
						},
						References: []fhir.IndexReference{
							{Param: "subject", Type: "Patient", ID: pid},
							{Param: "patient", Type: "Patient", ID: pid},
						},
						Dates: []fhir.IndexDate{{Param: "date", Low: from, High: from + 3600000}},
					}}
					if err := tx.Put(e); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// latencies records the time of each search of a benchmark and reports its
// median and 95th percentile.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l[len(l)*95/100].Nanoseconds())/1e3, "p95-µs")
}

func nhsValue(nhs string) fhir.Value {
	return fhir.Value{System: nhsSystem, HasSystem: true, Code: nhs}
}

// BenchmarkSearch_TokenNHSNumber is the CP-IS hot lookup,
// Flag?subject:identifier=https://fhir.nhs.uk/Id/nhs-number|X&status=active.
func BenchmarkSearch_TokenNHSNumber(b *testing.B) {
	s, data := benchStore(b)
	subject, _ := fhir.LookupSearchParam("Flag", "subject")
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	var lat latencies
	hits := 0
	b.ReportAllocs()
	for b.Loop() {
		q := &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{
			{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhsValue(data.pick(r))}},
			{Param: flagStatus, Values: []fhir.Value{{Code: "active"}}},
		}}
		t0 := time.Now()
		page, err := s.Search(ctx, q, nil, false)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		hits += len(page.Matches)
	}
	lat.report(b)
	b.ReportMetric(float64(hits)/float64(len(lat)), "hits/op")
}

// BenchmarkSearch_TokenNHSNumberParallel runs the hot lookup from as many
// goroutines as GOMAXPROCS (ns/op is then the inverse of throughput).
func BenchmarkSearch_TokenNHSNumberParallel(b *testing.B) {
	s, data := benchStore(b)
	subject, _ := fhir.LookupSearchParam("Flag", "subject")
	ctx := context.Background()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 5))
		for pb.Next() {
			q := &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{
				{Param: subject, Modifier: "identifier", Values: []fhir.Value{nhsValue(data.pick(r))}},
				{Param: flagStatus, Values: []fhir.Value{{Code: "active"}}},
			}}
			if _, err := s.Search(ctx, q, nil, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSearch_Chained is Flag?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|X.
func BenchmarkSearch_Chained(b *testing.B) {
	s, data := benchStore(b)
	patient, _ := fhir.LookupSearchParam("Flag", "patient")
	identifier, _ := fhir.LookupSearchParam("Patient", "identifier")
	r := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	var lat latencies
	hits := 0
	b.ReportAllocs()
	for b.Loop() {
		q := &fhir.Search{Type: "Flag", Count: 20, Filters: []fhir.Filter{{Param: patient, Chain: []fhir.ChainTarget{
			{Type: "Patient", Filter: fhir.Filter{Param: identifier, Values: []fhir.Value{nhsValue(data.pick(r))}}},
		}}}}
		t0 := time.Now()
		page, err := s.Search(ctx, q, nil, false)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		hits += len(page.Matches)
	}
	lat.report(b)
	b.ReportMetric(float64(hits)/float64(len(lat)), "hits/op")
}

// BenchmarkSearch_EncounterInclude reads a page of 100 Encounters with
// _include=Encounter:subject (100 Patients of 1.5 KB): the second page,
// through its cursor.
func BenchmarkSearch_EncounterInclude(b *testing.B) {
	s, _ := benchStore(b)
	subject, _ := fhir.LookupSearchParam("Encounter", "subject")
	ctx := context.Background()
	q := &fhir.Search{Type: "Encounter", Count: 100, Include: []fhir.Include{{Source: "Encounter", Param: subject}}}
	first, err := s.Search(ctx, q, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	if len(first.Matches) != 100 || len(first.Included) != 100 {
		b.Fatalf("first page: %d matches, %d included; want 100 and 100", len(first.Matches), len(first.Included))
	}
	var lat latencies
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		page, err := s.Search(ctx, q, first.Next, false)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Included) != len(page.Matches) {
			b.Fatalf("%d matches, %d included; want as many", len(page.Matches), len(page.Included))
		}
	}
	lat.report(b)
}

// flagIndex returns the 14 index rows of a CP-IS Flag on Patient pid.
func flagIndex(i int, pid, nhs string) *fhir.Index {
	return &fhir.Index{
		Tokens: []fhir.IndexToken{
			{Param: "status", System: "http://hl7.org/fhir/flag-status", Code: "active"},
			{Param: "category", System: "http://terminology.hl7.org/CodeSystem/flag-category", Code: "safety"},
			{Param: "code", System: "https://fhir.nhs.uk/CodeSystem/cpis-plan-type", Code: "CPP"},
			{Param: "identifier", System: "https://example.org/la-flag-id", Code: "F" + strconv.Itoa(i)},
			{Param: "subject:identifier", System: nhsSystem, Code: nhs},
			{Param: "patient:identifier", System: nhsSystem, Code: nhs},
			{Param: "_tag", System: "https://fhir.nhs.uk/CodeSystem/cpis", Code: "cpis"},
		},
		Strings: []fhir.IndexString{
			{Param: "code:text", Norm: "child protection plan", Exact: "Child Protection Plan"},
			{Param: "category:text", Norm: "safety", Exact: "Safety"},
		},
		References: []fhir.IndexReference{
			{Param: "subject", Type: "Patient", ID: pid},
			{Param: "patient", Type: "Patient", ID: pid},
			{Param: "author", Type: "Organization", ID: "la-" + strconv.Itoa(i%150)},
		},
		Dates: []fhir.IndexDate{{Param: "date", Low: int64(i) * 60000, High: fhir.MaxDate}},
		URIs:  []fhir.IndexURI{{Param: "_profile", URI: "https://fhir.nhs.uk/StructureDefinition/CPIS-Flag"}},
	}
}

// BenchmarkStore_PutFlag measures tx.Put of a 450-byte Flag, 100 Puts to
// a commit (so that the fsync is shared): without index rows, with its 14
// index rows (create), and as an update that replaces them. The put-µs
// metric is the time of one Put.
func BenchmarkStore_PutFlag(b *testing.B) {
	body := []byte(`{"resourceType":"Flag","status":"active","code":{"text":"Child Protection Plan"},"subject":{"reference":"Patient/p0"}}`)
	for _, c := range []struct {
		name   string
		index  bool
		update bool
	}{{"no index", false, false}, {"indexed create", true, false}, {"indexed update", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			s := MustOpen(b, time.Now)
			ctx := context.Background()
			const perCommit = 100
			n, version := 0, int64(1)
			if c.update {
				err := s.Write(ctx, func(tx fhir.Tx) error {
					for i := range perCommit {
						if err := tx.Put(&fhir.Resource{Type: "Flag", ID: "f" + strconv.Itoa(i), VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: body, Index: flagIndex(i, "p1", "9990000018")}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				version++
				err := s.Write(ctx, func(tx fhir.Tx) error {
					for i := range perCommit {
						r := &fhir.Resource{Type: "Flag", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: body}
						if c.update {
							r.ID, r.VersionID, r.Method = "f"+strconv.Itoa(i), version, fhir.MethodUpdate
						} else {
							r.ID = "f" + strconv.Itoa(n)
						}
						if c.index {
							r.Index = flagIndex(n, "p"+strconv.Itoa(n%1000), "9990000018")
						}
						n++
						if err := tx.Put(r); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/1e3/float64(n), "put-µs")
		})
	}
}
