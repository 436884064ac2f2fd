package smart

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenTTL is the longest lifetime of a token the server signs. A key
// replaced by rotation stays published (and trusted) for MaxTokenTTL plus
// the verification leeway after it stopped signing, so that every token it
// signed expires before it goes.
const MaxTokenTTL = 24 * time.Hour

// keyAlg is the algorithm of the server's signing keys (ECDSA P-256).
const keyAlg = "ES256"

// KeySet is the server's token signing keys: the newest key signs, older
// keys only verify, and every key is published in the JWKS. A KeySet kept
// in a file notices when `cpis keys rotate` changed the file (see Reload).
// It is safe for concurrent use.
//
// See https://www.rfc-editor.org/rfc/rfc7517 (JWK Set).
type KeySet struct {
	path string // "" for a KeySet that lives in memory only
	now  func() time.Time

	mu       sync.RWMutex
	keys     []*signingKey // oldest first; the last one signs
	loaded   os.FileInfo   // the file as it was at the last load
	lastLook time.Time     // the last time Reload looked at the file
}

type signingKey struct {
	kid     string
	priv    *ecdsa.PrivateKey
	created time.Time
	retired time.Time // when a newer key took over; zero for the current key
}

// keyFile is the JSON form of the key file (mode 0600).
type keyFile struct {
	Keys []keyRecord `json:"keys"`
}

type keyRecord struct {
	KID        string    `json:"kid"`
	Alg        string    `json:"alg"`
	Created    time.Time `json:"created"`
	Retired    time.Time `json:"retired,omitzero"`
	PrivateKey string    `json:"private_key"` // PEM, PKCS #8
}

// NewKeySet returns a KeySet in memory over P-256 keys, oldest first: the
// last one signs. Tests make their keys with it.
func NewKeySet(keys ...*ecdsa.PrivateKey) (*KeySet, error) {
	ks := &KeySet{now: time.Now}
	for _, k := range keys {
		if k.Curve != elliptic.P256() {
			return nil, errors.New("smart: signing keys must be P-256 keys")
		}
		ks.keys = append(ks.keys, &signingKey{kid: thumbprint(&k.PublicKey), priv: k, created: time.Now().UTC()})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("smart: a key set needs a key")
	}
	return ks, nil
}

// OpenKeySet loads the key file at path, making it with one new key when it
// does not exist.
func OpenKeySet(path string) (*KeySet, error) {
	ks := &KeySet{path: path, now: time.Now}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		k, err := newSigningKey(time.Now())
		if err != nil {
			return nil, err
		}
		if err := writeKeyFile(path, []*signingKey{k}); err != nil {
			return nil, err
		}
	}
	if err := ks.load(); err != nil {
		return nil, err
	}
	return ks, nil
}

// RotateKeys adds a new signing key to the key file at path (making the file
// if needed) and returns its kid. The previous key stops signing but stays
// published; keys retired more than MaxTokenTTL plus the leeway ago are
// dropped. A running server picks the new key up within a few seconds
// (KeySet.Reload).
func RotateKeys(path string, now time.Time) (string, error) {
	var keys []*signingKey
	if _, err := os.Stat(path); err == nil {
		ks := &KeySet{path: path, now: time.Now}
		if err := ks.load(); err != nil {
			return "", err
		}
		keys = ks.keys
	}
	var kept []*signingKey
	for _, k := range keys {
		if k.retired.IsZero() {
			k.retired = now
		}
		if now.Sub(k.retired) <= MaxTokenTTL+DefaultLeeway {
			kept = append(kept, k)
		}
	}
	k, err := newSigningKey(now)
	if err != nil {
		return "", err
	}
	kept = append(kept, k)
	if err := writeKeyFile(path, kept); err != nil {
		return "", err
	}
	return k.kid, nil
}

func newSigningKey(now time.Time) (*signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return &signingKey{kid: thumbprint(&priv.PublicKey), priv: priv, created: now.UTC()}, nil
}

