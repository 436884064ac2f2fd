package subscription

// Delivery through the rest-hook channel.
// See https://hl7.org/fhir/R4/subscription.html#2.46.7.1 (channels) and
// https://hl7.org/fhir/R4/codesystem-subscription-channel-type.html.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Headers of every rest-hook request.
const (
	// IdempotencyKeyHeader is "<subscription id>:<event number>": the same
	// for every attempt of one notification, so that a receiver can drop
	// duplicates.
	IdempotencyKeyHeader = "Idempotency-Key"
	// SubscriptionHeader is the Subscription's id.
	SubscriptionHeader = "X-CPIS-Subscription"
	// EventNumberHeader is the notification's event number.
	EventNumberHeader = "X-CPIS-Event-Number"
	// TimestampHeader is when the request was signed, Unix seconds.
	TimestampHeader = "X-CPIS-Timestamp"
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256, keyed with the
	// subscription's secret (SecretExtension), of Sign's message: present
	// only when the subscription has a secret.
	SignatureHeader = "X-CPIS-Signature"
)

// Sign returns the SignatureHeader value of a request with these
// idempotency key, timestamp and body: HMAC-SHA256(secret, key + "." +
// timestamp + "." + body), hex, after "sha256=".
func Sign(secret, key, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(key + "." + timestamp + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// errText is the message of err safe to store in Subscription.error.
func errText(err error) string {
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return "internal error"
}

// worker delivers one subscription's notifications in order.
type worker struct {
	wake   chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	entries []entry // bus entries waking it, acknowledged once delivered (shared.go)
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// startWorker starts s's worker; e.mu is held.
func (e *Engine) startWorker(ctx context.Context, s *spec) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{wake: make(chan struct{}, 1), cancel: cancel}
	e.workers[s.id] = w
	w.poke()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.work(wctx, s.id, w)
	}()
}

func (e *Engine) current(id string) *spec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subs[id]
}

// work delivers subscription id's notifications in order until ctx ends.
// A shared engine's worker delivers only while it holds the
// subscription's lease (own), and gives it up when the queue is drained.
func (e *Engine) work(ctx context.Context, id string, w *worker) {
	e.mu.Lock()
	delivered := e.delivered[id]
	e.mu.Unlock()
	held := e.cfg.Bus == nil
	if !held {
		// A worker that stops (given up, or its Subscription changed)
		// leaves the subscription to the other processes.
		defer func() {
			if e.holding(subLease + id) {
				e.mu.Lock()
				delivered := e.delivered[id]
				e.mu.Unlock()
				e.letGo(context.WithoutCancel(ctx), id, w, delivered)
			}
		}()
	}
	if held && !e.greet(ctx, id, held) {
		return
	}
	for ctx.Err() == nil {
		if !held {
			if held, delivered = e.own(ctx, id, w, delivered); !held {
				e.idle(ctx, w, nil)
				continue
			}
			if !e.greet(ctx, id, held) {
				return
			}
		}
		ns, err := e.cfg.Queue.Events(ctx, id, delivered, 64)
		if err != nil {
			e.retryLater(ctx, "read events", err)
			continue
		}
		if len(ns) == 0 {
			s := e.current(id)
			if e.cfg.Bus != nil && (s == nil || s.heartbeat == 0) {
				if e.linger(ctx, w) {
					continue // woken while holding the lease
				}
				held = false
				if e.letGo(ctx, id, w, delivered) {
					continue // more came meanwhile
				}
			}
			e.idle(ctx, w, s)
			continue
		}
		for _, n := range ns {
			s := e.current(id)
			if s == nil {
				return
			}
			if err := e.deliver(ctx, s, n, w.wake); err != nil {
				if errors.Is(err, errLeaseLost) {
					held = false
					break
				}
				if ctx.Err() == nil {
					e.log.Warn("subscription: delivery given up", "subscription", id, "event", n.Number, "error", err)
					e.setStatus(context.WithoutCancel(ctx), id, StatusError, err.Error())
				}
				return
			}
			delivered = n.Number
			e.mu.Lock()
			e.delivered[id] = delivered
			e.mu.Unlock()
			e.acks <- ack{id, delivered}
			w.done(ctx, e, delivered)
		}
	}
}

