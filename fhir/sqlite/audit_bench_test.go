package sqlite_test

import (
	"context"
	"testing"
)

// BenchmarkAudit_Append is AppendAudit from many concurrent callers (a
// record of about 400 bytes), each waiting for its record to be durable.
func BenchmarkAudit_Append(b *testing.B) {
	s := MustOpen(b, nil)
	rec := []byte(`{"time":"2026-12-01T10:00:00.000Z","request":"0123456789abcdef01234567","sub":"dr-1","client":"epr","role":"clinician-unscheduled","ods":"RXX01","sdsRole":"R8000","jti":"AAAAAAAAAAAAAAAAAAAAAA","interaction":"search-type","method":"GET","path":"/Flag","type":"Flag","query":"status=active\u0026subject%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018","status":200,"unscheduled":true,"patients":["9990000018"]}`)
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.AppendAudit(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
