package smart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Client is an OAuth client registered with `cpis client add`.
//
// See https://hl7.org/fhir/smart-app-launch/client-authentication.html.
type Client struct {
	ID string `json:"id"`
	// Role, ODS and SDSRole are the principal of the tokens the client gets
	// for itself (client_credentials); users' tokens carry the user's.
	Role    Role   `json:"role"`
	ODS     string `json:"ods,omitempty"`
	SDSRole string `json:"sds_role,omitempty"`
	// Scope is every scope the client may be granted (space separated).
	Scope string `json:"scope"`
	// RedirectURIs are the exact redirect URIs of an app (authorization
	// code grant).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// JWKS or JWKSURL hold the public keys of private_key_jwt assertions.
	JWKS    *JWKS  `json:"jwks,omitempty"`
	JWKSURL string `json:"jwks_url,omitempty"`
	// SecretHash is the bcrypt hash of a client secret (client_secret_basic
	// or client_secret_post).
	SecretHash string `json:"secret_hash,omitempty"`
	// Public is a client that cannot keep a secret (a browser app); it
	// must use PKCE and has no client authentication.
	Public  bool      `json:"public,omitempty"`
	Created time.Time `json:"created"`
}

// User is a person who logs in at the authorization endpoint, registered
// with `cpis user add`.
type User struct {
	ID           string    `json:"id"`
	Role         Role      `json:"role"`
	ODS          string    `json:"ods,omitempty"`
	SDSRole      string    `json:"sds_role,omitempty"`
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
}

// Settings is where a Registry keeps its two documents, the clients and
// the users as JSON: a store's small settings table (sqlite.Store
// implements it), so that they live, and are backed up, with the data.
type Settings interface {
	// Setting returns the value of key, or nil when it has none.
	Setting(ctx context.Context, key string) ([]byte, error)
	// PutSetting durably sets the value of key.
	PutSetting(ctx context.Context, key string, value []byte) error
}

// The settings keys of the registry's documents.
const (
	clientsSetting = "smart.clients"
	usersSetting   = "smart.users"
)

// Registry holds the clients and users of a store (see Settings); the CLI
// writes them, a running server reads them again within a second of a
// change. It is safe for concurrent use.
type Registry struct {
	st Settings

	mu           sync.Mutex
	cl           map[string]*Client
	us           map[string]*User
	clRaw, usRaw []byte
	lastLook     time.Time
}

// OpenRegistry opens the registry kept in st.
func OpenRegistry(st Settings) (*Registry, error) {
	r := &Registry{st: st}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// load reads both documents again; r.mu is held (or r is not shared yet).
func (r *Registry) load() error {
	ctx := context.Background()
	clRaw, err := r.st.Setting(ctx, clientsSetting)
	if err != nil {
		return err
	}
	usRaw, err := r.st.Setting(ctx, usersSetting)
	if err != nil {
		return err
	}
	if r.cl != nil && bytes.Equal(clRaw, r.clRaw) && bytes.Equal(usRaw, r.usRaw) {
		return nil
	}
	cl := map[string]*Client{}
	us := map[string]*User{}
	if len(clRaw) > 0 {
		if err := json.Unmarshal(clRaw, &cl); err != nil {
			return fmt.Errorf("smart: registered clients: %w", err)
		}
	}
	if len(usRaw) > 0 {
		if err := json.Unmarshal(usRaw, &us); err != nil {
			return fmt.Errorf("smart: registered users: %w", err)
		}
	}
	r.cl, r.us, r.clRaw, r.usRaw = cl, us, clRaw, usRaw
	return nil
}

// refresh reads the documents again when a second has passed since the
// last look; r.mu is held. A failing read keeps what was read before.
func (r *Registry) refresh() {
	if time.Since(r.lastLook) < time.Second {
		return
	}
	r.lastLook = time.Now()
	r.load()
}

// put writes the document key from v and reads both again; r.mu is held.
func (r *Registry) put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := r.st.PutSetting(context.Background(), key, b); err != nil {
		return err
	}
	return r.load()
}

// ImportFiles moves the clients.json and users.json of an older data
// folder dir into the registry (once: the files are renamed to
// *.imported), unless the registry holds that document already.
func (r *Registry) ImportFiles(dir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range []struct{ file, key string }{{"clients.json", clientsSetting}, {"users.json", usersSetting}} {
		path := filepath.Join(dir, f.file)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		have, err := r.st.Setting(context.Background(), f.key)
		if err != nil {
			return err
		}
		if len(have) == 0 {
			if !json.Valid(b) {
				return fmt.Errorf("smart: %s is not valid JSON", path)
			}
			if err := r.st.PutSetting(context.Background(), f.key, b); err != nil {
				return err
			}
		}
		if err := os.Rename(path, path+".imported"); err != nil {
			return err
		}
	}
	return r.load()
}

