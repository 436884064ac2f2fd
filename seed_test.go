package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/synthetic"
)

// searchTotal returns the total of a search below base (the FHIR base).
func searchTotal(t *testing.T, c *http.Client, base, search string) int {
	t.Helper()
	sep := "?"
	if strings.Contains(search, "?") {
		sep = "&"
	}
	status, _, body := do(t, c, "GET", base+"/"+search+sep+"_summary=count", nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200; body %s", search, status, body)
	}
	var b struct {
		Total *int `json:"total"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Total == nil {
		t.Fatalf("GET %s: no total in %s", search, body)
	}
	return *b.Total
}

func nhsSearch(nhs string) string {
	return url.QueryEscape(synthetic.SystemNHSNumber + "|" + nhs)
}

// checkSeeded checks that the server at base holds the data set of cfg:
// every child, every record, councils and sites, lookups that find the
// flagged children and nothing for others.
func checkSeeded(t *testing.T, c *http.Client, base string, cfg synthetic.Config, attendances int) {
	t.Helper()
	g, err := synthetic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	records, active := 0, 0
	for i := range cfg.Children {
		s := g.Subject(i)
		records += len(s.Records)
		for _, r := range s.Records {
			if r.Active {
				active++
			}
		}
	}
	for _, tc := range []struct {
		search string
		want   int
	}{
		{"Patient", cfg.Children},
		{"Flag", records},
		{"Flag?status=active", active},
		{"CarePlan", records},
		{"CareTeam", records},
		{"Organization", len(g.Councils()) + len(g.Sites())},
		{"PractitionerRole?role=http://snomed.info/sct|106328005", 1 + 2 + 3 + 1 + 2},
		{"Encounter", attendances},
	} {
		if got := searchTotal(t, c, base, tc.search); got != tc.want {
			t.Errorf("GET %s: total %d, want %d", tc.search, got, tc.want)
		}
	}
	flagged := g.FlaggedSubjects()
	for _, i := range flagged[:5] {
		s := g.Subject(int(i))
		want := 0
		for _, r := range s.Records {
			if r.Active {
				want++
			}
		}
		if got := searchTotal(t, c, base, "Flag?subject:identifier="+nhsSearch(s.NHSNumber)+"&status=active"); got != want {
			t.Errorf("lookup of flagged subject %d: %d active Flags, want %d", i, got, want)
		}
		if got := searchTotal(t, c, base, "CareTeam?patient:identifier="+nhsSearch(s.NHSNumber)); got != len(s.Records) {
			t.Errorf("CareTeam?patient:identifier= of subject %d: %d, want %d", i, got, len(s.Records))
		}
	}
	unseeded := g.NHSNumber(cfg.Children + 1)
	if got := searchTotal(t, c, base, "Flag?subject:identifier="+nhsSearch(unseeded)); got != 0 {
		t.Errorf("lookup of a child not in the set: %d Flags, want 0", got)
	}
}

func TestSeed_DataFolder(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var out syncBuffer
	args := []string{"seed", "--children", "200", "--councils", "5", "--sites", "10", "--data", dir, "--date", "2026-12-01", "--clients", "2"}
	if err := run(ctx, args, &out, &out); err != nil {
		t.Fatalf("cpis %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "seed: 200 children") || !strings.Contains(s, "0 Bundles failed") {
		t.Errorf("seed output has no summary of 200 children without failures:\n%s", s)
	}
	// Not a terminal: the progress is plain lines, the last one complete.
	if s := out.String(); !strings.Contains(s, "100.0%") || strings.Contains(s, "\r") {
		t.Errorf("seed progress has no plain line at 100.0%%:\n%q", s)
	}
	// Seeding the same set again is refused, and changes nothing.
	if err := run(ctx, args, &out, &out); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("second seed of the same set: error %v, want one saying the set is there already", err)
	}

	sctx, cancel := context.WithCancel(ctx)
	addr, done := startMain(t, sctx, newMain(t, dir))
	defer func() {
		cancel()
		if err := waitRun(t, done); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	client := &http.Client{Timeout: time.Minute, Transport: withToken(t, dir, http.DefaultTransport)}
	cfg := synthetic.Config{Seed: 1, Children: 200, Councils: 5, Sites: 10, Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	checkSeeded(t, client, "http://"+addr+"/fhir", cfg, 0)
}

// authServer serves the data folder dir with the real server handler and
// records the Authorization header of every request.
func authServer(t *testing.T, dir string) (base string, auth func() map[string]int) {
	t.Helper()
	h, closeStore, err := openHandler(context.Background(), dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ts.Close()
		closeStore()
	})
	return ts.URL + "/fhir", func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

func TestSeed_Base(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	addr, done := startMain(t, ctx, newMain(t, dir))
	defer func() {
		cancel()
		if err := waitRun(t, done); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + addr + "/fhir"
	var tok syncBuffer
	if err := run(context.Background(), []string{"token", "--data", dir, "--role", "admin", "--base-url", base}, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	args := []string{"seed", "--children", "120", "--councils", "5", "--sites", "10", "--attendances", "150", "--base", base, "--seed", "9",
		"--token", strings.TrimSpace(tok.String())}
	if err := run(context.Background(), args, &out, &out); err != nil {
		t.Fatalf("cpis %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "seed: 120 children") || !strings.Contains(s, "150 attendances") {
		t.Errorf("seed output has no summary of 120 children and 150 attendances:\n%s", s)
	}
	client := &http.Client{Timeout: time.Minute, Transport: withToken(t, dir, http.DefaultTransport)}
	checkSeeded(t, client, base, synthetic.Config{Seed: 9, Children: 120, Councils: 5, Sites: 10, Now: time.Now()}, 150)
}

func TestSeed_Token(t *testing.T) {
	base, auth := authServer(t, t.TempDir())
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--token", "tok-1", "--seed", "1"}, "", "Bearer tok-1"},
		{[]string{"--seed", "2"}, "tok-env", "Bearer tok-env"},
	} {
		t.Setenv("CPIS_TOKEN", tc.env)
		args := append([]string{"seed", "--children", "5", "--councils", "2", "--sites", "2", "--base", base}, tc.args...)
		var out syncBuffer
		if err := run(context.Background(), args, &out, &out); err != nil {
			t.Fatalf("cpis %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		if a := auth(); a[tc.want] == 0 {
			t.Errorf("cpis %s (CPIS_TOKEN=%q): Authorization headers seen %v, want %q", strings.Join(args, " "), tc.env, a, tc.want)
		}
	}
	if a := auth(); len(a) != 2 {
		t.Errorf("Authorization headers seen %v, want only the two tokens", a)
	}
	// The help text never shows the token of the environment.
	t.Setenv("CPIS_TOKEN", "tok-secret")
	for _, cmd := range []string{"seed", "bench"} {
		var out syncBuffer
		run(context.Background(), []string{cmd, "-h"}, &out, &out)
		if s := out.String(); !strings.Contains(s, "-token") || strings.Contains(s, "tok-secret") {
			t.Errorf("cpis %s -h: want the --token flag without the token's value:\n%s", cmd, s)
		}
	}
}

func TestSeed_Flags(t *testing.T) {
	for _, args := range [][]string{
		{"seed", "--children", "10"},                                      // neither --base nor --data
		{"seed", "--children", "10", "--base", "http://x", "--data", "d"}, // both
		{"seed", "--children", "10", "--data", "d", "--clients", "0"},
		{"seed", "--children", "10", "--data", "d", "--date", "1 May"},
		{"seed", "--children", "-3", "--data", "d"},
	} {
		var out syncBuffer
		if err := run(context.Background(), args, &out, &out); err == nil {
			t.Errorf("cpis %s: no error, want one", strings.Join(args, " "))
		}
	}
}
