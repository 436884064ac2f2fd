package smart

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AuthServerConfig configures an AuthServer.
type AuthServerConfig struct {
	// Keys sign the access and refresh tokens.
	Keys *KeySet
	// Registry holds the clients and users.
	Registry *Registry
	// Replay remembers used client assertion jtis and refresh tokens.
	Replay *ReplayStore
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AccessTTL is the lifetime of access tokens; zero means 1 hour.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of refresh tokens; zero means MaxTokenTTL.
	RefreshTTL time.Duration
	// HTTPClient fetches clients' JWKS URLs; nil means a client with a
	// 10 s timeout.
	HTTPClient *http.Client
}

// AuthServer is the built-in SMART authorization server: the token
// endpoint (client_credentials with private_key_jwt, authorization_code
// with PKCE, refresh_token), the authorization endpoint's state (login,
// consent, codes), EHR launch contexts and introspection. Authorization
// codes, pending logins and launch contexts live in memory (a restart
// makes users log in again); used jtis and refresh tokens are kept by the
// ReplayStore. It is safe for concurrent use.
//
// See https://hl7.org/fhir/smart-app-launch/app-launch.html and
// https://hl7.org/fhir/smart-app-launch/backend-services.html.
type AuthServer struct {
	cfg AuthServerConfig

	mu       sync.Mutex
	pending  map[string]*Pending
	codes    map[string]*authCode
	launches map[string]*launchContext
	jwks     map[string]*remoteJWKS // by client id
}

// NewAuthServer returns an AuthServer.
func NewAuthServer(cfg AuthServerConfig) *AuthServer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = time.Hour
	}
	if cfg.RefreshTTL <= 0 || cfg.RefreshTTL > MaxTokenTTL {
		cfg.RefreshTTL = MaxTokenTTL
	}
	if cfg.AccessTTL > MaxTokenTTL {
		cfg.AccessTTL = MaxTokenTTL
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &AuthServer{cfg: cfg, pending: map[string]*Pending{}, codes: map[string]*authCode{},
		launches: map[string]*launchContext{}, jwks: map[string]*remoteJWKS{}}
}

// Keys returns the signing keys.
func (a *AuthServer) Keys() *KeySet { return a.cfg.Keys }

// Lifetimes of the authorization endpoint's state.
const (
	codeTTL      = time.Minute
	pendingTTL   = 10 * time.Minute
	launchTTL    = 10 * time.Minute
	maxPending   = 10000
	maxLoginFail = 5
	// assertionMaxAhead is how far in the future a client assertion's exp
	// may be (SMART Backend Services: no more than five minutes).
	assertionMaxAhead = 5 * time.Minute
	// assertionType is the client_assertion_type of private_key_jwt.
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// TokenRequest is a token endpoint request.
type TokenRequest struct {
	// Form is the application/x-www-form-urlencoded body.
	Form url.Values
	// BasicID and BasicSecret are the HTTP Basic credentials, if HasBasic.
	BasicID, BasicSecret string
	HasBasic             bool
	// TokenURL is the token endpoint's absolute URL: the aud of client
	// assertions.
	TokenURL string
	// Issuer is the FHIR base URL: iss and aud of the tokens issued.
	Issuer string
}

// TokenResponse is a successful token response.
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Patient      string `json:"patient,omitempty"`
	Encounter    string `json:"encounter,omitempty"`
}

// Token answers the token endpoint. A failure is an *OAuthError.
func (a *AuthServer) Token(ctx context.Context, req TokenRequest) (*TokenResponse, error) {
	gt := req.Form.Get("grant_type")
	switch gt {
	case "client_credentials", "authorization_code", "refresh_token":
	case "":
		return nil, ErrInvalidRequest.With("grant_type is missing")
	default:
		return nil, ErrUnsupportedGrantType.With("grant_type %q is not supported; use client_credentials, authorization_code or refresh_token", safeValue(gt))
	}
	client, how, err := a.authenticateClient(ctx, req)
	if err != nil {
		return nil, err
	}
	switch gt {
	case "client_credentials":
		return a.clientCredentials(req, client, how)
	case "authorization_code":
		return a.authorizationCode(req, client)
	default:
		return a.refresh(req, client)
	}
}

// clientAuth is how a client authenticated.
type clientAuth int

const (
	authNone clientAuth = iota // a public client
	authSecret
	authAssertion
)

