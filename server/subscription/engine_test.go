package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server/subscription"
)

const ods = "https://fhir.nhs.uk/Id/ods-organization-code"

// receipt is one request the receiver got.
type receipt struct {
	Method, Path string
	Key, Sig, TS string
	Event        int64
	Body         []byte
}

// receiver is a real HTTP receiver; fail makes it answer 503.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []receipt
	fail atomic.Bool
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if rc.fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		n, _ := strconv.ParseInt(r.Header.Get(subscription.EventNumberHeader), 10, 64)
		rc.mu.Lock()
		rc.got = append(rc.got, receipt{r.Method, r.URL.Path, r.Header.Get(subscription.IdempotencyKeyHeader),
			r.Header.Get(subscription.SignatureHeader), r.Header.Get(subscription.TimestampHeader), n, body})
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) receipts() []receipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receipt(nil), rc.got...)
}

type env struct {
	store *sqlite.Store
	svc   *fhir.Service
	codec *fhir.Codec
	eng   *subscription.Engine
	stop  func()
}

func start(t *testing.T, cfg subscription.Config) *env { return startB(t, cfg) }

func startB(t testing.TB, cfg subscription.Config) *env {
	t.Helper()
	return startAt(t, filepath.Join(t.TempDir(), "cpis.db"), sqlite.Config{}, cfg)
}

// startAt runs an engine with cfg on a store of the database file path.
func startAt(t testing.TB, path string, scfg sqlite.Config, cfg subscription.Config) *env {
	t.Helper()
	store, err := sqlite.Open(path, scfg)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	reg := fhir.NewSearchRegistry()
	cfg.Store, cfg.Queue, cfg.Codec, cfg.Registry = store, store, codec, reg
	cfg.Logger = slog.New(slog.NewTextHandler(logOut(), nil))
	if cfg.Endpoints == nil {
		// The receivers of the tests listen on loopback, which the
		// default refuses.
		eps, err := subscription.NewEndpoints([]string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Endpoints = eps
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 40*time.Millisecond
	}
	eng, err := subscription.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	e := &env{store: store, codec: codec, eng: eng, svc: &fhir.Service{Store: store, Codec: codec, Indexer: fhir.NewIndexer(reg), Registry: reg}}
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() { e.stop(); store.Close() })
	return e
}

func (e *env) create(t testing.TB, body string) *fhir.Resource {
	t.Helper()
	p, err := e.codec.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	r, err := e.svc.Create(context.Background(), p)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return r
}

func (e *env) update(t testing.TB, typ, id, body string) {
	t.Helper()
	p, err := e.codec.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	if _, _, err := e.svc.Update(context.Background(), typ, id, p, 0); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// subscriptionJSON is a rest-hook Subscription owned by council la.
func subscriptionJSON(la, criteria, endpoint, extra string) string {
	return fmt.Sprintf(`{"resourceType":"Subscription","meta":{"tag":[{"system":%q,"code":%q}]},"status":"requested",
		"reason":"test","criteria":%q,"channel":{"type":"rest-hook","endpoint":%q%s}}`, ods, la, criteria, endpoint, extra)
}

func communicationJSON(la, note string) string {
	return fmt.Sprintf(`{"resourceType":"Communication","status":"completed",
		"recipient":[{"identifier":{"system":%q,"value":%q}}],"payload":[{"contentString":%q}]}`, ods, la, note)
}

func communicationIDJSON(id, la, note string) string {
	return strings.Replace(communicationJSON(la, note), `{"resourceType":"Communication",`, `{"resourceType":"Communication","id":"`+id+`",`, 1)
}

// eventually waits (up to a minute) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) status(t *testing.T, id string) (status, reason string) {
	t.Helper()
	r, err := e.store.Read(context.Background(), "Subscription", id)
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ Status, Error string }
	if err := json.Unmarshal(r.JSON, &s); err != nil {
		t.Fatal(err)
	}
	return s.Status, s.Error
}

func TestRestHookDelivery(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	secret := `,"extension":[{"url":"` + subscription.SecretExtension + `","valueString":"s3cret"}],"payload":"application/fhir+json","header":["X-Custom: yes"]`
	sub := e.create(t, subscriptionJSON("LA1", "Communication?recipient:identifier="+ods+"|LA1", rc.URL+"/fhir", secret))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	var ids []string
	for i := range 3 {
		ids = append(ids, e.create(t, communicationJSON("LA1", fmt.Sprint("note ", i))).ID)
	}
	e.create(t, communicationJSON("LA2", "for another council")) // does not match
	eventually(t, "3 deliveries", func() bool { return len(rc.receipts()) >= 3 })
	got := rc.receipts()
	for i, r := range got {
		if r.Event != int64(i+1) || r.Key != sub.ID+":"+strconv.Itoa(i+1) {
			t.Errorf("delivery %d: event %d key %q, want %d and %s:%d", i, r.Event, r.Key, i+1, sub.ID, i+1)
		}
		if want := "/fhir/Communication/" + ids[i]; r.Method != http.MethodPut || r.Path != want {
			t.Errorf("delivery %d: %s %s, want PUT %s", i, r.Method, r.Path, want)
		}
		if want := subscription.Sign("s3cret", r.Key, r.TS, r.Body); r.Sig != want {
			t.Errorf("delivery %d: signature %q, want %q", i, r.Sig, want)
		}
		if !strings.Contains(string(r.Body), ids[i]) {
			t.Errorf("delivery %d: body does not hold Communication/%s", i, ids[i])
		}
	}
	if len(got) != 3 {
		t.Errorf("deliveries: %d, want 3 (the LA2 Communication does not match)", len(got))
	}
}

