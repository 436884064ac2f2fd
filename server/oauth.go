package server

// The built-in SMART authorization server's HTTP endpoints: discovery
// (GET /fhir/.well-known/smart-configuration), the JWKS, the authorization
// endpoint with its login and consent pages, the token endpoint,
// introspection and EHR launch registration. Errors of the OAuth endpoints
// are OAuth JSON errors (RFC 6749 §5.2), not OperationOutcomes, as OAuth
// clients expect.
// See https://hl7.org/fhir/smart-app-launch/conformance.html,
// https://hl7.org/fhir/smart-app-launch/app-launch.html,
// https://hl7.org/fhir/smart-app-launch/backend-services.html and
// https://www.rfc-editor.org/rfc/rfc7662 (introspection).

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// OAuthBase is the path of the OAuth endpoints below the server root.
const OAuthBase = "/oauth2"

// csrfCookie carries the pending login's CSRF token (double submit).
const csrfCookie = "cpis_csrf"

func (s *Server) registerOAuth(e *gin.Engine) {
	e.GET(FHIRBase+"/.well-known/smart-configuration", s.smartConfiguration)
	if s.cfg.Auth == nil {
		return
	}
	o := e.Group(OAuthBase, s.oauthRateLimit)
	o.GET("/jwks", s.jwks)
	o.GET("/authorize", s.authorize)
	o.POST("/authorize", s.authorizeForm)
	o.POST("/token", s.token)
	o.POST("/introspect", s.introspect)
	o.POST("/launch", s.authenticate, s.launch)
}

// origin is the server root URL: the FHIR base without /fhir.
func (s *Server) origin(c *gin.Context) string {
	return strings.TrimSuffix(s.baseURL(c), FHIRBase)
}

