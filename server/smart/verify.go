package smart

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// accessTokenType is the typ header of the access tokens the server signs.
// See https://www.rfc-editor.org/rfc/rfc9068#section-2.1.
const accessTokenType = "at+jwt"

// TokenError is why a bearer token was refused: an RFC 6750 error code
// (invalid_token, invalid_request) and a description safe to send to the
// client (it never quotes the token).
//
// See https://www.rfc-editor.org/rfc/rfc6750#section-3.1.
type TokenError struct {
	Code        string
	Description string
}

func (e *TokenError) Error() string { return "smart: " + e.Code + ": " + e.Description }

func invalidToken(format string, args ...any) *TokenError {
	return &TokenError{Code: "invalid_token", Description: fmt.Sprintf(format, args...)}
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys are the server's own signing keys; tokens they signed must name
	// the FHIR base URL as issuer and audience. Nil means the server
	// trusts no token of its own.
	Keys *KeySet
	// Audience is the FHIR base URL the server's own tokens must name (iss
	// and aud); empty means the base URL each request reached.
	Audience string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed; zero means DefaultLeeway.
	Leeway time.Duration
	// CacheSize bounds the cache of verified tokens; zero means 10,000.
	CacheSize int
	// External, when set, also trusts the access tokens of an OpenID
	// Connect issuer (resource-server mode; see oidc.go).
	External *OIDCConfig
}

// Verifier turns a bearer token into a Principal. It verifies a token once
// and then answers from a bounded cache, keyed by the token's SHA-256, until
// the token expires. It is safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	oidc   *oidcIssuer // nil without cfg.External

	mu    sync.RWMutex
	cache map[[32]byte]*cached
}

type cached struct {
	p      *Principal
	own    bool // signed by the server's keys: iss and aud are the base URL
	iss    string
	aud    []string
	expiry time.Time // exp plus the leeway
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) *Verifier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	cfg.Audience = strings.TrimSuffix(cfg.Audience, "/")
	v := &Verifier{cfg: cfg, cache: map[[32]byte]*cached{}}
	if cfg.External != nil {
		v.oidc = newOIDCIssuer(*cfg.External, cfg.Now)
	}
	v.parser = jwt.NewParser(
		// Asymmetric algorithms only: never none, never HMAC (a public key
		// is no secret). Each key is further pinned to its own algorithm.
		jwt.WithValidMethods([]string{"ES256", "ES384", "RS256", "RS384", "PS256", "PS384"}),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return v
}

// accessClaims are the claims of the access tokens the server signs.
type accessClaims struct {
	jwt.RegisteredClaims
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Role      string `json:"role"`
	ODS       string `json:"ods,omitempty"`
	SDSRole   string `json:"sds_role,omitempty"`
	Patient   string `json:"patient,omitempty"`
	Encounter string `json:"encounter,omitempty"`
}

// Verify returns the principal of a bearer token; base is the FHIR base URL
// the request reached, the audience expected when VerifierConfig.Audience is
// empty. A refused token is a *TokenError.
func (v *Verifier) Verify(ctx context.Context, token, base string) (*Principal, error) {
	aud := v.cfg.Audience
	if aud == "" {
		aud = strings.TrimSuffix(base, "/")
	}
	// The token's bytes as they are: Sum256 keeps nothing, and a copy of
	// every request's token was most of this check's garbage.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	now := v.cfg.Now()
	v.mu.RLock()
	e := v.cache[key]
	v.mu.RUnlock()
	if e != nil && now.Before(e.expiry) {
		if e.own && (e.iss != aud || !slices.Contains(e.aud, aud)) {
			return nil, invalidToken("the access token was not issued for this server")
		}
		return e.p, nil
	}
	var p *Principal
	var err error
	if v.oidc != nil && v.oidc.issues(token) {
		p, e, err = v.verifyExternal(ctx, token)
	} else {
		p, e, err = v.verify(token, aud)
	}
	if err != nil {
		return nil, err
	}
	v.remember(key, e, now)
	return p, nil
}

