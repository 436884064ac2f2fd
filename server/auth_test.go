package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

func TestAuth_PublicAndProtected(t *testing.T) {
	ts := startServer(t, server.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/fhir/metadata"} {
		do(t, "GET", ts.URL+path, "", "Authorization", "").wantStatus(t, http.StatusOK)
	}
	r := do(t, "GET", ts.Base+"/Patient", "", "Authorization", "").wantStatus(t, http.StatusUnauthorized)
	if code, _, _ := r.outcome(t); code != "login" {
		t.Errorf("GET Patient without a token: issue code %q, want login", code)
	}
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="cpis"` {
		t.Errorf("GET Patient without a token: WWW-Authenticate %q, want %q", got, `Bearer realm="cpis"`)
	}
	do(t, "GET", ts.Base+"/Patient", "").wantStatus(t, http.StatusOK)
	// Writes need a token too, and a refused write stores nothing.
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1), "Authorization", "").wantStatus(t, http.StatusUnauthorized)
	do(t, "GET", ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusNotFound)
}

func TestAuth_Off(t *testing.T) {
	ts := startServerAuth(t, server.Config{}, false)
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1), "Authorization", "").wantStatus(t, http.StatusCreated)
	do(t, "GET", ts.Base+"/Patient/p1", "", "Authorization", "").wantStatus(t, http.StatusOK)
}

// jwtParts encodes a JWT's header and claims.
func jwtParts(tb testing.TB, header, claims map[string]any) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c)
}

// es256 signs a JWT's signing input with key (raw r||s, RFC 7518 §3.4).
func es256(tb testing.TB, key *ecdsa.PrivateKey, input string) string {
	tb.Helper()
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestAuth_TokenAttacks is the token attack table of issue 7: every token
// below is refused with 401, an OperationOutcome and an invalid_token
// challenge, and a well-formed token of the same shape is accepted.
func TestAuth_TokenAttacks(t *testing.T) {
	ts := startServer(t, server.Config{})
	now := ts.Clock.Now()
	jwks := ts.Keys.JWKS()
	kid := jwks.Keys[0].Kid
	// The server's own key, rebuilt from its JWKS: an attacker knows it.
	pubJSON, _ := json.Marshal(jwks.Keys[0])
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": ts.Base, "aud": ts.Base, "sub": "attacker", "role": "admin", "scope": "system/*.*",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j1"}
		if edit != nil {
			edit(c)
		}
		return c
	}
	header := func(alg string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"} }
	// forge signs with a key the server does not have, under the server's kid.
	forgeKey := func(h, c map[string]any) string { return es256(t, other, jwtParts(t, h, c)) }

	valid := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, Subject: "ok"})
	dot := strings.LastIndex(valid, ".")
	sig := []byte(valid[dot+1:])
	// One other base64url character in the signature.
	if sig[5] == 'A' {
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	hsInput := jwtParts(t, header("HS256"), claims(nil))
	mac := hmac.New(sha256.New, pubJSON)
	mac.Write([]byte(hsInput))
	for _, tc := range []struct {
		name, token, want string // want: part of the error_description
	}{
		{"malformed", "abc.def", "not a JWT"},
		{"not base64", "a!b.c!d.e!f", "malformed"},
		{"expired", ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour}), "expired"},
		{"not yet valid", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), "not valid yet"},
		{"issued in the future", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() })), "issued in the future"},
		{"no expiry", signed(t, ts, header("ES256"), claims(func(c map[string]any) { delete(c, "exp") })), "no expiry"},
		{"wrong aud", ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, Issuer: "https://other.example/fhir"}), "issuer"},
		{"wrong aud, right iss", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["aud"] = "https://other.example/fhir" })), "audience"},
		{"wrong iss", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["iss"] = "https://idp.example" })), "issuer"},
		{"bad signature", valid[:dot+1] + string(sig), "signature"},
		{"signed by another key under our kid", forgeKey(header("ES256"), claims(nil)), "signature"},
		{"alg none", jwtParts(t, map[string]any{"alg": "none", "kid": kid, "typ": "at+jwt"}, claims(nil)) + ".", "signature"},
		{"alg none, no kid", jwtParts(t, map[string]any{"alg": "none"}, claims(nil)) + ".", "signature"},
		{"HS256 signed with our public key", hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), "signature"},
		{"ES384 under our ES256 key", forgeKey(header("ES384"), claims(nil)), "algorithm is not the one of its key"},
		{"unknown kid", es256(t, other, jwtParts(t, map[string]any{"alg": "ES256", "kid": "nope", "typ": "at+jwt"}, claims(nil))), "key this server does not know"},
		{"no kid", es256(t, other, jwtParts(t, map[string]any{"alg": "ES256", "typ": "at+jwt"}, claims(nil))), "key this server does not know"},
		{"not an access token (typ)", signed(t, ts, map[string]any{"alg": "ES256", "kid": kid, "typ": "rt+jwt"}, claims(nil)), "not an access token"},
		{"unknown role", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["role"] = "root" })), "no known role"},
		{"council without ODS code", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["role"] = "la" })), "organisation"},
		{"malformed scope", signed(t, ts, header("ES256"), claims(func(c map[string]any) { c["scope"] = "system/Flag.rr" })), "scope is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+tc.token).wantStatus(t, http.StatusUnauthorized)
			if code, _, _ := r.outcome(t); code != "login" {
				t.Errorf("issue code %q, want login", code)
			}
			if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="cpis", error="invalid_token", error_description="`) {
				t.Errorf("WWW-Authenticate %q, want an invalid_token challenge", got)
			}
			if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.want) {
				t.Errorf("WWW-Authenticate %q, want a description saying %q", got, tc.want)
			}
			if strings.Contains(string(r.Body), tc.token) {
				t.Errorf("the answer quotes the token")
			}
		})
	}
	// The same shapes, well formed, are accepted.
	do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+valid).wantStatus(t, http.StatusOK)
	do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+signed(t, ts, header("ES256"), claims(nil))).wantStatus(t, http.StatusOK)
	// Within the 30 s leeway: expired 10 s ago is still accepted.
	do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, IssuedAt: now.Add(-time.Hour - 10*time.Second), TTL: time.Hour})).wantStatus(t, http.StatusOK)
}

// signed signs a hand-made JWT with the test server's own key: the claims
// are the attack, the signature is genuine.
func signed(tb testing.TB, ts *testServer, header, claims map[string]any) string {
	tb.Helper()
	return es256(tb, ts.key, jwtParts(tb, header, claims))
}

// TestAuth_ConfiguredBaseURL: with a base URL configured, tokens must name
// it, whatever Host the request came with.
func TestAuth_ConfiguredBaseURL(t *testing.T) {
	ts := startServer(t, server.Config{BaseURL: "https://cpis.example/fhir"})
	do(t, "GET", ts.Base+"/Patient", "").wantStatus(t, http.StatusOK) // ts.Token names the base URL
	byHost := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleAdmin, Issuer: ts.Base})
	do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer "+byHost).wantStatus(t, http.StatusUnauthorized)
}
