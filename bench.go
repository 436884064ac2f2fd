package main

// cpis bench drives a realistic CP-IS load against a running server and
// reports throughput, latency percentiles and errors. Scenarios:
//   - lookup: Flag?subject:identifier=<nhs>&status=active, the "is this
//     child flagged?" search of every unscheduled attendance; about 1% of the
//     NHS numbers are children of the seeded set with a current plan, the
//     rest children CP-IS holds nothing on (from the same --seed and
//     --children as cpis seed);
//   - careteam: the national CP-IS API, CareTeam?patient:identifier=<nhs>;
//   - attendance: POST Encounter (an attendance of the generator's curves);
//   - upload: council uploads of 25 new children (100-entry transactions);
//   - mixed: 70% lookup, 5% careteam, 24% attendance, 1% upload;
//   - healthz: GET /healthz, the floor of the HTTP stack under the same
//     client.
// See README.md, "Synthetic data, seed and bench", and
// https://hl7.org/fhir/R4/search.html for the searches.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cpis-fhir/cpis/synthetic"
)

// benchOptions are the flags of cpis bench.
type benchOptions struct {
	base, scenario, token string
	duration, timeout     time.Duration
	clients, children     int
	seed                  uint64
	json                  bool
	hitShare              float64
}

// op is one kind of request.
type op int

const (
	opLookup op = iota
	opCareTeam
	opAttendance
	opUpload
	opHealthz
	numOps
)

var opNames = [numOps]string{"lookup", "careteam", "attendance", "upload", "healthz"}

