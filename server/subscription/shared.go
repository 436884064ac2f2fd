package subscription

// Several server processes on one store (Config.Bus set). The store stays
// the source of truth and the judge of who does what:
//
//   - Leases in the store (Queue.TakeLease): the process holding "match"
//     matches the outbox; the one holding "sub/<id>" delivers that
//     subscription, from the first event the store has not seen
//     acknowledged, and gives the lease up (after writing its
//     acknowledgements) when the queue is drained. A lease lapses LeaseTTL
//     after its process last renewed it, so the leases of a process that
//     died go to the others. One deliverer at a time keeps the order.
//   - The bus (fhir/redis) carries the work: the matcher adds an entry
//     (subscription, event number) to a stream per subscription and batch;
//     the consumer group hands each entry to one process, whose worker
//     takes the lease and acknowledges the entry once it delivered that
//     far (or tells the lease's holder, through a wake message, when
//     another process holds it). Entries a dead process had are claimed by
//     another after twice LeaseTTL. Channels carry commits (so the matcher
//     wakes on any process's write), wake-ups and websocket pings to the
//     clients bound at any process.
//   - Losing the bus loses nothing: every process rescans the store every
//     LeaseTTL/3 for subscriptions with undelivered notifications and no
//     live lease, and the matcher pokes its own workers when it cannot add
//     to the stream; only latency grows.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Names on the bus.
const (
	busStream      = "sub:events"
	busGroup       = "delivery"
	commitChannel  = "sub:commit"
	wakeChannel    = "sub:wake"
	socketChannels = "sub:ws:" // + Subscription id
	matchLease     = "match"
	subLease       = "sub/" // + Subscription id
)

var errLeaseLost = errors.New("subscription: the lease lapsed")

// share is a shared engine's state: its owner id and the leases it holds.
type share struct {
	owner string

	mu     sync.Mutex
	until  map[string]time.Time // leases held, until when (with a margin)
	warned time.Time            // last warning that the bus failed
}

func newShare() share {
	b := make([]byte, 6)
	rand.Read(b)
	return share{owner: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b)), until: map[string]time.Time{}}
}

// entry is a bus entry that woke a worker.
type entry struct {
	id  string
	num int64
}

// holds reports whether this process may act under the lease of
// subscription id (always, when alone on the store).
func (e *Engine) holds(id string) bool {
	return e.cfg.Bus == nil || e.holding(subLease+id)
}

// leading reports whether this process matches.
func (e *Engine) leading() bool {
	return e.cfg.Bus == nil || e.holding(matchLease)
}

func (e *Engine) holding(name string) bool {
	e.share.mu.Lock()
	defer e.share.mu.Unlock()
	return time.Now().Before(e.share.until[name])
}

// held records that the lease name is held from at for LeaseTTL, less a
// margin for the time a renewal takes.
func (e *Engine) held(name string, at time.Time) {
	e.share.mu.Lock()
	e.share.until[name] = at.Add(e.cfg.LeaseTTL * 4 / 5)
	e.share.mu.Unlock()
}

func (e *Engine) take(ctx context.Context, name string) bool {
	at := time.Now()
	ok, err := e.cfg.Queue.TakeLease(ctx, name, e.share.owner, e.cfg.LeaseTTL)
	if err != nil {
		e.retryLater(ctx, "take lease", err)
		return false
	}
	if ok {
		e.held(name, at)
	}
	return ok
}

func (e *Engine) drop(ctx context.Context, name string) {
	e.share.mu.Lock()
	delete(e.share.until, name)
	e.share.mu.Unlock()
	if err := e.cfg.Queue.ReleaseLease(ctx, name, e.share.owner); err != nil {
		e.log.Error("subscription: release lease", "error", err)
	}
}

// own takes subscription id's lease for w; then it delivers on from the
// last event number the store or this process saw delivered. When another
// process holds it, the bus entries that woke w are passed on to it.
func (e *Engine) own(ctx context.Context, id string, w *worker, delivered int64) (bool, int64) {
	if !e.take(ctx, subLease+id) {
		if w.pass(ctx, e) {
			e.publish(ctx, wakeChannel, id)
		}
		return false, delivered
	}
	st, err := e.cfg.Queue.SubscriptionState(ctx, id)
	if err != nil {
		e.drop(context.WithoutCancel(ctx), subLease+id)
		e.retryLater(ctx, "read subscription state", err)
		return false, delivered
	}
	delivered = max(delivered, st.Delivered)
	e.mu.Lock()
	e.delivered[id] = delivered
	e.mu.Unlock()
	return true, delivered
}

