package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func records(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	rep, err := Verify(path, func(e Entry) error {
		out = append(out, string(e.Record))
		return nil
	})
	if err != nil || rep.Break != nil {
		t.Fatalf("Verify: %v %+v", err, rep)
	}
	if rep.Entries != int64(len(out)) || rep.HeadSeq != rep.Entries {
		t.Fatalf("Verify report %+v for %d entries", rep, len(out))
	}
	return out
}

func TestJournal_ConcurrentAppendsChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if err := j.Append(fmt.Appendf(nil, `{"g":%d,"i":%d}`, g, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got := records(t, path)
	if len(got) != 800 {
		t.Fatalf("%d entries, want 800", len(got))
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r] = true
	}
	if len(seen) != 800 {
		t.Errorf("%d distinct records, want 800", len(seen))
	}
	if err := j.Append([]byte(`{}`)); err != ErrClosed {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
}

// Two Journals on one file stand for two processes: the flock orders
// their appends into one chain, each catching up with the other's.
func TestJournal_TwoWritersOneChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w, j := range []*Journal{a, b} {
		wg.Go(func() {
			for i := range 200 {
				if err := j.Append(fmt.Appendf(nil, `{"w":%d,"i":%d}`, w, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	a.Close()
	b.Close()
	if got := records(t, path); len(got) != 400 {
		t.Fatalf("%d entries, want 400", len(got))
	}
}

func TestJournal_ReopenContinuesAndDropsCutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, func() time.Time { return time.UnixMilli(1700000000000) })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := j.Append(fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	// A crash in the middle of a write leaves a line without its newline
	// where the entries end, before the zeros the file grew by.
	b, _ := os.ReadFile(path)
	end := bytes.IndexByte(b, 0)
	if end < 0 || bytes.Count(b[:end], []byte("\n")) != 3 {
		t.Fatalf("the entries end at %d of %d bytes: want 3 entries, then zeros", end, len(b))
	}
	f, _ := os.OpenFile(path, os.O_WRONLY, 0)
	f.WriteAt([]byte(`4 1700000000000 00ab {"cut`), int64(end))
	f.Close()
	j, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append([]byte(`{"i":3}`)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	got := records(t, path)
	want := []string{`{"i":0}`, `{"i":1}`, `{"i":2}`, `{"i":3}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records %v, want %v", got, want)
	}
	b, _ = os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("1 1700000000000 ")) || bytes.Contains(b, []byte("cut")) {
		t.Errorf("first line %q: want seq 1 and the clock's milliseconds, and the cut line gone", b[:30])
	}
}

func TestJournal_EachFromPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _ := Open(path, nil)
	for i := range 5 {
		j.Append(fmt.Appendf(nil, `{"i":%d}`, i))
	}
	j.Close()
	var next int64
	var n int
	Each(path, 0, func(e Entry) error {
		n++
		next = e.Next
		if n == 2 {
			return ErrStop
		}
		return nil
	})
	var rest []int64
	if err := Each(path, next, func(e Entry) error { rest = append(rest, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rest) != "[3 4 5]" {
		t.Errorf("after entry 2: %v, want [3 4 5]", rest)
	}
	if err := Each(filepath.Join(t.TempDir(), "none"), 0, func(Entry) error { t.Error("an entry of a missing file"); return nil }); err != nil {
		t.Errorf("missing journal: %v", err)
	}
}

func TestJournal_VerifyFindsTampering(t *testing.T) {
	build := func(t *testing.T) (string, [][]byte) {
		path := filepath.Join(t.TempDir(), "j")
		j, _ := Open(path, nil)
		for i := range 5 {
			j.Append(fmt.Appendf(nil, `{"i":%d}`, i))
		}
		j.Close()
		b, _ := os.ReadFile(path)
		return path, bytes.SplitAfter(b, []byte("\n"))[:5]
	}
	cases := []struct {
		name    string
		tamper  func(lines [][]byte) [][]byte
		wantSeq int64
	}{
		{"edited", func(l [][]byte) [][]byte { l[2] = bytes.Replace(l[2], []byte(`"i":2`), []byte(`"i":9`), 1); return l }, 3},
		{"deleted", func(l [][]byte) [][]byte { return append(l[:1], l[2:]...) }, 2},
		{"reordered", func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l }, 2},
		{"garbled", func(l [][]byte) [][]byte { l[3] = []byte("not an entry\n"); return l }, 4},
		{"renumbered", func(l [][]byte) [][]byte {
			// Deleting entry 2 and renumbering the rest still breaks the
			// chain: the hashes cover the seq and the entry before.
			l = append(l[:1], l[2:]...)
			for i := 1; i < len(l); i++ {
				l[i] = append(fmt.Appendf(nil, "%d", i+1), l[i][1:]...)
			}
			return l
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, lines := build(t)
			os.WriteFile(path, bytes.Join(c.tamper(lines), nil), 0o600)
			rep, err := Verify(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Break == nil || rep.Break.Seq != c.wantSeq {
				t.Errorf("break %+v, want at %d", rep.Break, c.wantSeq)
			}
		})
	}
	path, _ := build(t)
	if rep, err := Verify(path, nil); err != nil || rep.Break != nil || rep.Entries != 5 {
		t.Errorf("untouched: %+v %v", rep, err)
	}
}

func BenchmarkAppend(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "j"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	rec := bytes.Repeat([]byte("x"), 600)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Append(rec); err != nil {
				b.Error(err)
			}
		}
	})
}

// Under a steady load some record is always waiting for the next batch
// (the writers here pause between appends, each for its own time, as
// requests do, so that they do not all wait on one batch): the goroutine
// that leads a group commit must still get its own answer once its batch
// is durable, not when the load stops. No writer may fall far behind the
// others: by the time the busiest has appended 200 records, each has
// appended 20 (about 115 are expected of the slowest).
func TestJournal_LeaderReturnsUnderSteadyLoad(t *testing.T) {
	j, err := Open(filepath.Join(t.TempDir(), "j"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const writers, most, least = 32, 200, 20
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count [writers]int
		stop  = make(chan struct{})
		once  sync.Once
	)
	for w := range writers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := j.Append(fmt.Appendf(nil, `{"w":%d}`, w)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				count[w]++
				if count[w] == most {
					once.Do(func() { close(stop) })
				}
				mu.Unlock()
				time.Sleep(time.Duration(500+w*50) * time.Microsecond)
			}
		})
	}
	select {
	case <-stop:
	case <-time.After(30 * time.Second):
		once.Do(func() { close(stop) })
	}
	mu.Lock()
	final := count
	mu.Unlock()
	wg.Wait()
	for w, n := range final {
		if n < least {
			t.Errorf("writer %d appended %d records while the busiest appended %d (all: %v)", w, n, most, final)
		}
	}
}

// BenchmarkAppend_32Writers appends from 32 goroutines that pause between
// appends (0.5-2 ms, as requests do) and reports the p99 and the longest
// wait of an Append, in ms: go test ./fhir/journal -run '^$' -bench 32Writers
func BenchmarkAppend_32Writers(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "j"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	var (
		mu   sync.Mutex
		lats []time.Duration
		left = int64(b.N)
		wg   sync.WaitGroup
	)
	rec := []byte(`{"who":"bench","what":"Patient?identifier=x"}`)
	b.ResetTimer()
	for w := range 32 {
		wg.Go(func() {
			for {
				mu.Lock()
				if left <= 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				t0 := time.Now()
				if err := j.Append(rec); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lats = append(lats, d)
				mu.Unlock()
				time.Sleep(time.Duration(500+w*50) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lats)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lats[len(lats)*99/100]), "p99-ms")
	b.ReportMetric(ms(lats[len(lats)-1]), "max-ms")
}
