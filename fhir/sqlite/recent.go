package sqlite

import (
	"sync"

	"github.com/cpis-fhir/cpis/fhir"
)

// recentIndexes keeps the index rows of the versions committed last, by
// Seq, so that Changes (the subscription matcher, which reads the versions
// milliseconds after their commit) hands them over instead of the matcher
// extracting them again from the JSON (about 9 µs a version, on the same
// cores as the writers). Only committed versions go in (a rolled-back
// version's Seq may be given again), and an entry is used only for the
// version it was made for.
type recentIndexes struct {
	mu sync.RWMutex
	e  [recentSize]recentIndex
}

// recentSize is how many versions are kept: the matcher reads a commit's
// versions long before this many more commit.
const recentSize = 1024

type recentIndex struct {
	seq     int64
	typ, id string
	version int64
	idx     *fhir.Index
}

func (r *recentIndexes) add(vs []recentIndex) {
	if len(vs) == 0 {
		return
	}
	r.mu.Lock()
	for _, v := range vs {
		r.e[v.seq%recentSize] = v
	}
	r.mu.Unlock()
}

// fill sets the Index of each of rs that is kept.
func (r *recentIndexes) fill(rs []*fhir.Resource) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, x := range rs {
		if e := &r.e[x.Seq%recentSize]; e.seq == x.Seq && e.typ == x.Type && e.id == x.ID && e.version == x.VersionID {
			x.Index = e.idx
		}
	}
}
