package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Store-level benchmarks on a real SQLite file with fsync on:
//
//	go test ./fhir/sqlite -run '^$' -bench Store -benchmem -count 5

func fixture(b *testing.B) []byte {
	body, err := os.ReadFile("../../testdata/cpis/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkStore_Create writes new 1.5 KB resources from 32 goroutines, so
// that group commit shares fsyncs between them.
func BenchmarkStore_Create(b *testing.B) {
	s := MustOpen(b, time.Now)
	body := fixture(b)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("p", n.Add(1))
			err := s.Write(context.Background(), func(tx fhir.Tx) error {
				return tx.Put(&fhir.Resource{Type: "Patient", ID: id, VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: body})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkStore_Read(b *testing.B) {
	s := MustOpen(b, time.Now)
	body := fixture(b)
	const n = 10000
	for i := 0; i < n; i += 500 {
		err := s.Write(context.Background(), func(tx fhir.Tx) error {
			for j := i; j < i+500; j++ {
				if err := tx.Put(&fhir.Resource{Type: "Patient", ID: fmt.Sprint("p", j), VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: body}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var k atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("p", k.Add(7919)%n)
			if _, err := s.Read(context.Background(), "Patient", id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
