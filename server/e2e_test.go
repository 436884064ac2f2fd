package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

// e2eDir holds the SMART app pages and the playwright-core script, with
// fhirclient and playwright-core pinned by its package-lock.json.
const e2eDir = "smart/testdata/e2e"

// e2eNeeds skips the test with a message when chromium, node or the npm
// packages are missing; under CI=true it fails instead.
func e2eNeeds(t *testing.T) (node, chromium string) {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must install it (.ci/run)", what)
		}
		t.Skipf("%s; skipping the fhirclient end-to-end test", what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node on PATH")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("no Chromium at " + chromium + " (apt-get install -y chromium)")
	}
	for _, p := range []string{"fhirclient/build/fhir-client.js", "playwright-core/package.json"} {
		if _, err := os.Stat(filepath.Join(e2eDir, "node_modules", p)); err != nil {
			missing("npm packages missing (npm ci --prefix server/" + e2eDir + ")")
		}
	}
	return node, chromium
}

// TestE2E_FHIRClientStandaloneLaunch: the npm package fhirclient, in
// headless Chromium driven by playwright-core, completes a SMART
// standalone launch with PKCE against the server (discovery, login,
// consent with a patient pick, code exchange from script through CORS) and
// reads the patient's Flag.
func TestE2E_FHIRClientStandaloneLaunch(t *testing.T) {
	node, chromium := e2eNeeds(t)
	// The app has its own origin, so that discovery, the token exchange and
	// the FHIR reads all go through CORS as for a real SMART app.
	mux := http.NewServeMux()
	for _, f := range []string{"launch.html", "app.html"} {
		mux.HandleFunc("/"+f, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(e2eDir, f)) })
	}
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(e2eDir, "node_modules/fhirclient/build/fhir-client.js"))
	})
	var appLog []string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appLog = append(appLog, r.Method+" "+r.URL.Path)
		mux.ServeHTTP(w, r)
	}))
	defer app.Close()

	ts := startServer(t, server.Config{CORSOrigins: []string{app.URL}})
	if err := ts.Reg.AddClient(smart.Client{ID: "e2e-app", Public: true, RedirectURIs: []string{app.URL + "/app.html"},
		Role: smart.RoleClinicianUnscheduled, ODS: "RXX01", Scope: "launch/patient patient/Flag.rs patient/Patient.rs offline_access"}, ""); err != nil {
		t.Fatal(err)
	}
	const password = "e2e password, long enough"
	if err := ts.Reg.AddUser(smart.User{ID: "dr-e2e", Role: smart.RoleClinicianUnscheduled, ODS: "RXX01", SDSRole: "R8000"}, password); err != nil {
		t.Fatal(err)
	}
	do(t, "PUT", ts.Base+"/Patient/child-1", patientJSON("child-1", nhs1)).wantStatus(t, http.StatusCreated)
	do(t, "PUT", ts.Base+"/Flag/flag-1", `{"resourceType":"Flag","id":"flag-1","status":"active","code":{"text":"CP-IS record"},"subject":{"reference":"Patient/child-1"}}`).wantStatus(t, http.StatusCreated)

	launch := app.URL + "/launch.html?" + url.Values{"iss": {ts.Base}, "client_id": {"e2e-app"}}.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "run.js", launch, "dr-e2e", password, "child-1")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node run.js: %v\nstdout: %s\nstderr: %s\napp requests: %v\nserver log (last 3 KB): %s", err, out, stderr, appLog, tailString(ts.Log(), 3000))
	}
	var res struct {
		Patient string
		Flags   []string
		Scope   string
		Refresh bool
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("app result %q: %v", out, err)
	}
	if res.Patient != "child-1" || !slices.Contains(res.Flags, "flag-1") || !res.Refresh {
		t.Errorf("app result %+v: want patient child-1, Flag flag-1 read, a refresh token", res)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
