package smart

import (
	"crypto/subtle"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The authorization endpoint's steps: Begin checks the request and makes a
// Pending login; Login checks the user's password; Approve (after consent)
// issues the code the app exchanges at the token endpoint.
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code.

// Pending is an authorization request waiting for the user's login and
// consent. Its CSRF token must come back in the form and in a cookie.
type Pending struct {
	ID   string
	CSRF string
	// Client and the checked request.
	Client      *Client
	RedirectURI string
	State       string
	// Scope is what the client asked for and may get.
	Scope string
	// NeedsPatient is set when the app asked for launch/patient without an
	// EHR launch context: the user picks the patient at consent.
	NeedsPatient bool
	// User is set once the user logged in.
	User *User

	challenge string
	launch    launchContext
	expires   time.Time
	failures  int
}

type launchContext struct {
	patient, encounter string
	expires            time.Time
}

type authCode struct {
	clientID, redirectURI, challenge, userID, scope string
	launch                                          launchContext
	expires                                         time.Time
}

// AuthorizeError is a refused authorization request. When Redirect is set
// the error goes back to the app at Redirect (with State); else the
// redirect URI could not be trusted and the error is shown to the user.
type AuthorizeError struct {
	*OAuthError
	Redirect, State string
}

// RedirectURL is where the error goes: the redirect URI with error,
// error_description and state.
func (e *AuthorizeError) RedirectURL() string {
	return withQuery(e.Redirect, url.Values{"error": {e.Code}, "error_description": {e.Description}, "state": {e.State}})
}

func withQuery(u string, q url.Values) string {
	for k, v := range q {
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		}
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + q.Encode()
}

// Begin checks an authorization request (its query), fhirBase being the
// FHIR base URL the aud parameter must name, and returns the pending login.
func (a *AuthServer) Begin(q url.Values, fhirBase string) (*Pending, *AuthorizeError) {
	c, ok := a.cfg.Registry.Client(q.Get("client_id"))
	if !ok {
		return nil, &AuthorizeError{OAuthError: ErrInvalidRequest.With("unknown client_id")}
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" && len(c.RedirectURIs) == 1 {
		redirect = c.RedirectURIs[0]
	}
	if !slices.Contains(c.RedirectURIs, redirect) {
		return nil, &AuthorizeError{OAuthError: ErrInvalidRequest.With("redirect_uri is not registered for this client")}
	}
	fail := func(e *OAuthError) (*Pending, *AuthorizeError) {
		return nil, &AuthorizeError{OAuthError: e, Redirect: redirect, State: q.Get("state")}
	}
	if rt := q.Get("response_type"); rt != "code" {
		return fail(ErrUnsupportedResponseType.With("response_type must be code"))
	}
	if q.Get("state") == "" {
		return fail(ErrInvalidRequest.With("state is required"))
	}
	if strings.TrimSuffix(q.Get("aud"), "/") != strings.TrimSuffix(fhirBase, "/") {
		return fail(ErrInvalidRequest.With("aud must be this server's FHIR base URL %s", fhirBase))
	}
	if q.Get("code_challenge_method") != "S256" {
		return fail(ErrInvalidRequest.With("PKCE is required: code_challenge_method must be S256"))
	}
	if ch := q.Get("code_challenge"); len(ch) != 43 {
		return fail(ErrInvalidRequest.With("code_challenge must be a base64url SHA-256 (43 characters)"))
	}
	requested := q.Get("scope")
	if _, _, err := ParseScopes(requested); err != nil {
		return fail(ErrInvalidScope.With("scope is malformed"))
	}
	scope := grantable(requested, c.Scope)
	if res, _, _ := ParseScopes(scope); len(res) == 0 {
		return fail(ErrInvalidScope.With("none of the requested scopes is registered for this client"))
	}
	now := a.cfg.Now()
	p := &Pending{ID: NewID(), CSRF: NewID(), Client: c, RedirectURI: redirect, State: q.Get("state"), Scope: scope,
		challenge: q.Get("code_challenge"), expires: now.Add(pendingTTL)}
	if l := q.Get("launch"); l != "" {
		a.mu.Lock()
		lc := a.launches[l]
		a.mu.Unlock()
		if lc == nil || !now.Before(lc.expires) {
			return fail(ErrInvalidRequest.With("launch is unknown or expired"))
		}
		p.launch = *lc
	}
	p.NeedsPatient = p.launch.patient == "" && slices.Contains(strings.Fields(scope), "launch/patient")
	if res, _, _ := ParseScopes(scope); p.launch.patient == "" && !p.NeedsPatient && slices.ContainsFunc(res, func(s Scope) bool { return s.Context == ContextPatient }) {
		return fail(ErrInvalidScope.With("patient/ scopes need a patient context: ask for launch/patient or use an EHR launch"))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(now)
	if len(a.pending) >= maxPending {
		return fail(ErrServerError.With("too many logins in progress; try again later"))
	}
	a.pending[p.ID] = p
	return p, nil
}

// sweep drops expired state; a.mu is held.
func (a *AuthServer) sweep(now time.Time) {
	for k, p := range a.pending {
		if !now.Before(p.expires) {
			delete(a.pending, k)
		}
	}
	for k, c := range a.codes {
		if !now.Before(c.expires) {
			delete(a.codes, k)
		}
	}
	for k, l := range a.launches {
		if !now.Before(l.expires) {
			delete(a.launches, k)
		}
	}
}

// Pending returns the pending login id when csrf matches its CSRF token.
func (a *AuthServer) Pending(id, csrf string) (*Pending, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending[id]
	if p == nil || !a.cfg.Now().Before(p.expires) || csrf == "" || subtle.ConstantTimeCompare([]byte(p.CSRF), []byte(csrf)) != 1 {
		return nil, false
	}
	return p, true
}

// Login checks the user's password for the pending login. After five
// failures the login is dropped (the app has to start again).
func (a *AuthServer) Login(p *Pending, user, password string) bool {
	u, ok := a.cfg.Registry.Login(user, password)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		p.failures++
		if p.failures >= maxLoginFail {
			delete(a.pending, p.ID)
		}
		return false
	}
	p.User = u
	return true
}

// Approve ends a pending login the user consented to and returns where to
// send the browser: the redirect URI with the code and state. patient is
// the user's pick when p.NeedsPatient.
func (a *AuthServer) Approve(p *Pending, patient string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, p.ID)
	code := NewID() + NewID()
	lc := p.launch
	if p.NeedsPatient {
		lc.patient = patient
	}
	a.codes[code] = &authCode{clientID: p.Client.ID, redirectURI: p.RedirectURI, challenge: p.challenge, userID: p.User.ID,
		scope: p.Scope, launch: lc, expires: a.cfg.Now().Add(codeTTL)}
	return withQuery(p.RedirectURI, url.Values{"code": {code}, "state": {p.State}})
}

// Deny ends a pending login the user refused and returns the redirect with
// error access_denied.
func (a *AuthServer) Deny(p *Pending) string {
	a.mu.Lock()
	delete(a.pending, p.ID)
	a.mu.Unlock()
	e := &AuthorizeError{OAuthError: ErrAccessDenied.With("the user refused access"), Redirect: p.RedirectURI, State: p.State}
	return e.RedirectURL()
}

// NewLaunch records an EHR launch context (a Patient id, an Encounter id)
// and returns the opaque launch value the EHR passes to the app.
// See https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch.
func (a *AuthServer) NewLaunch(patient, encounter string) string {
	id := NewID()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(a.cfg.Now())
	a.launches[id] = &launchContext{patient: patient, encounter: encounter, expires: a.cfg.Now().Add(launchTTL)}
	return id
}
