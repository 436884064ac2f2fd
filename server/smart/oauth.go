package smart

import (
	"fmt"
	"net/http"
)

// OAuthError is an OAuth 2.0 error response: the wire code, the HTTP status
// and a description safe to send (it never quotes a secret, an assertion
// or a token).
//
// See https://www.rfc-editor.org/rfc/rfc6749#section-5.2 and
// https://hl7.org/fhir/smart-app-launch/backend-services.html#error-responses.
type OAuthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Status      int    `json:"-"`
}

func (e *OAuthError) Error() string { return "smart: " + e.Code + ": " + e.Description }

// The OAuth errors, with the status each is sent with.
var (
	ErrInvalidRequest          = &OAuthError{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidClient           = &OAuthError{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrInvalidGrant            = &OAuthError{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient      = &OAuthError{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrUnsupportedGrantType    = &OAuthError{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	ErrInvalidScope            = &OAuthError{Code: "invalid_scope", Status: http.StatusBadRequest}
	ErrAccessDenied            = &OAuthError{Code: "access_denied", Status: http.StatusForbidden}
	ErrUnsupportedResponseType = &OAuthError{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	ErrServerError             = &OAuthError{Code: "server_error", Status: http.StatusInternalServerError}
)

// With returns a copy of e with a description.
func (e *OAuthError) With(format string, args ...any) *OAuthError {
	c := *e
	c.Description = fmt.Sprintf(format, args...)
	return &c
}
