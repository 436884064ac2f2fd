package smart_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server/smart"
)

const base = "https://cpis.example/fhir"

func sign(t *testing.T, ks *smart.KeySet, now time.Time, ttl time.Duration) string {
	t.Helper()
	tok, _, err := ks.Sign(smart.AccessToken{Issuer: base, Subject: "u1", ClientID: "c1", Role: smart.RoleLA, ODS: "LA001",
		Scope: "system/Flag.rs launch/patient", Patient: "p1", IssuedAt: now, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerify_Principal(t *testing.T) {
	dir := t.TempDir()
	ks, err := smart.OpenKeySet(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	clock := fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	v := smart.NewVerifier(smart.VerifierConfig{Keys: ks, Now: clock.Now, Audience: base})
	tok := sign(t, ks, clock.Now(), time.Hour)
	p, err := v.Verify(context.Background(), tok, "http://ignored/fhir")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.Subject != "u1" || p.ClientID != "c1" || p.Role != smart.RoleLA || p.ODS != "LA001" || p.Launch["patient"] != "p1" ||
		len(p.Scopes) != 1 || p.Scopes[0].Raw != "system/Flag.rs" || p.TokenID == "" || !p.Expires.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("Verify: principal %+v", p)
	}
	// The cache never outlives the token: past exp and the leeway it is refused.
	clock.Add(time.Hour + smart.DefaultLeeway + time.Second)
	var te *smart.TokenError
	if _, err := v.Verify(context.Background(), tok, ""); !errors.As(err, &te) || te.Code != "invalid_token" {
		t.Errorf("Verify after expiry: %v, want invalid_token", err)
	}
	// A cached token is still checked against the audience of each request.
	v2 := smart.NewVerifier(smart.VerifierConfig{Keys: ks, Now: clock.Now})
	tok = sign(t, ks, clock.Now(), time.Hour)
	if _, err := v2.Verify(context.Background(), tok, base); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := v2.Verify(context.Background(), tok, "https://other.example/fhir"); err == nil {
		t.Errorf("Verify of a cached token at another base: accepted, want refused")
	}
}

func TestKeys_Rotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	ks, err := smart.OpenKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	first := ks.KID()
	now := time.Now()
	v := smart.NewVerifier(smart.VerifierConfig{Keys: ks, Audience: base})
	old := sign(t, ks, now, time.Hour)

	kid, err := smart.RotateKeys(path, now)
	if err != nil || kid == first {
		t.Fatalf("RotateKeys: %q, %v; want a new kid", kid, err)
	}
	// Another process signs with the new key; the running verifier reads
	// the file again on the unknown kid.
	ks2, err := smart.OpenKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	if ks2.KID() != kid {
		t.Fatalf("after rotation the signing kid is %q, want %q", ks2.KID(), kid)
	}
	if _, err := v.Verify(context.Background(), sign(t, ks2, now, time.Hour), ""); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
	if _, err := v.Verify(context.Background(), old, ""); err != nil {
		t.Errorf("token of the old key after rotation: %v", err)
	}
	if got := ks.JWKS(); len(got.Keys) != 2 || got.Keys[0].Kid != kid || got.Keys[1].Kid != first {
		t.Errorf("JWKS after rotation: %+v, want the new key then the old", got)
	}
	// A later rotation drops keys replaced more than MaxTokenTTL ago.
	if _, err := smart.RotateKeys(path, now.Add(smart.MaxTokenTTL+time.Hour)); err != nil {
		t.Fatal(err)
	}
	ks3, err := smart.OpenKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := ks3.JWKS(); len(got.Keys) != 2 || got.Keys[1].Kid != kid {
		t.Errorf("JWKS after a second rotation a day later: %+v, want the newest two keys", got)
	}
}
