package server_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
)

// BenchmarkCPIS_Attendance: the attendance path over HTTP, 32 clients:
// POST Encounter by an unscheduled-care clinician for a child with a
// current record of one council, which writes the Encounter, the
// notification (a Communication to the council and its social worker)
// and the audit record in one durable transaction. 500 flagged children
// and 40 sites: each (child, site) pair notifies once, so the first
// 20,000 attendances all notify.
//
//	go test ./server -run '^$' -bench CPIS_Attendance -benchtime 5000x
func BenchmarkCPIS_Attendance(b *testing.B) {
	const children, sites = 500, 40
	ts := startServer(b, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	put(b, ts, "Organization/la-a", `{"resourceType":"Organization","id":"la-a","identifier":[{"system":"`+odsSys+`","value":"`+councilA+`"}],"name":"Council A"}`)
	la := ts.TokenFor(b, smart.AccessToken{Role: smart.RoleLA, ODS: councilA, Subject: "la-a-system", ClientID: "la-a"})
	do(b, http.MethodPost, ts.Base+"/PractitionerRole", `{"resourceType":"PractitionerRole","active":true,`+
		`"organization":{"reference":"Organization/la-a","identifier":{"system":"`+odsSys+`","value":"`+councilA+`"}}}`, bearer(la)...).wantStatus(b, http.StatusCreated)
	var nums []string
	for serial := 5000; len(nums) < children; serial++ {
		if n, ok := fhirtest.NHSNumber(serial); ok {
			nums = append(nums, n)
		}
	}
	patients := make([]string, children)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < children; i += 4 {
				b := postBundle(b, ts, upload(councilA, nums[i], cpp, "2026-01-15", "", "2015-04-01"), "transaction-response", bearer(la)...)
				patients[i] = strings.SplitN(strings.TrimPrefix(b.Entry[0].Response.Location, ts.Base+"/"), "/_history", 2)[0]
			}
		}()
	}
	wg.Wait()
	tokens := make([]string, sites)
	bodies := make([]string, sites*children)
	for s := range sites {
		ods := fmt.Sprintf("RS%03d", s)
		tokens[s] = "Bearer " + ts.TokenFor(b, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: ods, SDSRole: "R8000", Subject: "dr", ClientID: "epr"})
		for c := range children {
			bodies[s*children+c] = strings.ReplaceAll(encounter(`{"reference":"`+patients[c]+`"}`), siteODS, ods)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)-1) % (sites * children)
			req, _ := http.NewRequest(http.MethodPost, ts.Base+"/Encounter", strings.NewReader(bodies[i]))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
			req.Header.Set("Authorization", tokens[i/children])
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusCreated || res.Header.Get("Warning") == "" {
				b.Errorf("status %d, Warning %q; want 201 with a warning", res.StatusCode, res.Header.Get("Warning"))
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "attendances/s")
}

// BenchmarkCPIS_LookupNoRecord: the national lookup
// CareTeam?patient:identifier=nhs|X by an unscheduled-care clinician for a
// child with no record (99% of lookups), 32 clients, with 200 flagged
// children stored.
//
//	go test ./server -run '^$' -bench CPIS_Lookup -benchtime 20000x
func BenchmarkCPIS_LookupNoRecord(b *testing.B) {
	benchLookup(b, false)
}

// BenchmarkCPIS_LookupRecord: the same lookup for flagged children.
func BenchmarkCPIS_LookupRecord(b *testing.B) {
	benchLookup(b, true)
}

func benchLookup(b *testing.B, flagged bool) {
	const children = 200
	ts := startServer(b, server.Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	put(b, ts, "Organization/la-a", `{"resourceType":"Organization","id":"la-a","identifier":[{"system":"`+odsSys+`","value":"`+councilA+`"}],"name":"Council A"}`)
	la := ts.TokenFor(b, smart.AccessToken{Role: smart.RoleLA, ODS: councilA, Subject: "la-a-system", ClientID: "la-a"})
	var nums []string
	for serial := 7000; len(nums) < 2*children; serial++ {
		if n, ok := fhirtest.NHSNumber(serial); ok {
			nums = append(nums, n)
		}
	}
	for i := range children {
		postBundle(b, ts, upload(councilA, nums[i], cpp, "2026-01-15", "", "2015-04-01"), "transaction-response", bearer(la)...)
	}
	asked := nums[children:]
	if flagged {
		asked = nums[:children]
	}
	tok := "Bearer " + ts.TokenFor(b, smart.AccessToken{Role: smart.RoleClinicianUnscheduled, ODS: siteODS, SDSRole: "R8000", Subject: "dr", ClientID: "epr"})
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := asked[int(next.Add(1))%len(asked)]
			req, _ := http.NewRequest(http.MethodGet, ts.Base+"/"+lookupQuery("CareTeam", n), nil)
			req.Header.Set("Authorization", tok)
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d, want 200", res.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}
