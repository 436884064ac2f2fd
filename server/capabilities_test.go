package server_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
)

func TestCapabilities(t *testing.T) {
	ts := startServer(t, server.Config{BaseURL: "https://cpis.example/fhir"})
	res := do(t, "GET", ts.Base+"/metadata", "").wantStatus(t, http.StatusOK)
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := codec.Parse(res.Body); err != nil {
		t.Fatalf("CapabilityStatement is not valid R4: %v", err)
	}
	var cs struct {
		FHIRVersion    string
		Format         []string
		Implementation struct{ URL string }
		Rest           []struct {
			Mode        string
			Interaction []struct{ Code string }
			Resource    []struct {
				Type              string
				Interaction       []struct{ Code string }
				ConditionalCreate bool
				ConditionalUpdate bool
				ConditionalDelete string
			}
		}
	}
	if err := json.Unmarshal(res.Body, &cs); err != nil {
		t.Fatal(err)
	}
	if cs.FHIRVersion != "4.0.1" || cs.Implementation.URL != "https://cpis.example/fhir" || len(cs.Rest) != 1 {
		t.Fatalf("CapabilityStatement fhirVersion %q, implementation %q, %d rest: want 4.0.1, the base URL, 1", cs.FHIRVersion, cs.Implementation.URL, len(cs.Rest))
	}
	if len(cs.Rest[0].Resource) != len(fhir.ResourceTypes) {
		t.Errorf("%d resource types listed, want %d", len(cs.Rest[0].Resource), len(fhir.ResourceTypes))
	}
	// The claims are what the routes register: compare with the route table.
	registered := map[string]bool{}
	srvCodes := []string{}
	for _, r := range ts.routes(t) {
		registered[string(r)] = true
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type != "Patient" {
			continue
		}
		if !r.ConditionalCreate || !r.ConditionalUpdate || r.ConditionalDelete != "single" {
			t.Errorf("Patient conditionalCreate %v, conditionalUpdate %v, conditionalDelete %q; want true, true, single", r.ConditionalCreate, r.ConditionalUpdate, r.ConditionalDelete)
		}
		for _, in := range r.Interaction {
			srvCodes = append(srvCodes, in.Code)
		}
	}
	sort.Strings(srvCodes)
	want := []string{"create", "delete", "history-instance", "history-type", "patch", "read", "search-type", "update", "vread"}
	if len(srvCodes) != len(want) {
		t.Fatalf("Patient interactions %v, want %v", srvCodes, want)
	}
	for i := range want {
		if srvCodes[i] != want[i] || !registered[want[i]] {
			t.Errorf("Patient interactions %v, want %v, each registered as a route", srvCodes, want)
			break
		}
	}
	var sys []string
	for _, in := range cs.Rest[0].Interaction {
		sys = append(sys, string(in.Code))
	}
	if got, want := strings.Join(sys, " "), "transaction batch search-system history-system"; got != want {
		t.Errorf("system interactions %q, want %q", got, want)
	}
}

// routes returns the interaction codes of the routes the server registered.
func (ts *testServer) routes(t *testing.T) []string {
	t.Helper()
	store := ts.Store
	codec, _ := fhir.NewCodec()
	srv, err := server.New(store, codec, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range srv.Routes() {
		out = append(out, string(r.Interaction))
	}
	return out
}
