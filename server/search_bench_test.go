package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

// The search benchmarks run on N children (env CPIS_BENCH_N, default
// 250,000), each a Patient with a 999-range NHS number and a CP-IS Flag,
// written through fhir.Service (parse, index, durable commit) into a data
// folder kept under os.TempDir() and reused by later runs:
//
//	go test ./server -run '^$' -bench 'HTTP_Search' -benchtime 20000x -count 3
//
// Lookups draw NHS numbers at random; about 1% are children with a flag,
// as in production. The folder also serves wrk (testdata/wrk/search-flag.lua):
//
//	cpis serve --data $(go env GOTMPDIR or /tmp)/cpis-bench-search-250000 --addr 127.0.0.1:8090 --log-level warn

func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("CPIS_BENCH_N")); err == nil && v > 0 && v < 800_000 {
		return v
	}
	return 250_000
}

// benchNHS returns the i-th valid 999-range NHS number. About 1 in 11
// serials has no valid check digit; stepping over them keeps the mapping
// deterministic (testdata/wrk/search-flag.lua makes the same numbers).
func benchNHS(i int) string {
	for serial := i * 11 / 10; ; serial++ {
		if s, ok := fhirtest.NHSNumber(serial); ok {
			return s
		}
	}
}

var benchDataOnce sync.Map

// benchSearchData returns the data folder of n children, building it once.
func benchSearchData(b *testing.B, n int) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("cpis-bench-search-%d-v%s", n, fhir.IndexVersion))
	done := filepath.Join(dir, "complete")
	once, _ := benchDataOnce.LoadOrStore(dir, &sync.Once{})
	once.(*sync.Once).Do(func() {
		if _, err := os.Stat(done); err == nil {
			return
		}
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
		if err != nil {
			b.Fatal(err)
		}
		codec, _ := fhir.NewCodec()
		svc := &fhir.Service{Store: store, Codec: codec, Indexer: fhir.NewIndexer(fhir.NewSearchRegistry())}
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		work := make(chan int, 1024)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					if err := benchChild(ctx, svc, codec, i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		if err := store.SetIndexVersion(ctx, fhir.IndexVersion); err != nil {
			b.Fatal(err)
		}
		store.Close()
		os.WriteFile(done, nil, 0o600)
		b.Logf("built %d children in %s", n, time.Since(start).Round(time.Second))
	})
	return dir
}

func benchChild(ctx context.Context, svc *fhir.Service, codec *fhir.Codec, i int) error {
	nhs := benchNHS(i)
	id := "p" + strconv.Itoa(i)
	p, err := codec.Parse([]byte(patientJSON(id, nhs)))
	if err != nil {
		return err
	}
	if _, _, err := svc.Update(ctx, "Patient", id, p, 0); err != nil {
		return err
	}
	status, plan := "active", cpp
	if i%5 == 0 {
		status, plan = "inactive", lac
	}
	f, err := codec.Parse([]byte(flagJSON("f"+strconv.Itoa(i), id, nhs, status, plan, "2025-01-01", "")))
	if err != nil {
		return err
	}
	_, _, err = svc.Update(ctx, "Flag", "f"+strconv.Itoa(i), f, 0)
	return err
}

// lookupURL returns a Flag lookup URL; one in a hundred names a child with
// a flag.
func lookupURL(base string, n int, rng *rand.Rand, chained bool) string {
	var nhs string
	if rng.IntN(100) == 0 {
		nhs = benchNHS(rng.IntN(n))
	} else {
		// Children with no record: numbers past the data set, still in the
		// 999 range (serials below 1,000,000).
		nhs = benchNHS(n + rng.IntN(900_000-n))
	}
	v := url.QueryEscape(nhsSys + "|" + nhs)
	if chained {
		return base + "/Flag?patient.identifier=" + v
	}
	return base + "/Flag?subject:identifier=" + v + "&status=active"
}

func benchSearchServer(b *testing.B) (*testServer, *http.Client, int) {
	n := benchN()
	dir := benchSearchData(b, n)
	ts := &testServer{}
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		b.Fatal(err)
	}
	codec, _ := fhir.NewCodec()
	// Authentication on, as served: every lookup carries a (cached) token.
	ts.Clock = fhirtest.NewClock(time.Now())
	if ts.key, err = ecdsa.GenerateKey(elliptic.P256(), crand.Reader); err != nil {
		b.Fatal(err)
	}
	if ts.Keys, err = smart.NewKeySet(ts.key); err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(store, codec, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Verifier: smart.NewVerifier(smart.VerifierConfig{Keys: ts.Keys})})
	if err != nil {
		b.Fatal(err)
	}
	ts.srv = srv
	ts.Server = httptest.NewServer(srv)
	ts.Base = ts.URL + "/fhir"
	ts.issuer = ts.Base
	ts.Token = ts.TokenFor(b, smart.AccessToken{Role: smart.RoleAdmin, Subject: "bench", ClientID: "bench"})
	b.Cleanup(func() { ts.Close(); store.Close() })
	client := &http.Client{Transport: ts.authorized(&http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256})}
	b.Cleanup(client.CloseIdleConnections)
	return ts, client, n
}

// benchLatencies runs the lookups from 32 clients and reports p50 and p99.
func benchLatencies(b *testing.B, client *http.Client, next func(*rand.Rand) string) {
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		var mine []time.Duration
		for pb.Next() {
			u := next(rng)
			t0 := time.Now()
			res, err := client.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			mine = append(mine, time.Since(t0))
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkHTTP_SearchFlagByNHS is the hot lookup over HTTP:
// Flag?subject:identifier=nhs-number|X&status=active.
func BenchmarkHTTP_SearchFlagByNHS(b *testing.B) {
	ts, client, n := benchSearchServer(b)
	benchLatencies(b, client, func(rng *rand.Rand) string { return lookupURL(ts.Base, n, rng, false) })
}

// BenchmarkHTTP_SearchFlagChained is Flag?patient.identifier=nhs-number|X.
func BenchmarkHTTP_SearchFlagChained(b *testing.B) {
	ts, client, n := benchSearchServer(b)
	benchLatencies(b, client, func(rng *rand.Rand) string { return lookupURL(ts.Base, n, rng, true) })
}

// BenchmarkHTTP_SearchHealthzFloor is /healthz under the same load and
// client, the floor of the HTTP stack the lookups are measured against.
func BenchmarkHTTP_SearchHealthzFloor(b *testing.B) {
	ts, client, _ := benchSearchServer(b)
	benchLatencies(b, client, func(*rand.Rand) string { return ts.URL + "/healthz" })
}
