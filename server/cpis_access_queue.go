package server

// The access queue: how a lookup's access history is written after the
// lookup is answered, without losing any of it.
//
//   - The request's read-trail record (the journal, durable before the
//     answer) carries what the access history is made of: the viewer,
//     when, and each child's councils and records seen, with the ids of
//     their AuditEvents (accessIntent). That record is what is
//     acknowledged.
//   - The queue writes the access histories of the lookups answered in a
//     window (Config.AccessWindow) in commits of up to maxAccessCommit:
//     their AuditEvents, the viewers' PractitionerRoles, the notifications
//     due, and a write-trail record of what each wrote. On the national lookup bench (README
//     "Performance") one commit per flagged lookup cost about 1.3 ms of
//     the writer's time, and each commit costs the readers their page
//     caches and the checkpointer a round. Its backlog is bounded
//     (Config.AccessBacklog): past it, a lookup that finds records waits
//     in begin, before its record is appended.
//   - What it has written is marked (the setting accessMarkKey: a read-trail
//     position before which every access history is written). A server that
//     starts writes those after the mark that are not yet written (an
//     AuditEvent id found is written), so a crash loses none.
//   - A request that may read what the queue writes (anything but a GET of
//     a lookup's types without _include or _revinclude) waits until the
//     access histories answered before it are written (accessBarrier), so
//     a client reads its own accesses.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/gin-gonic/gin"
)

// accessIntent is an accessRead as the read-trail record keeps it.
type accessIntent struct {
	At       string        `json:"at"`
	Viewer   string        `json:"viewer"`
	SDSRole  string        `json:"sdsRole,omitempty"`
	Site     string        `json:"site,omitempty"`
	Children []intentChild `json:"children"`
}

type intentChild struct {
	NHS    string        `json:"nhs"`
	Groups []intentGroup `json:"groups"`
}

type intentGroup struct {
	ODS     string         `json:"ods,omitempty"`
	ID      string         `json:"id"`
	Records []intentRecord `json:"records"`
}

type intentRecord struct {
	Ref  string `json:"ref"`
	Plan string `json:"plan,omitempty"`
}

func (a *accessRead) intent() *accessIntent {
	in := &accessIntent{At: fhir.FormatInstant(a.at), Viewer: a.viewer, SDSRole: a.sdsRole, Site: a.site}
	for _, ch := range a.children {
		c := intentChild{NHS: ch.nhs}
		for _, g := range ch.groups {
			ig := intentGroup{ODS: g.ods, ID: g.id}
			for _, r := range g.records {
				ig.Records = append(ig.Records, intentRecord{Ref: r.ref, Plan: r.plan})
			}
			c.Groups = append(c.Groups, ig)
		}
		in.Children = append(in.Children, c)
	}
	return in
}

// read returns the accessRead the intent keeps (to be completed).
func (in *accessIntent) read() (*accessRead, error) {
	at, err := time.Parse(time.RFC3339Nano, in.At)
	if err != nil {
		return nil, err
	}
	a := &accessRead{viewer: in.Viewer, sdsRole: in.SDSRole, site: in.Site, at: at}
	for _, c := range in.Children {
		ch := &childAccess{nhs: c.NHS, byODS: map[string]*accessGroup{}}
		for _, ig := range c.Groups {
			if !fhir.ValidID(ig.ID) {
				return nil, errors.New("access intent: a group without an id")
			}
			g := &accessGroup{ods: ig.ODS, id: ig.ID}
			for _, r := range ig.Records {
				g.records = append(g.records, seenRecord{ref: r.Ref, plan: r.Plan})
			}
			ch.groups = append(ch.groups, g)
			ch.byODS[g.ods] = g
		}
		a.children = append(a.children, ch)
	}
	return a, nil
}

// accessItem is one request's access history waiting to be written.
type accessItem struct {
	rec   auditRecord // the request's record: who, which request
	read  *accessRead
	tries int
	done  bool // counted in accessQueue.written
}

// accessMarkKey is the store setting of the read-trail position before
// which every access history is written.
const accessMarkKey = "access-history-mark"

// accessMarkEvery is how often at most the mark is written.
const accessMarkEvery = 5 * time.Second

// accessStore is what the queue needs of the store besides fhir.Store.
type accessStore interface {
	Setting(ctx context.Context, key string) ([]byte, error)
	PutSetting(ctx context.Context, key string, value []byte) error
	ReadAuditPath() string
	ReadAuditEnd() int64
}

