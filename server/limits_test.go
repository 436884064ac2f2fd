package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/redis"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

func TestRateLimit_PerClient(t *testing.T) {
	// One token per 100 s after a burst of 2: the third request waits.
	ts := startServer(t, server.Config{RateLimit: 0.01, RateBurst: 2})
	a := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, ClientID: "client-a"})
	b := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, ClientID: "client-b"})
	for range 2 {
		do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+a).wantStatus(t, http.StatusOK)
	}
	r := do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+a).wantStatus(t, http.StatusTooManyRequests)
	if code, _, _ := r.outcome(t); code != "throttled" {
		t.Errorf("429: issue code %q, want throttled", code)
	}
	if ra := r.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("429: Retry-After %q, want seconds", ra)
	}
	// Another client has its own bucket; the public endpoints none.
	do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+b).wantStatus(t, http.StatusOK)
	do(t, "GET", ts.URL+"/healthz", "").wantStatus(t, http.StatusOK)
}

func TestRateLimit_OAuth(t *testing.T) {
	ts := startServer(t, server.Config{OAuthRateLimit: 0.01})
	form := url.Values{"grant_type": {"client_credentials"}}
	postForm(t, ts.URL+"/oauth2/token", form).oauthErr(t, http.StatusUnauthorized, "invalid_client")
	r := postForm(t, ts.URL+"/oauth2/token", form)
	r.oauthErr(t, http.StatusTooManyRequests, "slow_down")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("429 from the token endpoint without Retry-After")
	}
}

func TestCORS(t *testing.T) {
	ts := startServer(t, server.Config{CORSOrigins: []string{"https://app.example"}})
	r := do(t, "OPTIONS", ts.Base+"/Flag", "", "Origin", "https://app.example", "Access-Control-Request-Method", "GET",
		"Access-Control-Request-Headers", "authorization", "Authorization", "")
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v, want 204 allowing the origin and Authorization", r.StatusCode, r.Header)
	}
	r = do(t, "GET", ts.Base+"/Flag", "", "Origin", "https://app.example").wantStatus(t, http.StatusOK)
	if r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "Location") ||
		r.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("GET with Origin: %v, want the origin allowed, Location exposed, no credentials", r.Header)
	}
	r = do(t, "GET", ts.Base+"/Flag", "", "Origin", "https://evil.example").wantStatus(t, http.StatusOK)
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET from another origin: Access-Control-Allow-Origin %q, want none", r.Header.Get("Access-Control-Allow-Origin"))
	}
	// Token endpoint too (browser apps exchange codes from script).
	r = do(t, "OPTIONS", ts.URL+"/oauth2/token", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST", "Authorization", "")
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("token endpoint preflight: %d %v", r.StatusCode, r.Header)
	}
}

func TestHSTS_OnTLS(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	codec, _ := fhir.NewCodec()
	srv, err := server.New(store, codec, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tls := httptest.NewTLSServer(srv)
	defer tls.Close()
	res, err := tls.Client().Get(tls.URL + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
		t.Errorf("over TLS: Strict-Transport-Security %q, want max-age", got)
	}
	plain := startServer(t, server.Config{})
	if got := do(t, "GET", plain.Base+"/metadata", "").Header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("over plain HTTP: Strict-Transport-Security %q, want none", got)
	}
}

// TestAuth_RefusedTokensSlowDown: after a burst of 100 refused tokens from
// one address (refilled at 20 a second), requests from it are 429 before
// any signature check.
func TestAuth_RefusedTokensSlowDown(t *testing.T) {
	ts := startServer(t, server.Config{})
	bad := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, Issuer: "https://other.example/fhir"})
	for i := range 10000 {
		r := do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+bad)
		if r.StatusCode == http.StatusUnauthorized {
			continue
		}
		r.wantStatus(t, http.StatusTooManyRequests)
		if i < 100 {
			t.Errorf("429 after %d refused tokens, want it only past the burst of 100", i)
		}
		if code, _, _ := r.outcome(t); code != "throttled" || r.Header.Get("Retry-After") == "" {
			t.Errorf("code %q Retry-After %q, want throttled with Retry-After", code, r.Header.Get("Retry-After"))
		}
		return
	}
	t.Fatal("10,000 refused tokens in a row and no 429")
}

// TestRateLimit_SharedAcrossServers: two servers sharing their buckets
// through one Redis limit a client together: after its burst of 2 through
// the first, the second answers 429.
func TestRateLimit_SharedAcrossServers(t *testing.T) {
	url, prefix := fhirtest.NeedRedis(t, "rate limits shared between server processes")
	var servers [2]*testServer
	for i := range servers {
		bus, err := redis.Open(url, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		servers[i] = startServer(t, server.Config{RateLimit: 0.01, RateBurst: 2, SharedLimits: bus})
	}
	token := func(ts *testServer) string {
		return ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, ClientID: "client-a"})
	}
	for range 2 {
		do(t, "GET", servers[0].Base+"/Patient", "", "Authorization", "Bearer "+token(servers[0])).wantStatus(t, http.StatusOK)
	}
	do(t, "GET", servers[1].Base+"/Patient", "", "Authorization", "Bearer "+token(servers[1])).wantStatus(t, http.StatusTooManyRequests)
}
