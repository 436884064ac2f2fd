package smart_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server/smart"
)

// testIssuer is a real OpenID Connect issuer over HTTP: discovery and a
// JWKS of RS256 keys, which the test can rotate.
type testIssuer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey // by kid, published
	fetches int
}

func newTestIssuer(t *testing.T) *testIssuer {
	ti := &testIssuer{keys: map[string]*rsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.URL, "jwks_uri": ti.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.fetches++
		set := smart.JWKS{}
		enc := base64.RawURLEncoding.EncodeToString
		for kid, k := range ti.keys {
			set.Keys = append(set.Keys, smart.JWK{Kty: "RSA", Kid: kid, Alg: "RS256", N: enc(k.N.Bytes()), E: enc(big.NewInt(int64(k.E)).Bytes())})
		}
		json.NewEncoder(w).Encode(set)
	})
	ti.Server = httptest.NewServer(mux)
	t.Cleanup(ti.Close)
	return ti
}

func (ti *testIssuer) addKey(t *testing.T, kid string) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ti.mu.Lock()
	ti.keys[kid] = k
	ti.mu.Unlock()
	return k
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func rs256(t *testing.T, k *rsa.PrivateKey, header, claims map[string]any) string {
	in := b64json(header) + "." + b64json(claims)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerify_ExternalIssuer(t *testing.T) {
	ti := newTestIssuer(t)
	k1 := ti.addKey(t, "k1")
	clock := fhirtest.NewClock(time.Now().Truncate(time.Second))
	v := smart.NewVerifier(smart.VerifierConfig{Now: clock.Now, External: &smart.OIDCConfig{Issuer: ti.URL, Audience: "cpis-api"}})
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": ti.URL, "aud": []string{"cpis-api", "other"}, "sub": "cis2-user-1", "azp": "epr-1",
			"cpis_role": "clinician-unscheduled", "cpis_ods": "RXX01", "cpis_sds_role": "R8000", "scp": []string{"user/Flag.rs", "user/Patient.rs"},
			"iat": clock.Now().Unix(), "exp": clock.Now().Add(time.Hour).Unix(), "jti": "ext-1"}
		if edit != nil {
			edit(c)
		}
		return c
	}
	h := map[string]any{"alg": "RS256", "kid": "k1", "typ": "JWT"}
	ctx := context.Background()
	p, err := v.Verify(ctx, rs256(t, k1, h, claims(nil)), "http://ignored/fhir")
	if err != nil {
		t.Fatalf("Verify of the issuer's token: %v", err)
	}
	if p.Subject != "cis2-user-1" || p.ClientID != "epr-1" || p.Role != smart.RoleClinicianUnscheduled || p.ODS != "RXX01" ||
		p.SDSRole != "R8000" || len(p.Scopes) != 2 || p.TokenID != "ext-1" {
		t.Errorf("principal %+v", p)
	}
	pub, _ := json.Marshal(smart.JWK{Kty: "RSA", N: base64.RawURLEncoding.EncodeToString(k1.N.Bytes()), E: "AQAB"})
	hs := b64json(map[string]any{"alg": "HS256", "kid": "k1"}) + "." + b64json(claims(nil))
	mac := hmac.New(sha256.New, pub)
	mac.Write([]byte(hs))
	k2 := ti.addKey(t, "k2") // published, but the verifier fetched before
	for _, tc := range []struct{ name, token string }{
		{"wrong aud", rs256(t, k1, h, claims(func(c map[string]any) { c["aud"] = "someone-else" }))},
		{"expired", rs256(t, k1, h, claims(func(c map[string]any) { c["exp"] = clock.Now().Add(-time.Hour).Unix() }))},
		{"no role", rs256(t, k1, h, claims(func(c map[string]any) { delete(c, "cpis_role") }))},
		{"alg none", b64json(map[string]any{"alg": "none", "kid": "k1"}) + "." + b64json(claims(nil)) + "."},
		{"HS256 with the public key", hs + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))},
		{"signed by an unpublished key", rs256(t, mustKey(t), h, claims(nil))},
		{"unknown kid", rs256(t, mustKey(t), map[string]any{"alg": "RS256", "kid": "nope"}, claims(nil))},
	} {
		if _, err := v.Verify(ctx, tc.token, ""); err == nil {
			t.Errorf("%s: accepted, want refused", tc.name)
		}
	}
	// A new kid makes the verifier fetch the JWKS again, at most every 10 s.
	tok2 := rs256(t, k2, map[string]any{"alg": "RS256", "kid": "k2"}, claims(func(c map[string]any) { c["jti"] = "ext-2" }))
	if _, err := v.Verify(ctx, tok2, ""); err == nil {
		t.Errorf("token of a kid published after the last fetch, within 10 s of it: accepted, want refused until the refetch")
	}
	clock.Add(11 * time.Second)
	if _, err := v.Verify(ctx, tok2, ""); err != nil {
		t.Errorf("token of the issuer's new key after 11 s: %v", err)
	}
	ti.mu.Lock()
	fetches := ti.fetches
	ti.mu.Unlock()
	if fetches != 2 {
		t.Errorf("the JWKS was fetched %d times, want 2 (first use, then the new kid after 10 s)", fetches)
	}
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
