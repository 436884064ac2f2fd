package subscription

// The engine: the matcher that follows the outbox and the lifecycle of
// Subscription resources. See https://hl7.org/fhir/R4/subscription.html
// and doc.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/access"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/subscription_go_proto"
)

// Queue is the durable state the engine keeps in the store (fhir/sqlite
// implements it; see its subscription.go).
type Queue interface {
	// Commits signals after commits.
	Commits() <-chan struct{}
	// Changes returns committed versions after a sequence number, in order.
	Changes(ctx context.Context, after int64, limit int) ([]*fhir.Resource, error)
	// MatchCursor returns the sequence number matched up to.
	MatchCursor(ctx context.Context) (int64, error)
	// Enqueue stores notifications and moves the cursor in one transaction.
	Enqueue(ctx context.Context, from, to int64, ns []fhir.Notification) ([]fhir.Notification, error)
	// Events returns a subscription's notifications after an event number.
	Events(ctx context.Context, sub string, after int64, limit int) ([]fhir.Notification, error)
	// Ack records the last event number delivered per subscription.
	Ack(ctx context.Context, delivered map[string]int64) error
	// SetSubscriptionState records the engine's decision about one.
	SetSubscriptionState(ctx context.Context, sub, status, reason string) error
	// SubscriptionStates returns the state of every subscription.
	SubscriptionStates(ctx context.Context) ([]fhir.SubscriptionState, error)
	// SubscriptionState returns the state of one.
	SubscriptionState(ctx context.Context, sub string) (fhir.SubscriptionState, error)

	// The leases of processes sharing the store (shared.go): TakeLease
	// gives name to owner for ttl when free, lapsed or owner's; RenewLeases
	// extends owner's and names them; ReleaseLease gives one up; Unowned
	// names the subscriptions with undelivered notifications whose lease
	// prefix+id nobody holds.
	TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]string, error)
	ReleaseLease(ctx context.Context, name, owner string) error
	Unowned(ctx context.Context, prefix string) ([]string, error)
}

