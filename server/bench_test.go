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
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
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

func benchGet(b *testing.B, client *http.Client, url string) {
	b.ReportAllocs()
	b.SetParallelism(16) // 32 concurrent clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("GET: status %d", res.StatusCode)
				return
			}
		}
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
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", ts.Base+"/Patient", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 201 {
				b.Errorf("POST: status %d", res.StatusCode)
				return
			}
		}
	})
}
