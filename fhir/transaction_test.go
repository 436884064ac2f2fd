package fhir_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

func newService(tb testing.TB) (*fhir.Service, *sqlite.Store) {
	tb.Helper()
	clock := fhirtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	st, err := sqlite.Open(filepath.Join(tb.TempDir(), "cpis.db"), sqlite.Config{Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	reg := fhir.NewSearchRegistry()
	return &fhir.Service{Store: st, Codec: codec, Indexer: fhir.NewIndexer(reg), Registry: reg}, st
}

func parseBody(tb testing.TB, svc *fhir.Service, body string) *fhir.Parsed {
	tb.Helper()
	p, err := svc.Codec.Parse([]byte(body))
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	return p
}

const nhsSys = "https://fhir.nhs.uk/Id/nhs-number"

func patient(nhs string) string {
	return `{"resourceType":"Patient","identifier":[{"system":"` + nhsSys + `","value":"` + nhs + `"}]}`
}

// TestBundle_OneCommit: everything a transaction writes has one
// lastUpdated and consecutive Seq numbers, in processing order (POST
// entries in request order), so the history is the outbox order.
func TestBundle_OneCommit(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":` + patient("9990000018") + `,"request":{"method":"POST","url":"Patient"}},
		{"resource":{"resourceType":"Flag","status":"active","code":{"text":"cp"},"subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Flag"}},
		{"resource":{"resourceType":"CareTeam","id":"ct1","subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"}},"request":{"method":"PUT","url":"CareTeam/ct1"}}]}`
	res, err := svc.Bundle(ctx, parseBody(t, svc, body), fhir.BundleOptions{BaseURL: "http://x/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for i, e := range res.Entries {
		if e.Status != 201 || e.Version == nil {
			t.Fatalf("entry %d: status %d, want 201 with a version", i, e.Status)
		}
		seqs = append(seqs, e.Version.Seq)
		if !e.Version.LastUpdated.Equal(res.Entries[0].Version.LastUpdated) {
			t.Errorf("entry %d lastUpdated %v, want the commit's %v", i, e.Version.LastUpdated, res.Entries[0].Version.LastUpdated)
		}
		if !strings.Contains(string(e.Version.JSON), `"lastUpdated":"`+fhir.FormatInstant(e.Version.LastUpdated)+`"`) {
			t.Errorf("entry %d JSON %s does not carry its lastUpdated", i, e.Version.JSON)
		}
	}
	if seqs[1] != seqs[0]+1 || seqs[2] != seqs[1]+1 {
		t.Errorf("seqs %v, want consecutive", seqs)
	}
	// The _lastUpdated index rows carry the commit time, not a
	// placeholder: the search at that millisecond finds all three.
	for _, typ := range []string{"Patient", "Flag", "CareTeam"} {
		q, err := fhir.ParseSearch(typ, url.Values{"_lastUpdated": {fhir.FormatInstant(res.Entries[0].Version.LastUpdated)}}, fhir.SearchOptions{Registry: svc.Registry})
		if err != nil {
			t.Fatal(err)
		}
		page, err := st.Search(ctx, q, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Matches) != 1 {
			t.Errorf("%s?_lastUpdated=<commit time>: %d matches, want 1", typ, len(page.Matches))
		}
	}
	// The Flag refers to the Patient the transaction created.
	if !strings.Contains(string(res.Entries[1].Version.JSON), `"reference":"Patient/`+res.Entries[0].Version.ID+`"`) {
		t.Errorf("Flag %s does not refer to Patient/%s", res.Entries[1].Version.JSON, res.Entries[0].Version.ID)
	}
}

// TestTxSearch_SeesOwnWrites: a search inside a write transaction sees
// the transaction's own uncommitted Put, and a failed transaction leaves
// nothing for later searches.
func TestTxSearch_SeesOwnWrites(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	q, err := fhir.ParseSearch("Patient", url.Values{"identifier": {nhsSys + "|9990000026"}}, fhir.SearchOptions{Registry: svc.Registry})
	if err != nil {
		t.Fatal(err)
	}
	var inside int
	err = st.Write(ctx, func(tx fhir.Tx) error {
		p := parseBody(t, svc, patient("9990000026"))
		p.Stamp("p1", 1, tx.Now())
		b, _ := svc.Codec.Marshal(p)
		idx, _ := svc.Indexer.Index("Patient", b)
		if err := tx.Put(&fhir.Resource{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodCreate, JSON: b, Index: idx}); err != nil {
			return err
		}
		page, err := tx.Search(q, nil, false)
		if err != nil {
			return err
		}
		inside = len(page.Matches)
		return fhir.Errorf(fhir.IssueInvalid, "roll back")
	})
	if err == nil {
		t.Fatal("Write: nil error, want the roll back")
	}
	if inside != 1 {
		t.Errorf("search inside the transaction: %d matches, want 1", inside)
	}
	page, err := st.Search(ctx, q, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Matches) != 0 {
		t.Errorf("search after the rolled back transaction: %d matches, want 0", len(page.Matches))
	}
}

// TestConditionalCreate_Service: no match creates, one match returns it,
// two fail with ErrMultipleMatches.
func TestConditionalCreate_Service(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	cond := "identifier=" + url.QueryEscape(nhsSys+"|9990000034")
	r1, created, err := svc.ConditionalCreate(ctx, parseBody(t, svc, patient("9990000034")), cond, "")
	if err != nil || !created {
		t.Fatalf("first: created %v, err %v; want created", created, err)
	}
	r2, created, err := svc.ConditionalCreate(ctx, parseBody(t, svc, patient("9990000034")), cond, "")
	if err != nil || created || r2.ID != r1.ID {
		t.Fatalf("second: created %v, id %s, err %v; want the first's %s", created, r2.ID, err, r1.ID)
	}
	if _, err := svc.Create(ctx, parseBody(t, svc, patient("9990000034"))); err != nil {
		t.Fatal(err)
	}
	_, _, err = svc.ConditionalCreate(ctx, parseBody(t, svc, patient("9990000034")), cond, "")
	if !errors.Is(err, fhir.ErrMultipleMatches) {
		t.Errorf("with two matches: err %v, want ErrMultipleMatches", err)
	}
}

// TestBundle_SearchEntryHook: BundleOptions.SearchEntry makes the search a
// search entry runs (here it adds a filter), in a batch and in a
// transaction; its outcome is the searchset's last entry and its error
// fails the entry.
func TestBundle_SearchEntryHook(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	for _, nhs := range []string{"9990000018", "9990000026"} {
		if _, err := svc.Create(ctx, parseBody(t, svc, patient(nhs))); err != nil {
			t.Fatal(err)
		}
	}
	hook := func(typ string, params url.Values, base string) (*fhir.Search, func(*fhir.SearchPage) (json.RawMessage, error), error) {
		if params.Has("refuse") {
			return nil, nil, fhir.Errorf(fhir.IssueInvalid, "refused")
		}
		params.Set("identifier", nhsSys+"|9990000026")
		q, err := fhir.ParseSearch(typ, params, fhir.SearchOptions{Registry: svc.Registry, BaseURL: base})
		return q, func(page *fhir.SearchPage) (json.RawMessage, error) {
			return json.RawMessage(`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"` +
				strconv.Itoa(len(page.Matches)) + ` found"}]}`), nil
		}, err
	}
	for _, typ := range []string{"batch", "transaction"} {
		body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[{"request":{"method":"GET","url":"Patient"}}]}`
		res, err := svc.Bundle(ctx, parseBody(t, svc, body), fhir.BundleOptions{BaseURL: "http://x/fhir", SearchEntry: hook})
		if err != nil {
			t.Fatal(err)
		}
		var sb struct {
			Entry []struct {
				Resource json.RawMessage
				Search   struct{ Mode string }
			}
		}
		if err := json.Unmarshal(res.Entries[0].Body, &sb); err != nil {
			t.Fatal(err)
		}
		if len(sb.Entry) != 2 || sb.Entry[0].Search.Mode != "match" || !strings.Contains(string(sb.Entry[0].Resource), "9990000026") ||
			sb.Entry[1].Search.Mode != "outcome" || !strings.Contains(string(sb.Entry[1].Resource), "1 found") {
			t.Errorf("%s: searchset %s, want the hook's one match and its outcome last", typ, res.Entries[0].Body)
		}
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?refuse=1"}}]}`
	res, err := svc.Bundle(ctx, parseBody(t, svc, body), fhir.BundleOptions{BaseURL: "http://x/fhir", SearchEntry: hook})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Entries[0].Err; e == nil || !strings.Contains(e.Error(), "refused") {
		t.Errorf("batch entry refused by the hook: error %v, want the hook's", e)
	}
}

