package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/profiles"
)

// nhsSystem is the identifier system of NHS numbers.
const nhsSystem = "https://fhir.nhs.uk/Id/nhs-number"

// nhsNumbers hands out distinct test NHS numbers from the 999 range, each
// with a valid Modulus 11 check digit. It is safe for concurrent use.
type nhsNumbers struct{ next atomic.Int64 }

// Next returns the next unused number. It panics when the range is used
// up, which no test comes near.
func (g *nhsNumbers) Next() string {
	for {
		n := g.next.Add(1) - 1
		if n >= 1_000_000 {
			panic("nhsNumbers: the 999 range is used up")
		}
		if s, ok := nhsNumber(999_000_000 + n); ok {
			return s
		}
	}
}

// nhsNumber appends the Modulus 11 check digit to the nine digits of base:
// weights 10 to 2, check = 11 - sum mod 11, 11 becomes 0 and 10 has no
// valid check digit (ok is false).
func nhsNumber(base int64) (string, bool) {
	digits := strconv.FormatInt(base, 10)
	check, ok := profiles.NHSCheckDigit(digits)
	if !ok {
		return "", false
	}
	return digits + string(check), true
}

func TestNHSNumber(t *testing.T) {
	// Worked by hand: the first eight digits 99900000 weigh
	// 9*10+9*9+9*8 = 243, and the ninth digit d weighs 2d.
	for _, tc := range []struct {
		base int64
		want string
		ok   bool
	}{
		{999000001, "9990000018", true}, // 245 mod 11 = 3, check 8
		{999000002, "9990000026", true}, // 247 mod 11 = 5, check 6
		{999000005, "9990000050", true}, // 253 mod 11 = 0, check 11 becomes 0
		{999000000, "", false},          // 243 mod 11 = 1, check 10: no valid number
		{99900000, "", false},           // eight digits
	} {
		got, ok := nhsNumber(tc.base)
		if got != tc.want || ok != tc.ok {
			t.Errorf("nhsNumber(%d) = %q, %v; want %q, %v", tc.base, got, ok, tc.want, tc.ok)
		}
	}
}

// patientJSON is a minimal Patient carrying one NHS number; id may be empty.
func patientJSON(id, nhs string) []byte {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Patient",` + idPart +
		`"identifier":[{"system":"` + nhsSystem + `","value":"` + nhs + `"}],"birthDate":"2015-06-01"}`)
}

