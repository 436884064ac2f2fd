package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

// BenchmarkAuth_Read measures what authentication adds to a request: a
// read by id served in-process (no network), with a cached admin token
// and with authentication off.
//
//	go test ./server -run '^$' -bench Auth_Read -benchmem -count 5
func BenchmarkAuth_Read(b *testing.B) {
	for _, tc := range []struct {
		name string
		auth bool
	}{{"auth=on", true}, {"auth=off", false}} {
		b.Run(tc.name, func(b *testing.B) {
			ts := startServerAuth(b, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))}, tc.auth)
			do(b, "PUT", ts.Base+"/Patient/p1", patientJSON("p1", nhs1)).wantStatus(b, http.StatusCreated)
			req := httptest.NewRequest("GET", ts.Base+"/Patient/p1", nil)
			req.Header.Set("Authorization", "Bearer "+ts.Token)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				ts.srv.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