// TestBundle_WaitsForAPrepSlot: while every slot for preparing uploads is
// held, a transaction waits; one whose request ends meanwhile fails with
// the context's error having written nothing, and once a slot is given
// back, a waiting one goes through.
func TestBundle_WaitsForAPrepSlot(t *testing.T) {
	svc, st := newService(t)
	var releases []func()
	for range fhir.PrepSlotsForTest() {
		r, err := fhir.HoldPrepSlot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"resource":` + patient("9990000018") + `,"request":{"method":"POST","url":"Patient"}}]}`
	run := func(ctx context.Context) chan error {
		p := parseBody(t, svc, body)
		done := make(chan error, 1)
		go func() {
			_, err := svc.Bundle(ctx, p, fhir.BundleOptions{BaseURL: "http://x/fhir"})
			done <- err
		}()
		return done
	}
	count := func() int {
		t.Helper()
		page, err := st.Search(context.Background(), &fhir.Search{Type: "Patient", Total: fhir.TotalAccurate}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := run(ctx)
	select {
	case err := <-waiting:
		t.Fatalf("transaction went through (err %v) while every slot was held", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("transaction whose request ended while waiting: %v; want context.Canceled", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d Patients after the ended request; want 0", n)
	}
	waiting = run(context.Background())
	releases[0]()
	releases = releases[1:]
	if err := <-waiting; err != nil {
		t.Fatalf("transaction once a slot was given back: %v", err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d Patients after the transaction; want 1", n)
	}
}

// markStore records whether each Write was marked large.
type markStore struct {
	fhir.Store
	marks []bool
}

func (m *markStore) Write(ctx context.Context, fn func(fhir.Tx) error) error {
	m.marks = append(m.marks, fhir.IsLargeWrite(ctx))
	return m.Store.Write(ctx, fn)
}

// TestBundle_LargeWriteMark: a transaction writing LargeWriteEntries or
// more entries marks its write large (the store may commit small writes
// queued with it first); a smaller one, and a single create, do not.
func TestBundle_LargeWriteMark(t *testing.T) {
	svc, st := newService(t)
	ms := &markStore{Store: st}
	svc.Store = ms
	ctx := context.Background()
	serial := 100
	bundle := func(n int) string {
		var es []string
		for len(es) < n {
			serial++
			if nhs, ok := fhirtest.NHSNumber(serial); ok {
				es = append(es, `{"resource":`+patient(nhs)+`,"request":{"method":"POST","url":"Patient"}}`)
			}
		}
		return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(es, ",") + `]}`
	}
	for _, n := range []int{fhir.LargeWriteEntries - 1, fhir.LargeWriteEntries} {
		if _, err := svc.Bundle(ctx, parseBody(t, svc, bundle(n)), fhir.BundleOptions{BaseURL: "http://x/fhir"}); err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
	}
	if _, err := svc.Create(ctx, parseBody(t, svc, patient("9990000018"))); err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, false}; fmt.Sprint(ms.marks) != fmt.Sprint(want) {
		t.Errorf("writes marked large %v, want %v (%d entries, %d, one create)", ms.marks, want, fhir.LargeWriteEntries-1, fhir.LargeWriteEntries)
	}
}
