package server

// The CP-IS plan lifecycle (DOMAIN.md rule 6), run by a scheduler inside
// cpis serve on start and then daily:
//
//   - Child plans (CPP, LAC) end at the 18th birthday: each such Flag,
//     CarePlan and CareTeam of a Patient who is 18 or over and still in
//     force gets status inactive (Flag, CareTeam) or completed (CarePlan)
//     and period.end = the 18th birthday, as a new version.
//   - Ended records (a CP-IS plan type whose period.end is more than the
//     retention period ago, 365 days unless configured) leave search
//     results and lookups: they are deleted, which keeps every version in
//     the history for audit.
//
// Several servers may share one store: a run first takes a lease, the
// resource Basic/cpis-lifecycle, in a write transaction (the store's
// writes are serialised, so one server wins); it records the day of the
// last completed run and who holds the lease until when. A server that
// finds the day done, or the lease held by another and not expired,
// skips the run.
// See README "CP-IS workflow".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// DefaultRetention is how long ended records stay visible.
const DefaultRetention = 365 * 24 * time.Hour

const (
	leaseType = "Basic"
	leaseID   = "cpis-lifecycle"
	// leaseTime bounds a run: a lease older than this is taken over.
	leaseTime = time.Hour
	leaseURL  = "https://fhir.cpis-fhir.org/StructureDefinition/lifecycle-lease"
)

// LifecycleResult says what one lifecycle run did.
type LifecycleResult struct {
	// Skipped is true when another server held the lease or the day's run
	// was done already.
	Skipped bool
	// Ended is the number of records ended at an 18th birthday; Removed
	// the number of ended records deleted after the retention period.
	Ended, Removed int
}

// planCategories is the category filter of the CP-IS plan types.
var planCategories = snomedSystem + "|" + planCPP + "," + snomedSystem + "|" + planLAC + "," + snomedSystem + "|" + planUnborn

// RunLifecycle runs the lifecycle once for the day of s's clock, as holder
// (a name for this server in the lease), unless another server holds the
// lease or the day's run is done (Skipped). It is safe to call from
// several servers at once.
func (s *Server) RunLifecycle(ctx context.Context, holder string) (LifecycleResult, error) {
	now := s.cfg.Now().UTC()
	day := now.Format(time.DateOnly)
	ok, err := s.takeLease(ctx, holder, day, now, false)
	if err != nil || !ok {
		return LifecycleResult{Skipped: true}, err
	}
	res := LifecycleResult{}
	if res.Ended, err = s.endAdultPlans(ctx, now); err != nil {
		return res, err
	}
	if res.Removed, err = s.removeEnded(ctx, now); err != nil {
		return res, err
	}
	_, err = s.takeLease(ctx, holder, day, now, true)
	return res, err
}

// StartLifecycle runs RunLifecycle now and then every 24 hours (checking
// hourly, so that a server that was down catches up) until ctx ends,
// logging each run's counts (never the records).
func (s *Server) StartLifecycle(ctx context.Context, holder string) {
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			res, err := s.RunLifecycle(ctx, holder)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("lifecycle run failed", "error", err)
			case err == nil && !res.Skipped:
				s.log.Info("lifecycle run", "ended_at_18", res.Ended, "removed_after_retention", res.Removed)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// lease is the lifecycle lease's state, kept in Basic/cpis-lifecycle.
type lease struct {
	Done   string // the day (YYYY-MM-DD) of the last completed run
	Holder string
	Until  time.Time
}

func leaseOf(r *fhir.Resource) lease {
	var b struct {
		Created   string `json:"created"`
		Extension []struct {
			URL       string `json:"url"`
			Extension []struct {
				URL           string `json:"url"`
				ValueString   string `json:"valueString"`
				ValueDateTime string `json:"valueDateTime"`
			} `json:"extension"`
		} `json:"extension"`
	}
	var l lease
	if r == nil || r.Deleted() || json.Unmarshal(r.JSON, &b) != nil {
		return l
	}
	l.Done = b.Created
	for _, e := range b.Extension {
		if e.URL != leaseURL {
			continue
		}
		for _, x := range e.Extension {
			switch x.URL {
			case "holder":
				l.Holder = x.ValueString
			case "until":
				l.Until, _ = time.Parse(time.RFC3339Nano, x.ValueDateTime)
			}
		}
	}
	return l
}

// takeLease takes the lease for the run of day (done false) or records
// the run as done and releases it (done true). ok is false when the day is
// done or another holder's lease has not expired.
func (s *Server) takeLease(ctx context.Context, holder, day string, now time.Time, done bool) (ok bool, err error) {
	err = s.store.Write(ctx, func(tx fhir.Tx) error {
		cur, err := tx.Read(leaseType, leaseID)
		if err != nil && !fhir.IsNotFound(err) {
			return err
		}
		l := leaseOf(cur)
		next := lease{Done: l.Done, Holder: holder, Until: now.Add(leaseTime)}
		if done {
			if l.Holder != holder {
				return nil // taken over meanwhile: its holder records the run
			}
			next = lease{Done: day, Holder: holder, Until: now}
		} else if l.Done >= day || (l.Holder != holder && l.Until.After(now)) {
			return nil
		}
		body := fmt.Sprintf(`{"resourceType":"Basic","id":%q,"code":{"text":"CP-IS plan lifecycle lease"},"created":%q,`+
			`"extension":[{"url":%q,"extension":[{"url":"holder","valueString":%q},{"url":"until","valueDateTime":%q}]}]}`,
			leaseID, next.Done, leaseURL, next.Holder, fhir.FormatInstant(next.Until))
		if next.Done == "" {
			body = strings.Replace(body, `"created":"",`, "", 1)
		}
		var version int64 = 1
		if cur != nil {
			version = cur.VersionID + 1
		}
		if _, err := s.putSystem(tx, []byte(body), leaseType, leaseID, version, fhir.MethodUpdate); err != nil {
			return err
		}
		ok = true
		return nil
	})
	return ok, err
}

// putSystem writes body as version of typ/id inside tx, as the service
// itself (no principal).
func (s *Server) putSystem(tx fhir.Tx, body []byte, typ, id string, version int64, method fhir.Method) (*fhir.Resource, error) {
	p, err := s.codec.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: %s is not valid: %w", typ, err)
	}
	now := tx.Now()
	p.Stamp(id, version, now)
	b, err := s.codec.Marshal(p)
	if err != nil {
		return nil, err
	}
	r := &fhir.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: now, Method: method, JSON: b}
	if r.Index, err = s.svc.Indexer.Index(typ, b); err != nil {
		return nil, err
	}
	if err := tx.Put(r); err != nil {
		return nil, err
	}
	return r, nil
}

