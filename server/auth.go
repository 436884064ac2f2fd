package server

// Authentication of FHIR requests: every /fhir request but GET metadata
// carries `Authorization: Bearer <access token>`; a missing or refused
// token is 401 with an OperationOutcome and a WWW-Authenticate challenge.
// See https://www.rfc-editor.org/rfc/rfc6750#section-3 and
// https://hl7.org/fhir/smart-app-launch/app-launch.html#access-denied-response.

import (
	"net/http"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// realm is the realm of the WWW-Authenticate challenge.
const realm = "cpis"

// anonymous is the principal of every request when authentication is off
// (Config.Verifier nil): an administrator with every scope, so that the
// policy always finds a principal.
var anonymous = func() *smart.Principal {
	scopes, _, _ := smart.ParseScopes("system/*.*")
	return &smart.Principal{Subject: "anonymous", Role: smart.RoleAdmin, Scopes: scopes}
}()

// authenticate puts the verified principal of the request's bearer token in
// the request context (smart.NewContext), or answers 401.
func (s *Server) authenticate(c *gin.Context) {
	if c.Request.Method == http.MethodGet && c.FullPath() == FHIRBase+"/metadata" {
		c.Next()
		return
	}
	if s.cfg.Verifier == nil {
		c.Request = c.Request.WithContext(smart.NewContext(c.Request.Context(), anonymous))
		c.Next()
		return
	}
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		// No credentials: a challenge without an error code (RFC 6750 §3.1).
		c.Header("WWW-Authenticate", `Bearer realm="`+realm+`"`)
		s.fail(c, fhir.Errorf(fhir.IssueLogin, "this request needs an access token: send Authorization: Bearer <token> (see %s/.well-known/smart-configuration)", FHIRBase))
		return
	}
	// A remote address that keeps sending refused tokens is slowed down
	// before its next signature check (each costs tens of microseconds).
	if s.authFailures.empty(c.ClientIP()) {
		c.Header("Retry-After", "1")
		s.fail(c, fhir.Errorf(fhir.IssueThrottled, "too many refused access tokens from this address; retry later"))
		return
	}
	p, err := s.cfg.Verifier.Verify(c.Request.Context(), token, s.baseURL(c))
	if err != nil {
		s.authFailures.take(c.ClientIP())
		te, ok := err.(*smart.TokenError)
		if !ok {
			s.fail(c, err)
			return
		}
		c.Header("WWW-Authenticate", `Bearer realm="`+realm+`", error="`+te.Code+`", error_description="`+te.Description+`"`)
		s.fail(c, fhir.Errorf(fhir.IssueLogin, "%s", te.Description))
		return
	}
	c.Request = c.Request.WithContext(smart.NewContext(c.Request.Context(), p))
	c.Next()
}
