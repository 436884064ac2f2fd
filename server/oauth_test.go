package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

func TestSMART_Discovery(t *testing.T) {
	ts := startServer(t, server.Config{})
	r := do(t, "GET", ts.Base+"/.well-known/smart-configuration", "", "Authorization", "").wantStatus(t, http.StatusOK)
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
		"grant_types_supported", "code_challenge_methods_supported", "token_endpoint_auth_methods_supported",
		"scopes_supported", "capabilities", "response_types_supported"} {
		if _, ok := doc[f]; !ok {
			t.Errorf("smart-configuration: no %s", f)
		}
	}
	if got := doc["token_endpoint"]; got != ts.URL+"/oauth2/token" {
		t.Errorf("token_endpoint %v, want %s", got, ts.URL+"/oauth2/token")
	}
	if got := doc["code_challenge_methods_supported"]; !equalJSON(got, []any{"S256"}) {
		t.Errorf("code_challenge_methods_supported %v, want [S256] only", got)
	}
	for field, want := range map[string]string{"grant_types_supported": "client_credentials", "token_endpoint_auth_methods_supported": "private_key_jwt",
		"capabilities": "launch-standalone", "scopes_supported": "launch/patient"} {
		if l, _ := doc[field].([]any); !slices.Contains(l, any(want)) {
			t.Errorf("%s %v: no %s", field, doc[field], want)
		}
	}
	// The JWKS publishes the key that signs.
	r = do(t, "GET", doc["jwks_uri"].(string), "", "Authorization", "").wantStatus(t, http.StatusOK)
	var set smart.JWKS
	if err := json.Unmarshal(r.Body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != ts.Keys.KID() || set.Keys[0].D != "" {
		t.Errorf("JWKS %s: want the public signing key %s", r.Body, ts.Keys.KID())
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestCapabilities_SMARTSecurity(t *testing.T) {
	for _, base := range []string{"", "https://cpis.example/fhir"} {
		ts := startServer(t, server.Config{BaseURL: base})
		r := do(t, "GET", ts.Base+"/metadata", "", "Authorization", "").wantStatus(t, http.StatusOK)
		codec, _ := fhir.NewCodec()
		if _, err := codec.Parse(r.Body); err != nil {
			t.Fatalf("CapabilityStatement is not valid R4: %v", err)
		}
		var cs struct {
			Rest []struct {
				Security struct {
					Service []struct {
						Coding []struct{ System, Code string }
					}
					Extension []struct {
						URL       string
						Extension []struct{ URL, ValueURI string }
					}
				}
			}
		}
		json.Unmarshal(r.Body, &cs)
		sec := cs.Rest[0].Security
		if len(sec.Service) != 1 || sec.Service[0].Coding[0].Code != "SMART-on-FHIR" {
			t.Errorf("base %q: rest.security.service %+v, want SMART-on-FHIR", base, sec.Service)
		}
		origin := strings.TrimSuffix(base, "/fhir")
		if base == "" {
			origin = ts.URL
		}
		uris := map[string]string{}
		for _, e := range sec.Extension {
			if e.URL == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" {
				for _, x := range e.Extension {
					uris[x.URL] = x.ValueURI
				}
			}
		}
		if uris["token"] != origin+"/oauth2/token" || uris["authorize"] != origin+"/oauth2/authorize" {
			t.Errorf("base %q: oauth-uris %v, want token and authorize under %s/oauth2", base, uris, origin)
		}
	}
}

// backendClient is a Backend Services client with its own key pair.
type backendClient struct {
	id  string
	alg string // RS384 or ES384
	kid string
	ec  *ecdsa.PrivateKey
	rsa *rsa.PrivateKey
}

func newBackendClient(t *testing.T, id, alg string) *backendClient {
	t.Helper()
	bc := &backendClient{id: id, alg: alg, kid: id + "-key-1"}
	var err error
	if alg == "ES384" {
		bc.ec, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	} else {
		bc.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bc
}

// jwk is the client's public key as a JWK.
func (bc *backendClient) jwk() smart.JWK {
	enc := base64.RawURLEncoding.EncodeToString
	if bc.ec != nil {
		b, _ := bc.ec.PublicKey.Bytes()
		return smart.JWK{Kty: "EC", Crv: "P-384", X: enc(b[1:49]), Y: enc(b[49:]), Kid: bc.kid, Alg: "ES384"}
	}
	return smart.JWK{Kty: "RSA", N: enc(bc.rsa.N.Bytes()), E: enc(big.NewInt(int64(bc.rsa.E)).Bytes()), Kid: bc.kid, Alg: "RS384"}
}

// assertion signs a client assertion; edit changes its claims or header.
func (bc *backendClient) assertion(t *testing.T, aud string, now time.Time, edit func(h, c map[string]any)) string {
	t.Helper()
	h := map[string]any{"alg": bc.alg, "kid": bc.kid, "typ": "JWT"}
	c := map[string]any{"iss": bc.id, "sub": bc.id, "aud": aud, "exp": now.Add(4 * time.Minute).Unix(), "jti": smart.NewID()}
	if edit != nil {
		edit(h, c)
	}
	input := jwtParts(t, h, c)
	sum := sha512.Sum384([]byte(input))
	var sig []byte
	if bc.ec != nil {
		r, s, err := ecdsa.Sign(rand.Reader, bc.ec, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 96)
		r.FillBytes(sig[:48])
		s.FillBytes(sig[48:])
	} else {
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, bc.rsa, crypto.SHA384, sum[:]); err != nil {
			t.Fatal(err)
		}
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// postForm posts a form to the token endpoint (or another OAuth URL).
func postForm(t *testing.T, url string, form url.Values, headers ...string) *response {
	t.Helper()
	return do(t, "POST", url, form.Encode(), append([]string{"Content-Type", "application/x-www-form-urlencoded", "Authorization", ""}, headers...)...)
}

// oauthErr checks an OAuth error response.
func (r *response) oauthErr(t *testing.T, status int, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(r.Body, &e)
	if r.StatusCode != status || e.Error != code {
		t.Errorf("status %d error %q (body %s), want %d %s", r.StatusCode, e.Error, r.Body, status, code)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// TestBackendServices runs the SMART Backend Services conformance checks
// of issue 7 against the token endpoint, for RS384 and ES384 clients.
// See https://hl7.org/fhir/smart-app-launch/backend-services.html.
func TestBackendServices(t *testing.T) {
	ts := startServer(t, server.Config{})
	tokenURL := ts.URL + "/oauth2/token"
	now := ts.Clock.Now()
	council := "system/Patient.cruds system/Flag.cruds system/CarePlan.cruds"
	for _, alg := range []string{"RS384", "ES384"} {
		t.Run(alg, func(t *testing.T) {
			bc := newBackendClient(t, "la-"+strings.ToLower(alg), alg)
			if err := ts.Reg.AddClient(smart.Client{ID: bc.id, Role: smart.RoleLA, ODS: "LA001", Scope: council,
				JWKS: &smart.JWKS{Keys: []smart.JWK{bc.jwk()}}}, ""); err != nil {
				t.Fatal(err)
			}
			form := func(assertion string) url.Values {
				return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Flag.rs system/Encounter.rs"},
					"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
			}
			// Valid assertion: 200, granted = requested ∩ registered.
			r := postForm(t, tokenURL, form(bc.assertion(t, tokenURL, now, nil))).wantStatus(t, http.StatusOK)
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				Scope       string `json:"scope"`
				ExpiresIn   int    `json:"expires_in"`
			}
			json.Unmarshal(r.Body, &tok)
			if tok.TokenType != "Bearer" || tok.Scope != "system/Flag.rs" || tok.ExpiresIn != 3600 || tok.AccessToken == "" {
				t.Errorf("token response %s: want a Bearer token for system/Flag.rs, 3600 s", r.Body)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			// The token works on the FHIR API.
			do(t, "GET", ts.Base+"/Flag", "", "Authorization", "Bearer "+tok.AccessToken).wantStatus(t, http.StatusOK)

			replayed := bc.assertion(t, tokenURL, now, nil)
			postForm(t, tokenURL, form(replayed)).wantStatus(t, http.StatusOK)
			other := newBackendClient(t, bc.id, alg)
			for _, tc := range []struct {
				name   string
				form   url.Values
				status int
				code   string
			}{
				{"bad grant_type", url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
				{"no grant_type", url.Values{"scope": {"system/Flag.rs"}}, 400, "invalid_request"},
				{"replayed jti", form(replayed), 401, "invalid_client"},
				{"expired assertion", form(bc.assertion(t, tokenURL, now, func(_, c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), 401, "invalid_client"},
				{"exp more than 5 minutes ahead", form(bc.assertion(t, tokenURL, now, func(_, c map[string]any) { c["exp"] = now.Add(10 * time.Minute).Unix() })), 401, "invalid_client"},
				{"wrong aud", form(bc.assertion(t, ts.Base, now, nil)), 401, "invalid_client"},
				{"no jti", form(bc.assertion(t, tokenURL, now, func(_, c map[string]any) { delete(c, "jti") })), 401, "invalid_client"},
				{"sub is not the client", form(bc.assertion(t, tokenURL, now, func(_, c map[string]any) { c["sub"] = "someone" })), 401, "invalid_client"},
				{"unknown client", form(bc.assertion(t, tokenURL, now, func(_, c map[string]any) { c["iss"], c["sub"] = "nobody", "nobody" })), 401, "invalid_client"},
				{"signed by another key", form(other.assertion(t, tokenURL, now, nil)), 401, "invalid_client"},
				{"unknown kid", form(bc.assertion(t, tokenURL, now, func(h, _ map[string]any) { h["kid"] = "nope" })), 401, "invalid_client"},
				{"not a JWT", form("garbage"), 401, "invalid_client"},
				{"bad assertion type", func() url.Values {
					f := form(bc.assertion(t, tokenURL, now, nil))
					f.Set("client_assertion_type", "urn:x")
					return f
				}(), 401, "invalid_client"},
				{"no client authentication", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Flag.rs"}}, 401, "invalid_client"},
				{"scope not registered", func() url.Values {
					f := form(bc.assertion(t, tokenURL, now, nil))
					f.Set("scope", "system/Encounter.rs")
					return f
				}(), 400, "invalid_scope"},
				{"no scope", func() url.Values {
					f := form(bc.assertion(t, tokenURL, now, nil))
					f.Del("scope")
					return f
				}(), 400, "invalid_scope"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					postForm(t, tokenURL, tc.form).oauthErr(t, tc.status, tc.code)
				})
			}
		})
	}
}

// TestBackendServices_JWKSURL registers a client by the URL of its JWKS,
// served by a real HTTP server, and rotates the client's key there.
func TestBackendServices_JWKSURL(t *testing.T) {
	ts := startServer(t, server.Config{})
	tokenURL := ts.URL + "/oauth2/token"
	bc := newBackendClient(t, "la-url", "ES384")
	keys := []smart.JWK{bc.jwk()}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(smart.JWKS{Keys: keys})
	}))
	defer jwks.Close()
	if err := ts.Reg.AddClient(smart.Client{ID: bc.id, Role: smart.RoleLA, ODS: "LA001", Scope: "system/Flag.rs", JWKSURL: jwks.URL}, ""); err != nil {
		t.Fatal(err)
	}
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Flag.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	}
	now := ts.Clock.Now()
	postForm(t, tokenURL, form(bc.assertion(t, tokenURL, now, nil))).wantStatus(t, http.StatusOK)
	// The client rotates to a new key; the server fetches the set again on
	// the unknown kid (at most every 10 s).
	next := newBackendClient(t, bc.id, "ES384")
	next.kid = "la-url-key-2"
	keys = append(keys, next.jwk())
	ts.Clock.Add(11 * time.Second)
	postForm(t, tokenURL, form(next.assertion(t, tokenURL, ts.Clock.Now(), nil))).wantStatus(t, http.StatusOK)
}
