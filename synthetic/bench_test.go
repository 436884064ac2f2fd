package synthetic_test

import (
	"testing"

	"github.com/cpis-fhir/cpis/synthetic"
)

// BenchmarkUploadBundle measures what cpis seed spends building one council
// upload of 25 children (100 entries) on the client side.
//
//	go test ./synthetic -run '^$' -bench UploadBundle -benchtime 500x
func BenchmarkUploadBundle(b *testing.B) {
	g, err := synthetic.New(synthetic.Config{Seed: 1, Children: 10_000, Now: today})
	if err != nil {
		b.Fatal(err)
	}
	ups := g.Uploads()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.SetBytes(int64(len(g.UploadBundle(ups[i%len(ups)]))))
		i++
	}
}
