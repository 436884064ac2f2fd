package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/server/subscription"
)

// testServer is a real server over a real SQLite file, with a fake clock,
// a signing key made for the test and a log that tests can read.
type testServer struct {
	*httptest.Server
	Base   string
	Store  *sqlite.Store
	Path   string // the SQLite file
	Clock  *fhirtest.Clock
	Keys   *smart.KeySet     // the test's signing key, trusted by the server
	Reg    *smart.Registry   // clients and users of the authorization server
	Dir    string            // the data folder of Reg and the replay store
	key    *ecdsa.PrivateKey // its private half
	issuer string            // iss and aud of the tokens: the base URL
	Token  string            // an admin access token, sent by do unless a test gives its own
	srv    *server.Server
	logMu  sync.Mutex
	log    bytes.Buffer
}

func (ts *testServer) Write(p []byte) (int, error) {
	ts.logMu.Lock()
	defer ts.logMu.Unlock()
	return ts.log.Write(p)
}

// Log returns everything the server logged so far.
func (ts *testServer) Log() string {
	ts.logMu.Lock()
	defer ts.logMu.Unlock()
	return ts.log.String()
}

// startServer starts a test server with authentication on: the server
// trusts ts.Keys, and do sends ts.Token unless told otherwise.
func startServer(tb testing.TB, cfg server.Config) *testServer {
	tb.Helper()
	return startServerAuth(tb, cfg, true)
}

func startServerAuth(tb testing.TB, cfg server.Config, auth bool) *testServer {
	tb.Helper()
	ts := &testServer{Clock: fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))}
	ts.Path = filepath.Join(tb.TempDir(), "cpis.db")
	store, err := sqlite.Open(ts.Path, sqlite.Config{Now: ts.Clock.Now})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	ts.Store = store
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(ts, nil))
	}
	if cfg.Now == nil {
		cfg.Now = ts.Clock.Now
	}
	if ts.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	if ts.Keys, err = smart.NewKeySet(ts.key); err != nil {
		tb.Fatal(err)
	}
	if auth && cfg.Verifier == nil {
		cfg.Verifier = smart.NewVerifier(smart.VerifierConfig{Keys: ts.Keys, Now: ts.Clock.Now, Audience: cfg.BaseURL})
	}
	if cfg.OAuthRateLimit == 0 {
		cfg.OAuthRateLimit = 10000
	}
	if cfg.SubscriptionEndpoints == nil {
		cfg.SubscriptionEndpoints = loopbackEndpoints(tb)
	}
	if auth && cfg.Auth == nil {
		ts.Dir = filepath.Dir(ts.Path)
		if ts.Reg, err = smart.OpenRegistry(ts.Store); err != nil {
			tb.Fatal(err)
		}
		replay, err := smart.OpenReplayStore(filepath.Join(ts.Dir, "jti.log"), ts.Clock.Now)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { replay.Close() })
		cfg.Auth = smart.NewAuthServer(smart.AuthServerConfig{Keys: ts.Keys, Registry: ts.Reg, Replay: replay, Now: ts.Clock.Now})
	}
	if cfg.Subscriptions == nil {
		cfg.Subscriptions = store
	}
	srv, err := server.New(store, codec, cfg)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	ts.srv = srv
	ts.Server = httptest.NewServer(srv)
	ts.Base = ts.URL + "/fhir"
	ts.issuer = cfg.BaseURL
	if ts.issuer == "" {
		ts.issuer = ts.Base
	}
	ts.Token = ts.TokenFor(tb, smart.AccessToken{Role: smart.RoleAdmin, Subject: "test-admin", ClientID: "test"})
	testTokens.Store(ts.URL, ts.Token)
	tb.Cleanup(func() {
		testTokens.Delete(ts.URL)
		ts.Close()
		srv.Close()
		store.Close()
	})
	return ts
}

// testTokens maps each running test server's URL to its admin token, which
// do sends when a test gives no Authorization header.
var testTokens sync.Map

