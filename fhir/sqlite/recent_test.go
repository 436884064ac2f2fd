package sqlite_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestChanges_CarryCommittedIndexRows: Changes hands over the index rows a
// committed version was written with, and never those of a version whose
// savepoint was rolled back (its Seq is given again to the next version).
func TestChanges_CarryCommittedIndexRows(t *testing.T) {
	s := MustOpen(t, nil)
	ctx := context.Background()
	put := func(id string, idx *fhir.Index, fail bool) error {
		return s.Write(ctx, func(tx fhir.Tx) error {
			if err := tx.Put(&fhir.Resource{Type: "Basic", ID: id, VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate,
				JSON: []byte(`{"resourceType":"Basic","id":"` + id + `"}`), Index: idx}); err != nil {
				return err
			}
			if fail {
				return errors.New("rolled back")
			}
			return nil
		})
	}
	gone := &fhir.Index{Tokens: []fhir.IndexToken{{Param: "code", Code: "gone"}}}
	kept := &fhir.Index{Tokens: []fhir.IndexToken{{Param: "code", Code: "kept"}}}
	if err := put("rolled", gone, true); err == nil {
		t.Fatal("the failing write succeeded")
	}
	if err := put("b1", kept, false); err != nil {
		t.Fatal(err)
	}
	if err := put("b2", nil, false); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Changes(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].ID != "b1" || cs[1].ID != "b2" {
		t.Fatalf("changes %v, want b1 and b2", cs)
	}
	if cs[0].Index != kept {
		t.Errorf("b1's index %+v, want the rows it was written with (not the rolled-back version's)", cs[0].Index)
	}
	if cs[1].Index != nil {
		t.Errorf("b2 was written without index rows, got %+v", cs[1].Index)
	}
}
