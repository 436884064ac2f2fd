package server_test

import (
	"net/http"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

func TestDelete(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)

	do(t, "DELETE", ts.Base+"/Patient/p1", "", "If-Match", `W/"7"`).wantStatus(t, http.StatusPreconditionFailed)
	del := do(t, "DELETE", ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusNoContent)
	if del.Header.Get("ETag") != `W/"2"` {
		t.Errorf("DELETE ETag %q, want W/\"2\" (the version recording the delete)", del.Header.Get("ETag"))
	}
	gone := do(t, "GET", ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusGone)
	if code, _, _ := gone.outcome(t); code != "deleted" {
		t.Errorf("read after delete: issue code %q, want deleted", code)
	}
	do(t, "GET", ts.Base+"/Patient/p1/_history/1", "").wantStatus(t, http.StatusOK)
	do(t, "GET", ts.Base+"/Patient/p1/_history/2", "").wantStatus(t, http.StatusGone)

	// Deleting again, or deleting what never existed, succeeds and writes nothing.
	if res := do(t, "DELETE", ts.Base+"/Patient/p1", "").wantStatus(t, http.StatusNoContent); res.Header.Get("ETag") != "" {
		t.Errorf("second delete: ETag %q, want none (no new version)", res.Header.Get("ETag"))
	}
	res := do(t, "DELETE", ts.Base+"/Patient/never", "", "Prefer", "return=OperationOutcome").wantStatus(t, http.StatusOK)
	if code, _, _ := res.outcome(t); code != "informational" {
		t.Errorf("delete with return=OperationOutcome: issue code %q, want informational", code)
	}
	do(t, "DELETE", ts.Base+"/Child/p1", "").wantStatus(t, http.StatusNotFound)

	// Update after delete brings the resource back as a new version.
	back := do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)
	if back.Header.Get("ETag") != `W/"3"` {
		t.Errorf("update after delete: ETag %q, want W/\"3\"", back.Header.Get("ETag"))
	}
	h := do(t, "GET", ts.Base+"/Patient/p1/_history", "").wantStatus(t, http.StatusOK)
	var methods []string
	for _, e := range h.object(t)["entry"].([]any) {
		methods = append(methods, e.(map[string]any)["request"].(map[string]any)["method"].(string))
	}
	if len(methods) != 3 || methods[0] != "PUT" || methods[1] != "DELETE" || methods[2] != "PUT" {
		t.Errorf("instance history methods %v, want [PUT DELETE PUT] (newest first)", methods)
	}
}
