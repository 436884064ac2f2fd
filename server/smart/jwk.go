package smart

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// PublicKey returns the public key a JWK describes (EC P-256, P-384, P-521
// or RSA of at least 2048 bits) and the algorithms it may verify: its alg
// when the JWK names one, else those of its type the server accepts.
//
// See https://www.rfc-editor.org/rfc/rfc7518#section-6.
func (j JWK) PublicKey() (crypto.PublicKey, []string, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch j.Kty {
	case "EC":
		var curve elliptic.Curve
		var algs []string
		switch j.Crv {
		case "P-256":
			curve, algs = elliptic.P256(), []string{"ES256"}
		case "P-384":
			curve, algs = elliptic.P384(), []string{"ES384"}
		case "P-521":
			curve, algs = elliptic.P521(), []string{"ES512"}
		default:
			return nil, nil, fmt.Errorf("smart: JWK %q: unsupported curve %q", j.Kid, j.Crv)
		}
		x, err1 := dec(j.X)
		y, err2 := dec(j.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, nil, fmt.Errorf("smart: JWK %q: malformed EC point", j.Kid)
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, nil, fmt.Errorf("smart: JWK %q: %w", j.Kid, err)
		}
		return pub, pinAlg(j.Alg, algs), nil
	case "RSA":
		n, err1 := dec(j.N)
		e, err2 := dec(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, nil, fmt.Errorf("smart: JWK %q: malformed RSA key", j.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 {
			return nil, nil, fmt.Errorf("smart: JWK %q: RSA keys need at least 2048 bits", j.Kid)
		}
		return pub, pinAlg(j.Alg, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}), nil
	}
	return nil, nil, fmt.Errorf("smart: JWK %q: unsupported key type %q", j.Kid, j.Kty)
}

// pinAlg narrows algs to alg when the JWK names one of them (none when it
// names another).
func pinAlg(alg string, algs []string) []string {
	if alg == "" {
		return algs
	}
	for _, a := range algs {
		if a == alg {
			return []string{alg}
		}
	}
	return nil
}

// key finds the key with the id kid (or the only key, when kid is empty).
func (s JWKS) key(kid string) (JWK, bool) {
	if kid == "" && len(s.Keys) == 1 {
		return s.Keys[0], true
	}
	for _, k := range s.Keys {
		if k.Kid == kid && kid != "" {
			return k, true
		}
	}
	return JWK{}, false
}

// remoteJWKS is a JWK Set fetched from a URL and cached; an unknown kid
// fetches it again, at most every refreshEvery. It is safe for concurrent
// use.
type remoteJWKS struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	set     JWKS
	fetched time.Time // last fetch attempt
	ok      bool      // the last fetch succeeded at least once
}

// refreshEvery bounds how often a remote JWKS is fetched again; maxAge is
// how long a fetched set is used before it is fetched again anyway.
const (
	refreshEvery = 10 * time.Second
	maxAge       = time.Hour
)

// key returns the key with the id kid, fetching the set when it has none
// or the kid is unknown.
func (r *remoteJWKS) key(ctx context.Context, kid string) (JWK, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if k, found := r.set.key(kid); found && r.ok && now.Sub(r.fetched) < maxAge {
		return k, nil
	}
	if r.ok && now.Sub(r.fetched) < refreshEvery {
		return JWK{}, errUnknownKey
	}
	r.fetched = now
	set, err := fetchJWKS(ctx, r.client, r.url)
	if err != nil {
		return JWK{}, err
	}
	r.set, r.ok = set, true
	if k, found := r.set.key(kid); found {
		return k, nil
	}
	return JWK{}, errUnknownKey
}

// fetchJWKS GETs a JWK Set (at most 1 MB).
func fetchJWKS(ctx context.Context, client *http.Client, url string) (JWKS, error) {
	var set JWKS
	err := getJSON(ctx, client, url, &set)
	return set, err
}

// getJSON GETs url and decodes its JSON body (at most 1 MB) into v.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("smart: fetch %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("smart: fetch %s: %w", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("smart: fetch %s: status %d", url, res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("smart: fetch %s: %w", url, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("smart: fetch %s: %w", url, err)
	}
	return nil
}