// TokenFor returns an access token the server trusts for the principal t
// describes; issuer, issue time, lifetime (30 days) and the role's default
// scope are filled in when empty.
func (ts *testServer) TokenFor(tb testing.TB, t smart.AccessToken) string {
	tb.Helper()
	if t.Issuer == "" {
		t.Issuer = ts.issuer
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = ts.Clock.Now()
	}
	if t.TTL == 0 {
		t.TTL = smart.MaxTokenTTL
	}
	if t.Scope == "" {
		t.Scope = smart.DefaultScope(t.Role)
	}
	tok, _, err := ts.Keys.Sign(t)
	if err != nil {
		tb.Fatalf("sign test token: %v", err)
	}
	return tok
}

// authorized returns a transport that adds the server's admin token to
// requests that have no Authorization header.
func (ts *testServer) authorized(rt http.RoundTripper) http.RoundTripper {
	return bearerTransport{token: ts.Token, rt: rt}
}

type bearerTransport struct {
	token string
	rt    http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.rt.RoundTrip(r)
}

type response struct {
	*http.Response
	Body []byte
}

// do sends a request; headers come as name, value pairs. A body is sent as
// application/fhir+json unless a Content-Type header is given. The request
// carries the test server's admin token unless an Authorization header is
// given; an empty Authorization value sends none.
func do(tb testing.TB, method, url, body string, headers ...string) *response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	auth := true
	for i := 0; i+1 < len(headers); i += 2 {
		if http.CanonicalHeaderKey(headers[i]) == "Authorization" {
			auth = false
			if headers[i+1] == "" {
				continue
			}
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	if auth {
		testTokens.Range(func(k, v any) bool {
			if strings.HasPrefix(url, k.(string)+"/") {
				req.Header.Set("Authorization", "Bearer "+v.(string))
				return false
			}
			return true
		})
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return &response{res, b}
}

func (r *response) wantStatus(tb testing.TB, want int) *response {
	tb.Helper()
	if r.StatusCode != want {
		tb.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, want, r.Body)
	}
	return r
}

// object decodes the body as a JSON object.
func (r *response) object(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("%s %s: body is not a JSON object: %v; body %q", r.Request.Method, r.Request.URL.Path, err, r.Body)
	}
	return m
}

// outcome checks the body is a valid OperationOutcome and returns its first
// issue's code, diagnostics and expressions.
func (r *response) outcome(tb testing.TB) (code, diagnostics string, expression []string) {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		tb.Errorf("%s %s: Content-Type %q, want application/fhir+json", r.Request.Method, r.Request.URL.Path, ct)
	}
	var oo struct {
		ResourceType string
		Issue        []struct {
			Severity, Code, Diagnostics string
			Expression                  []string
		}
	}
	if err := json.Unmarshal(r.Body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		tb.Fatalf("%s %s: body %s, want an OperationOutcome with issues", r.Request.Method, r.Request.URL.Path, r.Body)
	}
	codec, _ := fhir.NewCodec()
	if _, err := codec.Parse(r.Body); err != nil {
		tb.Errorf("OperationOutcome %s is not valid R4: %v", r.Body, err)
	}
	return oo.Issue[0].Code, oo.Issue[0].Diagnostics, oo.Issue[0].Expression
}

// Test NHS numbers: 999 range, valid Modulus 11 check digit, never issued.
const (
	nhs1 = "9990000018"
	nhs2 = "9990000026"
)

func patientJSON(id, nhs string) string {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return `{"resourceType":"Patient",` + idPart + `"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],` +
		`"name":[{"family":"Testchild","given":["Alex"]}],"gender":"female","birthDate":"2015-04-01"}`
}

// loopbackEndpoints allows the rest-hook receivers the tests start on
// 127.0.0.1 (the default refuses loopback endpoints) and the receiver of
// the R4 Subscription example, which the round trips store.
func loopbackEndpoints(tb testing.TB) *subscription.Endpoints {
	tb.Helper()
	eps, err := subscription.NewEndpoints([]string{"127.0.0.1", "biliwatch.com"})
	if err != nil {
		tb.Fatal(err)
	}
	return eps
}