func writeKeyFile(path string, keys []*signingKey) error {
	var f keyFile
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return fmt.Errorf("marshal signing key: %w", err)
		}
		f.Keys = append(f.Keys, keyRecord{KID: k.kid, Alg: keyAlg, Created: k.created, Retired: k.retired,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// writeFileAtomic replaces path with b (mode 0600) so that a reader sees
// the old or the new content, never a part.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// load reads the key file.
func (ks *KeySet) load() error {
	st, err := os.Stat(ks.path)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	b, err := os.ReadFile(ks.path)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("signing keys %s: %w", ks.path, err)
	}
	var keys []*signingKey
	for _, r := range f.Keys {
		if r.Alg != keyAlg {
			return fmt.Errorf("signing keys %s: key %s: algorithm %q, want %s", ks.path, r.KID, r.Alg, keyAlg)
		}
		blk, _ := pem.Decode([]byte(r.PrivateKey))
		if blk == nil {
			return fmt.Errorf("signing keys %s: key %s: no PEM block", ks.path, r.KID)
		}
		priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return fmt.Errorf("signing keys %s: key %s: %w", ks.path, r.KID, err)
		}
		ec, ok := priv.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return fmt.Errorf("signing keys %s: key %s is not a P-256 key", ks.path, r.KID)
		}
		keys = append(keys, &signingKey{kid: r.KID, priv: ec, created: r.Created, retired: r.Retired})
	}
	if len(keys) == 0 {
		return fmt.Errorf("signing keys %s: no keys", ks.path)
	}
	ks.mu.Lock()
	ks.keys, ks.loaded = keys, st
	ks.mu.Unlock()
	return nil
}

// reloadEvery is how often Reload looks at the key file at most.
const reloadEvery = 2 * time.Second

// Reload reads the key file again when it changed since it was loaded,
// looking at most every couple of seconds; it reports whether the keys
// changed. A KeySet in memory never changes.
func (ks *KeySet) Reload() bool {
	if ks.path == "" {
		return false
	}
	ks.mu.Lock()
	if now := ks.now(); !ks.lastLook.IsZero() && now.Sub(ks.lastLook) < reloadEvery {
		ks.mu.Unlock()
		return false
	}
	ks.lastLook = ks.now()
	prev := ks.loaded
	ks.mu.Unlock()
	// The file is replaced by a rename, so a change is a new file.
	st, err := os.Stat(ks.path)
	if err != nil || (os.SameFile(prev, st) && st.ModTime().Equal(prev.ModTime())) {
		return false
	}
	return ks.load() == nil
}

// KID returns the id of the key that signs.
func (ks *KeySet) KID() string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys[len(ks.keys)-1].kid
}

// sign signs claims with the current key, naming it in the kid header.
func (ks *KeySet) sign(claims jwt.Claims, typ string) (string, error) {
	ks.mu.RLock()
	k := ks.keys[len(ks.keys)-1]
	ks.mu.RUnlock()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = k.kid
	if typ != "" {
		t.Header["typ"] = typ
	}
	return t.SignedString(k.priv)
}

// publicKey returns the public key with the id kid and the one algorithm it
// verifies.
func (ks *KeySet) publicKey(kid string) (*ecdsa.PublicKey, string, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, k := range ks.keys {
		if k.kid == kid {
			return &k.priv.PublicKey, keyAlg, true
		}
	}
	return nil, "", false
}

// JWK is a public JSON Web Key as the JWKS publishes it.
// See https://www.rfc-editor.org/rfc/rfc7517#section-4.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	// D is the private part; JWKs with it are refused where public keys
	// are registered.
	D   string `json:"d,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the public keys: the current one and those still trusted.
func (ks *KeySet) JWKS() JWKS {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	set := JWKS{Keys: []JWK{}}
	for i := len(ks.keys) - 1; i >= 0; i-- {
		k := ks.keys[i]
		j := ecJWK(&k.priv.PublicKey)
		j.Kid, j.Alg, j.Use = k.kid, keyAlg, "sig"
		set.Keys = append(set.Keys, j)
	}
	return set
}

func ecJWK(pub *ecdsa.PublicKey) JWK {
	b, _ := pub.Bytes() // uncompressed point: 0x04 || X || Y
	size := (len(b) - 1) / 2
	enc := base64.RawURLEncoding.EncodeToString
	return JWK{Kty: "EC", Crv: "P-256", X: enc(b[1 : 1+size]), Y: enc(b[1+size:])}
}

// thumbprint is the RFC 7638 JWK thumbprint of an EC P-256 public key.
func thumbprint(pub *ecdsa.PublicKey) string {
	j := ecJWK(pub)
	// The members in lexicographic order, no whitespace (RFC 7638 §3).
	s := `{"crv":"` + j.Crv + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
