package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server/smart"
)

// TestMain_Auth: cpis serve needs a token on /fhir, cpis token makes one
// and audits it, and a rotated key is picked up without a restart.
func TestMain_Auth(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startMain(t, ctx, newMain(t, dir))
	base := "http://" + addr + "/fhir"
	client := &http.Client{}
	if status, hdr, _ := do(t, client, "GET", base+"/Patient", nil); status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("GET /fhir/Patient without a token: %d, want 401 with a challenge", status)
	}
	token := func() string {
		var out, errs bytes.Buffer
		if err := run(context.Background(), []string{"token", "--data", dir, "--role", "la", "--ods", "LA001", "--base-url", base}, &out, &errs); err != nil {
			t.Fatalf("cpis token: %v %s", err, errs.String())
		}
		return strings.TrimSpace(out.String())
	}
	tok := token()
	if status, _, body := do(t, client, "GET", base+"/Patient", nil, "Authorization", "Bearer "+tok); status != http.StatusOK {
		t.Errorf("GET /fhir/Patient with a cpis token: %d %s, want 200", status, body)
	}
	// The token's issue is in the read trail the running server appends
	// to, in one intact chain, without the token.
	trail := sqlite.ReadAuditPath(filepath.Join(dir, dbFile))
	log, err := os.ReadFile(trail)
	if err != nil || !strings.Contains(string(log), `"interaction":"admin:token-issued"`) || strings.Contains(string(log), tok) || strings.Contains(string(log), tok[strings.LastIndex(tok, ".")+1:]) {
		t.Errorf("read trail %q (%v): want a token-issued record without the token", log, err)
	}
	if rep, err := journal.Verify(trail, nil); err != nil || rep.Break != nil || rep.Entries < 2 {
		t.Errorf("read trail after cpis token beside the server: %+v %v, want an intact chain of the request and the token", rep, err)
	}
	var out, errs bytes.Buffer
	if err := run(context.Background(), []string{"keys", "rotate", "--data", dir}, &out, &errs); err != nil {
		t.Fatalf("cpis keys rotate: %v %s", err, errs.String())
	}
	// A token of the new key works on the running server, and so does the
	// token of the old key.
	if status, _, body := do(t, client, "GET", base+"/Patient", nil, "Authorization", "Bearer "+token()); status != http.StatusOK {
		t.Errorf("GET with a token of the rotated key: %d %s, want 200", status, body)
	}
	if status, _, _ := do(t, client, "GET", base+"/Patient", nil, "Authorization", "Bearer "+tok); status != http.StatusOK {
		t.Errorf("GET with a token of the old key after rotation: %d, want 200", status)
	}
	// Bad uses of the CLI.
	for _, args := range [][]string{
		{"token", "--data", dir, "--role", "root"},
		{"token", "--data", dir, "--role", "la"},
		{"token", "--data", dir, "--role", "admin", "--ttl", "48h"},
		{"token", "--data", dir, "--role", "admin", "--scope", "system/Flag.xx"},
		{"user", "add", "--data", dir, "--id", "u1", "--role", "admin"},
	} {
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("cpis %v: no error", args)
		}
	}
	cancel()
	if err := waitRun(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestMain_TLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	m := newMain(t, filepath.Join(dir, "data"))
	m.TLSCert, m.TLSKey = certFile, keyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := startMain(t, ctx, m)
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	status, hdr, _ := do(t, client, "GET", "https://"+addr+"/fhir/metadata", nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("GET https metadata: %d, HSTS %q; want 200 with HSTS", status, hdr.Get("Strict-Transport-Security"))
	}
	if _, _, _, err := tryDo(&http.Client{}, "GET", "http://"+addr+"/fhir/metadata", nil); err == nil {
		if s, _, _, _ := tryDo(&http.Client{}, "GET", "http://"+addr+"/fhir/metadata", nil); s == http.StatusOK {
			t.Errorf("plain HTTP on the TLS port answered 200")
		}
	}
	cancel()
	waitRun(t, done)
}