// Config configures an Engine. Store, Queue and Codec are required.
type Config struct {
	Store fhir.Store
	Queue Queue
	Codec *fhir.Codec
	// Registry holds the search parameters criteria are parsed with; nil
	// means the generated table.
	Registry *fhir.SearchRegistry
	// Policy decides what a subscription's owner may see at delivery; nil
	// means access.New(Registry).
	Policy *access.Policy
	// Endpoints decides which rest-hook endpoints are called; nil means
	// those on public addresses only (endpoint.go).
	Endpoints *Endpoints
	// Client sends rest-hook requests; nil means Endpoints.Client with a
	// 10 s timeout. A Client given here bypasses Endpoints.
	Client *http.Client
	// Logger gets delivery failures and state changes (ids and types only);
	// nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Horizon is how long a notification is retried before the
	// subscription goes to status error; zero means 72 hours.
	Horizon time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts (doubling
	// from BackoffMin, with jitter); zero means 1 s and 5 min.
	BackoffMin, BackoffMax time.Duration
	// Batch is the most changes matched at a time; zero means 256.
	Batch int
	// Bus, when set, shares the engine with the other server processes of
	// the store (shared.go): one process at a time matches and one at a
	// time delivers each subscription, under leases kept in the store;
	// the bus carries the work and the wake-ups, and websocket pings to
	// clients of any process. Nil: the engine is alone on its store.
	Bus fhir.Bus
	// LeaseTTL is how long a lease outlives its process's last renewal;
	// zero means 5 s.
	LeaseTTL time.Duration
}

// Engine matches committed changes to Subscriptions and delivers the
// notifications. Run it once per store; it is safe for concurrent use.
type Engine struct {
	cfg Config
	svc *fhir.Service
	ix  *fhir.Indexer
	log *slog.Logger

	mu        sync.Mutex
	subs      map[string]*spec   // the Subscriptions being matched, by id
	gen       int64              // counts changes of subs (under mu)
	workers   map[string]*worker // their delivery workers
	delivered map[string]int64   // last event number each worker delivered

	// The matcher's view of subs, rebuilt when gen moves (match goroutine
	// only).
	view struct {
		gen    int64
		subs   []*spec              // sorted by id
		table  map[routeKey][]*spec // routed subscriptions by the token they ask for
		byType map[string][]*spec   // routed subscriptions by type
		other  []*spec              // subscriptions that see every change
	}

	seen map[string]int64 // the latest version of each Subscription taken in (under mu)

	acks  chan ack
	wg    sync.WaitGroup
	socks sockets // websocket clients (socket.go)

	wakeMatch chan struct{} // pokes the matcher: a commit of any process
	share     share         // leases and bus of a shared engine (shared.go)
}

type ack struct {
	sub string
	num int64
}

// New returns an engine; Run starts it.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Queue == nil || cfg.Codec == nil {
		return nil, errors.New("subscription: Config needs Store, Queue and Codec")
	}
	if cfg.Registry == nil {
		cfg.Registry = fhir.NewSearchRegistry()
	}
	if cfg.Policy == nil {
		cfg.Policy = access.New(cfg.Registry)
	}
	if cfg.Client == nil {
		cfg.Client = cfg.Endpoints.Client(10 * time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = 72 * time.Hour
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	return &Engine{
		cfg:       cfg,
		svc:       &fhir.Service{Store: cfg.Store, Codec: cfg.Codec, Indexer: fhir.NewIndexer(cfg.Registry), Registry: cfg.Registry},
		ix:        fhir.NewIndexer(cfg.Registry),
		log:       cfg.Logger,
		subs:      map[string]*spec{},
		workers:   map[string]*worker{},
		delivered: map[string]int64{},
		seen:      map[string]int64{},
		acks:      make(chan ack, 1024),
		wakeMatch: make(chan struct{}, 1),
		share:     newShare(),
	}, nil
}

// Run matches and delivers until ctx ends, then waits for its workers and
// flushes their acknowledgements. It returns ctx's error, or the error that
// kept it from starting.
func (e *Engine) Run(ctx context.Context) error {
	cursor, err := e.cfg.Queue.MatchCursor(ctx)
	if err != nil {
		return err
	}
	states, err := e.cfg.Queue.SubscriptionStates(ctx)
	if err != nil {
		return err
	}
	events := map[string]int64{}
	for _, st := range states {
		e.delivered[st.ID] = st.Delivered
		events[st.ID] = st.Events
	}
	if err := e.load(ctx, cursor); err != nil {
		return err
	}
	ackCtx, stopAcks := context.WithCancel(context.WithoutCancel(ctx))
	ackDone := make(chan struct{})
	go func() { defer close(ackDone); e.acker(ackCtx) }()
	e.mu.Lock()
	for id, s := range e.subs {
		e.startWorker(ctx, s)
		if events[id] > e.delivered[id] {
			e.workers[id].poke()
		}
	}
	e.mu.Unlock()
	e.background(ctx)
	e.match(ctx, cursor)
	e.wg.Wait()
	stopAcks()
	<-ackDone
	e.releaseAll(context.WithoutCancel(ctx))
	return ctx.Err()
}

// load reads every Subscription the store holds; those that match see the
// changes after cursor.
func (e *Engine) load(ctx context.Context, cursor int64) error {
	q, err := fhir.ParseSearch("Subscription", nil, fhir.SearchOptions{Registry: e.cfg.Registry, DefaultCount: 500, MaxCount: 500})
	if err != nil {
		return err
	}
	var cur fhir.Cursor
	for {
		page, err := e.cfg.Store.Search(ctx, q, cur, false)
		if err != nil {
			return fmt.Errorf("subscription: load: %w", err)
		}
		for _, r := range page.Matches {
			s := e.takeIn(r)
			if s == nil {
				continue
			}
			s.setSince(cursor)
			e.seen[s.id] = r.VersionID
			if s.matching() {
				e.subs[s.id] = s
			}
		}
		if page.Next == nil {
			return nil
		}
		cur = page.Next
	}
}

// match follows the outbox from cursor until ctx ends. The durable cursor
// (stored) moves with every batch that notifies or changes a Subscription,
// and otherwise at most once a second and whenever the outbox is drained:
// a batch without either costs the writer nothing, and matching it again
// after a crash gives no notification again.
//
// A shared engine matches only while it leads (holds the lease "match");
// otherwise, and for the changes another process matched (up to followTo),
// it only follows the Subscriptions' changes, which its workers need.
func (e *Engine) match(ctx context.Context, cursor int64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	stored, storedAt := cursor, time.Now()
	followTo, led := int64(0), true
	persist := func(to int64, ns []fhir.Notification) ([]fhir.Notification, bool) {
		ns, err := e.cfg.Queue.Enqueue(ctx, stored, to, ns)
		if err != nil {
			e.retryLater(ctx, "enqueue", err)
			if c, err := e.cfg.Queue.MatchCursor(ctx); err == nil {
				// Another matcher moved it: what it matched is followed.
				stored, followTo = c, c
			}
			return nil, false
		}
		stored, storedAt, cursor = to, time.Now(), to
		return ns, true
	}
	for ctx.Err() == nil {
		lead := e.leading()
		if lead && !led { // took over: match on from the stored cursor
			if c, err := e.cfg.Queue.MatchCursor(ctx); err == nil {
				stored, followTo, cursor = c, c, min(cursor, c)
			}
		}
		led = lead
		changes, err := e.cfg.Queue.Changes(ctx, cursor, e.cfg.Batch)
		if err != nil {
			e.retryLater(ctx, "read changes", err)
			continue
		}
		if len(changes) == 0 {
			if lead && cursor > stored {
				persist(cursor, nil)
				continue
			}
			if lead {
				e.endExpired(ctx)
			}
			select {
			case <-ctx.Done():
			case <-e.wakeMatch:
			case <-tick.C:
			}
			continue
		}
		last := changes[len(changes)-1].Seq
		if !lead {
			followTo = last
		}
		i := sort.Search(len(changes), func(i int) bool { return changes[i].Seq > followTo })
		e.follow(ctx, changes[:i])
		if changes = changes[i:]; len(changes) == 0 {
			cursor = last
			continue
		}
		ns, lifecycle := e.matchBatch(ctx, changes)
		subChanged := false
		for _, c := range changes {
			subChanged = subChanged || c.Type == "Subscription"
		}
		if len(ns) == 0 && !subChanged && time.Since(storedAt) < time.Second {
			cursor = last
			continue
		}
		ns, ok := persist(last, ns)
		if !ok {
			continue
		}
		e.announce(ctx, ns)
		for _, s := range lifecycle {
			e.activate(ctx, s)
		}
	}
}

// follow takes in the Subscription changes of changes another process
// matches.
func (e *Engine) follow(ctx context.Context, changes []*fhir.Resource) {
	for _, c := range changes {
		if c.Type == "Subscription" {
			e.subscriptionChanged(ctx, c)
		}
	}
}

func (e *Engine) retryLater(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	e.log.Error("subscription: "+what, "error", err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

// matchBatch returns the notifications of changes, per subscription in
// commit order, and the Subscriptions changed in the batch whose status
// the engine must set.
func (e *Engine) matchBatch(ctx context.Context, changes []*fhir.Resource) ([]fhir.Notification, []*spec) {
	var lifecycle []*spec
	for _, c := range changes {
		if c.Type == "Subscription" {
			if s := e.subscriptionChanged(ctx, c); s != nil {
				lifecycle = append(lifecycle, s)
			}
		}
	}
	e.refreshView()
	var ns []fhir.Notification
	idx := make([]*fhir.Index, len(changes)) // each change's index rows, made once when a subscription needs them
	prior := map[int]*fhir.Resource{}        // the version before each delete of the batch that was looked at
	index := func(i int) *fhir.Index {
		if idx[i] == nil {
			c := changes[i]
			if c.Index != nil && !c.Deleted() {
				idx[i] = c.Index // the store's, made at write time
				return idx[i]
			}
			if c.Deleted() {
				// A delete is matched on the version it removed.
				if c = e.prior(ctx, c); c == nil {
					return nil
				}
				prior[i] = c
			}
			x, err := e.ix.Index(c.Type, c.JSON)
			if err != nil {
				x = nil
			}
			idx[i] = x
		}
		return idx[i]
	}
	flagged := map[string]bool{} // Patient id -> has an active CP-IS Flag, in this batch
	routes := e.route(changes, index)
	all := make([]int, len(changes))
	for i := range all {
		all[i] = i
	}
	type work struct {
		s    *spec
		list []int
	}
	todo := make([]work, 0, len(routes)+len(e.view.other))
	for _, s := range e.view.other {
		todo = append(todo, work{s, all})
	}
	for s, list := range routes {
		todo = append(todo, work{s, list})
	}
	for _, w := range todo {
		s, list := w.s, w.list
		var cand []*fhir.Resource
		var seen map[string]bool
		var ids []string
		for _, i := range list {
			c := changes[i]
			if c.Type != s.typ || c.Seq <= s.since {
				continue
			}
			if s.topic != nil {
				v := c
				if c.Deleted() {
					index(i) // reads the version it removed
					v = prior[i]
				}
				if v == nil || !s.topic.admits(v) {
					continue
				}
			}
			if c.Deleted() {
				if e.deleteMatches(ctx, s, index(i), prior[i], ns) {
					ns = append(ns, fhir.Notification{Subscription: s.id, Seq: c.Seq, Type: c.Type, ID: c.ID, Version: c.VersionID})
				}
				continue
			}
			if s.topic != nil && s.topic.flagged && !e.flagged(ctx, flagged, index(i)) {
				continue
			}
			if len(s.simple) > 0 {
				if x := index(i); x != nil {
					if !s.prefilter(x) {
						continue
					}
					if s.exact {
						ns = append(ns, fhir.Notification{Subscription: s.id, Seq: c.Seq, Type: c.Type, ID: c.ID, Version: c.VersionID})
						continue
					}
				}
			}
			cand = append(cand, c)
			if seen == nil {
				seen = map[string]bool{}
			}
			if !seen[c.ID] {
				seen[c.ID] = true
				ids = append(ids, c.ID)
			}
		}
		if len(cand) == 0 {
			continue
		}
		hit, err := e.search(ctx, s, ids)
		if err != nil {
			// Criteria the store cannot run: the subscription cannot be
			// served; say why.
			e.log.Warn("subscription: criteria failed", "subscription", s.id, "error", err)
			s.root().invalid = "the criteria cannot be evaluated: " + errText(err)
			lifecycle = append(lifecycle, s.root())
			continue
		}
		for _, c := range cand {
			if hit[c.ID] {
				ns = append(ns, fhir.Notification{Subscription: s.id, Seq: c.Seq, Type: c.Type, ID: c.ID, Version: c.VersionID})
			}
		}
	}
	// Enqueue numbers each subscription's events in slice order: commit
	// order.
	sort.SliceStable(ns, func(i, j int) bool {
		if ns[i].Subscription != ns[j].Subscription {
			return ns[i].Subscription < ns[j].Subscription
		}
		return ns[i].Seq < ns[j].Seq
	})
	return ns, lifecycle
}

// routeKey is a token value of a resource type: what a routed
// subscription's first simple filter asks for.
type routeKey struct{ typ, param, code string }

// keys returns the route keys of s (one per value of its first simple
// filter, ORed), or false when it cannot be routed (no simple filter, or a
// value without a code).
func (s *spec) keys() ([]routeKey, bool) {
	if len(s.simple) == 0 {
		return nil, false
	}
	f := &s.simple[0]
	param := f.Param.Name
	if f.Param.Type == fhir.SearchParamReference {
		param += ":identifier"
	}
	var ks []routeKey
	for _, v := range f.Values {
		if v.Code == "" {
			return nil, false
		}
		ks = append(ks, routeKey{s.typ, param, v.Code})
	}
	return ks, true
}

// refreshView rebuilds the matcher's view of the subscriptions when they
// changed.
func (e *Engine) refreshView() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.view.subs != nil && e.view.gen == e.gen {
		return
	}
	v := &e.view
	v.gen = e.gen
	v.subs = v.subs[:0]
	for _, s := range e.subs {
		v.subs = append(v.subs, s)
	}
	sort.Slice(v.subs, func(i, j int) bool { return v.subs[i].id < v.subs[j].id })
	v.table, v.byType, v.other = map[routeKey][]*spec{}, map[string][]*spec{}, nil
	for _, sub := range v.subs {
		for _, s := range sub.parts() {
			ks, ok := s.keys()
			if !ok {
				v.other = append(v.other, s)
				continue
			}
			v.byType[s.typ] = append(v.byType[s.typ], s)
			for _, k := range ks {
				v.table[k] = append(v.table[k], s)
			}
		}
	}
}

// route returns, for the routed subscriptions that may match a change of
// the batch, the indexes (ascending) of those changes: a map look per token
// of each change instead of a check per subscription.
func (e *Engine) route(changes []*fhir.Resource, index func(int) *fhir.Index) map[*spec][]int {
	v := &e.view
	out := map[*spec][]int{}
	for i, c := range changes {
		if len(v.byType[c.Type]) == 0 {
			continue
		}
		x := index(i)
		if x == nil && c.Deleted() {
			continue // nothing before it to match
		}
		if x == nil {
			for _, s := range v.byType[c.Type] { // unindexable: let the search decide
				out[s] = append(out[s], i)
			}
			continue
		}
		var seen map[*spec]bool
		for _, t := range x.Tokens {
			for _, s := range v.table[routeKey{c.Type, t.Param, t.Code}] {
				if seen == nil {
					seen = map[*spec]bool{}
				}
				if !seen[s] {
					seen[s] = true
					out[s] = append(out[s], i)
				}
			}
		}
	}
	return out
}

// prior returns the version the delete d removed (nil: none readable).
func (e *Engine) prior(ctx context.Context, d *fhir.Resource) *fhir.Resource {
	if d.VersionID < 2 {
		return nil
	}
	r, err := e.cfg.Store.VRead(ctx, d.Type, d.ID, d.VersionID-1)
	if err != nil || r.Deleted() {
		return nil
	}
	return r
}

// notifiedQueue is a Queue that tells whether a subscription was notified
// of the version with a commit sequence number (fhir/sqlite implements
// it). Without it, deletes notify only subscriptions decided in memory.
type notifiedQueue interface {
	Notified(ctx context.Context, sub string, seq int64) (bool, error)
}

// deleteMatches reports whether the delete of the version prev (index rows
// x) notifies s: when s's criteria are decided on index rows alone, when
// prev matches them; otherwise when prev itself was notified to s (in ns,
// the batch's notifications so far, or earlier), since a search can no
// longer find a deleted resource.
// See https://hl7.org/fhir/R4/subscription.html#2.46.6.
func (e *Engine) deleteMatches(ctx context.Context, s *spec, x *fhir.Index, prev *fhir.Resource, ns []fhir.Notification) bool {
	if x == nil || prev == nil || (len(s.simple) > 0 && !s.prefilter(x)) {
		return false
	}
	if s.exact && (s.topic == nil || !s.topic.flagged) {
		return true
	}
	for _, n := range ns {
		if n.Subscription == s.id && n.Seq == prev.Seq {
			return true
		}
	}
	q, ok := e.cfg.Queue.(notifiedQueue)
	if !ok {
		return false
	}
	hit, err := q.Notified(ctx, s.id, prev.Seq)
	if err != nil {
		e.log.Warn("subscription: notified lookup failed", "subscription", s.id, "error", err)
	}
	return hit
}

// flagged reports whether the subject Patient of the version with index x
// has an active CP-IS Flag now; cache holds the answers of the batch.
func (e *Engine) flagged(ctx context.Context, cache map[string]bool, x *fhir.Index) bool {
	if x == nil {
		return false
	}
	for _, r := range x.References {
		if r.Param != "subject" || (r.Type != "" && r.Type != "Patient") || r.ID == "" {
			continue
		}
		ok, seen := cache[r.ID]
		if !seen {
			// R4 Flag has no code search parameter: the active Flags of
			// the child are read and their code checked.
			q, err := fhir.ParseSearch("Flag", map[string][]string{
				"subject": {"Patient/" + r.ID}, "status": {"active"}, "_count": {"100"},
			}, fhir.SearchOptions{Registry: e.cfg.Registry, Strict: true})
			if err == nil {
				page, serr := e.cfg.Store.Search(ctx, q, nil, false)
				err = serr
				for _, f := range pageMatches(page, serr) {
					ok = ok || cpisFlag(f.JSON)
				}
			}
			if err != nil {
				e.log.Warn("subscription: flag lookup failed", "error", err)
			}
			cache[r.ID] = ok
		}
		if ok {
			return true
		}
	}
	return false
}

func pageMatches(p *fhir.SearchPage, err error) []*fhir.Resource {
	if err != nil || p == nil {
		return nil
	}
	return p.Matches
}

// cpisFlag reports whether the Flag JSON has the CP-IS flag code.
func cpisFlag(body []byte) bool {
	var f struct {
		Code struct {
			Coding []struct{ System, Code string }
		}
	}
	if json.Unmarshal(body, &f) != nil {
		return false
	}
	for _, c := range f.Code.Coding {
		if c.System == flagCategorySystem && c.Code == flagCode {
			return true
		}
	}
	return false
}

// search returns which of ids match s's criteria now.
func (e *Engine) search(ctx context.Context, s *spec, ids []string) (map[string]bool, error) {
	q := make(map[string][]string, len(s.query)+2)
	for k, v := range s.query {
		switch k {
		case "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_contained", "_containedType":
			continue
		}
		q[k] = v
	}
	q["_id"] = append(q["_id"], strings.Join(ids, ","))
	q["_count"] = []string{strconv.Itoa(len(ids))}
	search, err := fhir.ParseSearch(s.typ, q, fhir.SearchOptions{Registry: e.cfg.Registry, Strict: true, MaxCount: len(ids)})
	if err != nil {
		return nil, err
	}
	page, err := e.cfg.Store.Search(ctx, search, nil, false)
	if err != nil {
		return nil, err
	}
	hit := make(map[string]bool, len(page.Matches))
	for _, r := range page.Matches {
		hit[r.ID] = true
	}
	return hit, nil
}

// subscriptionChanged takes in a new version of a Subscription: it starts,
// updates or stops its matching and its worker, and returns it when the
// engine must set its status (requested, or invalid).
func (e *Engine) subscriptionChanged(ctx context.Context, r *fhir.Resource) *spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	if seen := e.seen[r.ID]; r.VersionID < seen {
		return nil // older than one taken in
	} else if r.VersionID == seen {
		// Taken in already (followed, or matched by a batch not stored):
		// only its status may still be to set.
		if s := e.takeIn(r); s != nil && statusDue(s) {
			return s
		}
		return nil
	}
	e.seen[r.ID] = r.VersionID
	old := e.subs[r.ID]
	s := e.takeIn(r)
	if s == nil || !s.matching() {
		delete(e.subs, r.ID)
		e.gen++
		if w := e.workers[r.ID]; w != nil {
			w.cancel()
			delete(e.workers, r.ID)
		}
		if s != nil && statusDue(s) {
			return s
		}
		return nil
	}
	s.setSince(r.Seq)
	if old != nil {
		s.setSince(old.since)
	}
	e.subs[s.id] = s
	e.gen++
	if e.workers[s.id] == nil {
		e.startWorker(ctx, s)
	}
	if statusDue(s) {
		return s
	}
	return nil
}

// takeIn reads version r of a Subscription with its criteria compiled
// (spec.invalid says why the engine cannot serve it); nil for a delete or
// an unreadable one.
func (e *Engine) takeIn(r *fhir.Resource) *spec {
	if r.Deleted() {
		return nil
	}
	s, err := parseSpec(e.cfg.Codec, r)
	if err != nil {
		e.log.Warn("subscription: unreadable Subscription", "id", r.ID, "error", err)
		return nil
	}
	if s.invalid == "" {
		s.prepare(e.cfg.Registry)
	}
	return s
}

// statusDue reports whether the engine must set s's status: active for a
// requested one it serves, error for one it cannot serve.
func statusDue(s *spec) bool {
	if s.invalid != "" {
		return s.status != StatusError && s.status != StatusOff
	}
	return s.matching() && s.status == StatusRequested
}

// activate sets the status a changed Subscription must get: active for a
// valid requested one, error with the reason for an invalid one.
func (e *Engine) activate(ctx context.Context, s *spec) {
	if s.invalid != "" {
		e.mu.Lock()
		if e.subs[s.id] == s {
			delete(e.subs, s.id)
			e.gen++
			if w := e.workers[s.id]; w != nil {
				w.cancel()
				delete(e.workers, s.id)
			}
		}
		e.mu.Unlock()
		e.setStatus(ctx, s.id, StatusError, s.invalid)
		return
	}
	if s.topic != nil {
		return // its worker sets it active after the handshake
	}
	e.setStatus(ctx, s.id, StatusActive, "")
}

// endExpired turns off the matched Subscriptions whose end has passed.
// See https://hl7.org/fhir/R4/subscription-definitions.html#Subscription.end.
func (e *Engine) endExpired(ctx context.Context) {
	now := e.cfg.Now()
	var ended []string
	e.mu.Lock()
	for id, s := range e.subs {
		if !s.end.IsZero() && !now.Before(s.end) {
			ended = append(ended, id)
		}
	}
	e.mu.Unlock()
	for _, id := range ended {
		e.setStatus(ctx, id, StatusOff, "the subscription's end has passed")
	}
}

// setStatus writes status (and error: reason) into the current version of
// Subscription id, as a new version, unless it has that status already,
// and records it in the queue's state.
func (e *Engine) setStatus(ctx context.Context, id, status, reason string) {
	if err := e.cfg.Queue.SetSubscriptionState(ctx, id, status, reason); err != nil {
		e.log.Error("subscription: record state", "subscription", id, "error", err)
	}
	for try := 0; try < 5 && ctx.Err() == nil; try++ {
		cur, err := e.cfg.Store.Read(ctx, "Subscription", id)
		if err != nil || cur.Deleted() {
			return
		}
		p, err := e.cfg.Codec.Parse(cur.JSON)
		if err != nil {
			e.log.Error("subscription: parse Subscription", "subscription", id, "error", err)
			return
		}
		sub := p.Proto().GetSubscription()
		if codeName(sub.GetStatus().GetValue()) == status && sub.GetError().GetValue() == reason {
			return
		}
		sub.Status = &srpb.Subscription_StatusCode{Value: statusCode[status]}
		sub.Error = nil
		if reason != "" {
			sub.Error = &dtpb.String{Value: reason}
		}
		_, _, err = e.svc.Update(ctx, "Subscription", id, p, cur.VersionID)
		if err == nil {
			e.log.Info("subscription: status", "subscription", id, "status", status)
			return
		}
		if !errors.Is(err, fhir.ErrVersionConflict) {
			e.log.Error("subscription: set status", "subscription", id, "error", err)
			return
		}
	}
}
