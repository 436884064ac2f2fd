package main

import (
	"context"
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
)

// benchJSON runs cpis bench with --json and returns its result.
func benchJSON(t *testing.T, args ...string) benchResult {
	t.Helper()
	var out, errOut syncBuffer
	args = append([]string{"bench", "--json", "--clients", "4"}, args...)
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("cpis %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	var r benchResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("cpis %s: output is not the JSON result: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return r
}

func TestBench_Scenarios(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	if err := run(context.Background(), []string{"seed", "--children", "150", "--councils", "4", "--sites", "8", "--data", dir, "--seed", "4"}, &out, &out); err != nil {
		t.Fatalf("seed: %v\n%s", err, out.String())
	}
	base, auth := authServer(t, dir)
	set := []string{"--base", base, "--seed", "4", "--children", "150", "--duration", "400ms", "--token", "tok-2"}

	// Every lookup names a flagged child of the set: every one finds its
	// record. With none, none does.
	for _, sc := range []string{"lookup", "careteam"} {
		r := benchJSON(t, append(set, "--scenario", sc, "--hits", "1")...)
		if r.Requests == 0 || r.ErrorCount != 0 || r.Hits != r.Requests || r.HitShare != 1 {
			t.Errorf("%s --hits 1: %d requests, %d errors %v, %d hits: want requests, no errors, every one a hit", sc, r.Requests, r.ErrorCount, r.Errors, r.Hits)
		}
		// Every request a hit: the hits' latencies are the op's.
		if len(r.Ops) != 1 || r.HitP50 != r.Ops[0].P50 || r.HitP99 != r.Ops[0].P99 || r.HitP50 <= 0 {
			t.Errorf("%s --hits 1: hit p50 %v, p99 %v; ops %+v: want the op's p50 and p99", sc, r.HitP50, r.HitP99, r.Ops)
		}
		r = benchJSON(t, append(set, "--scenario", sc, "--hits", "0")...)
		if r.Requests == 0 || r.ErrorCount != 0 || r.Hits != 0 || r.HitP50 != 0 || r.HitP99 != 0 {
			t.Errorf("%s --hits 0: %d requests, %d errors %v, %d hits: want requests, no errors, no hit", sc, r.Requests, r.ErrorCount, r.Errors, r.Hits)
		}
	}
	for _, sc := range []string{"attendance", "upload", "mixed", "healthz"} {
		r := benchJSON(t, append(set, "--scenario", sc)...)
		if r.Requests == 0 || r.ErrorCount != 0 || len(r.Ops) == 0 {
			t.Errorf("%s: %d requests, %d errors %v, ops %+v: want requests and no errors", sc, r.Requests, r.ErrorCount, r.Errors, r.Ops)
			continue
		}
		for _, o := range r.Ops {
			if o.Requests == 0 || o.P50 > o.P90 || o.P90 > o.P99 || o.P99 > o.Max {
				t.Errorf("%s: op %+v: want requests and p50 <= p90 <= p99 <= max", sc, o)
			}
		}
		// The bench's own CPU: some, and no more than the machine has.
		if r.ClientCPU <= 0 || r.ClientCPU > r.Seconds*float64(runtime.NumCPU())+0.1 {
			t.Errorf("%s: client CPU %.3f s in %.3f s on %d CPUs", sc, r.ClientCPU, r.Seconds, runtime.NumCPU())
		}
		if sc == "upload" && r.Ops[0].Resources != 100*r.Ops[0].Requests {
			t.Errorf("upload: %d resources for %d Bundles, want 100 each", r.Ops[0].Resources, r.Ops[0].Requests)
		}
	}
	if a := auth(); len(a) != 1 || a["Bearer tok-2"] == 0 {
		t.Errorf("Authorization headers seen %v, want only \"Bearer tok-2\"", a)
	}

	// The text form names every operation and the errors.
	var text, errOut syncBuffer
	args := append([]string{"bench"}, append(set, "--scenario", "mixed")...)
	if err := run(context.Background(), args, &text, &errOut); err != nil {
		t.Fatalf("cpis %s: %v", strings.Join(args, " "), err)
	}
	for _, want := range []string{"lookup", "attendance", "p99 ms", "errors: none", "bench client CPU: "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("bench text output has no %q:\n%s", want, text.String())
		}
	}
}

func TestBench_Flags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--scenario", "lookup"},
		{"bench", "--base", "http://x/fhir", "--scenario", "nonsense"},
		{"bench", "--base", "http://x/fhir", "--clients", "0"},
		{"bench", "--base", "http://x/fhir", "--hits", "2"},
	} {
		var out syncBuffer
		if err := run(context.Background(), args, &out, &out); err == nil {
			t.Errorf("cpis %s: no error, want one", strings.Join(args, " "))
		}
	}
}

func TestBench_ServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := benchJSON(t, "--base", "http://"+addr+"/fhir", "--children", "100", "--duration", "200ms")
	if r.Requests != 0 || r.ErrorCount == 0 || r.Errors["transport"] != r.ErrorCount {
		t.Errorf("against a closed port: %d requests, errors %v: want none answered and only transport errors", r.Requests, r.Errors)
	}
}
