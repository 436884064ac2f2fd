package sqlite

import (
	"context"

	"github.com/cpis-fhir/cpis/fhir"
)

// Search implements fhir.Store.
func (s *Store) Search(ctx context.Context, q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	return nil, fhir.Errorf(fhir.IssueNotSupported, "search is not implemented yet")
}

// Reindex implements fhir.Store.
func (s *Store) Reindex(ctx context.Context, index func(typ string, body []byte) (*fhir.Index, error), progress func(done, total int)) error {
	return fhir.Errorf(fhir.IssueNotSupported, "reindex is not implemented yet")
}