func TestEmptyPayloadAndChainedCriteria(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	e.update(t, "Patient", "p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}]}`)
	// An admin's subscription (no council tag) with a chained criteria.
	sub := e.create(t, fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"t","criteria":"Encounter?subject.identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018","channel":{"type":"rest-hook","endpoint":%q}}`, rc.URL+"/hook"))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	e.create(t, `{"resourceType":"Encounter","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/p1"}}`)
	e.update(t, "Patient", "p2", `{"resourceType":"Patient","id":"p2"}`)
	e.create(t, `{"resourceType":"Encounter","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/p2"}}`)
	e.create(t, `{"resourceType":"Encounter","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/p1"}}`)
	eventually(t, "2 deliveries", func() bool { return len(rc.receipts()) >= 2 })
	for i, r := range rc.receipts() {
		if r.Method != http.MethodPost || r.Path != "/hook" || len(r.Body) != 0 || r.Event != int64(i+1) {
			t.Errorf("delivery %d: %s %s body %d bytes event %d, want POST /hook, empty, event %d", i, r.Method, r.Path, len(r.Body), r.Event, i+1)
		}
	}
}

func TestOrderUnderConcurrentWrites(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	sub := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	const writers, each = 8, 25
	writeConcurrently(t, writers, each, e)
	eventually(t, "all deliveries", func() bool { return len(rc.receipts()) >= writers*each })
	for i, r := range rc.receipts() {
		if r.Event != int64(i+1) {
			t.Fatalf("delivery %d: event %d, want %d (in order, no gaps)", i, r.Event, i+1)
		}
	}
}

// writeConcurrently creates each Communications for LA1 from each of
// writers goroutines at once, writer w through envs[w%len(envs)].
func writeConcurrently(t *testing.T, writers, each int, envs ...*env) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		e := envs[w%len(envs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e.create(t, communicationJSON("LA1", fmt.Sprint(w, "-", i)))
			}
		}()
	}
	wg.Wait()
}

func TestReceiverDownThenBack(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	sub := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	rc.fail.Store(true)
	for i := range 20 {
		e.create(t, communicationJSON("LA1", fmt.Sprint(i)))
	}
	time.Sleep(200 * time.Millisecond) // some attempts fail meanwhile
	rc.fail.Store(false)
	eventually(t, "20 deliveries", func() bool { return len(rc.receipts()) >= 20 })
	for i, r := range rc.receipts() {
		if r.Event != int64(i+1) {
			t.Fatalf("delivery %d: event %d, want %d", i, r.Event, i+1)
		}
	}
	if s, _ := e.status(t, sub.ID); s != "active" {
		t.Errorf("status after recovery: %s, want active", s)
	}
}

func TestAuthorizationAtDelivery(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	// Criteria matching every Communication: only LA1's may reach LA1.
	sub := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	rc.fail.Store(true)
	e.create(t, communicationJSON("LA1", "one"))
	e.create(t, communicationJSON("LA2", "not for LA1"))
	c3 := e.create(t, communicationJSON("LA1", "moves"))
	// c3 goes to another council before the receiver is back: LA1 lost
	// access, so neither of its versions reaches LA1.
	e.update(t, "Communication", c3.ID, communicationIDJSON(c3.ID, "LA2", "moved"))
	e.create(t, communicationJSON("LA1", "last"))
	time.Sleep(100 * time.Millisecond)
	rc.fail.Store(false)
	eventually(t, "c4 delivered", func() bool {
		got := rc.receipts()
		return len(got) > 0 && got[len(got)-1].Event == 5
	})
	var events []int64
	for _, r := range rc.receipts() {
		events = append(events, r.Event)
	}
	// Events: 1 c1, 2 c2, 3 c3 v1, 4 c3 v2, 5 c4.
	if fmt.Sprint(events) != "[1 5]" {
		t.Errorf("delivered events %v, want [1 5]", events)
	}
}

func TestHorizonThenError(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	e := start(t, subscription.Config{Horizon: 150 * time.Millisecond})
	sub := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	e.create(t, communicationJSON("LA1", "x"))
	eventually(t, "status error", func() bool { s, _ := e.status(t, sub.ID); return s == "error" })
	if _, reason := e.status(t, sub.ID); !strings.Contains(reason, "HTTP 503") {
		t.Errorf("error %q, want the receiver's answer", reason)
	}
	states, err := e.store.SubscriptionStates(context.Background())
	if err != nil || len(states) != 1 || states[0].Status != "error" || states[0].Events != 1 || states[0].Delivered != 0 {
		t.Errorf("states %+v (%v), want one in error with 1 event, 0 delivered", states, err)
	}
}

// TestHorizonPerSubscription: a Subscription's own retry horizon
// (HorizonExtension) applies when shorter than the server's.
func TestHorizonPerSubscription(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	e := start(t, subscription.Config{Horizon: time.Hour})
	horizon := fmt.Sprintf(`,"extension":[{"url":%q,"valueDuration":{"value":0.2,"unit":"s","system":"http://unitsofmeasure.org","code":"s"}}]`, subscription.HorizonExtension)
	sub := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, horizon))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	e.create(t, communicationJSON("LA1", "x"))
	eventually(t, "status error", func() bool { s, _ := e.status(t, sub.ID); return s == "error" })
	if _, reason := e.status(t, sub.ID); !strings.Contains(reason, "not delivered for 200ms") {
		t.Errorf("error %q, want the subscription's own horizon of 200ms", reason)
	}
	bad := e.create(t, subscriptionJSON("LA1", "Communication", rc.URL, strings.Replace(horizon, `"code":"s"`, `"code":"wk"`, 1)))
	eventually(t, "bad horizon error", func() bool { s, _ := e.status(t, bad.ID); return s == "error" })
	if _, reason := e.status(t, bad.ID); !strings.Contains(reason, "retry horizon") {
		t.Errorf("horizon in weeks: error %q, want the retry horizon refused", reason)
	}
}

func TestEndAndInvalid(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	ended := e.create(t, strings.Replace(subscriptionJSON("LA1", "Communication", rc.URL, ""), `"reason"`, `"end":"2020-01-01T00:00:00Z","reason"`, 1))
	eventually(t, "ended off", func() bool { s, _ := e.status(t, ended.ID); return s == "off" })
	bad := e.create(t, subscriptionJSON("LA1", "Communication?no-such-param=1", rc.URL, ""))
	eventually(t, "bad criteria error", func() bool { s, _ := e.status(t, bad.ID); return s == "error" })
	mail := e.create(t, strings.Replace(subscriptionJSON("LA1", "Communication", rc.URL, ""), "rest-hook", "email", 1))
	eventually(t, "email channel error", func() bool { s, _ := e.status(t, mail.ID); return s == "error" })
	if _, reason := e.status(t, mail.ID); !strings.Contains(reason, "not supported") {
		t.Errorf("email channel error %q, want not supported", reason)
	}
}

func logOut() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

// TestRoutedMatching covers the shapes of criteria the in-memory routing
// and matching decide: ORed values, a first filter other than the
// owner's, a system-only value (not routed) and a mixed criteria (routed,
// then searched).
func TestRoutedMatching(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	subs := map[string]string{
		"or":     "Communication?recipient:identifier=" + ods + "|LA1," + ods + "|LA3",
		"status": "Communication?status=completed&recipient:identifier=" + ods + "|LA3",
		"system": "Communication?recipient:identifier=" + ods + "|",
		"mixed":  "Communication?recipient:identifier=" + ods + "|LA1&_lastUpdated=gt2000-01-01",
	}
	ids := map[string]string{}
	for name, criteria := range subs {
		// Admin-owned, so that delivery-time checks pass every match.
		body := strings.Replace(subscriptionJSON("", criteria, rc.URL+"/"+name, ""), `"meta":{"tag":[{"system":"`+ods+`","code":""}]},`, "", 1)
		s := e.create(t, body)
		ids[name] = s.ID
		eventually(t, name+" active", func() bool { st, _ := e.status(t, s.ID); return st == "active" })
	}
	for _, la := range []string{"LA1", "LA2", "LA3"} {
		e.create(t, communicationJSON(la, la))
	}
	e.create(t, strings.Replace(communicationJSON("LA3", "in progress"), `"completed"`, `"in-progress"`, 1))
	want := map[string]int{"or": 3, "status": 1, "system": 4, "mixed": 1}
	total := 0
	for _, n := range want {
		total += n
	}
	eventually(t, "all deliveries", func() bool { return len(rc.receipts()) >= total })
	time.Sleep(100 * time.Millisecond) // no extra ones arrive
	got := map[string]int{}
	for _, r := range rc.receipts() {
		got[strings.TrimPrefix(r.Path, "/")]++
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("subscription %s (%s): %d notifications, want %d", name, subs[name], got[name], n)
		}
	}
}
