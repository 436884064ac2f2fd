package smart

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"
)

// Token verification cost: the cached path (every request after a token's
// first) and a full ES256 verification (the first use).
//
//	go test ./server/smart -run '^$' -bench Verify -benchmem

func benchToken(b *testing.B) (*Verifier, string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ks, err := NewKeySet(k)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := ks.Sign(AccessToken{Issuer: "https://cpis.example/fhir", Subject: "u1", ClientID: "c1", Role: RoleClinicianUnscheduled,
		ODS: "RXX01", SDSRole: "R8000", Scope: DefaultScope(RoleClinicianUnscheduled), IssuedAt: time.Now(), TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	return NewVerifier(VerifierConfig{Keys: ks, Audience: "https://cpis.example/fhir"}), tok
}

func BenchmarkVerify_Cached(b *testing.B) {
	v, tok := benchToken(b)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify_CachedParallel(b *testing.B) {
	v, tok := benchToken(b)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerify_Full(b *testing.B) {
	v, tok := benchToken(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.verify(tok, "https://cpis.example/fhir"); err != nil {
			b.Fatal(err)
		}
	}
}
