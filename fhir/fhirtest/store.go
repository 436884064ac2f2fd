package fhirtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Clock is a fake clock for store tests. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// NewStoreFunc opens an empty store whose time comes from clock; the store
// is closed by the suite or by cleanup registered on tb.
type NewStoreFunc func(tb testing.TB, clock func() time.Time) fhir.Store

// RunStoreTests runs the fhir.Store conformance suite against stores made
// by newStore.
func RunStoreTests(t *testing.T, newStore NewStoreFunc) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	open := func(t *testing.T) (fhir.Store, *Clock) {
		c := NewClock(start)
		return newStore(t, c.Now), c
	}
	ctx := context.Background()

	t.Run("read unknown", func(t *testing.T) {
		s, _ := open(t)
		if _, err := s.Read(ctx, "Patient", "nope"); !fhir.IsNotFound(err) {
			t.Errorf("Read Patient/nope: err %v, want not-found", err)
		}
		if _, err := s.VRead(ctx, "Patient", "nope", 1); !fhir.IsNotFound(err) {
			t.Errorf("VRead Patient/nope/1: err %v, want not-found", err)
		}
	})

	t.Run("put read vread", func(t *testing.T) {
		s, clock := open(t)
		v1 := MustPut(t, s, "Patient", "p1", 1, `{"resourceType":"Patient","id":"p1","gender":"male"}`)
		clock.Add(time.Second)
		v2 := MustPut(t, s, "Patient", "p1", 2, `{"resourceType":"Patient","id":"p1","gender":"female"}`)
		if !v2.LastUpdated.After(v1.LastUpdated) {
			t.Errorf("lastUpdated v1 %v, v2 %v: want v2 later", v1.LastUpdated, v2.LastUpdated)
		}
		if v2.Seq <= v1.Seq {
			t.Errorf("seq v1 %d, v2 %d: want increasing", v1.Seq, v2.Seq)
		}
		got, err := s.Read(ctx, "Patient", "p1")
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		assertVersion(t, "Read Patient/p1", got, v2)
		old, err := s.VRead(ctx, "Patient", "p1", 1)
		if err != nil {
			t.Fatalf("VRead 1: %v", err)
		}
		assertVersion(t, "VRead Patient/p1/1", old, v1)
		if _, err := s.VRead(ctx, "Patient", "p1", 3); !fhir.IsNotFound(err) {
			t.Errorf("VRead Patient/p1/3: err %v, want not-found", err)
		}
		if _, err := s.Read(ctx, "Observation", "p1"); !fhir.IsNotFound(err) {
			t.Errorf("Read Observation/p1: err %v, want not-found (types are separate)", err)
		}
	})

	t.Run("delete marker", func(t *testing.T) {
		s, _ := open(t)
		MustPut(t, s, "Flag", "f1", 1, `{"resourceType":"Flag","id":"f1"}`)
		del := &fhir.Resource{Type: "Flag", ID: "f1", VersionID: 2, Method: fhir.MethodDelete}
		mustWrite(t, s, func(tx fhir.Tx) error { del.LastUpdated = tx.Now(); return tx.Put(del) })
		got, err := s.Read(ctx, "Flag", "f1")
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if !got.Deleted() || got.JSON != nil || got.VersionID != 2 {
			t.Errorf("Read deleted Flag/f1: deleted %v, json %q, version %d; want delete marker version 2", got.Deleted(), got.JSON, got.VersionID)
		}
		if v1, err := s.VRead(ctx, "Flag", "f1", 1); err != nil || v1.Deleted() {
			t.Errorf("VRead Flag/f1/1 after delete: %v, %v; want version 1", v1, err)
		}
	})

	t.Run("duplicate version rejected", func(t *testing.T) {
		s, _ := open(t)
		MustPut(t, s, "Patient", "p1", 1, `{"resourceType":"Patient","id":"p1"}`)
		err := s.Write(ctx, func(tx fhir.Tx) error {
			return tx.Put(&fhir.Resource{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: tx.Now(), Method: fhir.MethodUpdate, JSON: []byte(`{}`)})
		})
		if err == nil {
			t.Errorf("Put of an existing version: no error, want one")
		}
	})

	t.Run("failed write leaves nothing", func(t *testing.T) {
		s, _ := open(t)
		boom := errors.New("boom")
		err := s.Write(ctx, func(tx fhir.Tx) error {
			if err := tx.Put(newVersion(tx, "Patient", "a", 1)); err != nil {
				return err
			}
			if _, err := tx.Read("Patient", "a"); err != nil {
				return fmt.Errorf("own write not visible: %w", err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Write: err %v, want boom", err)
		}
		if _, err := s.Read(ctx, "Patient", "a"); !fhir.IsNotFound(err) {
			t.Errorf("Read after failed write: err %v, want not-found", err)
		}
	})

	t.Run("panicking write leaves nothing and store goes on", func(t *testing.T) {
		s, _ := open(t)
		err := s.Write(ctx, func(tx fhir.Tx) error {
			tx.Put(newVersion(tx, "Patient", "a", 1))
			panic("write function bug")
		})
		if err == nil {
			t.Fatalf("Write that panicked: no error")
		}
		if _, err := s.Read(ctx, "Patient", "a"); !fhir.IsNotFound(err) {
			t.Errorf("Read after panicked write: err %v, want not-found", err)
		}
		MustPut(t, s, "Patient", "b", 1, `{"resourceType":"Patient","id":"b"}`)
	})

	t.Run("concurrent writes are isolated and all commit", func(t *testing.T) {
		s, _ := open(t)
		const n = 64
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Write(ctx, func(tx fhir.Tx) error {
					if err := tx.Put(newVersion(tx, "Patient", fmt.Sprint("c", i), 1)); err != nil {
						return err
					}
					if i%4 == 0 {
						return errors.New("refused")
					}
					return nil
				})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			_, rerr := s.Read(ctx, "Patient", fmt.Sprint("c", i))
			switch {
			case i%4 == 0 && (err == nil || !fhir.IsNotFound(rerr)):
				t.Errorf("write %d failed on purpose: Write err %v, Read err %v; want error and not-found", i, err, rerr)
			case i%4 != 0 && (err != nil || rerr != nil):
				t.Errorf("write %d: Write err %v, Read err %v; want both nil", i, err, rerr)
			}
		}
	})

	t.Run("read-modify-write is serialised", func(t *testing.T) {
		s, _ := open(t)
		MustPut(t, s, "Patient", "hot", 1, `{"resourceType":"Patient","id":"hot"}`)
		const n = 50
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Write(ctx, func(tx fhir.Tx) error {
					cur, err := tx.Read("Patient", "hot")
					if err != nil {
						return err
					}
					return tx.Put(newVersion(tx, "Patient", "hot", cur.VersionID+1))
				})
				if err != nil {
					t.Errorf("Write: %v", err)
				}
			}()
		}
		wg.Wait()
		got, err := s.Read(ctx, "Patient", "hot")
		if err != nil || got.VersionID != n+1 {
			t.Errorf("after %d increments: version %v, err %v; want %d", n, got, err, n+1)
		}
	})

	t.Run("history", func(t *testing.T) {
		s, clock := open(t)
		var all []*fhir.Resource
		for i := range 5 {
			all = append(all, MustPut(t, s, "Patient", "p", int64(i+1), `{"resourceType":"Patient","id":"p"}`))
			all = append(all, MustPut(t, s, "Flag", fmt.Sprint("f", i), 1, `{"resourceType":"Flag"}`))
			clock.Add(time.Minute)
		}
		page, err := s.History(ctx, fhir.HistoryQuery{Count: 100})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		assertSeqs(t, "system history", page.Versions, reverse(all))

		inst, err := s.History(ctx, fhir.HistoryQuery{Type: "Patient", ID: "p", Count: 100})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		assertSeqs(t, "instance history", inst.Versions, reverse(filter(all, func(r *fhir.Resource) bool { return r.Type == "Patient" })))

		typ, err := s.History(ctx, fhir.HistoryQuery{Type: "Flag", Count: 100})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		assertSeqs(t, "type history", typ.Versions, reverse(filter(all, func(r *fhir.Resource) bool { return r.Type == "Flag" })))

		since := all[6].LastUpdated // the fourth minute
		sp, err := s.History(ctx, fhir.HistoryQuery{Since: since, Count: 100})
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		assertSeqs(t, "history since", sp.Versions, reverse(all[6:]))

		// Paging: pages of 3, newest first, neither skipping nor repeating.
		var got []*fhir.Resource
		q := fhir.HistoryQuery{Count: 3}
		for {
			p, err := s.History(ctx, q)
			if err != nil {
				t.Fatalf("History page: %v", err)
			}
			got = append(got, p.Versions...)
			if p.Next == 0 {
				break
			}
			q.Before = p.Next
			// A write between pages must not shift the pages already read.
			MustPut(t, s, "Flag", fmt.Sprint("late", q.Before), 1, `{"resourceType":"Flag"}`)
		}
		assertSeqs(t, "paged history", got, reverse(all))
	})

	t.Run("commit time never goes backwards", func(t *testing.T) {
		s, clock := open(t)
		a := MustPut(t, s, "Patient", "a", 1, `{"resourceType":"Patient"}`)
		clock.Add(-time.Hour)
		b := MustPut(t, s, "Patient", "b", 1, `{"resourceType":"Patient"}`)
		if b.LastUpdated.Before(a.LastUpdated) {
			t.Errorf("clock stepped back: lastUpdated %v after %v", b.LastUpdated, a.LastUpdated)
		}
	})

	t.Run("seq is gap-free", func(t *testing.T) {
		s, _ := open(t)
		a := MustPut(t, s, "Patient", "a", 1, `{"resourceType":"Patient"}`)
		s.Write(ctx, func(tx fhir.Tx) error {
			tx.Put(newVersion(tx, "Patient", "x", 1))
			return errors.New("rolled back")
		})
		b := MustPut(t, s, "Patient", "b", 1, `{"resourceType":"Patient"}`)
		if b.Seq != a.Seq+1 {
			t.Errorf("seq after a rolled-back write: %d then %d, want consecutive", a.Seq, b.Seq)
		}
	})

	t.Run("ready and close", func(t *testing.T) {
		s, _ := open(t)
		if err := s.Ready(ctx); err != nil {
			t.Errorf("Ready: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Write(ctx, func(tx fhir.Tx) error { return nil }); err == nil {
			t.Errorf("Write after Close: no error")
		}
		if err := s.Ready(ctx); err == nil {
			t.Errorf("Ready after Close: no error")
		}
	})
}