// authenticateClient authenticates the client once, before any grant.
// See https://hl7.org/fhir/smart-app-launch/client-authentication.html.
func (a *AuthServer) authenticateClient(ctx context.Context, req TokenRequest) (*Client, clientAuth, error) {
	f := req.Form
	if at := f.Get("client_assertion_type"); at != "" || f.Get("client_assertion") != "" {
		if at != assertionType {
			return nil, 0, ErrInvalidClient.With("client_assertion_type must be %s", assertionType)
		}
		c, err := a.verifyAssertion(ctx, f.Get("client_assertion"), req.TokenURL)
		if err != nil {
			return nil, 0, err
		}
		if id := f.Get("client_id"); id != "" && id != c.ID {
			return nil, 0, ErrInvalidClient.With("client_id does not match the client assertion")
		}
		return c, authAssertion, nil
	}
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if req.HasBasic {
		id, secret = req.BasicID, req.BasicSecret
	}
	if id == "" {
		return nil, 0, ErrInvalidClient.With("no client authentication: send a client assertion, client credentials or client_id")
	}
	c, ok := a.cfg.Registry.Client(id)
	if !ok {
		return nil, 0, ErrInvalidClient.With("unknown client or bad credentials")
	}
	if secret != "" || req.HasBasic {
		if !c.checkSecret(secret) {
			return nil, 0, ErrInvalidClient.With("unknown client or bad credentials")
		}
		return c, authSecret, nil
	}
	if !c.Public {
		return nil, 0, ErrInvalidClient.With("client %s must authenticate", id)
	}
	return c, authNone, nil
}

// assertionClaims are the claims of a private_key_jwt client assertion.
type assertionClaims struct {
	jwt.RegisteredClaims
}

// verifyAssertion checks a private_key_jwt client assertion: signed RS384 or
// ES384 with a key of the client's JWKS (by kid), iss and sub the client id,
// aud the token URL, exp at most five minutes ahead, a jti never used.
// See https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html.
func (a *AuthServer) verifyAssertion(ctx context.Context, assertion, tokenURL string) (*Client, error) {
	if assertion == "" {
		return nil, ErrInvalidClient.With("client_assertion is missing")
	}
	var unverified assertionClaims
	if _, _, err := jwt.NewParser().ParseUnverified(assertion, &unverified); err != nil {
		return nil, ErrInvalidClient.With("the client assertion is not a JWT")
	}
	c, ok := a.cfg.Registry.Client(unverified.Issuer)
	if !ok || (c.JWKS == nil && c.JWKSURL == "") {
		return nil, ErrInvalidClient.With("the client assertion's issuer is not a client registered with keys")
	}
	now := a.cfg.Now()
	var claims assertionClaims
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS384", "ES384"}),
		jwt.WithAudience(tokenURL),
		jwt.WithIssuer(c.ID),
		jwt.WithSubject(c.ID),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(DefaultLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	).ParseWithClaims(assertion, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := a.clientKey(ctx, c, kid)
		if err != nil {
			return nil, err
		}
		pub, algs, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(algs, t.Method.Alg()) {
			return nil, errWrongAlg
		}
		return pub, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrInvalidClient.With("the client assertion has expired")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, ErrInvalidClient.With("the client assertion's aud must be the token URL %s", tokenURL)
	case errors.Is(err, errUnknownKey):
		return nil, ErrInvalidClient.With("the client assertion names a key (kid) the client has not registered")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, errWrongAlg):
		return nil, ErrInvalidClient.With("the client assertion's signature is invalid or its algorithm is not RS384 or ES384")
	default:
		return nil, ErrInvalidClient.With("the client assertion is invalid (iss and sub must be the client id, exp is required)")
	}
	if claims.ExpiresAt.After(now.Add(assertionMaxAhead + DefaultLeeway)) {
		return nil, ErrInvalidClient.With("the client assertion's exp is more than five minutes ahead")
	}
	if claims.ID == "" {
		return nil, ErrInvalidClient.With("the client assertion has no jti")
	}
	fresh, err := a.cfg.Replay.Use("assertion|"+c.ID+"|"+claims.ID, claims.ExpiresAt.Add(DefaultLeeway))
	if err != nil {
		return nil, ErrServerError.With("the client assertion could not be recorded")
	}
	if !fresh {
		return nil, ErrInvalidClient.With("the client assertion's jti was used before")
	}
	return c, nil
}

