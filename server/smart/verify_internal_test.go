package smart

import (
	"context"
	"testing"
	"time"
)

func TestVerify_CacheIsBounded(t *testing.T) {
	ks, err := OpenKeySet(t.TempDir() + "/keys.json")
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(VerifierConfig{Keys: ks, CacheSize: 16})
	for i := range 100 {
		tok, _, err := ks.Sign(AccessToken{Issuer: "https://x/fhir", Role: RoleAdmin, Subject: string(rune('a' + i%26)), IssuedAt: time.Now(), TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), tok, "https://x/fhir"); err != nil {
			t.Fatal(err)
		}
		if n := len(v.cache); n > 16 {
			t.Fatalf("after %d tokens the cache holds %d, want at most 16", i+1, n)
		}
	}
}
