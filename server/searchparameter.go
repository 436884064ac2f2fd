package server

// SearchParameter resources written through the API define search
// parameters at run time. A definition the server cannot use is refused
// with 422 before anything is stored. An active one is indexed at once for
// new writes; a background reindex then brings the stored resources up to
// date (progress goes to the log), and only then does the parameter become
// searchable and appear in the CapabilityStatement. At start the server
// loads the stored definitions again; when the index already holds them
// (the index version records which ones) they are searchable at once,
// otherwise after a background reindex.
// See https://hl7.org/fhir/R4/searchparameter.html.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// indexVersioner is the part of a store that records which index rules
// built its index (fhir/sqlite has it).
type indexVersioner interface {
	IndexVersion(ctx context.Context) (string, error)
	SetIndexVersion(ctx context.Context, v string) error
}

// searchParams manages the run-time search parameters. It is safe for
// concurrent use.
type searchParams struct {
	s  *Server
	mu sync.Mutex // serialises reindexes
	wg sync.WaitGroup
}

// checkSearchParameter refuses a SearchParameter body the server could not
// search with.
func (s *Server) checkSearchParameter(body []byte) error {
	_, _, _, err := fhir.SearchParamFromResource(body)
	return err
}

// searchParameterWritten registers the definition stored as r and starts
// the reindex that makes it searchable.
func (s *Server) searchParameterWritten(r *fhir.Resource) {
	p, base, active, err := fhir.SearchParamFromResource(r.JSON)
	if err != nil || !active {
		return
	}
	s.registry.Add(p, base...)
	s.sp.reindexThenActivate([]*fhir.SearchParam{p})
}

// loadSearchParameters registers the stored SearchParameter resources.
func (s *Server) loadSearchParameters(ctx context.Context) error {
	spType, _ := fhir.LookupSearchParam("SearchParameter", "status")
	q := &fhir.Search{Type: "SearchParameter", Count: 1000, Total: fhir.TotalNone}
	if spType != nil {
		q.Filters = []fhir.Filter{{Param: spType, Values: []fhir.Value{{Code: "active"}}}}
	}
	var added []*fhir.SearchParam
	var cursor fhir.Cursor
	for {
		page, err := s.store.Search(ctx, q, cursor, false)
		if err != nil {
			return fmt.Errorf("load SearchParameters: %w", err)
		}
		for _, r := range page.Matches {
			p, base, active, err := fhir.SearchParamFromResource(r.JSON)
			if err != nil || !active {
				continue
			}
			s.registry.Add(p, base...)
			added = append(added, p)
		}
		if page.Next == nil {
			break
		}
		cursor = page.Next
	}
	if len(added) == 0 {
		return nil
	}
	if iv, ok := s.store.(indexVersioner); ok {
		if v, err := iv.IndexVersion(ctx); err == nil && v == s.indexVersion() {
			for _, p := range added {
				s.registry.Activate(p)
			}
			s.rebuildCapability()
			return nil
		}
	}
	s.sp.reindexThenActivate(added)
	return nil
}

// indexVersion names the index rules in force: the extraction version and
// the run-time parameters being indexed.
func (s *Server) indexVersion() string {
	params, _ := s.registry.Added()
	if len(params) == 0 {
		return fhir.IndexVersion
	}
	var keys []string
	for _, p := range params {
		keys = append(keys, p.URL+"\x00"+p.Name+"\x00"+string(p.Type)+"\x00"+p.Expression)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k + "\x01"))
	}
	return fhir.IndexVersion + "+" + hex.EncodeToString(h.Sum(nil))[:16]
}

// reindexThenActivate reindexes in the background, then activates ps.
func (sp *searchParams) reindexThenActivate(ps []*fhir.SearchParam) {
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		s := sp.s
		ctx := context.Background()
		start, last := time.Now(), time.Time{}
		ix := fhir.NewIndexer(s.registry)
		err := s.store.Reindex(ctx, ix.Index, func(done, total int) {
			if time.Since(last) > 2*time.Second || done == total {
				last = time.Now()
				s.log.Info("reindex for new search parameters", "done", done, "total", total)
			}
		})
		if err != nil {
			s.log.Error("reindex for new search parameters failed; they stay unsearchable", "error", err)
			return
		}
		for _, p := range ps {
			s.registry.Activate(p)
		}
		if iv, ok := s.store.(indexVersioner); ok {
			if err := iv.SetIndexVersion(ctx, s.indexVersion()); err != nil {
				s.log.Error("record index version", "error", err)
			}
		}
		s.rebuildCapability()
		s.log.Info("search parameters searchable", "count", len(ps), "duration_ms", time.Since(start).Milliseconds())
	}()
}

// WaitIndexing waits for background reindexes to finish.
func (s *Server) WaitIndexing() { s.sp.wg.Wait() }