// scopesSupported are the scopes discovery lists.
var scopesSupported = []string{"launch", "launch/patient", "offline_access", "online_access",
	"patient/*.rs", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds", "patient/*.read", "user/*.read", "user/*.write", "system/*.read", "system/*.write"}

// smartConfiguration answers GET /fhir/.well-known/smart-configuration.
// See https://hl7.org/fhir/smart-app-launch/conformance.html#metadata.
func (s *Server) smartConfiguration(c *gin.Context) {
	if s.cfg.Auth == nil {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "this server has no built-in authorization server"))
		return
	}
	o := s.origin(c) + OAuthBase
	doc := map[string]any{
		"issuer":                                           s.baseURL(c),
		"jwks_uri":                                         o + "/jwks",
		"authorization_endpoint":                           o + "/authorize",
		"token_endpoint":                                   o + "/token",
		"introspection_endpoint":                           o + "/introspect",
		"grant_types_supported":                            []string{"authorization_code", "client_credentials", "refresh_token"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt", "client_secret_basic", "client_secret_post", "none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"scopes_supported":                                 scopesSupported,
		"capabilities": []string{"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
			"permission-offline", "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
			"authorize-post"},
	}
	c.Header("Cache-Control", "no-cache")
	c.JSON(http.StatusOK, doc)
}

// jwks answers GET /oauth2/jwks: the public signing keys, current first.
func (s *Server) jwks(c *gin.Context) {
	c.Header("Cache-Control", "max-age=300")
	c.JSON(http.StatusOK, s.cfg.Auth.Keys().JWKS())
}

// oauthError writes an OAuth error response.
func oauthError(c *gin.Context, err error) {
	oe, ok := err.(*smart.OAuthError)
	if !ok {
		oe = smart.ErrServerError
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	c.AbortWithStatusJSON(oe.Status, oe)
}

// tokenRequest reads a form-encoded token or introspection request.
func (s *Server) tokenRequest(c *gin.Context) (smart.TokenRequest, bool) {
	if ct := c.ContentType(); ct != "application/x-www-form-urlencoded" {
		oauthError(c, smart.ErrInvalidRequest.With("send the request as application/x-www-form-urlencoded"))
		return smart.TokenRequest{}, false
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if err := c.Request.ParseForm(); err != nil {
		oauthError(c, smart.ErrInvalidRequest.With("the form body is malformed or too large"))
		return smart.TokenRequest{}, false
	}
	req := smart.TokenRequest{Form: c.Request.PostForm, TokenURL: s.origin(c) + OAuthBase + "/token", Issuer: s.baseURL(c)}
	req.BasicID, req.BasicSecret, req.HasBasic = c.Request.BasicAuth()
	return req, true
}

// token answers POST /oauth2/token.
// See https://www.rfc-editor.org/rfc/rfc6749#section-5.
func (s *Server) token(c *gin.Context) {
	req, ok := s.tokenRequest(c)
	if !ok {
		return
	}
	res, err := s.cfg.Auth.Token(c.Request.Context(), req)
	if err != nil {
		if oe, ok := err.(*smart.OAuthError); ok && oe.Code == smart.ErrInvalidClient.Code && req.HasBasic {
			c.Header("WWW-Authenticate", `Basic realm="`+realm+`"`)
		}
		s.log.Info("token refused", "request_id", requestIDOf(c), "grant_type", safeToken(req.Form.Get("grant_type")), "error", errorCode(err))
		oauthError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	c.JSON(http.StatusOK, res)
}

func errorCode(err error) string {
	if oe, ok := err.(*smart.OAuthError); ok {
		return oe.Code
	}
	return "server_error"
}

// introspect answers POST /oauth2/introspect for a client that
// authenticates (secret or assertion) or a bearer of an admin token.
// See https://www.rfc-editor.org/rfc/rfc7662#section-2.
func (s *Server) introspect(c *gin.Context) {
	req, ok := s.tokenRequest(c)
	if !ok {
		return
	}
	if scheme, tok, _ := strings.Cut(c.GetHeader("Authorization"), " "); strings.EqualFold(scheme, "Bearer") && s.cfg.Verifier != nil {
		p, err := s.cfg.Verifier.Verify(c.Request.Context(), strings.TrimSpace(tok), s.baseURL(c))
		if err != nil || p.Role != smart.RoleAdmin {
			c.Header("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
			oauthError(c, smart.ErrInvalidClient.With("introspection needs client authentication or an admin token"))
			return
		}
	} else if err := s.cfg.Auth.AuthenticateConfidential(c.Request.Context(), req); err != nil {
		oauthError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	if s.cfg.Verifier == nil {
		c.JSON(http.StatusOK, gin.H{"active": false})
		return
	}
	p, err := s.cfg.Verifier.Verify(c.Request.Context(), req.Form.Get("token"), s.baseURL(c))
	if err != nil {
		c.JSON(http.StatusOK, gin.H{"active": false})
		return
	}
	scopes := make([]string, 0, len(p.Scopes))
	for _, sc := range p.Scopes {
		scopes = append(scopes, sc.Raw)
	}
	res := gin.H{"active": true, "token_type": "Bearer", "scope": strings.Join(scopes, " "), "client_id": p.ClientID,
		"sub": p.Subject, "exp": p.Expires.Unix(), "iss": s.baseURL(c), "aud": s.baseURL(c), "jti": p.TokenID, "role": string(p.Role)}
	if p.ODS != "" {
		res["ods"] = p.ODS
	}
	if p.SDSRole != "" {
		res["sds_role"] = p.SDSRole
	}
	for k, v := range p.Launch {
		res[k] = v
	}
	c.JSON(http.StatusOK, res)
}

// launch answers POST /oauth2/launch (patient, encounter form fields) for
// an EHR with an admin or clinician token: the launch value it passes to
// the app for an EHR launch.
func (s *Server) launch(c *gin.Context) {
	p, _ := smart.FromContext(c.Request.Context())
	if p.Role != smart.RoleAdmin && p.Role != smart.RoleClinicianUnscheduled && p.Role != smart.RoleClinicianScheduled {
		s.fail(c, fhir.Errorf(fhir.IssueForbidden, "only clinicians' systems and admins register EHR launches"))
		return
	}
	patient, encounter := c.PostForm("patient"), c.PostForm("encounter")
	if (patient != "" && !fhir.ValidID(patient)) || (encounter != "" && !fhir.ValidID(encounter)) || patient+encounter == "" {
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "give patient and/or encounter as resource ids"))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"launch": s.cfg.Auth.NewLaunch(patient, encounter)})
}

// authorize answers GET /oauth2/authorize: the login page, or the error.
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code.
func (s *Server) authorize(c *gin.Context) {
	s.beginAuthorize(c, c.Request.URL.Query())
}

func (s *Server) beginAuthorize(c *gin.Context, q map[string][]string) {
	p, aerr := s.cfg.Auth.Begin(q, s.baseURL(c))
	if aerr != nil {
		if aerr.Redirect != "" {
			c.Redirect(http.StatusFound, aerr.RedirectURL())
			return
		}
		s.page(c, http.StatusBadRequest, errorPage, map[string]any{"Message": aerr.Description})
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: csrfCookie, Value: p.CSRF, Path: OAuthBase + "/", HttpOnly: true,
		Secure: c.Request.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: 600})
	s.page(c, http.StatusOK, loginPage, map[string]any{"P": p})
}

// authorizeForm answers POST /oauth2/authorize: an authorization request
// sent as a form (authorize-post), the login form or the consent form.
func (s *Server) authorizeForm(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if err := c.Request.ParseForm(); err != nil {
		s.page(c, http.StatusBadRequest, errorPage, map[string]any{"Message": "The form is malformed."})
		return
	}
	f := c.Request.PostForm
	step := f.Get("step")
	if step == "" {
		s.beginAuthorize(c, f)
		return
	}
	cookie, err := c.Cookie(csrfCookie)
	p, ok := s.cfg.Auth.Pending(f.Get("pending"), f.Get("csrf"))
	if err != nil || !ok || cookie != f.Get("csrf") {
		s.page(c, http.StatusForbidden, errorPage, map[string]any{"Message": "This login expired or did not come from this page. Go back to the app and start again."})
		return
	}
	switch step {
	case "login":
		if !s.cfg.Auth.Login(p, f.Get("username"), f.Get("password")) {
			s.log.Info("login failed", "request_id", requestIDOf(c), "client_id", p.Client.ID)
			if _, still := s.cfg.Auth.Pending(p.ID, p.CSRF); !still {
				s.page(c, http.StatusForbidden, errorPage, map[string]any{"Message": "Too many failed logins. Go back to the app and start again."})
				return
			}
			s.page(c, http.StatusUnauthorized, loginPage, map[string]any{"P": p, "Failed": true})
			return
		}
		s.page(c, http.StatusOK, consentPage, map[string]any{"P": p, "Scopes": strings.Fields(p.Scope)})
	case "consent":
		if p.User == nil {
			s.page(c, http.StatusForbidden, errorPage, map[string]any{"Message": "Log in first."})
			return
		}
		if f.Get("decision") != "approve" {
			c.Redirect(http.StatusFound, s.cfg.Auth.Deny(p))
			return
		}
		patient := f.Get("patient")
		if p.NeedsPatient {
			if !fhir.ValidID(patient) {
				s.page(c, http.StatusBadRequest, consentPage, map[string]any{"P": p, "Scopes": strings.Fields(p.Scope), "BadPatient": true})
				return
			}
			if _, err := s.store.Read(c.Request.Context(), "Patient", patient); err != nil {
				s.page(c, http.StatusBadRequest, consentPage, map[string]any{"P": p, "Scopes": strings.Fields(p.Scope), "BadPatient": true})
				return
			}
		}
		c.Redirect(http.StatusFound, s.cfg.Auth.Approve(p, patient))
	default:
		s.page(c, http.StatusBadRequest, errorPage, map[string]any{"Message": "Unknown step."})
	}
}

// page renders one of the authorization pages with headers that keep it
// out of caches and frames.
func (s *Server) page(c *gin.Context, status int, t *template.Template, data map[string]any) {
	c.Header("Cache-Control", "no-store")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	c.Header("Referrer-Policy", "no-referrer")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := t.Execute(c.Writer, data); err != nil {
		s.log.Error("render authorization page", "request_id", requestIDOf(c), "error", err)
	}
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CP-IS sign in</title>
<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}label{display:block;margin:.8em 0}</style></head><body>`

var (
	errorPage = template.Must(template.New("error").Parse(pageHead + `<h1>Cannot sign in</h1><p>{{.Message}}</p></body></html>`))
	loginPage = template.Must(template.New("login").Parse(pageHead + `<h1>Sign in to CP-IS</h1>
<p>The app <b>{{.P.Client.ID}}</b> asks to use CP-IS on your behalf.</p>
{{if .Failed}}<p role="alert">The user name or password is wrong.</p>{{end}}
<form method="post" action="authorize">
<input type="hidden" name="step" value="login"><input type="hidden" name="pending" value="{{.P.ID}}"><input type="hidden" name="csrf" value="{{.P.CSRF}}">
<label>User name <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Sign in</button></form></body></html>`))
	consentPage = template.Must(template.New("consent").Parse(pageHead + `<h1>Allow access?</h1>
<p>Signed in as <b>{{.P.User.ID}}</b>. The app <b>{{.P.Client.ID}}</b> asks for:</p>
<ul>{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<form method="post" action="authorize">
<input type="hidden" name="step" value="consent"><input type="hidden" name="pending" value="{{.P.ID}}"><input type="hidden" name="csrf" value="{{.P.CSRF}}">
{{if .P.NeedsPatient}}{{if .BadPatient}}<p role="alert">No such Patient id.</p>{{end}}
<label>Patient id <input name="patient" id="patient" required></label>{{end}}
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny" formnovalidate>Deny</button></form></body></html>`))
)

// securityExtension is the CapabilityStatement's rest.security: SMART on
// FHIR with the oauth-uris extension, for a FHIR base under origin.
// See https://hl7.org/fhir/smart-app-launch/conformance.html#using-cors.
func securityExtension(origin string) json.RawMessage {
	o := origin + OAuthBase
	sec := map[string]any{
		"cors": true,
		"service": []any{map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}, "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}},
		"extension": []any{map[string]any{
			"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": []any{
				map[string]any{"url": "token", "valueUri": o + "/token"},
				map[string]any{"url": "authorize", "valueUri": o + "/authorize"},
				map[string]any{"url": "introspect", "valueUri": o + "/introspect"},
			}}},
	}
	b, _ := json.Marshal(sec)
	return b
}