// clientKey finds a client's public key by kid: in its registered JWKS, or
// in the JWKS at its URL (cached, fetched again on an unknown kid).
func (a *AuthServer) clientKey(ctx context.Context, c *Client, kid string) (JWK, error) {
	if c.JWKS != nil {
		if k, ok := c.JWKS.key(kid); ok {
			return k, nil
		}
		return JWK{}, errUnknownKey
	}
	a.mu.Lock()
	r := a.jwks[c.ID]
	if r == nil || r.url != c.JWKSURL {
		r = &remoteJWKS{url: c.JWKSURL, client: a.cfg.HTTPClient, now: a.cfg.Now}
		a.jwks[c.ID] = r
	}
	a.mu.Unlock()
	k, err := r.key(ctx, kid)
	if err != nil && !errors.Is(err, errUnknownKey) {
		return JWK{}, errUnknownKey
	}
	return k, err
}

// clientCredentials is the Backend Services grant: a token for the client
// itself, with the requested scopes it is registered for.
// See https://hl7.org/fhir/smart-app-launch/backend-services.html#obtaining-an-access-token.
func (a *AuthServer) clientCredentials(req TokenRequest, c *Client, how clientAuth) (*TokenResponse, error) {
	if how != authAssertion {
		return nil, ErrUnauthorizedClient.With("client_credentials needs a private_key_jwt client assertion")
	}
	requested := req.Form.Get("scope")
	if strings.TrimSpace(requested) == "" {
		return nil, ErrInvalidScope.With("scope is missing")
	}
	if _, _, err := ParseScopes(requested); err != nil {
		return nil, ErrInvalidScope.With("scope is malformed")
	}
	granted := grantable(requested, c.Scope)
	if res, _, _ := ParseScopes(granted); len(res) == 0 {
		return nil, ErrInvalidScope.With("none of the requested scopes is granted to client %s", c.ID)
	}
	return a.issue(req.Issuer, grant{sub: c.ID, client: c, role: c.Role, ods: c.ODS, sds: c.SDSRole, scope: granted}, false)
}

// grant is what an access token is issued for.
type grant struct {
	sub                string
	client             *Client
	role               Role
	ods, sds           string
	scope              string
	patient, encounter string
}

// issue signs an access token (and a refresh token when asked) for g.
func (a *AuthServer) issue(issuer string, g grant, withRefresh bool) (*TokenResponse, error) {
	now := a.cfg.Now()
	at, _, err := a.cfg.Keys.Sign(AccessToken{Issuer: issuer, Subject: g.sub, ClientID: g.client.ID, Role: g.role, ODS: g.ods,
		SDSRole: g.sds, Scope: g.scope, Patient: g.patient, Encounter: g.encounter, IssuedAt: now, TTL: a.cfg.AccessTTL})
	if err != nil {
		return nil, ErrServerError.With("the access token could not be made")
	}
	res := &TokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(a.cfg.AccessTTL / time.Second),
		Scope: g.scope, Patient: g.patient, Encounter: g.encounter}
	if withRefresh {
		rt, err := a.cfg.Keys.sign(refreshClaims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: g.sub, Audience: jwt.ClaimStrings{issuer},
				IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(a.cfg.RefreshTTL)), ID: NewID()},
			ClientID: g.client.ID, Scope: g.scope, Patient: g.patient, Encounter: g.encounter,
		}, refreshTokenType)
		if err != nil {
			return nil, ErrServerError.With("the refresh token could not be made")
		}
		res.RefreshToken = rt
	}
	return res, nil
}

// refreshTokenType is the typ header of refresh tokens, which are signed
// like access tokens but never accepted as one.
const refreshTokenType = "rt+jwt"

// refreshClaims are a refresh token's: the original grant.
type refreshClaims struct {
	jwt.RegisteredClaims
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
}

// wantsRefresh reports whether a scope asks for a refresh token.
func wantsRefresh(scope string) bool {
	for _, f := range strings.Fields(scope) {
		if f == "offline_access" || f == "online_access" {
			return true
		}
	}
	return false
}