// accessQueue is the access histories answered and not yet written.
type accessQueue struct {
	s      *Server
	st     accessStore
	window time.Duration
	// backlog bounds the access histories answered and not yet written:
	// a request that would pass it waits in begin, before its record is
	// appended, until the queue has written enough.
	backlog int

	mu    sync.Mutex
	items []*accessItem
	// inflight holds, for each request between begin and end, the read
	// trail's end when it began: its record is after that.
	inflight map[uint64]int64
	ticket   uint64
	enqueued uint64 // items ever queued
	written  uint64 // items ever taken and tried once (in queue order)
	hurry    bool   // a barrier or a full backlog waits: no window
	started  bool
	closed   bool
	wake     chan struct{} // cap 1
	done     chan struct{} // closed when the loop ends
	progress *sync.Cond    // on mu: written changed or the loop ended
	// safe is the read-trail position before which every access history
	// is written; marked the one last written, at markedAt. Owned by the
	// loop.
	safe, marked int64
	markedAt     time.Time
	// holdMark stops the mark where it is: an item given up as the queue
	// closed is after it, for the next start to write.
	holdMark bool
}

// maxAccessTries is how many times the queue tries to write an access
// history before it logs it as not written (its intent stays in the read
// trail).
const maxAccessTries = 5

// defaultAccessBacklog is the most access histories answered and not yet
// written, unless Config.AccessBacklog says otherwise. The national load
// stays far below it; a flood of lookups that find records (every lookup
// of a bench with --hits 1 does) reaches it within seconds, because the
// queue writes a few hundred a second on two cores, and would otherwise
// grow the heap without bound and make a request that waits for the
// queue (accessBarrier) wait for the whole backlog. At 1024, a window of
// 3 s holds 340 lookups that find records a second without waiting.
const defaultAccessBacklog = 1024

// maxAccessCommit is the most access histories one commit of the queue
// writes, so that a large backlog does not hold the writer, and the
// writes queued behind it, for long.
const maxAccessCommit = 256

func newAccessQueue(s *Server, st accessStore, window time.Duration, backlog int) *accessQueue {
	if backlog <= 0 {
		backlog = defaultAccessBacklog
	}
	q := &accessQueue{s: s, st: st, window: window, backlog: backlog, wake: make(chan struct{}, 1), done: make(chan struct{}), safe: -1, marked: -1,
		inflight: map[uint64]int64{}}
	q.progress = sync.NewCond(&q.mu)
	return q
}

// begin is called before a request appends a record with an intent; the
// ticket it returns goes to end. While the backlog is full it waits, and
// hurries the queue past its window, so that lookups that find records
// are answered no faster than their histories are written.
func (q *accessQueue) begin() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.started && !q.closed && int(q.enqueued-q.written)+len(q.inflight) >= q.backlog && !q.stopped() {
		q.hurry = true
		q.poke()
		q.progress.Wait()
	}
	q.ticket++
	q.inflight[q.ticket] = q.st.ReadAuditEnd()
	return q.ticket
}

// end is called once the record of ticket t is durable (it) or not (nil).
func (q *accessQueue) end(t uint64, it *accessItem) {
	q.mu.Lock()
	delete(q.inflight, t)
	if it != nil {
		q.push(it)
	}
	q.progress.Broadcast() // a sync may wait for t
	q.mu.Unlock()
	if it != nil {
		q.poke()
	}
}

// push queues it, starting the loop the first time. It holds mu.
func (q *accessQueue) push(it *accessItem) {
	q.items = append(q.items, it)
	q.enqueued++
	if !q.started {
		q.started = true
		go q.loop()
	}
}

func (q *accessQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pending reports whether an access history answered may not be written
// yet.
func (q *accessQueue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight) > 0 || q.enqueued > q.written
}

// sync waits until the queue has tried to write the access histories of
// the requests answered so far (one that failed is tried again later,
// failed), or ctx ends. Requests that begin meanwhile do not hold it.
func (q *accessQueue) sync(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.progress.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	last := q.ticket
	for q.appending(last) && ctx.Err() == nil { // their items are coming
		q.progress.Wait()
	}
	target := q.enqueued
	if q.written < target {
		q.hurry = true
		q.poke()
	}
	for q.written < target && ctx.Err() == nil && !q.stopped() {
		q.progress.Wait()
	}
	return ctx.Err()
}

// appending reports whether a request whose ticket is last or before is
// between begin and end. It holds mu.
func (q *accessQueue) appending(last uint64) bool {
	for t := range q.inflight {
		if t <= last {
			return true
		}
	}
	return false
}

