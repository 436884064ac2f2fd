package server_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/cpis-fhir/cpis/server"
)

// Benchmarks over real HTTP on loopback against a real SQLite file (fsync
// on). Record results in README.md's Performance section with the machine.
//
//	go test ./server -run '^$' -bench HTTP -benchmem -count 5

func benchServer(b *testing.B) (*testServer, *http.Client) {
	ts := startServer(b, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	client := &http.Client{Transport: ts.authorized(&http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256})}
	b.Cleanup(client.CloseIdleConnections)
	return ts, client
}

func patientFixture(b *testing.B) []byte {
	body, err := os.ReadFile("../testdata/cpis/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchRequests sends requests made by newReq from 32 concurrent clients
// (2 cores) and fails on any status other than want.
func benchRequests(b *testing.B, client *http.Client, want int, newReq func() *http.Request) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := client.Do(newReq())
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != want {
				b.Errorf("status %d, want %d", res.StatusCode, want)
				return
			}
		}
	})
}

func benchGet(b *testing.B, client *http.Client, url string) {
	benchRequests(b, client, http.StatusOK, func() *http.Request {
		req, _ := http.NewRequest("GET", url, nil)
		return req
	})
}

func BenchmarkHTTP_Healthz(b *testing.B) {
	ts, client := benchServer(b)
	benchGet(b, client, ts.URL+"/healthz")
}

func BenchmarkHTTP_Read(b *testing.B) {
	ts, client := benchServer(b)
	req, _ := http.NewRequest("PUT", ts.Base+"/Patient/p1", bytes.NewReader(bytes.Replace(patientFixture(b), []byte(`"resourceType": "Patient",`), []byte(`"resourceType": "Patient", "id": "p1",`), 1)))
	req.Header.Set("Content-Type", "application/fhir+json")
	res, err := client.Do(req)
	if err != nil || res.StatusCode != 201 {
		b.Fatalf("PUT: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
	benchGet(b, client, ts.Base+"/Patient/p1")
}

// BenchmarkHTTP_Create posts a 1.5 KB Patient from 32 concurrent clients;
// each 201 is sent only after its group commit is durable.
func BenchmarkHTTP_Create(b *testing.B) {
	ts, client := benchServer(b)
	body := patientFixture(b)
	benchRequests(b, client, http.StatusCreated, func() *http.Request {
		req, _ := http.NewRequest("POST", ts.Base+"/Patient", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		return req
	})
}
