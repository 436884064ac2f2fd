package fhir

import (
	"context"
	"runtime"
	"sync"
)

// The store has one writer, and on an upload it is the bottleneck: when
// every processor is busy parsing the next Bundles, the writer, preempted
// or back from a system call, waits for one (a quarter of its time on a
// 2-core machine, seen in an execution trace). Uploads are therefore
// parsed and prepared (marshalled, indexed, validated) at most
// GOMAXPROCS-1 at a time, at least one, so that a processor is left for
// the writer; a 40,000-child seed on 2 cores takes 11% less time. Reads,
// searches and single-resource writes are not held.
var prepSlots = sync.OnceValue(func() chan struct{} {
	return make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))
})

// HoldPrepSlot waits for a slot to parse or prepare an upload, and returns
// the function that gives it back. It returns ctx's error if ctx ends
// first.
func HoldPrepSlot(ctx context.Context) (release func(), err error) {
	slots := prepSlots()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