// authorizationCode exchanges a code for tokens, checking PKCE (S256).
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-access-token.
func (a *AuthServer) authorizationCode(req TokenRequest, c *Client) (*TokenResponse, error) {
	f := req.Form
	code := f.Get("code")
	a.mu.Lock()
	ac := a.codes[code]
	delete(a.codes, code) // one use only, whatever happens next
	a.mu.Unlock()
	now := a.cfg.Now()
	if code == "" || ac == nil || !now.Before(ac.expires) {
		return nil, ErrInvalidGrant.With("the authorization code is unknown, used or expired")
	}
	if ac.clientID != c.ID {
		return nil, ErrInvalidGrant.With("the authorization code was issued to another client")
	}
	if f.Get("redirect_uri") != ac.redirectURI {
		return nil, ErrInvalidGrant.With("redirect_uri differs from the authorization request's")
	}
	v := f.Get("code_verifier")
	if len(v) < 43 || len(v) > 128 {
		return nil, ErrInvalidGrant.With("code_verifier must have 43 to 128 characters")
	}
	sum := sha256.Sum256([]byte(v))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(ac.challenge)) != 1 {
		return nil, ErrInvalidGrant.With("code_verifier does not match the code_challenge")
	}
	u, ok := a.cfg.Registry.User(ac.userID)
	if !ok {
		return nil, ErrInvalidGrant.With("the user is no longer registered")
	}
	return a.issue(req.Issuer, grant{sub: u.ID, client: c, role: u.Role, ods: u.ODS, sds: u.SDSRole, scope: ac.scope,
		patient: ac.launch.patient, encounter: ac.launch.encounter}, wantsRefresh(ac.scope))
}

// refresh exchanges a refresh token for new tokens; the refresh token is
// rotated (each one works once) and the scopes asked for must be covered by
// the original grant.
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#step-7-app-uses-a-refresh-token-to-obtain-a-new-access-token.
func (a *AuthServer) refresh(req TokenRequest, c *Client) (*TokenResponse, error) {
	raw := req.Form.Get("refresh_token")
	if raw == "" {
		return nil, ErrInvalidRequest.With("refresh_token is missing")
	}
	var rc refreshClaims
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{keyAlg}),
		jwt.WithIssuer(req.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(DefaultLeeway),
		jwt.WithTimeFunc(a.cfg.Now),
	).ParseWithClaims(raw, &rc, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != refreshTokenType {
			return nil, errNotAccessToken
		}
		kid, _ := t.Header["kid"].(string)
		pub, _, ok := a.cfg.Keys.publicKey(kid)
		if !ok {
			return nil, errUnknownKey
		}
		return pub, nil
	})
	if err != nil {
		return nil, ErrInvalidGrant.With("the refresh token is invalid or expired")
	}
	if rc.ClientID != c.ID {
		return nil, ErrInvalidGrant.With("the refresh token was issued to another client")
	}
	scope := rc.Scope
	if asked := req.Form.Get("scope"); asked != "" {
		if _, _, err := ParseScopes(asked); err != nil {
			return nil, ErrInvalidScope.With("scope is malformed")
		}
		if narrowed := grantable(asked, rc.Scope); len(strings.Fields(narrowed)) != len(strings.Fields(asked)) {
			return nil, ErrInvalidScope.With("the scopes asked for must be covered by the original grant")
		}
		scope = asked
	}
	u, ok := a.cfg.Registry.User(rc.Subject)
	if !ok {
		return nil, ErrInvalidGrant.With("the user is no longer registered")
	}
	fresh, err := a.cfg.Replay.Use("refresh|"+rc.ID, rc.ExpiresAt.Add(DefaultLeeway))
	if err != nil {
		return nil, ErrServerError.With("the refresh token could not be recorded")
	}
	if !fresh {
		return nil, ErrInvalidGrant.With("the refresh token was used before (refresh tokens are rotated)")
	}
	// The new refresh token keeps the original grant, so that a narrowed
	// refresh can later go back up to it, never beyond.
	res, err := a.issue(req.Issuer, grant{sub: u.ID, client: c, role: u.Role, ods: u.ODS, sds: u.SDSRole, scope: rc.Scope,
		patient: rc.Patient, encounter: rc.Encounter}, true)
	if err != nil || scope == rc.Scope {
		return res, err
	}
	narrow, err := a.issue(req.Issuer, grant{sub: u.ID, client: c, role: u.Role, ods: u.ODS, sds: u.SDSRole, scope: scope,
		patient: rc.Patient, encounter: rc.Encounter}, false)
	if err != nil {
		return nil, err
	}
	narrow.RefreshToken = res.RefreshToken
	return narrow, nil
}

// safeValue returns v when it is short and plain, else a placeholder.
func safeValue(v string) string {
	if validName(v) {
		return v
	}
	return "(the given value)"
}

// AuthenticateConfidential authenticates a confidential client (secret or
// client assertion), as introspection requires.
func (a *AuthServer) AuthenticateConfidential(ctx context.Context, req TokenRequest) error {
	_, how, err := a.authenticateClient(ctx, req)
	if err != nil {
		return err
	}
	if how == authNone {
		return ErrInvalidClient.With("a public client cannot introspect tokens")
	}
	return nil
}