// wirePatient is the part of a Patient the tests look at.
type wirePatient struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
	Meta         struct {
		VersionID string `json:"versionId"`
	} `json:"meta"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

// nhsOf returns the NHS number in a Patient body, or "" when there is none.
func nhsOf(body []byte) string {
	var p wirePatient
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	for _, id := range p.Identifier {
		if id.System == nhsSystem {
			return id.Value
		}
	}
	return ""
}

// startMain runs m in a goroutine until ctx ends. It returns the listening
// address and a channel that receives Run's result.
func startMain(t *testing.T, ctx context.Context, m *Main) (addr string, done <-chan error) {
	t.Helper()
	ready := make(chan string, 1)
	m.Ready = ready
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("Run ended before it was ready: %v", err)
	}
	return addr, errc
}

// newMain returns a Main for tests on 127.0.0.1:0 over dir, logging to the
// test log only on failure.
func newMain(t *testing.T, dir string) *Main {
	t.Helper()
	var stdout, stderr syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr (last 4 KB):\n%s", stdout.String(), tail(stderr.String(), 4096))
		}
	})
	return &Main{
		Addr:            "127.0.0.1:0",
		DataDir:         dir,
		LogLevel:        "warn",
		ShutdownTimeout: 30 * time.Second,
		Stdout:          &stdout,
		Stderr:          &stderr,
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitRun waits for Run's result within a generous bound, so that a hang on
// shutdown fails the test instead of stalling it.
func waitRun(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(45 * time.Second):
		t.Fatal("Run did not return within 45s of its context ending: shutdown hangs")
		return nil
	}
}

// withToken returns a transport that adds an admin access token, made with
// cpis token over dir for the host each request goes to, to requests that
// have no Authorization header.
func withToken(t *testing.T, dir string, rt http.RoundTripper) *tokenTransport {
	t.Helper()
	return &tokenTransport{dir: dir, rt: rt, tokens: map[string]string{}}
}

type tokenTransport struct {
	dir string
	rt  http.RoundTripper

	mu     sync.Mutex
	tokens map[string]string // by host
}

func (tt *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != "" {
		return tt.rt.RoundTrip(r)
	}
	tt.mu.Lock()
	tok, ok := tt.tokens[r.URL.Host]
	if !ok {
		var out, errs bytes.Buffer
		err := run(context.Background(), []string{"token", "--data", tt.dir, "--role", "admin", "--base-url", "http://" + r.URL.Host + "/fhir"}, &out, &errs)
		if err != nil {
			tt.mu.Unlock()
			return nil, fmt.Errorf("cpis token: %v: %s", err, errs.String())
		}
		tok = strings.TrimSpace(out.String())
		tt.tokens[r.URL.Host] = tok
	}
	tt.mu.Unlock()
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return tt.rt.RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the transport below.
func (tt *tokenTransport) CloseIdleConnections() {
	if c, ok := tt.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// do sends one request and returns the status, headers and body.
func do(t *testing.T, c *http.Client, method, url string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	status, h, b, err := tryDo(c, method, url, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, h, b
}

// tryDo is do without failing the test; hdr is name, value pairs.
func tryDo(c *http.Client, method, url string, body []byte, hdr ...string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Accept", "application/fhir+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

func TestMain_ServeAndShutdown(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startMain(t, ctx, newMain(t, dir))
	base := "http://" + addr
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: withToken(t, dir, tr)}

	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, body := do(t, client, "GET", base+path, nil); status != http.StatusOK {
			t.Errorf("GET %s: status %d, want %d; body %s", path, status, http.StatusOK, body)
		}
	}

	status, hdr, body := do(t, client, "GET", base+"/fhir/metadata", nil)
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
	}
	if status != http.StatusOK {
		t.Errorf("GET /fhir/metadata: status %d, want %d", status, http.StatusOK)
	}
	if err := json.Unmarshal(body, &cs); err != nil || cs.ResourceType != "CapabilityStatement" || cs.FHIRVersion != "4.0.1" {
		t.Errorf("GET /fhir/metadata: resourceType %q fhirVersion %q (err %v), want CapabilityStatement 4.0.1", cs.ResourceType, cs.FHIRVersion, err)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("GET /fhir/metadata: Content-Type %q, want application/fhir+json", ct)
	}

	var nhs nhsNumbers
	want := map[string][]byte{} // id -> body acknowledged by the server
	create := func(nhsNumber string) {
		t.Helper()
		status, _, body := do(t, client, "POST", base+"/fhir/Patient", patientJSON("", nhsNumber))
		var p wirePatient
		if err := json.Unmarshal(body, &p); status != http.StatusCreated || err != nil || p.ID == "" {
			t.Fatalf("POST /fhir/Patient: status %d (body %s), want %d with the stored Patient", status, body, http.StatusCreated)
		}
		if got := nhsOf(body); got != nhsNumber {
			t.Errorf("POST /fhir/Patient: NHS number %q in the response, want %q", got, nhsNumber)
		}
		want[p.ID] = body
	}
	create(nhs.Next())

	// A slow create: headers sent, body held back. Expect: 100-continue
	// tells us when the handler starts reading the body, so we know the
	// request is in flight before shutdown begins.
	slowNHS := nhs.Next()
	pr, pw := io.Pipe()
	inHandler := make(chan struct{})
	req, err := http.NewRequestWithContext(
		httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{Got100Continue: func() { close(inHandler) }}),
		"POST", base+"/fhir/Patient", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Expect", "100-continue")
	type result struct {
		status int
		body   []byte
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{resp.StatusCode, b, err}
	}()
	<-inHandler

	cancel()
	// Shutdown has begun once the listener refuses connections.
	waitRefused(t, addr)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a request was still in flight; want it to wait", err)
	default:
	}
	if _, err := pw.Write(patientJSON("", slowNHS)); err != nil {
		t.Fatalf("writing the slow request's body: %v", err)
	}
	pw.Close()
	res := <-slow
	if res.err != nil || res.status != http.StatusCreated {
		t.Fatalf("slow POST /fhir/Patient during shutdown: status %d, err %v, body %s; want %d", res.status, res.err, res.body, http.StatusCreated)
	}
	var p wirePatient
	if err := json.Unmarshal(res.body, &p); err != nil || p.ID == "" {
		t.Fatalf("slow POST /fhir/Patient: body %s is not a stored Patient: %v", res.body, err)
	}
	want[p.ID] = res.body

	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpis.db")); err != nil {
		t.Errorf("data folder after shutdown: %v, want cpis.db", err)
	}

	// Restart on the same folder: every acknowledged create is there.
	ctx2, cancel2 := context.WithCancel(context.Background())
	addr2, done2 := startMain(t, ctx2, newMain(t, dir))
	for id, wantBody := range want {
		status, hdr, body := do(t, client, "GET", "http://"+addr2+"/fhir/Patient/"+id, nil)
		if status != http.StatusOK || !bytes.Equal(body, wantBody) {
			t.Errorf("GET Patient/%s after restart: status %d body %s; want %d body %s", id, status, body, http.StatusOK, wantBody)
		}
		if etag := hdr.Get("ETag"); etag != `W/"1"` {
			t.Errorf("GET Patient/%s after restart: ETag %q, want W/\"1\"", id, etag)
		}
	}
	tr.CloseIdleConnections()
	cancel2()
	if err := waitRun(t, done2); err != nil {
		t.Errorf("second Run after cancel: %v, want nil", err)
	}
}

// waitRefused polls until addr refuses TCP connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections 10s after the context ended", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMain_Run(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		name       string
		args       []string
		wantErr    string // "" means nil; "ErrHelp" means flag.ErrHelp
		wantStdout string
		wantStderr string
	}{
		{"no command", nil, "ErrHelp", "", "Usage:\n  cpis serve"},
		{"help", []string{"help"}, "", "Usage:\n  cpis serve", ""},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`, "", "Usage:"},
		{"unknown flag", []string{"serve", "--bogus"}, "flag provided but not defined: -bogus", "", "-bogus"},
		{"serve -h", []string{"serve", "-h"}, "ErrHelp", "", "-addr"},
		{"bad log level", []string{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--log-level", "loud"}, "--log-level", "", ""},
		{"bad subscription endpoints", []string{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--subscription-endpoints", "ftp://la.example/"}, "--subscription-endpoints", "", ""},
		// The context has already ended, so serve starts and shuts down at once.
		{"serve", []string{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--log-level", "error"}, "", "cpis: serving FHIR R4 at http://127.0.0.1:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(cancelled, tc.args, &stdout, &stderr)
			switch tc.wantErr {
			case "":
				if err != nil {
					t.Errorf("run(%q): %v, want nil", tc.args, err)
				}
			case "ErrHelp":
				if !errors.Is(err, flag.ErrHelp) {
					t.Errorf("run(%q): %v, want flag.ErrHelp", tc.args, err)
				}
			default:
				if err == nil || errors.Is(err, flag.ErrHelp) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("run(%q): %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("run(%q): stdout %q, want it to contain %q", tc.args, stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("run(%q): stderr %q, want it to contain %q", tc.args, stderr.String(), tc.wantStderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "cpis.db")); err != nil {
		t.Errorf("after cpis serve --data %s: %v, want the folder created with cpis.db in it", dir, err)
	}
}

func TestMain_ParseFlags(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		m := &Main{Stderr: io.Discard}
		if err := m.ParseFlags(nil); err != nil {
			t.Fatalf("ParseFlags(nil): %v", err)
		}
		want := Main{Addr: ":8080", DataDir: "./cpis-data", MaxBodyBytes: 10 << 20, LogLevel: "info", ShutdownTimeout: 30 * time.Second}
		got := Main{Addr: m.Addr, DataDir: m.DataDir, BaseURL: m.BaseURL, MaxBodyBytes: m.MaxBodyBytes, LogLevel: m.LogLevel, ShutdownTimeout: m.ShutdownTimeout}
		if got != want {
			t.Errorf("ParseFlags(nil) = %+v, want %+v", got, want)
		}
	})
	t.Run("all flags", func(t *testing.T) {
		m := &Main{Stderr: io.Discard}
		args := []string{"--addr", "127.0.0.1:9000", "--data", "/srv/cpis", "--base-url", "https://cpis.example/fhir",
			"--max-body", "1024", "--log-level", "debug", "--shutdown-timeout", "5s"}
		if err := m.ParseFlags(args); err != nil {
			t.Fatalf("ParseFlags(%q): %v", args, err)
		}
		want := Main{Addr: "127.0.0.1:9000", DataDir: "/srv/cpis", BaseURL: "https://cpis.example/fhir", MaxBodyBytes: 1024, LogLevel: "debug", ShutdownTimeout: 5 * time.Second}
		got := Main{Addr: m.Addr, DataDir: m.DataDir, BaseURL: m.BaseURL, MaxBodyBytes: m.MaxBodyBytes, LogLevel: m.LogLevel, ShutdownTimeout: m.ShutdownTimeout}
		if got != want {
			t.Errorf("ParseFlags(%q) = %+v, want %+v", args, got, want)
		}
	})
}

// TestMain_ShutdownKeepsAcknowledgedWrites cancels Run while many creates
// are in flight: every create answered 201 must survive a restart, and no
// request may be answered with anything but 201 on the way down.
func TestMain_ShutdownKeepsAcknowledgedWrites(t *testing.T) {
	const (
		clients    = 32
		perClient  = 200 // bounds the test if shutdown never stops the clients
		cancelSeen = 150 // acknowledged creates before the context ends
	)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startMain(t, ctx, newMain(t, dir))
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: withToken(t, dir, tr)}

	var (
		nhs      nhsNumbers
		mu       sync.Mutex
		acked    = map[string]ackedCreate{}
		bad      []string
		ackCount atomic.Int64
		startCut = make(chan struct{})
		cutOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			for range perClient {
				n := nhs.Next()
				status, _, body, err := tryDo(client, "POST", "http://"+addr+"/fhir/Patient", patientJSON("", n))
				if err != nil {
					return // not acknowledged; the server has gone away
				}
				var p wirePatient
				if status != http.StatusCreated || json.Unmarshal(body, &p) != nil || p.ID == "" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("POST /fhir/Patient: status %d body %.200s; want 201 or no answer", status, body))
					mu.Unlock()
					continue
				}
				mu.Lock()
				acked[p.ID] = ackedCreate{nhs: n, body: body}
				mu.Unlock()
				if ackCount.Add(1) == cancelSeen {
					cutOnce.Do(func() { close(startCut) })
				}
			}
		})
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	select {
	case <-startCut:
	case <-allDone:
		t.Fatalf("clients finished with %d acknowledged creates before the context was cancelled", ackCount.Load())
	}
	cancel()
	err := waitRun(t, done)
	<-allDone
	if err != nil {
		t.Errorf("Run cancelled under load: %v, want nil", err)
	}
	for _, b := range bad {
		t.Error(b)
	}
	t.Logf("%d creates acknowledged", len(acked))

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	addr2, done2 := startMain(t, ctx2, newMain(t, dir))
	for id, a := range acked {
		status, _, body := do(t, client, "GET", "http://"+addr2+"/fhir/Patient/"+id, nil)
		if status != http.StatusOK || !bytes.Equal(body, a.body) {
			t.Errorf("GET Patient/%s (NHS number %s) after restart: status %d body %s; want %d body %s", id, a.nhs, status, body, http.StatusOK, a.body)
		}
	}
	tr.CloseIdleConnections()
	cancel2()
	if err := waitRun(t, done2); err != nil {
		t.Errorf("second Run after cancel: %v, want nil", err)
	}
}

// ackedCreate is a create the server answered 201.
type ackedCreate struct {
	nhs  string
	body []byte
}

// TestMain_Lifecycle: cpis serve runs the plan lifecycle on start; its lease
// records the day's run.
func TestMain_Lifecycle(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newMain(t, dir)
	addr, done := startMain(t, ctx, m)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: withToken(t, dir, tr)}
	today := time.Now().UTC().Format(time.DateOnly)
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var status int
		status, _, body = do(t, client, http.MethodGet, "http://"+addr+"/fhir/Basic/cpis-lifecycle", nil)
		if status == http.StatusOK && strings.Contains(string(body), `"created":"`+today+`"`) {
			break
		}
	}
	if !strings.Contains(string(body), `"created":"`+today+`"`) {
		t.Errorf("Basic/cpis-lifecycle after start: %s, want the run of %s recorded", body, today)
	}
	cancel()
	if err := waitRun(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
}