func (v *Verifier) verify(token, aud string) (*Principal, *cached, error) {
	if strings.Count(token, ".") != 2 {
		return nil, nil, invalidToken("the access token is not a JWT")
	}
	var c accessClaims
	t, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if v.cfg.Keys == nil {
			return nil, errUnknownKey
		}
		pub, alg, ok := v.cfg.Keys.publicKey(kid)
		if !ok && v.cfg.Keys.Reload() {
			pub, alg, ok = v.cfg.Keys.publicKey(kid)
		}
		if !ok {
			return nil, errUnknownKey
		}
		if t.Method.Alg() != alg {
			return nil, errWrongAlg
		}
		if typ, _ := t.Header["typ"].(string); typ != accessTokenType {
			return nil, errNotAccessToken
		}
		return pub, nil
	})
	if err != nil {
		return nil, nil, tokenError(err)
	}
	if !t.Valid {
		return nil, nil, invalidToken("the access token is invalid")
	}
	if c.Issuer != aud {
		return nil, nil, invalidToken("the access token's issuer is not this server")
	}
	if !slices.Contains(c.Audience, aud) {
		return nil, nil, invalidToken("the access token's audience is not this server")
	}
	p, err := c.principal()
	if err != nil {
		return nil, nil, err
	}
	return p, &cached{p: p, own: true, iss: c.Issuer, aud: c.Audience, expiry: p.Expires.Add(v.cfg.Leeway)}, nil
}

var (
	errUnknownKey     = errors.New("the access token is signed by a key this server does not know")
	errWrongAlg       = errors.New("the access token's algorithm is not the one of its key")
	errNotAccessToken = errors.New("the token is not an access token")
)

// tokenError turns a golang-jwt failure into a TokenError that says what was
// wrong without quoting the token.
func tokenError(err error) *TokenError {
	for _, known := range []error{errUnknownKey, errWrongAlg, errNotAccessToken} {
		if errors.Is(err, known) {
			return invalidToken("%s", known.Error())
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalidToken("the access token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("the access token's signature is invalid or its algorithm is not allowed")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("the access token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("the access token is not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidToken("the access token was issued in the future")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("the access token has no expiry")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalidToken("the access token cannot be verified")
	}
	return invalidToken("the access token is invalid")
}

// principal maps the claims to a Principal.
func (c *accessClaims) principal() (*Principal, error) {
	role := Role(c.Role)
	if !role.Valid() {
		return nil, invalidToken("the access token names no known role")
	}
	if role != RoleAdmin && c.ODS == "" {
		return nil, invalidToken("the access token names no organisation (ods) for role %s", role)
	}
	scopes, _, err := ParseScopes(c.Scope)
	if err != nil {
		return nil, invalidToken("the access token's scope is malformed")
	}
	p := &Principal{
		Subject:  c.Subject,
		ClientID: c.ClientID,
		Role:     role,
		ODS:      c.ODS,
		SDSRole:  c.SDSRole,
		Scopes:   scopes,
		TokenID:  c.ID,
	}
	if c.ExpiresAt != nil {
		p.Expires = c.ExpiresAt.Time
	}
	if c.Patient != "" || c.Encounter != "" {
		p.Launch = map[string]string{}
		if c.Patient != "" {
			p.Launch["patient"] = c.Patient
		}
		if c.Encounter != "" {
			p.Launch["encounter"] = c.Encounter
		}
	}
	return p, nil
}

// remember caches a verified token. When the cache is full it first drops
// expired entries, then arbitrary ones, down to seven eighths of its size.
func (v *Verifier) remember(key [32]byte, e *cached, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheSize {
		for k, old := range v.cache {
			if !now.Before(old.expiry) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.cfg.CacheSize*7/8 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = e
}
