package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// TestAuthenticate_PrincipalInContext: what the policy reads with
// smart.FromContext is the token's principal, or the anonymous admin when
// authentication is off.
func TestAuthenticate_PrincipalInContext(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, err := smart.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := fhir.NewCodec()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tok, jti, err := keys.Sign(smart.AccessToken{Issuer: "https://cpis.example/fhir", Subject: "dr-a", ClientID: "epr-1", Role: smart.RoleClinicianUnscheduled,
		ODS: "RXX01", SDSRole: "R8000", Scope: "user/Flag.rs", Patient: "child-1", IssuedAt: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		verifier *smart.Verifier
		check    func(*smart.Principal) bool
	}{
		{"token", smart.NewVerifier(smart.VerifierConfig{Keys: keys, Audience: "https://cpis.example/fhir", Now: func() time.Time { return now }}),
			func(p *smart.Principal) bool {
				return p.Subject == "dr-a" && p.ClientID == "epr-1" && p.Role == smart.RoleClinicianUnscheduled && p.ODS == "RXX01" &&
					p.SDSRole == "R8000" && p.TokenID == jti && p.Launch["patient"] == "child-1" && p.Allows("Flag", smart.PermSearch) && !p.Allows("Flag", smart.PermCreate)
			}},
		{"authentication off", nil, func(p *smart.Principal) bool {
			return p.Subject == "anonymous" && p.Role == smart.RoleAdmin && p.Allows("AuditEvent", smart.PermAll)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{Verifier: tc.verifier, BaseURL: "https://cpis.example/fhir"}, codec: codec,
				log: slog.New(slog.NewJSONHandler(io.Discard, nil)), authFailures: newLimiter(20, 100, time.Now)}
			e := gin.New()
			var got *smart.Principal
			e.GET(FHIRBase+"/Flag", s.authenticate, func(c *gin.Context) {
				got, _ = smart.FromContext(c.Request.Context())
				c.Status(http.StatusNoContent)
			})
			req := httptest.NewRequest("GET", "/fhir/Flag", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			e.ServeHTTP(w, req)
			if w.Code != http.StatusNoContent || got == nil || !tc.check(got) {
				t.Errorf("status %d, principal %+v", w.Code, got)
			}
		})
	}
}
