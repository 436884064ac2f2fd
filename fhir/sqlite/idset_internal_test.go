package sqlite

import (
	"strconv"
	"sync"
	"testing"
)

// TestIDSet_MergesKeepEveryValue adds values past several merges of the
// recent fingerprints into the sorted array, from concurrent goroutines
// while others look them up, and checks that every value added is found
// at once and afterwards, and that values never added are seldom found
// (a collision only sends a search on to SQL).
func TestIDSet_MergesKeepEveryValue(t *testing.T) {
	s := newIDSet()
	const writers, each = 4, mergeAt
	var wg sync.WaitGroup
	missing := make(chan string, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				v := strconv.Itoa(w*each + i)
				s.add("Patient", "identifier", "sys", v)
				if !s.has("Patient", "identifier", "sys", v) {
					missing <- v
					return
				}
			}
		}()
	}
	wg.Wait()
	close(missing)
	for v := range missing {
		t.Errorf("value %s not found right after its add", v)
	}
	if n := len(s.base.Load().fps); n < writers*each-mergeAt {
		t.Errorf("the sorted array holds %d fingerprints; the merges did not run", n)
	}
	for i := range writers * each {
		if !s.has("Patient", "identifier", "sys", strconv.Itoa(i)) {
			t.Fatalf("value %d not found after the merges", i)
		}
	}
	if s.has("Flag", "subject:identifier", "sys", "0") {
		t.Error("a value added under Patient identifier is found under Flag subject:identifier")
	}
	hits := 0
	for i := range 100000 {
		if s.has("Patient", "identifier", "sys", "absent-"+strconv.Itoa(i)) {
			hits++
		}
	}
	// 262,144 fingerprints of 32 bits: about 6 of 100,000 collide.
	if hits > 100 {
		t.Errorf("%d of 100,000 values never added were found", hits)
	}
}