// MustPut writes one version of type/id with the body and returns it.
func MustPut(tb testing.TB, s fhir.Store, typ, id string, version int64, body string) *fhir.Resource {
	tb.Helper()
	r := &fhir.Resource{Type: typ, ID: id, VersionID: version, Method: fhir.MethodUpdate, JSON: []byte(body)}
	mustWrite(tb, s, func(tx fhir.Tx) error {
		r.LastUpdated = tx.Now()
		return tx.Put(r)
	})
	return r
}

func mustWrite(tb testing.TB, s fhir.Store, fn func(fhir.Tx) error) {
	tb.Helper()
	if err := s.Write(context.Background(), fn); err != nil {
		tb.Fatalf("Write: %v", err)
	}
}

func newVersion(tx fhir.Tx, typ, id string, v int64) *fhir.Resource {
	return &fhir.Resource{Type: typ, ID: id, VersionID: v, LastUpdated: tx.Now(), Method: fhir.MethodUpdate, JSON: []byte(`{"resourceType":"` + typ + `"}`)}
}

func assertVersion(t *testing.T, what string, got, want *fhir.Resource) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID || !got.LastUpdated.Equal(want.LastUpdated) ||
		got.Method != want.Method || string(got.JSON) != string(want.JSON) || got.Seq != want.Seq {
		t.Errorf("%s: got %+v (json %s), want %+v (json %s)", what, *got, got.JSON, *want, want.JSON)
	}
}

func assertSeqs(t *testing.T, what string, got, want []*fhir.Resource) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d versions, want %d", what, len(got), len(want))
	}
	for i := range got {
		assertVersion(t, fmt.Sprintf("%s[%d]", what, i), got[i], want[i])
	}
}

func reverse(rs []*fhir.Resource) []*fhir.Resource {
	out := make([]*fhir.Resource, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = r
	}
	return out
}

func filter(rs []*fhir.Resource, keep func(*fhir.Resource) bool) []*fhir.Resource {
	var out []*fhir.Resource
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
