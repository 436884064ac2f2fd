package server_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkHTTP_Transaction100 posts council uploads of 100 entries (25
// children x a Patient conditional create by NHS number, a Flag, a
// CarePlan and a CareTeam linked by urn:uuid) from 4 concurrent clients
// over HTTP to a real SQLite file (fsync on), every child new. It reports
// resources written per second.
//
//	go test ./server -run '^$' -bench Transaction100 -benchtime 200x -count 3
func BenchmarkHTTP_Transaction100(b *testing.B) {
	ts, client := benchServer(b)
	var next atomic.Int64
	next.Store(999100000)
	bundle := func() string {
		nums := make([]string, 0, 25)
		for len(nums) < 25 {
			if num, ok := nhsWithCheck(int(next.Add(1))); ok {
				nums = append(nums, num)
			}
		}
		return councilBundle(nums, false)
	}
	b.SetParallelism(2) // 2 x GOMAXPROCS (2) = 4 clients
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.Base, strings.NewReader(bundle()))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d, want 200", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "resources/s")
}