func (q *accessQueue) stopped() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// close writes what is queued and stops the loop.
func (q *accessQueue) close() {
	q.mu.Lock()
	q.closed = true
	started := q.started
	q.mu.Unlock()
	if started {
		q.poke()
		<-q.done
	}
}

func (q *accessQueue) hurried() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.hurry || q.closed
}

func (q *accessQueue) loop() {
	defer func() {
		q.mu.Lock()
		close(q.done)
		q.progress.Broadcast()
		q.mu.Unlock()
	}()
	var retry []*accessItem
	for {
		q.mu.Lock()
		idle := len(q.items) == 0 && len(retry) == 0
		closed := q.closed
		q.mu.Unlock()
		if idle {
			if closed {
				q.writeMark(true)
				return
			}
			t := time.NewTimer(accessMarkEvery)
			select {
			case <-q.wake:
			case <-t.C:
				q.writeMark(false)
			}
			t.Stop()
			continue
		}
		if len(retry) > 0 {
			q.pause(time.Second)
		} else {
			q.pause(q.window) // gather a window's lookups into few commits
		}
		q.mu.Lock()
		items := append(retry, q.items...)
		q.items, q.hurry = nil, false
		// Every intent before this position is in hand or written: the
		// records of the requests still appending are after it.
		safe := q.st.ReadAuditEnd()
		for _, p := range q.inflight {
			safe = min(safe, p)
		}
		closing := q.closed
		q.mu.Unlock()
		retry = q.write(items, closing)
		if len(retry) == 0 && !q.holdMark {
			q.safe = safe
		}
		q.writeMark(false)
	}
}

// pause waits d, or less when a barrier waits or the queue closes.
func (q *accessQueue) pause(d time.Duration) {
	deadline := time.Now().Add(d)
	for !q.hurried() {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		t := time.NewTimer(left)
		select {
		case <-t.C:
		case <-q.wake:
		}
		t.Stop()
	}
}

// writeMark writes the safe position when it moved, at most every
// accessMarkEvery unless now.
func (q *accessQueue) writeMark(now bool) {
	if q.safe < 0 || q.safe == q.marked || (!now && time.Since(q.markedAt) < accessMarkEvery) {
		return
	}
	if err := q.st.PutSetting(context.Background(), accessMarkKey, []byte(strconv.FormatInt(q.safe, 10))); err != nil {
		q.s.log.Warn("access history mark not written", "error", err)
		return
	}
	q.marked, q.markedAt = q.safe, time.Now()
}

// write writes items in commits of at most maxAccessCommit, in order,
// counting each commit's items as tried once it is done, so that a
// request waiting in begin or sync goes on as soon as its part is
// written; it returns those to try again.
func (q *accessQueue) write(items []*accessItem, closing bool) (retry []*accessItem) {
	ctx := context.Background()
	vc := newViewerCache()
	for len(items) > 0 {
		chunk := items[:min(len(items), maxAccessCommit)]
		items = items[len(chunk):]
		var ready []*accessItem
		for _, it := range chunk {
			if it.read.roleRef == "" {
				if err := q.s.completeAccess(ctx, it.read, vc); err != nil {
					retry = q.failed(retry, it, err, closing)
					continue
				}
			}
			ready = append(ready, it)
		}
		if len(ready) > 0 {
			retry = q.writeCommit(ready, retry, closing)
		}
		q.tried(chunk)
	}
	return retry
}

// tried counts the items tried for the first time in written.
func (q *accessQueue) tried(items []*accessItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range items {
		if !it.done {
			it.done = true
			q.written++
		}
	}
	q.progress.Broadcast()
}

