package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

func TestAuth_PublicAndProtected(t *testing.T) {
	ts := startServer(t, server.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/fhir/metadata"} {
		do(t, "GET", ts.URL+path, "", "Authorization", "").wantStatus(t, http.StatusOK)
	}
	r := do(t, "GET", ts.Base+"/Patient", "", "Authorization", "").wantStatus(t, http.StatusUnauthorized)
	if code, _, _ := r.outcome(t); code != "login" {
		t.Errorf("GET Patient without a token: issue code %q, want login", code)
	}
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="cpis"` {
		t.Errorf("GET Patient without a token: WWW-Authenticate %q, want %q", got, `Bearer realm="cpis"`)
	}
	do(t, "GET", ts.Base+"/Patient", "").wantStatus(t, http.StatusOK)
	r = do(t, "GET", ts.Base+"/Patient", "", "Authorization", "Bearer not-a-jwt").wantStatus(t, http.StatusUnauthorized)
	if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("GET Patient with a malformed token: WWW-Authenticate %q, want error=\"invalid_token\"", got)
	}
}
