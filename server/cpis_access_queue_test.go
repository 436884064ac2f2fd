package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
)

// TestAccessQueue_ReadsItsOwnAccesses checks that a lookup's access
// history, written by the queue after the answer, is there for the
// requests after it: with a window of an hour, the access-history search
// and the council's notifications find the lookup at once, while the
// lookups themselves do not wait for it.
func TestAccessQueue_ReadsItsOwnAccesses(t *testing.T) {
	w := newCPISWorldWith(t, server.Config{AccessWindow: time.Hour})
	ts := w.ts
	nhs := w.nhs[0]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")

	for range 3 {
		if n := len(getSearchset(t, ts, lookupQuery("Flag", nhs), bearer(w.cl)...).mode("match")); n != 1 {
			t.Fatalf("lookup: %d Flags, want 1", n)
		}
	}
	if n := len(getSearchset(t, ts, historyQuery(nhs), bearer(w.cl)...).mode("match")); n != 1 {
		t.Errorf("access history right after the lookups: %d entries, want 1 (the first look; the others are repeats)", n)
	}
	if n := len(w.communications(t, w.la, nhs)); n != 1 {
		t.Errorf("the council's notifications right after the lookups: %d, want 1", n)
	}
}

// TestAccessQueue_NoneLostInACrash checks that the access history of a
// lookup answered is written even when the server stops before its queue
// wrote it: a server that starts on the data folder writes it from the
// read trail, once.
func TestAccessQueue_NoneLostInACrash(t *testing.T) {
	w := newCPISWorldWith(t, server.Config{AccessWindow: time.Hour})
	ts := w.ts
	nhs := w.nhs[1]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	if n := len(getSearchset(t, ts, lookupQuery("CareTeam", nhs), bearer(w.cl)...).mode("match")); n != 1 {
		t.Fatalf("lookup: %d CareTeams, want 1", n)
	}
	// The crash: the store goes, the queue never wrote.
	ts.Store.Close()

	var ids []string // the access AuditEvents the read trail says are due
	err := journal.Each(sqlite.ReadAuditPath(ts.Path), 0, func(e journal.Entry) error {
		var r struct {
			Access *struct {
				Children []struct {
					NHS    string
					Groups []struct{ ID string }
				}
			}
		}
		if err := json.Unmarshal(e.Record, &r); err != nil || r.Access == nil {
			return err
		}
		for _, c := range r.Access.Children {
			for _, g := range c.Groups {
				if c.NHS == nhs {
					ids = append(ids, g.ID)
				}
			}
		}
		return nil
	})
	if err != nil || len(ids) != 1 {
		t.Fatalf("read trail: %v; %d access histories due, want 1", err, len(ids))
	}

	restart := func() (*sqlite.Store, *server.Server) {
		t.Helper()
		st, err := sqlite.Open(ts.Path, sqlite.Config{Now: ts.Clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		codec, err := fhir.NewCodec()
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(st, codec, server.Config{Now: ts.Clock.Now, AccessWindow: time.Hour,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return st, srv
	}
	ctx := context.Background()
	st, srv := restart()
	if _, err := st.Read(ctx, "AuditEvent", ids[0]); !fhir.IsNotFound(err) {
		t.Fatalf("before the queue ran, AuditEvent/%s: %v; want not found (the crash lost the queue)", ids[0], err)
	}
	srv.Close() // writes what it found
	ae, err := st.Read(ctx, "AuditEvent", ids[0])
	if err != nil || !strings.Contains(string(ae.JSON), nhs) {
		t.Fatalf("after the restart, AuditEvent/%s: %v", ids[0], err)
	}
	notes := func(st *sqlite.Store) int {
		page, err := st.Search(ctx, &fhir.Search{Type: "Communication", Count: 100, Total: fhir.TotalNone}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range page.Matches {
			if strings.Contains(string(r.JSON), nhs) {
				n++
			}
		}
		return n
	}
	if n := notes(st); n != 1 {
		t.Errorf("notifications about the child after the restart: %d, want 1", n)
	}
	st.Close()

	// Another start writes nothing twice.
	st, srv = restart()
	srv.Close()
	defer st.Close()
	if n := notes(st); n != 1 {
		t.Errorf("notifications after a second restart: %d, want 1", n)
	}
	if r, err := st.Read(ctx, "AuditEvent", ids[0]); err != nil || r.VersionID != 1 {
		t.Errorf("AuditEvent/%s after a second restart: %v; want version 1", ids[0], err)
	}
}

// TestAccessQueue_BacklogHoldsLookups checks that the queue's backlog is
// bounded: with room for one access history and a window of an hour, a
// second lookup that finds records is answered only once the first's
// history is in the store, so that a flood of such lookups cannot grow
// the queue without bound.
func TestAccessQueue_BacklogHoldsLookups(t *testing.T) {
	w := newCPISWorldWith(t, server.Config{AccessWindow: time.Hour, AccessBacklog: 1})
	ts := w.ts
	first, second := w.nhs[3], w.nhs[4]
	w.uploadChild(t, w.la, councilA, first, cpp, "2026-01-15", "", "2015-04-01")
	w.uploadChild(t, w.la, councilA, second, lac, "2026-02-15", "", "2016-04-01")
	for _, nhs := range []string{first, second} {
		if n := len(getSearchset(t, ts, lookupQuery("Flag", nhs), bearer(w.cl)...).mode("match")); n != 1 {
			t.Fatalf("lookup: %d Flags, want 1", n)
		}
	}
	if n := storedAccesses(t, ts, first); n != 1 {
		t.Errorf("the first child's access AuditEvents in the store when the second lookup was answered: %d, want 1", n)
	}
}

// storedAccesses counts the access AuditEvents about nhs in the store,
// read past the access barrier.
func storedAccesses(t *testing.T, ts *testServer, nhs string) int {
	t.Helper()
	page, err := ts.Store.Search(context.Background(), &fhir.Search{Type: "AuditEvent", Count: 100, Total: fhir.TotalNone}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range page.Matches {
		if strings.Contains(string(r.JSON), nhs) && strings.Contains(string(r.JSON), server.AccessTagSystem) {
			n++
		}
	}
	return n
}

// TestAccessQueue_InRequestForSharedStores checks that a server told that
// other processes share its store writes each lookup's access history in
// the lookup's own commit: it is in the store when the answer comes.
func TestAccessQueue_InRequestForSharedStores(t *testing.T) {
	w := newCPISWorldWith(t, server.Config{AccessInRequest: true, AccessWindow: time.Hour})
	ts := w.ts
	nhs := w.nhs[2]
	w.uploadChild(t, w.la, councilA, nhs, cpp, "2026-01-15", "", "2015-04-01")
	if n := len(getSearchset(t, ts, lookupQuery("Flag", nhs), bearer(w.cl)...).mode("match")); n != 1 {
		t.Fatalf("lookup: %d Flags, want 1", n)
	}
	if n := storedAccesses(t, ts, nhs); n != 1 {
		t.Errorf("access AuditEvents about the child in the store when the answer came: %d, want 1", n)
	}
}