// writeCommit writes items in one commit, or, when that fails, one by
// one; it returns retry with those to try again added.
func (q *accessQueue) writeCommit(ready, retry []*accessItem, closing bool) []*accessItem {
	ctx := context.Background()
	err := q.s.store.Write(ctx, func(tx fhir.Tx) error {
		for _, it := range ready {
			if err := q.s.writeQueued(tx, it); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return retry
	}
	if len(ready) == 1 {
		return q.failed(retry, ready[0], err, closing)
	}
	for _, it := range ready {
		if err := q.s.store.Write(ctx, func(tx fhir.Tx) error { return q.s.writeQueued(tx, it) }); err != nil {
			retry = q.failed(retry, it, err, closing)
		}
	}
	return retry
}

// failed counts a failed try of it: it is tried again later, or, after
// maxAccessTries or when the queue is closing, logged (by request id) and
// given up: its intent stays in the read trail, and a server that
// starts on the data folder tries again while the mark is before it.
func (q *accessQueue) failed(retry []*accessItem, it *accessItem, err error, closing bool) []*accessItem {
	it.tries++
	if it.tries < maxAccessTries && !closing {
		return append(retry, it)
	}
	q.s.log.Error("access history not written", "request_id", it.rec.RequestID, "error", err)
	if closing {
		q.holdMark = true // the next start tries again
	}
	return retry
}

// writeQueued writes it inside tx: its access history (unless already
// written, as when a start writes what a crash left), then the write-trail
// record of the request's writes.
func (s *Server) writeQueued(tx fhir.Tx, it *accessItem) error {
	al, ok := tx.(txAuditLog)
	if !ok {
		return fhir.Errorf(fhir.IssueException, "the store cannot append to the audit trail in a write")
	}
	for _, ch := range it.read.children {
		for _, g := range ch.groups {
			if _, err := tx.Read("AuditEvent", g.id); err == nil {
				return nil // written before
			} else if !fhir.IsNotFound(err) {
				return err
			}
		}
	}
	written, err := s.writeAccess(tx, it.read)
	if err != nil {
		return err
	}
	r := it.rec
	r.Interaction += ":access-history"
	r.Time, r.Status, r.Written, r.Access = fhir.FormatInstant(s.cfg.Now()), 0, written, nil
	b, err := json.Marshal(&r)
	if err != nil {
		return err
	}
	return al.AppendAudit(b)
}

// recover queues the access histories the read trail holds after the
// mark that may not be written; with no mark yet, it marks the trail's
// end (nothing before it was queued).
func (q *accessQueue) recover(ctx context.Context) error {
	v, err := q.st.Setting(ctx, accessMarkKey)
	if err != nil {
		return err
	}
	if v == nil {
		return q.st.PutSetting(ctx, accessMarkKey, []byte(strconv.FormatInt(q.st.ReadAuditEnd(), 10)))
	}
	from, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || from < 0 {
		from = 0
	}
	if end := q.st.ReadAuditEnd(); from > end {
		from = 0 // not this trail's position
	}
	var found []*accessItem
	last := from
	err = journal.Each(q.st.ReadAuditPath(), from, func(e journal.Entry) error {
		last = e.Next
		if !bytes.Contains(e.Record, []byte(`"access":`)) {
			return nil
		}
		var r auditRecord
		if json.Unmarshal(e.Record, &r) != nil || r.Access == nil {
			return nil
		}
		a, err := r.Access.read()
		if err != nil {
			q.s.log.Error("access history in the read trail not readable", "seq", e.Seq, "error", err)
			return nil
		}
		r.Access = nil
		found = append(found, &accessItem{rec: r, read: a})
		return nil
	})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		q.safe = last
		return nil
	}
	q.s.log.Info("access histories to check after a restart", "count", len(found))
	q.mu.Lock()
	for _, it := range found {
		q.push(it)
	}
	q.mu.Unlock()
	q.poke()
	return nil
}

// accessBarrier makes a request that may read what the access queue
// writes wait until the access histories answered before it are written.
func (s *Server) accessBarrier(c *gin.Context) {
	if s.access != nil && !readsNoAccessHistory(c) && s.access.pending() {
		if err := s.access.sync(c.Request.Context()); err != nil {
			s.fail(c, &statusError{http.StatusServiceUnavailable, fhir.Errorf(fhir.IssueTransient, "the request ended before the access history it may read was written; try again")})
			c.Abort()
			return
		}
	}
	c.Next()
}

// readsNoAccessHistory reports whether the request c cannot read what the
// access queue writes (AuditEvent, Communication, PractitionerRole,
// outbox): a GET or HEAD of a lookup's types (Flag, CarePlan, CareTeam,
// Patient), by id or by search, without _include, _revinclude or _has,
// history, compartments or operations.
func readsNoAccessHistory(c *gin.Context) bool {
	if m := c.Request.Method; m != http.MethodGet && m != http.MethodHead {
		return false
	}
	switch routeType(c) {
	case "Flag", "CarePlan", "CareTeam", "Patient":
	default:
		return false
	}
	if c.Param("ctype") != "" || strings.ContainsAny(c.Request.URL.Path, "$") || strings.Contains(c.Request.URL.Path, "/_history") {
		return false
	}
	q := c.Request.URL.RawQuery
	return !strings.Contains(q, "include") && !strings.Contains(q, "_has") && !strings.Contains(strings.ToLower(q), "%5fhas")
}
