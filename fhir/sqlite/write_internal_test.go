package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestWrite_OneCommitFailures queues writes behind one the writer is
// held in, so that they share the next commit, and makes some of them
// fail or panic after a Put: the first of that commit (which runs without
// a savepoint), one in the middle and the last. Each failed write leaves
// nothing, and every other write of the commit is kept.
func TestWrite_OneCommitFailures(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "cpis.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	boom := errors.New("boom")
	code, ok := fhir.LookupSearchParam("Basic", "code")
	if !ok {
		t.Fatal("no search parameter code on Basic")
	}
	put := func(x fhir.Tx, id string) error {
		return x.Put(&fhir.Resource{Type: "Basic", ID: id, VersionID: 1, LastUpdated: x.Now(), Method: fhir.MethodCreate,
			JSON:  []byte(`{"resourceType":"Basic","id":"` + id + `"}`),
			Index: &fhir.Index{Tokens: []fhir.IndexToken{{Param: "code", Code: id}}}})
	}
	for _, first := range []string{"fails", "panics"} {
		t.Run("first "+first, func(t *testing.T) {
			hold, held := make(chan struct{}), make(chan struct{})
			holder := make(chan error, 1)
			go func() {
				holder <- s.Write(ctx, func(x fhir.Tx) error {
					close(held)
					<-hold
					return put(x, first+"-held")
				})
			}()
			<-held
			// "" is kept; "error" and "panic" come after the write's Put.
			outcomes := []string{"error", "", "", "error", "", "error"}
			if first == "panics" {
				outcomes[0] = "panic"
			}
			errs := make([]chan error, len(outcomes))
			for i, o := range outcomes {
				id := fmt.Sprintf("%s-%d", first, i)
				errs[i] = make(chan error, 1)
				go func() {
					errs[i] <- s.Write(ctx, func(x fhir.Tx) error {
						if err := put(x, id); err != nil {
							return err
						}
						switch o {
						case "error":
							return boom
						case "panic":
							panic("a bug in a write function")
						}
						return nil
					})
				}()
				// In order, and all queued before the writer is let go.
				for len(s.reqs) < i+1 {
					time.Sleep(time.Millisecond)
				}
			}
			close(hold)
			if err := <-holder; err != nil {
				t.Fatalf("held write: %v", err)
			}
			for i, o := range outcomes {
				id := fmt.Sprintf("%s-%d", first, i)
				werr := <-errs[i]
				_, rerr := s.Read(ctx, "Basic", id)
				page, serr := s.Search(ctx, &fhir.Search{Type: "Basic", Filters: []fhir.Filter{{Param: code, Values: []fhir.Value{{Code: id}}}}, Count: 10}, nil, false)
				if serr != nil {
					t.Fatalf("search %s: %v", id, serr)
				}
				switch {
				case o == "" && (werr != nil || rerr != nil || len(page.Matches) != 1):
					t.Errorf("write %d, kept: Write %v, Read %v, %d found by its index row; want nil, nil, 1", i, werr, rerr, len(page.Matches))
				case o == "error" && (!errors.Is(werr, boom) || !fhir.IsNotFound(rerr) || len(page.Matches) != 0):
					t.Errorf("write %d, failed: Write %v, Read %v, %d found by its index row; want boom, not found, 0", i, werr, rerr, len(page.Matches))
				case o == "panic" && (werr == nil || !fhir.IsNotFound(rerr) || len(page.Matches) != 0):
					t.Errorf("write %d, panicked: Write %v, Read %v, %d found by its index row; want an error, not found, 0", i, werr, rerr, len(page.Matches))
				}
			}
		})
	}
}