// endAdultPlans ends the child plans of Patients aged 18 or over on now.
func (s *Server) endAdultPlans(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.AddDate(-18, 0, 0).Format(time.DateOnly)
	q, err := fhir.ParseSearch("Patient", url.Values{"birthdate": {"le" + cutoff}, "_count": {"200"}}, fhir.SearchOptions{Registry: s.registry, Strict: true, MaxCount: 1000})
	if err != nil {
		return 0, err
	}
	q.Total = fhir.TotalNone
	ended := 0
	var cursor fhir.Cursor
	for {
		page, err := s.store.Search(ctx, q, cursor, false)
		if err != nil {
			return ended, err
		}
		for _, pt := range page.Matches {
			n, err := s.endPlansOf(ctx, pt)
			if err != nil {
				return ended, err
			}
			ended += n
		}
		if page.Next == nil {
			return ended, nil
		}
		cursor = page.Next
	}
}

// planRecord is the part of a Flag, CarePlan or CareTeam the lifecycle
// reads.
type planRecord struct {
	Status   string        `json:"status"`
	Category []jsonConcept `json:"category"`
	Period   jsonPeriod    `json:"period"`
}

func (p *planRecord) childPlan() bool {
	for _, c := range p.Category {
		if code := c.code(snomedSystem); code == planCPP || code == planLAC {
			return true
		}
	}
	return false
}

// endedStatus is the status of an ended record of typ, and whether a
// record with status st is still in force.
func endedStatus(typ, st string) (ended string, inForce bool) {
	switch typ {
	case "CarePlan":
		return "completed", st == "active" || st == "draft" || st == "on-hold"
	case "CareTeam":
		return "inactive", st == "active" || st == "proposed" || st == "suspended"
	}
	return "inactive", st == "active"
}

