package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
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

// browser is a test user agent: a cookie jar, no redirects followed.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	res, err := b.c.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func (b *browser) post(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	res, err := b.c.PostForm(u, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

var hiddenField = regexp.MustCompile(`name="(pending|csrf)" value="([^"]+)"`)

// hidden returns the pending login's hidden fields of a page.
func hidden(t *testing.T, page string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	if v.Get("pending") == "" || v.Get("csrf") == "" {
		t.Fatalf("no pending login in the page:\n%s", page)
	}
	return v
}

// pkce returns a code verifier and its S256 challenge.
func pkce() (verifier, challenge string) {
	verifier = smart.NewID() + smart.NewID() + smart.NewID()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestAppLaunch runs the SMART App Launch conformance checks of issue 7:
// a standalone launch with PKCE and state, the token response's fields and
// headers, refresh with a scope subset (rotated, never widened), an EHR
// launch, and the refusals of the authorization endpoint.
func TestAppLaunch(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/child-1", patientJSON("child-1", nhs1)).wantStatus(t, http.StatusCreated)
	const redirect = "http://localhost:9/app/callback"
	if err := ts.Reg.AddClient(smart.Client{ID: "flag-app", Public: true, RedirectURIs: []string{redirect}, Role: smart.RoleClinicianUnscheduled, ODS: "RXX01",
		Scope: "launch launch/patient offline_access openid fhirUser patient/Flag.rs patient/Patient.rs patient/Encounter.c"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reg.AddUser(smart.User{ID: "dr-a", Role: smart.RoleClinicianUnscheduled, ODS: "RXX01", SDSRole: "R8000"}, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	authorizeURL, tokenURL := ts.URL+"/oauth2/authorize", ts.URL+"/oauth2/token"
	verifier, challenge := pkce()
	query := func(edit func(url.Values)) string {
		q := url.Values{"response_type": {"code"}, "client_id": {"flag-app"}, "redirect_uri": {redirect},
			"scope": {"launch/patient patient/Flag.rs patient/Patient.rs offline_access system/*.*"}, "state": {"st-123"}, "aud": {ts.Base},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		if edit != nil {
			edit(q)
		}
		return authorizeURL + "?" + q.Encode()
	}

	// login and consent in a browser, standalone launch with a patient pick.
	b := newBrowser(t)
	res, page := b.get(query(nil))
	if res.StatusCode != 200 || res.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(page, `name="password"`) {
		t.Fatalf("GET authorize: %d %v\n%s; want the login page, not framable", res.StatusCode, res.Header, page)
	}
	f := hidden(t, page)
	f.Set("step", "login")
	f.Set("username", "dr-a")
	f.Set("password", "wrong password!")
	if res, _ = b.post(authorizeURL, f); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401 and the login page again", res.StatusCode)
	}
	f.Set("password", "correct horse battery")
	// CSRF: the same form from another browser (no cookie) is refused.
	if res, _ := newBrowser(t).post(authorizeURL, f); res.StatusCode != http.StatusForbidden {
		t.Errorf("login form without the CSRF cookie: status %d, want 403", res.StatusCode)
	}
	res, page = b.post(authorizeURL, f)
	if res.StatusCode != 200 || !strings.Contains(page, "patient/Flag.rs") || strings.Contains(page, "system/*.*") || !strings.Contains(page, `name="patient"`) {
		t.Fatalf("login: %d\n%s\nwant the consent page listing the granted scopes and a patient field", res.StatusCode, page)
	}
	f = hidden(t, page)
	f.Set("step", "consent")
	f.Set("decision", "approve")
	f.Set("patient", "child-1")
	res, _ = b.post(authorizeURL, f)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("state") != "st-123" || loc.Query().Get("code") == "" {
		t.Fatalf("consent: %d Location %q; want a redirect with code and state", res.StatusCode, res.Header.Get("Location"))
	}
	code := loc.Query().Get("code")
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "client_id": {"flag-app"}, "code_verifier": {verifier}}
	// A wrong verifier is refused, and burns the code.
	bad := url.Values{}
	for k, v := range exchange {
		bad[k] = v
	}
	bad.Set("code_verifier", strings.Repeat("x", 43))
	postForm(t, tokenURL, bad).oauthErr(t, 400, "invalid_grant")
	postForm(t, tokenURL, exchange).oauthErr(t, 400, "invalid_grant")

	// Again, and this time the exchange succeeds.
	token := func(b *browser, q string) url.Values {
		t.Helper()
		_, page := b.get(q)
		f := hidden(t, page)
		f.Set("step", "login")
		f.Set("username", "dr-a")
		f.Set("password", "correct horse battery")
		_, page = b.post(authorizeURL, f)
		f = hidden(t, page)
		f.Set("step", "consent")
		f.Set("decision", "approve")
		f.Set("patient", "child-1")
		res, _ := b.post(authorizeURL, f)
		loc, _ := url.Parse(res.Header.Get("Location"))
		return loc.Query()
	}
	exchange.Set("code", token(b, query(nil)).Get("code"))
	r := postForm(t, tokenURL, exchange).wantStatus(t, http.StatusOK)
	if cc, pr := r.Header.Get("Cache-Control"), r.Header.Get("Pragma"); cc != "no-store" || pr != "no-cache" {
		t.Errorf("token response headers Cache-Control %q Pragma %q, want no-store and no-cache", cc, pr)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		Scope        string `json:"scope"`
		RefreshToken string `json:"refresh_token"`
		Patient      string `json:"patient"`
	}
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 ||
		tr.Scope != "launch/patient patient/Flag.rs patient/Patient.rs offline_access" || tr.RefreshToken == "" || tr.Patient != "child-1" {
		t.Fatalf("token response %s: want access_token, Bearer, expires_in, the granted scope, refresh_token, patient child-1", r.Body)
	}
	do(t, "GET", ts.Base+"/Patient/child-1", "", "Authorization", "Bearer "+tr.AccessToken).wantStatus(t, http.StatusOK)
	// The code works once.
	postForm(t, tokenURL, exchange).oauthErr(t, 400, "invalid_grant")

	// Introspection (RFC 7662) with an admin token.
	r = postForm(t, ts.URL+"/oauth2/introspect", url.Values{"token": {tr.AccessToken}}, "Authorization", "Bearer "+ts.Token).wantStatus(t, http.StatusOK)
	var in map[string]any
	json.Unmarshal(r.Body, &in)
	if in["active"] != true || in["sub"] != "dr-a" || in["client_id"] != "flag-app" || in["patient"] != "child-1" || in["role"] != "clinician-unscheduled" {
		t.Errorf("introspection %s: want an active token of dr-a for flag-app", r.Body)
	}
	r = postForm(t, ts.URL+"/oauth2/introspect", url.Values{"token": {"nonsense"}}, "Authorization", "Bearer "+ts.Token).wantStatus(t, http.StatusOK)
	if !strings.Contains(string(r.Body), `"active":false`) {
		t.Errorf("introspection of nonsense: %s, want active false", r.Body)
	}
	postForm(t, ts.URL+"/oauth2/introspect", url.Values{"token": {tr.AccessToken}}).oauthErr(t, 401, "invalid_client")

	// Refresh: a subset is granted, a wider scope is not, and each
	// refresh token works once.
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"flag-app"}, "scope": {"patient/Flag.rs patient/Patient.rs system/*.*"}}
	postForm(t, tokenURL, refresh).oauthErr(t, 400, "invalid_scope")
	refresh.Set("scope", "patient/Flag.r")
	r = postForm(t, tokenURL, refresh).wantStatus(t, http.StatusOK)
	var rr struct {
		Scope        string `json:"scope"`
		RefreshToken string `json:"refresh_token"`
		AccessToken  string `json:"access_token"`
	}
	json.Unmarshal(r.Body, &rr)
	if rr.Scope != "patient/Flag.r" || rr.RefreshToken == "" || rr.RefreshToken == tr.RefreshToken || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("refresh response %s: want scope patient/Flag.r and a new refresh token", r.Body)
	}
	postForm(t, tokenURL, refresh).oauthErr(t, 400, "invalid_grant") // rotated: the old one is spent
	// The rotated token keeps the original grant: it may go back up to it.
	refresh.Set("refresh_token", rr.RefreshToken)
	refresh.Set("scope", "patient/Flag.rs patient/Patient.rs")
	postForm(t, tokenURL, refresh).wantStatus(t, http.StatusOK)
	// A refresh token is never an access token.
	do(t, "GET", ts.Base+"/Flag", "", "Authorization", "Bearer "+rr.RefreshToken).wantStatus(t, http.StatusUnauthorized)

	// EHR launch: the EHR registers the context, the app passes launch.
	r = postForm(t, ts.URL+"/oauth2/launch", url.Values{"patient": {"child-1"}, "encounter": {"enc-1"}}, "Authorization", "Bearer "+ts.Token).wantStatus(t, http.StatusOK)
	var launch struct{ Launch string }
	json.Unmarshal(r.Body, &launch)
	b2 := newBrowser(t)
	_, page = b2.get(query(func(q url.Values) { q.Set("launch", launch.Launch); q.Set("scope", "launch patient/Flag.rs") }))
	if strings.Contains(page, "patient") && strings.Contains(page, `name="patient"`) {
		t.Errorf("EHR launch: the login page asks for a patient")
	}
	f = hidden(t, page)
	f.Set("step", "login")
	f.Set("username", "dr-a")
	f.Set("password", "correct horse battery")
	_, page = b2.post(authorizeURL, f)
	if strings.Contains(page, `name="patient"`) {
		t.Errorf("EHR launch: the consent page asks for a patient; the launch gave one")
	}
	f = hidden(t, page)
	f.Set("step", "consent")
	f.Set("decision", "approve")
	res, _ = b2.post(authorizeURL, f)
	loc, _ = url.Parse(res.Header.Get("Location"))
	exchange.Set("code", loc.Query().Get("code"))
	r = postForm(t, tokenURL, exchange).wantStatus(t, http.StatusOK)
	if !strings.Contains(string(r.Body), `"patient":"child-1"`) || !strings.Contains(string(r.Body), `"encounter":"enc-1"`) || strings.Contains(string(r.Body), "refresh_token") {
		t.Errorf("EHR launch token response %s: want patient child-1, encounter enc-1, no refresh token (none asked)", r.Body)
	}

	// Refusals at the authorization endpoint: shown to the user when the
	// client or redirect URI is not trusted, else sent back with state.
	for _, tc := range []struct {
		name  string
		edit  func(url.Values)
		error string // "" means a page, not a redirect
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }, ""},
		{"unregistered redirect_uri", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, ""},
		{"wrong aud", func(q url.Values) { q.Set("aud", "https://other.example/fhir") }, "invalid_request"},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"PKCE plain", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"no state", func(q url.Values) { q.Del("state") }, "invalid_request"},
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"no grantable scope", func(q url.Values) { q.Set("scope", "system/*.*") }, "invalid_scope"},
		{"unknown launch", func(q url.Values) { q.Set("launch", "nope") }, "invalid_request"},
		{"patient scopes without a patient context", func(q url.Values) { q.Set("scope", "patient/Flag.rs") }, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := newBrowser(t).get(query(tc.edit))
			if tc.error == "" {
				if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
					t.Errorf("status %d Location %q, want 400 and no redirect", res.StatusCode, res.Header.Get("Location"))
				}
				return
			}
			loc, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != http.StatusFound || loc.Query().Get("error") != tc.error || (loc.Query().Get("state") != "st-123" && tc.name != "no state") {
				t.Errorf("status %d Location %q, want a redirect with error=%s and the state", res.StatusCode, res.Header.Get("Location"), tc.error)
			}
		})
	}
}