// greet makes the handshake of a requested topic-based Subscription (once
// its worker holds the lease); false when it failed.
func (e *Engine) greet(ctx context.Context, id string, held bool) bool {
	s := e.current(id)
	if !held || s == nil || s.topic == nil || s.status != StatusRequested {
		return true
	}
	if e.cfg.Bus != nil {
		if st, err := e.cfg.Queue.SubscriptionState(ctx, id); err == nil && st.Status == StatusActive {
			return true // another process made it
		}
	}
	return e.handshake(ctx, s)
}

// idle waits for a wake-up, or s's heartbeat period (then sends one).
func (e *Engine) idle(ctx context.Context, w *worker, s *spec) {
	var beat <-chan time.Time
	if s != nil && s.heartbeat > 0 {
		beat = time.After(s.heartbeat)
	}
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-beat:
		e.mu.Lock()
		delivered := e.delivered[s.id]
		e.mu.Unlock()
		e.heartbeat(ctx, s, delivered)
	}
}

// deliver sends n until the receiver takes it or the horizon passes (the
// error says why, in words safe for Subscription.error).
// A websocket subscription also retries at once when woken (a client
// bound).
func (e *Engine) deliver(ctx context.Context, s *spec, n fhir.Notification, wake <-chan struct{}) error {
	if s.channel != "websocket" {
		wake = nil
	}
	var first time.Time
	for attempt := 0; ; attempt++ {
		if !e.holds(s.id) {
			return errLeaseLost
		}
		err := e.send(ctx, s, n)
		if err == nil || errors.Is(err, errWithheld) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := e.cfg.Now()
		if first.IsZero() {
			first = now
		}
		if h := s.horizonOr(e.cfg.Horizon); now.Sub(first) >= h {
			return fmt.Errorf("event %d not delivered for %s: %v", n.Number, h, err)
		}
		e.log.Info("subscription: delivery failed; retrying", "subscription", s.id, "event", n.Number, "attempt", attempt+1, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.backoff(attempt)):
		case <-wake:
		}
		if cur := e.current(s.id); cur != nil {
			s = cur // endpoint or headers may have changed meanwhile
		}
	}
}

// backoff is the wait after the attempt-th failure: BackoffMin doubled
// per attempt up to BackoffMax, of which a random half is jitter.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.cfg.BackoffMin
	for i := 0; i < attempt && d < e.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, e.cfg.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

var errWithheld = errors.New("subscription: the owner may not see the resource")

// send makes one attempt at delivering n.
func (e *Engine) send(ctx context.Context, s *spec, n fhir.Notification) error {
	owner := e.cfg.Policy.Store(e.cfg.Store, s.owner)
	// A delete is judged by the version it removed (access.Policy).
	r, err := owner.VRead(ctx, n.Type, n.ID, n.Version)
	if err == nil && !r.Deleted() {
		_, err = owner.Read(ctx, n.Type, n.ID)
	}
	if err != nil {
		if code := fhir.ErrorCode(err); code == fhir.IssueNotFound || code == fhir.IssueForbidden {
			e.log.Info("subscription: notification withheld from its owner", "subscription", s.id, "event", n.Number, "type", n.Type)
			return errWithheld
		}
		return fmt.Errorf("read %s: %w", n.Type, err)
	}
	if s.channel == "websocket" && s.topic == nil {
		return e.ping(s.id)
	}
	method, target, body := http.MethodPost, s.endpoint, []byte(nil)
	switch {
	case s.topic != nil:
		// A Backport IG notification Bundle, posted to the endpoint.
		if body, err = notificationBundle(s, "event-notification", n.Number, &n, r, fhir.FormatInstant(e.cfg.Now())); err != nil {
			return fmt.Errorf("notification bundle: %w", err)
		}
		if s.channel == "websocket" {
			return e.push(s.id, string(body))
		}
	case s.payload != "":
		// With a payload the endpoint is a FHIR base and the resource is
		// PUT to it (DELETE for a delete).
		method, target, body = http.MethodPut, strings.TrimSuffix(s.endpoint, "/")+"/"+n.Type+"/"+n.ID, r.JSON
		if r.Deleted() {
			method = http.MethodDelete
		}
	}
	return e.post(ctx, s, method, target, body, strconv.FormatInt(n.Number, 10))
}