// Client returns the registered client id, as the store said at most a
// second ago.
func (r *Registry) Client(id string) (*Client, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh()
	c, ok := r.cl[id]
	return c, ok
}

// User returns the registered user id, as the store said at most a second
// ago.
func (r *Registry) User(id string) (*User, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh()
	u, ok := r.us[id]
	return u, ok
}

// AddClient registers (or replaces) a client; secret, when not empty, is
// hashed with bcrypt and never kept.
func (r *Registry) AddClient(c Client, secret string) error {
	if !validName(c.ID) {
		return fmt.Errorf("smart: client id %q: use 1-64 letters, digits, '-', '_' or '.'", c.ID)
	}
	// A public app gets tokens for its users only, so it needs no role.
	if !c.Public || c.Role != "" {
		if err := checkPrincipal(c.Role, c.ODS); err != nil {
			return err
		}
	}
	if _, _, err := ParseScopes(c.Scope); err != nil {
		return err
	}
	for _, u := range c.RedirectURIs {
		p, err := url.Parse(u)
		if err != nil || !p.IsAbs() || p.Fragment != "" || (p.Scheme != "https" && !loopback(p.Hostname())) {
			return fmt.Errorf("smart: redirect URI %q: want an absolute https URL without fragment (http only on localhost)", u)
		}
	}
	modes := 0
	if c.JWKS != nil || c.JWKSURL != "" {
		modes++
	}
	if secret != "" {
		modes++
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
		if err != nil {
			return err
		}
		c.SecretHash = string(h)
	}
	if c.Public {
		modes++
		if len(c.RedirectURIs) == 0 {
			return errors.New("smart: a public client needs a redirect URI")
		}
	}
	if modes != 1 {
		return errors.New("smart: a client needs exactly one of a JWKS, a JWKS URL, a secret or public")
	}
	if c.JWKS != nil {
		for _, k := range c.JWKS.Keys {
			if _, algs, err := k.PublicKey(); err != nil {
				return err
			} else if len(algs) == 0 {
				return fmt.Errorf("smart: JWK %q: algorithm %q does not fit the key", k.Kid, k.Alg)
			}
		}
	}
	c.Created = time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return err
	}
	r.cl[c.ID] = &c
	return r.put(clientsSetting, r.cl)
}

// AddUser registers (or replaces) a user; the password is hashed with
// bcrypt and never kept.
func (r *Registry) AddUser(u User, password string) error {
	if !validName(u.ID) {
		return fmt.Errorf("smart: user id %q: use 1-64 letters, digits, '-', '_' or '.'", u.ID)
	}
	if err := checkPrincipal(u.Role, u.ODS); err != nil {
		return err
	}
	if len(password) < 12 {
		return errors.New("smart: a password needs at least 12 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	u.PasswordHash = string(h)
	u.Created = time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		return err
	}
	r.us[u.ID] = &u
	return r.put(usersSetting, r.us)
}

// dummyHash is checked against when a user does not exist, so that the
// answer takes as long as for a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user, no such password"), bcrypt.DefaultCost)
	return h
})

// Login returns the user whose password matches.
func (r *Registry) Login(id, password string) (*User, bool) {
	u, ok := r.User(id)
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, false
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return nil, false
	}
	return u, true
}

// checkSecret reports whether secret is the client's.
func (c *Client) checkSecret(secret string) bool {
	return c.SecretHash != "" && bcrypt.CompareHashAndPassword([]byte(c.SecretHash), []byte(secret)) == nil
}

func checkPrincipal(role Role, ods string) error {
	if !role.Valid() {
		return fmt.Errorf("smart: role %q: want one of %v", role, Roles)
	}
	if role != RoleAdmin && ods == "" {
		return fmt.Errorf("smart: role %s needs an ODS code", role)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// ClientIDs lists the registered clients' ids, sorted.
func (r *Registry) ClientIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.cl))
	for id := range r.cl {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// grantable returns the scopes of requested that allowed covers (resource
// scopes) or lists (other scopes), in the order asked.
func grantable(requested, allowed string) string {
	al, other, _ := ParseScopes(allowed)
	var out []string
	for _, f := range strings.Fields(requested) {
		s, ok, err := ParseScope(f)
		switch {
		case err != nil:
			continue
		case !ok:
			if slices.Contains(other, f) {
				out = append(out, f)
			}
		default:
			for _, a := range al {
				if a.Covers(s) {
					out = append(out, f)
					break
				}
			}
		}
	}
	return strings.Join(out, " ")
}