// linger keeps a drained worker's lease for LeaseTTL/10, so that a steady
// flow of notifications does not take and give up the lease for each one;
// true when woken meanwhile (more may have come).
func (e *Engine) linger(ctx context.Context, w *worker) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.wake:
		return true
	case <-time.After(e.cfg.LeaseTTL / 10):
		return false
	}
}

// letGo writes what the worker of id delivered and gives the lease up;
// true when more notifications came meanwhile.
func (e *Engine) letGo(ctx context.Context, id string, w *worker, delivered int64) bool {
	bg := context.WithoutCancel(ctx)
	if delivered > 0 {
		if err := e.cfg.Queue.Ack(bg, map[string]int64{id: delivered}); err != nil {
			e.log.Error("subscription: ack", "error", err)
		}
	}
	e.drop(bg, subLease+id)
	w.done(bg, e, delivered)
	ns, err := e.cfg.Queue.Events(ctx, id, delivered, 1)
	return err == nil && len(ns) > 0
}

// add queues a bus entry that woke w.
func (w *worker) add(en entry) {
	w.mu.Lock()
	w.entries = append(w.entries, en)
	w.mu.Unlock()
}

// done acknowledges w's bus entries up to event number delivered.
func (w *worker) done(ctx context.Context, e *Engine, delivered int64) {
	w.mu.Lock()
	var ids []string
	keep := w.entries[:0]
	for _, en := range w.entries {
		if en.num <= delivered {
			ids = append(ids, en.id)
		} else {
			keep = append(keep, en)
		}
	}
	w.entries = keep
	w.mu.Unlock()
	e.ackEntries(ctx, ids)
}

// pass acknowledges all of w's bus entries (another process delivers);
// true when there were some.
func (w *worker) pass(ctx context.Context, e *Engine) bool {
	w.mu.Lock()
	ids := make([]string, len(w.entries))
	for i, en := range w.entries {
		ids[i] = en.id
	}
	w.entries = nil
	w.mu.Unlock()
	e.ackEntries(ctx, ids)
	return len(ids) > 0
}

func (e *Engine) ackEntries(ctx context.Context, ids []string) {
	if len(ids) > 0 {
		e.busFailed(e.cfg.Bus.Ack(ctx, busStream, busGroup, ids...))
	}
}

// busFailed logs err, at most every 10 s; it reports whether there was one.
func (e *Engine) busFailed(err error) bool {
	if err == nil {
		return false
	}
	e.share.mu.Lock()
	warn := time.Since(e.share.warned) > 10*time.Second
	if warn {
		e.share.warned = time.Now()
	}
	e.share.mu.Unlock()
	if warn {
		e.log.Warn("subscription: the bus failed; delivering from the store", "error", err)
	}
	return true
}

func (e *Engine) publish(ctx context.Context, channel, msg string) {
	_, err := e.cfg.Bus.Publish(ctx, channel, msg)
	e.busFailed(err)
}

// announce tells the workers of the subscriptions of ns, stored, that
// they have work: the local one when alone or when it holds the lease,
// else through the bus (its worker at a process the bus chooses), or the
// local one when the bus fails.
func (e *Engine) announce(ctx context.Context, ns []fhir.Notification) {
	last := map[string]int64{}
	for _, n := range ns {
		last[n.Subscription] = max(last[n.Subscription], n.Number)
	}
	for sub, num := range last {
		if e.cfg.Bus != nil && !e.holding(subLease+sub) && !e.busFailed(e.cfg.Bus.Add(ctx, busStream, map[string]string{"sub": sub, "num": strconv.FormatInt(num, 10)})) {
			continue
		}
		e.poke(sub)
	}
}

// poke wakes the local worker of subscription id, if any.
func (e *Engine) poke(id string) {
	e.mu.Lock()
	if w := e.workers[id]; w != nil {
		w.poke()
	}
	e.mu.Unlock()
}

