package smart

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OIDCConfig is an external OpenID Connect issuer whose access tokens the
// server accepts (resource-server mode), such as NHS CIS2.
//
// Claims map to the Principal as follows: sub -> Subject; client_id, else
// azp -> ClientID; RoleClaim (default "cpis_role") -> Role, which must be
// one of Roles; ODSClaim (default "cpis_ods") -> ODS; SDSRoleClaim (default
// "cpis_sds_role") -> SDSRole; scope (a space-separated string) or scp (an
// array) -> Scopes; jti -> TokenID; patient and encounter -> Launch.
//
// See https://openid.net/specs/openid-connect-discovery-1_0.html.
type OIDCConfig struct {
	// Issuer is the issuer URL: tokens must name it as iss, and its
	// discovery document is Issuer + "/.well-known/openid-configuration".
	Issuer string
	// Audience must be among the token's aud.
	Audience string
	// RoleClaim, ODSClaim and SDSRoleClaim name the claims carrying the
	// role, the ODS code and the SDS role; empty means the defaults above.
	RoleClaim, ODSClaim, SDSRoleClaim string
	// HTTPClient fetches discovery and the JWKS; nil means a client with a
	// 10 s timeout.
	HTTPClient *http.Client
}

// oidcIssuer verifies an external issuer's tokens with its JWKS, found by
// discovery and cached (fetched again on an unknown kid, at most every
// 10 s).
type oidcIssuer struct {
	cfg OIDCConfig
	now func() time.Time

	mu   sync.Mutex
	jwks *remoteJWKS // nil until discovery answered
	last time.Time   // last discovery attempt
}

func newOIDCIssuer(cfg OIDCConfig, now func() time.Time) *oidcIssuer {
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "cpis_role"
	}
	if cfg.ODSClaim == "" {
		cfg.ODSClaim = "cpis_ods"
	}
	if cfg.SDSRoleClaim == "" {
		cfg.SDSRoleClaim = "cpis_sds_role"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &oidcIssuer{cfg: cfg, now: now}
}

// issues reports whether token names the external issuer (unverified).
func (o *oidcIssuer) issues(token string) bool {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return false
	}
	return strings.TrimSuffix(c.Issuer, "/") == o.cfg.Issuer
}

// keys returns the issuer's JWKS, running discovery first when needed.
func (o *oidcIssuer) keys(ctx context.Context) (*remoteJWKS, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.jwks != nil {
		return o.jwks, nil
	}
	if now := o.now(); !o.last.IsZero() && now.Sub(o.last) < refreshEvery {
		return nil, errors.New("smart: issuer discovery failed recently")
	} else {
		o.last = now
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, o.cfg.HTTPClient, o.cfg.Issuer+"/.well-known/openid-configuration", &doc); err != nil {
		return nil, err
	}
	if strings.TrimSuffix(doc.Issuer, "/") != o.cfg.Issuer || doc.JWKSURI == "" {
		return nil, errors.New("smart: the issuer's discovery document names another issuer or no jwks_uri")
	}
	o.jwks = &remoteJWKS{url: doc.JWKSURI, client: o.cfg.HTTPClient, now: o.now}
	return o.jwks, nil
}

// verifyExternal verifies a token of the external issuer.
func (v *Verifier) verifyExternal(ctx context.Context, token string) (*Principal, *cached, error) {
	o := v.oidc
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithTimeFunc(v.cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithAudience(o.cfg.Audience),
	).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		set, err := o.keys(ctx)
		if err != nil {
			return nil, errUnknownKey
		}
		kid, _ := t.Header["kid"].(string)
		k, err := set.key(ctx, kid)
		if err != nil {
			return nil, errUnknownKey
		}
		pub, algs, err := k.PublicKey()
		if err != nil {
			return nil, errUnknownKey
		}
		if !slices.Contains(algs, t.Method.Alg()) {
			return nil, errWrongAlg
		}
		return pub, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenInvalidAudience) {
			return nil, nil, invalidToken("the access token's audience is not this server")
		}
		return nil, nil, tokenError(err)
	}
	str := func(name string) string { s, _ := claims[name].(string); return s }
	scope := str("scope")
	if scp, ok := claims["scp"].([]any); ok && scope == "" {
		var fs []string
		for _, x := range scp {
			if s, ok := x.(string); ok {
				fs = append(fs, s)
			}
		}
		scope = strings.Join(fs, " ")
	}
	ac := accessClaims{Scope: scope, ClientID: str("client_id"), Role: str(o.cfg.RoleClaim), ODS: str(o.cfg.ODSClaim),
		SDSRole: str(o.cfg.SDSRoleClaim), Patient: str("patient"), Encounter: str("encounter")}
	if ac.ClientID == "" {
		ac.ClientID = str("azp")
	}
	ac.Subject, ac.ID = str("sub"), str("jti")
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		ac.ExpiresAt = exp
	}
	p, err := ac.principal()
	if err != nil {
		return nil, nil, err
	}
	return p, &cached{p: p, expiry: p.Expires.Add(v.cfg.Leeway)}, nil
}
