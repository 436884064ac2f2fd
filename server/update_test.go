package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

func TestUpdate(t *testing.T) {
	ts := startServer(t, server.Config{})
	created := do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(t, http.StatusCreated)
	if got := created.Header.Get("Location"); got != ts.Base+"/Patient/p1/_history/1" {
		t.Errorf("update-as-create Location %q, want %s/Patient/p1/_history/1", got, ts.Base)
	}
	upd := do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs2)).wantStatus(t, http.StatusOK)
	if upd.Header.Get("ETag") != `W/"2"` || upd.Header.Get("Location") != ts.Base+"/Patient/p1/_history/2" {
		t.Errorf("update: ETag %q Location %q, want W/\"2\" and .../_history/2", upd.Header.Get("ETag"), upd.Header.Get("Location"))
	}
	if !strings.Contains(string(upd.Body), nhs2) {
		t.Errorf("update body %s does not hold the new identifier", upd.Body)
	}

	tests := []struct {
		name       string
		path, body string
		headers    []string
		status     int
		code       string
		expression string
	}{
		{"id differs from URL", "/Patient/p1", patientJSON("p2", nhs1), nil, 400, "invalid", "Patient.id"},
		{"no id in body", "/Patient/p1", patientJSON("", nhs1), nil, 400, "required", "Patient.id"},
		{"type differs from URL", "/Flag/p1", patientJSON("p1", nhs1), nil, 400, "invalid", "resourceType"},
		{"invalid id", "/Patient/" + strings.Repeat("a", 65), patientJSON(strings.Repeat("a", 65), nhs1), nil, 400, "invalid", "Patient.id"},
		{"If-Match stale", "/Patient/p1", patientJSON("p1", nhs1), []string{"If-Match", `W/"1"`}, 412, "conflict", ""},
		{"If-Match malformed", "/Patient/p1", patientJSON("p1", nhs1), []string{"If-Match", `banana`}, 400, "invalid", ""},
		{"If-Match on a missing resource", "/Patient/nobody", patientJSON("nobody", nhs1), []string{"If-Match", `W/"1"`}, 412, "conflict", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "PUT", ts.Base+tt.path, tt.body, tt.headers...).wantStatus(t, tt.status)
			code, diag, expr := res.outcome(t)
			if code != tt.code {
				t.Errorf("issue code %q, want %q (%s)", code, tt.code, diag)
			}
			if tt.expression != "" && (len(expr) == 0 || expr[0] != tt.expression) {
				t.Errorf("issue expression %v, want %s (%s)", expr, tt.expression, diag)
			}
		})
	}
	do(t, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1), "If-Match", `W/"2"`).wantStatus(t, http.StatusOK)
	if res := do(t, "GET", ts.Base+"/Patient/p1", ""); res.Header.Get("ETag") != `W/"3"` {
		t.Errorf("after the failed updates and one good one: ETag %q, want W/\"3\"", res.Header.Get("ETag"))
	}
}

// TestUpdate_IfMatchRace has many clients update one resource at once, each
// retrying on 412 after a fresh read: every acknowledged update must get
// its own version and none may be lost.
func TestUpdate_IfMatchRace(t *testing.T) {
	ts := startServer(t, server.Config{})
	do(t, "PUT", ts.Base+"/Patient/hot", patientJSON("hot", nhs1)).wantStatus(t, http.StatusCreated)

	t.Run("same version once", func(t *testing.T) {
		const clients = 20
		statuses := make([]int, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = do(t, "PUT", ts.Base+"/Patient/hot", patientJSON("hot", nhs1), "If-Match", `W/"1"`).StatusCode
			}()
		}
		wg.Wait()
		ok, conflict := 0, 0
		for _, s := range statuses {
			switch s {
			case 200:
				ok++
			case 412:
				conflict++
			}
		}
		if ok != 1 || conflict != clients-1 {
			t.Errorf("%d concurrent updates with If-Match W/\"1\": %d succeeded and %d got 412; want 1 and %d", clients, ok, conflict, clients-1)
		}
	})

	t.Run("no lost update", func(t *testing.T) {
		const clients, each = 8, 5
		var mu sync.Mutex
		acked := map[string]string{} // version -> marker the client wrote
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; {
					cur := do(t, "GET", ts.Base+"/Patient/hot", "")
					marker := fmt.Sprintf("c%d-%d", c, i)
					body := strings.Replace(patientJSON("hot", nhs1), `"Alex"`, `"`+marker+`"`, 1)
					res := do(t, "PUT", ts.Base+"/Patient/hot", body, "If-Match", cur.Header.Get("ETag"))
					switch res.StatusCode {
					case 200:
						mu.Lock()
						acked[res.Header.Get("ETag")] = marker
						mu.Unlock()
						i++
					case 412:
					default:
						t.Errorf("PUT: status %d: %s", res.StatusCode, res.Body)
						return
					}
				}
			}()
		}
		wg.Wait()
		if len(acked) != clients*each {
			t.Fatalf("%d acknowledged updates with distinct versions, want %d", len(acked), clients*each)
		}
		for etag, marker := range acked {
			v := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
			res := do(t, "GET", ts.Base+"/Patient/hot/_history/"+v, "").wantStatus(t, 200)
			if !strings.Contains(string(res.Body), marker) {
				t.Errorf("version %s: body %s, want the acknowledged update %s", v, res.Body, marker)
			}
		}
	})
}