// background starts what runs beside the matcher: the commit watch, and
// for a shared engine the lease keeper, the bus reader and the listener.
func (e *Engine) background(ctx context.Context) {
	go e.watchCommits(ctx)
	if e.cfg.Bus == nil {
		return
	}
	if err := e.cfg.Bus.Listen(ctx, commitChannel, wakeChannel); err != nil {
		e.busFailed(err)
	}
	e.take(ctx, matchLease)
	go e.keepLeases(ctx)
	go e.readBus(ctx)
	go e.listen(ctx)
}

// watchCommits wakes the matcher after each local commit, and the other
// processes' (the leader's) through the bus.
func (e *Engine) watchCommits(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.cfg.Queue.Commits():
			e.wake()
			if e.cfg.Bus != nil && !e.leading() {
				e.publish(ctx, commitChannel, "")
			}
		}
	}
}

func (e *Engine) wake() {
	select {
	case e.wakeMatch <- struct{}{}:
	default:
	}
}

// keepLeases renews the leases every LeaseTTL/3, takes "match" when it is
// free, and pokes the workers of subscriptions nobody delivers.
func (e *Engine) keepLeases(ctx context.Context) {
	tick := time.NewTicker(e.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		at := time.Now()
		names, err := e.cfg.Queue.RenewLeases(ctx, e.share.owner, e.cfg.LeaseTTL)
		if err != nil {
			e.log.Error("subscription: renew leases", "error", err)
			continue
		}
		e.share.mu.Lock()
		kept := make(map[string]time.Time, len(names))
		for _, n := range names {
			kept[n] = at.Add(e.cfg.LeaseTTL * 4 / 5)
		}
		e.share.until = kept
		e.share.mu.Unlock()
		if !e.leading() && e.take(ctx, matchLease) {
			e.log.Info("subscription: this process matches now", "owner", e.share.owner)
			e.wake()
		}
		ids, err := e.cfg.Queue.Unowned(ctx, subLease)
		if err != nil {
			e.log.Error("subscription: unowned subscriptions", "error", err)
			continue
		}
		for _, id := range ids {
			e.poke(id)
		}
	}
}

// readBus hands the stream's entries to the local workers, claiming every
// LeaseTTL those a dead process had for twice LeaseTTL.
func (e *Engine) readBus(ctx context.Context) {
	claimed := time.Time{}
	for ctx.Err() == nil {
		if time.Since(claimed) > e.cfg.LeaseTTL {
			claimed = time.Now()
			ens, err := e.cfg.Bus.Claim(ctx, busStream, busGroup, e.share.owner, 2*e.cfg.LeaseTTL, 256)
			if !e.busFailed(err) {
				e.dispatch(ctx, ens)
			}
		}
		ens, err := e.cfg.Bus.Read(ctx, busStream, busGroup, e.share.owner, 256, time.Second)
		if e.busFailed(err) {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		e.dispatch(ctx, ens)
	}
}

func (e *Engine) dispatch(ctx context.Context, ens []fhir.BusEntry) {
	var unknown []string
	for _, en := range ens {
		id := en.Values["sub"]
		num, _ := strconv.ParseInt(en.Values["num"], 10, 64)
		e.mu.Lock()
		w := e.workers[id]
		e.mu.Unlock()
		if w == nil {
			unknown = append(unknown, en.ID) // not served here (yet): the rescan finds it
			continue
		}
		w.add(entry{en.ID, num})
		w.poke()
	}
	e.ackEntries(ctx, unknown)
}

// listen acts on the bus's channel messages.
func (e *Engine) listen(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-e.cfg.Bus.Messages():
			switch {
			case m.Channel == commitChannel:
				if e.leading() {
					e.wake()
				}
			case m.Channel == wakeChannel:
				e.poke(m.Payload)
			case strings.HasPrefix(m.Channel, socketChannels):
				e.pushLocal(strings.TrimPrefix(m.Channel, socketChannels), m.Payload)
			}
		}
	}
}

// releaseAll gives up this process's leases (at shutdown, once its
// acknowledgements are written), so that the others need not wait for
// them to lapse.
func (e *Engine) releaseAll(ctx context.Context) {
	if e.cfg.Bus == nil {
		return
	}
	e.share.mu.Lock()
	names := make([]string, 0, len(e.share.until))
	for n := range e.share.until {
		names = append(names, n)
	}
	e.share.mu.Unlock()
	for _, n := range names {
		e.drop(ctx, n)
	}
}