// scenarios are the mixes of operations, in percent.
var scenarios = map[string][numOps]int{
	"lookup":     {opLookup: 100},
	"careteam":   {opCareTeam: 100},
	"attendance": {opAttendance: 100},
	"upload":     {opUpload: 100},
	"healthz":    {opHealthz: 100},
	"mixed":      {opLookup: 70, opCareTeam: 5, opAttendance: 24, opUpload: 1},
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o benchOptions
	fs := flag.NewFlagSet("cpis bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.base, "base", "", "FHIR base URL of the server, such as http://localhost:8080/fhir (required)")
	fs.StringVar(&o.scenario, "scenario", "lookup", "lookup, careteam, attendance, upload, mixed or healthz")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to run")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients, each with its own keep-alive connection")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.StringVar(&o.token, "token", "", "bearer token (default $CPIS_TOKEN)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.Float64Var(&o.hitShare, "hits", 0.01, "share of lookups that name a seeded child with a current plan")
	generatorFlags(fs, &o.seed, &o.children)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.token == "" {
		o.token = os.Getenv("CPIS_TOKEN")
	}
	mix, ok := scenarios[o.scenario]
	switch {
	case o.base == "":
		return errors.New("bench: --base is required")
	case !ok:
		return fmt.Errorf("bench: unknown --scenario %q", o.scenario)
	case o.clients < 1 || o.duration <= 0:
		return errors.New("bench: --clients and --duration must be positive")
	case o.hitShare < 0 || o.hitShare > 1:
		return errors.New("bench: --hits must be between 0 and 1")
	}
	b, err := newBench(o, mix)
	if err != nil {
		return err
	}
	if !o.json {
		fmt.Fprintf(stderr, "bench: %s, %d clients, %s against %s\n", o.scenario, o.clients, o.duration, o.base)
	}
	r := b.run(ctx)
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	r.print(stdout)
	return nil
}

// bench holds the pre-built requests of a run, so that the client costs
// little next to the server it shares the machine with.
type bench struct {
	o        benchOptions
	mix      [numOps]int
	target   *benchConn // where each client's connection goes, not dialled
	base     string     // FHIR base
	root     string     // server root, for /healthz
	g        *synthetic.Generator
	lookups  []string // Flag search URLs
	teams    []string // CareTeam search URLs
	visits   [][]byte // Encounter bodies
	nextKid  atomic.Int64
	hitsWant float64
}

// lookupPool is the number of pre-built lookups and attendances.
const lookupPool = 1 << 15

func newBench(o benchOptions, mix [numOps]int) (*bench, error) {
	base := strings.TrimSuffix(o.base, "/")
	g, err := synthetic.New(synthetic.Config{Seed: o.seed, Children: o.children, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	target, err := newBenchConn(base, o.timeout)
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, mix: mix, base: base, root: strings.TrimSuffix(base, "/fhir"), g: g, target: target, hitsWant: o.hitShare}
	r := rand.New(rand.NewPCG(o.seed, uint64(time.Now().UnixNano())))
	if mix[opLookup]+mix[opCareTeam] > 0 {
		flagged := g.FlaggedSubjects()
		for range lookupPool {
			var nhs string
			if len(flagged) > 0 && r.Float64() < o.hitShare {
				nhs = g.NHSNumber(int(flagged[r.IntN(len(flagged))]))
			} else {
				nhs = g.NHSNumber(g.UnseededSubject(r.Uint64()))
			}
			id := url.QueryEscape(synthetic.SystemNHSNumber + "|" + nhs)
			b.lookups = append(b.lookups, base+"/Flag?subject:identifier="+id+"&status=active")
			b.teams = append(b.teams, base+"/CareTeam?patient:identifier="+id)
		}
	}
	if mix[opAttendance] > 0 {
		k0 := r.IntN(1 << 30)
		for k := range lookupPool / 8 {
			b.visits = append(b.visits, g.EncounterJSON(g.Attendance(k0+k)))
		}
	}
	// New children for uploads: from a random place in the upload band,
	// above the subjects the lookups and attendances draw their misses from,
	// so that runs seldom upload the same children twice.
	lo, hi := g.UploadBand()
	room := max(hi-lo-synthetic.ChildrenPerBundle, 1)
	b.nextKid.Store(int64(lo + r.IntN(room)))
	return b, nil
}

// sample is the latency of one request.
type sample struct {
	op  op
	dur time.Duration
	hit bool // a lookup that found a record
}

// worker is one client's tally.
type worker struct {
	conn    *benchConn
	samples []sample
	errors  map[string]int
	hits    int
}

func (b *bench) run(ctx context.Context) *benchResult {
	var stop atomic.Bool
	workers := make([]*worker, b.o.clients)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU()
	for i := range workers {
		conn := *b.target // a connection of its own to the same address
		w := &worker{conn: &conn, errors: map[string]int{}, samples: make([]sample, 0, 1<<14)}
		workers[i] = w
		r := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
		wg.Go(func() {
			var buf bytes.Buffer
			for !stop.Load() && ctx.Err() == nil {
				b.one(ctx, r, w, &buf)
			}
		})
	}
	timer := time.NewTimer(b.o.duration)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	for _, w := range workers {
		w.conn.close()
	}
	r := b.result(workers, elapsed)
	r.ClientCPU = cpu.Seconds()
	return r
}

// pickOp draws an operation of the mix.
func (b *bench) pickOp(r *rand.Rand) op {
	u := r.IntN(100)
	for o, pct := range b.mix {
		if u < pct {
			return op(o)
		}
		u -= pct
	}
	return opLookup
}

// one sends one request and records it.
func (b *bench) one(ctx context.Context, r *rand.Rand, w *worker, buf *bytes.Buffer) {
	o := b.pickOp(r)
	var (
		method = http.MethodGet
		u      string
		body   []byte
		want   = http.StatusOK
	)
	switch o {
	case opLookup:
		u = b.lookups[r.IntN(len(b.lookups))]
	case opCareTeam:
		u = b.teams[r.IntN(len(b.teams))]
	case opAttendance:
		method, u, body, want = http.MethodPost, b.base+"/Encounter", b.visits[r.IntN(len(b.visits))], http.StatusCreated
	case opUpload:
		from := int(b.nextKid.Add(synthetic.ChildrenPerBundle)) - synthetic.ChildrenPerBundle
		if lo, hi := b.g.UploadBand(); from+synthetic.ChildrenPerBundle > hi {
			from = lo // round the band again
		}
		method, u, body = http.MethodPost, b.base, b.g.UploadBundle(b.g.NewChildrenUpload(from, synthetic.ChildrenPerBundle))
	case opHealthz:
		u = b.root + "/healthz"
	}
	req, err := newRequest(ctx, method, u, body, b.o.token)
	if err != nil {
		w.errors["request"]++
		return
	}
	if body != nil {
		req.Header.Set("Prefer", "return=minimal")
	}
	t0 := time.Now()
	status, err := w.conn.do(ctx, req, buf)
	d := time.Since(t0)
	if err != nil {
		if ctx.Err() == nil {
			w.errors["transport"]++
			// A server that is down refuses at once: do not spin.
			time.Sleep(20 * time.Millisecond)
		}
		return
	}
	if status != want {
		w.errors[strconv.Itoa(status)]++
		return
	}
	// A record found is a match entry; a lookup without one still has an
	// outcome entry saying that no record is held.
	hit := (o == opLookup || o == opCareTeam) && bytes.Contains(buf.Bytes(), []byte(`"mode":"match"`))
	if hit {
		w.hits++
	}
	w.samples = append(w.samples, sample{o, d, hit})
}

// benchResult is what a run measured; its JSON form is the --json output.
type benchResult struct {
	Scenario    string         `json:"scenario"`
	Base        string         `json:"base"`
	Clients     int            `json:"clients"`
	Seconds     float64        `json:"seconds"`
	Requests    int            `json:"requests"`
	PerSecond   float64        `json:"requests_per_second"`
	Ops         []opResult     `json:"ops"`
	Errors      map[string]int `json:"errors"`
	ErrorCount  int            `json:"error_count"`
	Hits        int            `json:"lookup_hits"`
	HitShare    float64        `json:"lookup_hit_share"`
	HitExpected float64        `json:"lookup_hit_share_expected"`
	// HitP50 and HitP99 are the latencies of the lookups that found a
	// record, in milliseconds: the share of them is too small to show in
	// the lookup's own percentiles, but theirs is the work of a flag.
	HitP50 float64 `json:"lookup_hit_p50_ms,omitempty"`
	HitP99 float64 `json:"lookup_hit_p99_ms,omitempty"`
	// ClientCPU is the CPU time (user and system) the bench itself used
	// during the run: on a machine it shares with the server, what the
	// server did not get.
	ClientCPU float64 `json:"client_cpu_seconds"`
}

// opResult is the tally of one operation; latencies in milliseconds.
type opResult struct {
	Op        string  `json:"op"`
	Requests  int     `json:"requests"`
	PerSecond float64 `json:"requests_per_second"`
	// Resources is the number of resources uploads wrote (upload only).
	Resources int     `json:"resources,omitempty"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

func (b *bench) result(workers []*worker, elapsed time.Duration) *benchResult {
	r := &benchResult{Scenario: b.o.scenario, Base: b.o.base, Clients: b.o.clients, Seconds: elapsed.Seconds(), Errors: map[string]int{}, HitExpected: b.hitsWant}
	var by [numOps][]time.Duration
	var hits []time.Duration
	lookups := 0
	for _, w := range workers {
		for _, s := range w.samples {
			by[s.op] = append(by[s.op], s.dur)
			if s.hit {
				hits = append(hits, s.dur)
			}
		}
		for k, n := range w.errors {
			r.Errors[k] += n
			r.ErrorCount += n
		}
		r.Hits += w.hits
	}
	for o, ds := range by {
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		or := opResult{Op: opNames[o], Requests: len(ds), PerSecond: float64(len(ds)) / elapsed.Seconds(),
			P50: quantile(ds, 0.50), P90: quantile(ds, 0.90), P99: quantile(ds, 0.99), Max: ms(ds[len(ds)-1])}
		if op(o) == opUpload {
			or.Resources = 4 * synthetic.ChildrenPerBundle * len(ds)
		}
		r.Ops = append(r.Ops, or)
		r.Requests += len(ds)
		if op(o) == opLookup || op(o) == opCareTeam {
			lookups += len(ds)
		}
	}
	if len(hits) > 0 {
		slices.Sort(hits)
		r.HitP50, r.HitP99 = quantile(hits, 0.50), quantile(hits, 0.99)
	}
	r.PerSecond = float64(r.Requests) / elapsed.Seconds()
	if lookups > 0 {
		r.HitShare = float64(r.Hits) / float64(lookups)
	}
	return r
}

// quantile is the p quantile of the sorted ds, in milliseconds: the
// least sample that at least a p share of them do not exceed.
func quantile(ds []time.Duration, p float64) float64 {
	i := int(p*float64(len(ds))+0.999999) - 1
	return ms(ds[max(0, min(i, len(ds)-1))])
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *benchResult) print(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\trequests\treq/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	for _, o := range r.Ops {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", o.Op, o.Requests, o.PerSecond, o.P50, o.P90, o.P99, o.Max)
	}
	fmt.Fprintf(tw, "all\t%d\t%.0f\t\t\t\t\t\n", r.Requests, r.PerSecond)
	tw.Flush()
	for _, o := range r.Ops {
		if o.Resources > 0 {
			fmt.Fprintf(out, "uploads wrote %d resources, %.0f resources/s\n", o.Resources, float64(o.Resources)/r.Seconds)
		}
	}
	if r.HitExpected > 0 && r.Hits+r.Requests > 0 {
		for _, o := range r.Ops {
			if o.Op == "lookup" || o.Op == "careteam" {
				fmt.Fprintf(out, "lookups that found a record: %d (%.2f%%, expected about %.2f%%)", r.Hits, 100*r.HitShare, 100*r.HitExpected)
				if r.Hits > 0 {
					fmt.Fprintf(out, "; their p50 %.2f ms, p99 %.2f ms", r.HitP50, r.HitP99)
				}
				fmt.Fprintln(out)
				if r.Hits == 0 {
					fmt.Fprintln(out, "no lookup found a record: was the server seeded with the same --seed and --children?")
				}
				break
			}
		}
	}
	if r.Requests > 0 && r.Seconds > 0 {
		fmt.Fprintf(out, "bench client CPU: %.1f s, %.2f cores, %.0f µs a request\n", r.ClientCPU, r.ClientCPU/r.Seconds, 1e6*r.ClientCPU/float64(r.Requests))
	}
	if r.ErrorCount == 0 {
		fmt.Fprintln(out, "errors: none")
		return
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, r.Errors[k])
	}
	fmt.Fprintf(out, "errors: %d (%s)\n", r.ErrorCount, strings.Join(parts, ", "))
}