// post sends one request of s's channel; number is the event number (or
// "handshake", "heartbeat"), which with the subscription id makes the
// idempotency key.
func (e *Engine) post(ctx context.Context, s *spec, method, target string, body []byte, number string) error {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("the channel endpoint is not a usable URL")
	}
	for _, h := range s.headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	key := s.id + ":" + number
	ts := strconv.FormatInt(e.cfg.Now().Unix(), 10)
	req.Header.Set(IdempotencyKeyHeader, key)
	req.Header.Set(SubscriptionHeader, s.id)
	req.Header.Set(EventNumberHeader, number)
	req.Header.Set(TimestampHeader, ts)
	if s.secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.secret, key, ts, body))
	}
	resp, err := e.cfg.Client.Do(req)
	if reason, ok := refusal(err); ok {
		return errors.New(reason)
	}
	if err != nil {
		return errors.New("the receiver could not be reached")
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// handshake sends a topic-based Subscription's handshake and sets it
// active when the receiver takes it, else error with the reason.
// See https://hl7.org/fhir/uv/subscriptions-backport/components.html#handshake.
func (e *Engine) handshake(ctx context.Context, s *spec) bool {
	if s.channel == "websocket" {
		// Each client gets its handshake when it binds (Bind).
		e.setStatus(ctx, s.id, StatusActive, "")
		return true
	}
	body, err := notificationBundle(s, "handshake", 0, nil, nil, "")
	if err == nil {
		err = e.post(ctx, s, http.MethodPost, s.endpoint, body, "handshake")
	}
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		e.setStatus(context.WithoutCancel(ctx), s.id, StatusError, "handshake failed: "+err.Error())
		return false
	}
	e.setStatus(ctx, s.id, StatusActive, "")
	return true
}

// heartbeat sends a topic-based Subscription's heartbeat; a failure is
// only logged (the next notification is retried as usual).
func (e *Engine) heartbeat(ctx context.Context, s *spec, events int64) {
	body, err := notificationBundle(s, "heartbeat", events, nil, nil, "")
	switch {
	case err != nil:
	case s.channel == "websocket":
		err = e.push(s.id, string(body))
	default:
		err = e.post(ctx, s, http.MethodPost, s.endpoint, body, "heartbeat")
	}
	if err != nil && ctx.Err() == nil {
		e.log.Info("subscription: heartbeat failed", "subscription", s.id, "error", err)
	}
}

// ackDelay is how long an acknowledgement waits for others to share its
// write.
const ackDelay = 20 * time.Millisecond

// acker stores acknowledgements, coalescing those that arrive while the
// last batch is written, until ctx ends; then it writes what is left.
func (e *Engine) acker(ctx context.Context) {
	pending := map[string]int64{}
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if err := e.cfg.Queue.Ack(context.WithoutCancel(ctx), pending); err != nil {
			e.log.Error("subscription: ack", "error", err)
			return // kept: written with the next batch
		}
		pending = map[string]int64{}
	}
	for {
		select {
		case a := <-e.acks:
			pending[a.sub] = max(pending[a.sub], a.num)
			// Acknowledgements of the next few milliseconds share one
			// write: a crash meanwhile only sends them again.
			select {
			case <-ctx.Done():
			case <-time.After(ackDelay):
			}
		drain:
			for {
				select {
				case a := <-e.acks:
					pending[a.sub] = max(pending[a.sub], a.num)
				default:
					break drain
				}
			}
			flush()
		case <-ctx.Done():
			for {
				select {
				case a := <-e.acks:
					pending[a.sub] = max(pending[a.sub], a.num)
				default:
					flush()
					return
				}
			}
		}
	}
}