// endPlansOf ends, in one transaction, the child plans of the adult pt
// that are in force, at pt's 18th birthday.
func (s *Server) endPlansOf(ctx context.Context, pt *fhir.Resource) (int, error) {
	var p patientRecord
	if json.Unmarshal(pt.JSON, &p) != nil || len(p.BirthDate) < 10 {
		return 0, nil // a partial birth date: the day of the birthday is unknown
	}
	birth, err := time.Parse(time.DateOnly, p.BirthDate[:10])
	if err != nil {
		return 0, nil
	}
	birthday := birth.AddDate(18, 0, 0).Format(time.DateOnly)
	// Most adults have nothing to end: look first without a write, so that
	// the daily run does not queue a transaction per Patient on the writer.
	if due, err := s.planEnds(readTx{ctx, s.store, s.cfg.Now}, pt, &p, birthday); err != nil || len(due) == 0 {
		return 0, err
	}
	n := 0
	err = s.store.Write(ctx, func(tx fhir.Tx) error {
		due, err := s.planEnds(tx, pt, &p, birthday)
		if err != nil {
			return err
		}
		for _, d := range due {
			if _, err := s.putSystem(tx, d.body, d.r.Type, d.r.ID, d.r.VersionID+1, fhir.MethodUpdate); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}

// planEnd is a child plan record to end and its ended body.
type planEnd struct {
	r    *fhir.Resource
	body []byte
}

// planEnds returns the child plans of pt (Flag, CarePlan, CareTeam, by
// reference or NHS number) that are to end at birthday, read through tx.
func (s *Server) planEnds(tx fhir.Tx, pt *fhir.Resource, p *patientRecord, birthday string) ([]planEnd, error) {
	var out []planEnd
	for _, typ := range []string{"Flag", "CarePlan", "CareTeam"} {
		or := []url.Values{{"subject": {pt.Ref()}}}
		if nhs := p.nhs(); nhs != "" {
			or = append(or, url.Values{"subject:identifier": {nhsNumberSystem + "|" + nhs}})
		}
		rs, err := s.sysSearch(tx, typ, url.Values{"category": {planCategories}, "_count": {"100"}}, or...)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			var rec planRecord
			if json.Unmarshal(r.JSON, &rec) != nil || !rec.childPlan() {
				continue
			}
			status, inForce := endedStatus(typ, rec.Status)
			end := rec.Period.End
			if len(end) > 10 {
				end = end[:10]
			}
			if !inForce {
				if end != "" && end <= birthday {
					continue // ended already
				}
				status = rec.Status // ended by its council: only the date is set
			}
			if end == "" || end > birthday {
				end = birthday
			}
			body, err := withStatusAndEnd(r.JSON, status, end)
			if err != nil {
				return nil, err
			}
			out = append(out, planEnd{r, body})
		}
	}
	return out, nil
}

// readTx reads and searches the committed state of a store through the
// fhir.Tx interface, for code that runs both before and inside a write;
// it cannot Put.
type readTx struct {
	ctx   context.Context
	store fhir.Store
	now   func() time.Time
}

func (t readTx) Read(typ, id string) (*fhir.Resource, error) { return t.store.Read(t.ctx, typ, id) }
func (t readTx) Now() time.Time                              { return t.now() }
func (t readTx) Put(*fhir.Resource) error {
	return errors.New("lifecycle: a read-only transaction cannot write")
}
func (t readTx) Search(q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	return t.store.Search(t.ctx, q, cursor, backward)
}

// withStatusAndEnd returns the resource body with status and period.end
// replaced (the other elements as they are; meta is dropped, the write
// stamps it again).
func withStatusAndEnd(body []byte, status, end string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	var period map[string]json.RawMessage
	if raw, ok := top["period"]; ok {
		if err := json.Unmarshal(raw, &period); err != nil {
			return nil, err
		}
	}
	if period == nil {
		period = map[string]json.RawMessage{}
	}
	period["end"], _ = json.Marshal(end)
	top["period"], _ = json.Marshal(period)
	top["status"], _ = json.Marshal(status)
	delete(top, "meta")
	return json.Marshal(top)
}

// removeEnded deletes the CP-IS records whose period ended before the
// retention period.
func (s *Server) removeEnded(ctx context.Context, now time.Time) (int, error) {
	retention := s.cfg.Retention
	if retention <= 0 {
		retention = DefaultRetention
	}
	cutoff := now.Add(-retention).Format(time.DateOnly)
	removed := 0
	for _, typ := range []string{"Flag", "CarePlan", "CareTeam"} {
		q, err := fhir.ParseSearch(typ, url.Values{"category": {planCategories}, "date": {"eb" + cutoff}, "_count": {"200"}},
			fhir.SearchOptions{Registry: s.registry, Strict: true, MaxCount: 1000})
		if err != nil {
			return removed, err
		}
		q.Total = fhir.TotalNone
		for {
			// Each page's records are deleted, so the next search starts
			// from the beginning again; a page that deletes nothing ends.
			page, err := s.store.Search(ctx, q, nil, false)
			if err != nil {
				return removed, err
			}
			n := 0
			err = s.store.Write(ctx, func(tx fhir.Tx) error {
				n = 0
				for _, m := range page.Matches {
					cur, err := tx.Read(m.Type, m.ID)
					if err != nil || cur.Deleted() || cur.VersionID != m.VersionID {
						continue // changed meanwhile: judged again on the next run
					}
					d := &fhir.Resource{Type: m.Type, ID: m.ID, VersionID: m.VersionID + 1, LastUpdated: tx.Now(), Method: fhir.MethodDelete}
					if err := tx.Put(d); err != nil {
						return err
					}
					n++
				}
				return nil
			})
			if err != nil {
				return removed, err
			}
			removed += n
			if n == 0 || page.Next == nil {
				break
			}
		}
	}
	return removed, nil
}