func TestMain_ClientAndUserAdd(t *testing.T) {
	dir := t.TempDir()
	var out, errs bytes.Buffer
	const secret, password = "client-secret-of-24-chars", "a long user password"
	jwks := filepath.Join(dir, "jwks.json")
	os.WriteFile(jwks, []byte(`{"keys":[{"kty":"EC","crv":"P-384","kid":"k1","x":"AA","y":"AA","d":"private"}]}`), 0o600)
	for _, tc := range []struct {
		args  []string
		stdin string
		ok    bool
	}{
		{[]string{"--data", dir, "--id", "app-1", "--public", "--redirect-uri", "http://localhost:9/cb"}, "", true},
		{[]string{"--data", dir, "--id", "svc-1", "--secret-stdin", "--role", "la", "--ods", "LA001"}, secret + "\n", true},
		{[]string{"--data", dir, "--id", "svc-2", "--jwks", jwks, "--role", "la", "--ods", "LA001"}, "", false},                                       // a private key
		{[]string{"--data", dir, "--id", "svc-3", "--role", "la", "--ods", "LA001"}, "", false},                                                       // no authentication
		{[]string{"--data", dir, "--id", "svc-4", "--public", "--redirect-uri", "http://evil.example/cb"}, "", false},                                 // http off loopback
		{[]string{"--data", dir, "--id", "svc-5", "--secret-stdin", "--role", "la", "--ods", "LA001"}, "short\n", false},                              // short secret
		{[]string{"--data", dir, "--id", "bad id!", "--public", "--redirect-uri", "http://localhost:9/cb"}, "", false},                                // id
		{[]string{"--data", dir, "--id", "svc-6", "--secret-stdin", "--role", "la"}, secret + "\n", false},                                            // no ODS
		{[]string{"--data", dir, "--id", "svc-7", "--secret-stdin", "--role", "la", "--ods", "X", "--scope", "system/Flag.xx"}, secret + "\n", false}, // bad scope
	} {
		err := clientAdd(tc.args, strings.NewReader(tc.stdin), &out, &errs)
		if (err == nil) != tc.ok {
			t.Errorf("cpis client add %v: %v, want ok %v", tc.args, err, tc.ok)
		}
	}
	if err := userAdd([]string{"--data", dir, "--id", "dr-a", "--role", "clinician-unscheduled", "--ods", "RXX01", "--sds-role", "R8000", "--password-stdin"},
		strings.NewReader(password+"\n"), &out, &errs); err != nil {
		t.Fatalf("cpis user add: %v", err)
	}
	if err := userAdd([]string{"--data", dir, "--id", "dr-b", "--role", "admin", "--password-stdin"}, strings.NewReader("short\n"), &out, &errs); err == nil {
		t.Errorf("cpis user add with a short password: no error")
	}
	// The clients and users are in the store: no file of the folder (the
	// database, its WAL, the admin log) holds a secret or a password in
	// clear, and the store holds app-1 and svc-1 with a bcrypt hash.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) || strings.Contains(string(b), password) {
			t.Errorf("%s holds a secret or a password in clear", f)
		}
	}
	if st, _ := os.Stat(sqlite.ReadAuditPath(filepath.Join(dir, dbFile))); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("read trail: %v, want mode 0600", st)
	}
	store, reg := openRegistryOf(t, dir)
	b, err := store.Setting(context.Background(), "smart.clients")
	if err != nil || !strings.Contains(string(b), `"app-1"`) || !strings.Contains(string(b), `"secret_hash":"$2`) {
		t.Errorf("registered clients %s (%v): want app-1 and svc-1 with a bcrypt hash", b, err)
	}
	if _, ok := reg.Login("dr-a", password); !ok {
		t.Errorf("dr-a does not log in with the password given to cpis user add")
	}
}

// TestMain_RegistryImport: the clients.json and users.json of an older data
// folder move into the store at the next command (renamed *.imported).
func TestMain_RegistryImport(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "clients.json"), []byte(`{"old-app":{"id":"old-app","public":true,"redirect_uris":["http://localhost:9/cb"]}}`), 0o600)
	var out, errs syncBuffer
	if err := clientAdd([]string{"--data", dir, "--id", "app-2", "--public", "--redirect-uri", "http://localhost:9/cb"}, strings.NewReader(""), &out, &errs); err != nil {
		t.Fatalf("cpis client add: %v\n%s", err, errs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "clients.json.imported")); err != nil {
		t.Errorf("clients.json was not renamed after the import: %v", err)
	}
	_, reg := openRegistryOf(t, dir)
	for _, id := range []string{"old-app", "app-2"} {
		if _, ok := reg.Client(id); !ok {
			t.Errorf("client %s not in the store after the import", id)
		}
	}
	// A registry that is open (a running server's) sees a client that
	// cpis client add registers meanwhile, within a second.
	if err := clientAdd([]string{"--data", dir, "--id", "app-3", "--public", "--redirect-uri", "http://localhost:9/cb"}, strings.NewReader(""), &out, &errs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := reg.Client("app-3"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an open registry does not see app-3, registered by another open of the store, after 3 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMain_Demo(t *testing.T) {
	dir := t.TempDir()
	var stdout syncBuffer
	m := newMain(t, dir)
	m.Demo, m.Stdout = true, &stdout
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := startMain(t, ctx, m)
	out := stdout.String()
	cancel()
	waitRun(t, done)
	var pw string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == "demo-clinician" {
			pw = f[len(f)-1]
		}
	}
	_, reg := openRegistryOf(t, dir)
	if _, ok := reg.Login("demo-clinician", pw); !ok || pw == "" {
		t.Errorf("--demo printed %q; the demo-clinician password from it does not log in", out)
	}
	if _, ok := reg.Client("demo-app"); !ok || !strings.Contains(out, "cpis token --data") {
		t.Errorf("--demo: no demo-app or no token commands in %q", out)
	}
}

// openRegistryOf opens the store of the data folder dir (closed at the
// test's end) and its SMART registry.
func openRegistryOf(t *testing.T, dir string) (*sqlite.Store, *smart.Registry) {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg, err := smart.OpenRegistry(store)
	if err != nil {
		t.Fatal(err)
	}
	return store, reg
}
