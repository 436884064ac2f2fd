package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/server/subscription"
)

// TestSubscription_CouncilEndToEnd: a council writes its Subscription over
// the API with its own token, the engine (running on the server's store)
// delivers the Communications addressed to it, and $status and $events
// answer the council but not another one.
func TestSubscription_CouncilEndToEnd(t *testing.T) {
	ts := startServer(t, server.Config{})
	var got atomic.Int64
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer rc.Close()
	startEngine(t, ts)

	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	la1 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA1", Subject: "la1", ClientID: "la1"})
	la2 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA2", Subject: "la2", ClientID: "la2"})
	sub := fmt.Sprintf(`{"resourceType":"Subscription","meta":{"tag":[{"system":%q,"code":"LA1"}]},"status":"requested","reason":"notifications",
		"criteria":"Communication?recipient:identifier=%s|LA1","channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json"}}`, ods, ods, rc.URL+"/fhir")
	res := do(t, "POST", ts.Base+"/Subscription", sub, "Authorization", "Bearer "+la1).wantStatus(t, http.StatusCreated)
	id := res.object(t)["id"].(string)
	deadline := time.Now().Add(time.Minute)
	for do(t, "GET", ts.Base+"/Subscription/"+id, "").object(t)["status"] != "active" {
		if time.Now().After(deadline) {
			t.Fatal("Subscription not active within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	comm := func(la string) string {
		return fmt.Sprintf(`{"resourceType":"Communication","status":"completed","recipient":[{"identifier":{"system":%q,"value":%q}}]}`, ods, la)
	}
	do(t, "POST", ts.Base+"/Communication", comm("LA1")).wantStatus(t, http.StatusCreated)
	do(t, "POST", ts.Base+"/Communication", comm("LA2")).wantStatus(t, http.StatusCreated)
	do(t, "POST", ts.Base+"/Communication", comm("LA1")).wantStatus(t, http.StatusCreated)
	for got.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications within a minute, want 2", got.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	st := do(t, "GET", ts.Base+"/Subscription/"+id+"/$status", "", "Authorization", "Bearer "+la1).wantStatus(t, http.StatusOK)
	for _, want := range []string{`"name":"events-since-subscription-start","valueString":"2"`, `"valueCode":"query-status"`, `"valueCode":"active"`} {
		if !strings.Contains(string(st.Body), want) {
			t.Errorf("$status: %s, want %s", st.Body, want)
		}
	}
	ev := do(t, "GET", ts.Base+"/Subscription/"+id+"/$events?eventsSinceNumber=2", "", "Authorization", "Bearer "+la1).wantStatus(t, http.StatusOK)
	b := ev.object(t)
	entries, _ := b["entry"].([]any)
	if b["type"] != "history" || len(entries) != 2 {
		t.Fatalf("$events?eventsSinceNumber=2: %s, want a history Bundle of the status and one resource", ev.Body)
	}
	first := entries[0].(map[string]any)["resource"].(map[string]any)
	if first["resourceType"] != "Parameters" || !strings.Contains(string(ev.Body), `"name":"event-number","valueString":"2"`) || strings.Contains(string(ev.Body), `"valueString":"1"`) {
		t.Errorf("$events: %s, want the SubscriptionStatus first with event 2 only", ev.Body)
	}
	do(t, "GET", ts.Base+"/Subscription/"+id+"/$status", "", "Authorization", "Bearer "+la2).wantStatus(t, http.StatusNotFound)
	do(t, "GET", ts.Base+"/Subscription/"+id+"/$events?eventsSinceNumber=x", "", "Authorization", "Bearer "+la1).wantStatus(t, http.StatusBadRequest)
	do(t, "GET", ts.Base+"/Patient/"+id+"/$status", "").wantStatus(t, http.StatusNotFound)
}

func TestSubscription_WriteChecks(t *testing.T) {
	ts := startServer(t, server.Config{})
	sub := func(criteria, channel string) string {
		return fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"r","criteria":%q,"channel":%s}`, criteria, channel)
	}
	for _, c := range []struct{ name, body, want string }{
		{"unknown parameter", sub("Communication?no-such-param=1", `{"type":"rest-hook","endpoint":"https://la.example/hook"}`), "criteria"},
		{"no resource type", sub("recipient=x", `{"type":"rest-hook","endpoint":"https://la.example/hook"}`), "resource type"},
		{"email channel", sub("Communication", `{"type":"email","endpoint":"mailto:a@la.example"}`), "not supported"},
		{"relative endpoint", sub("Communication", `{"type":"rest-hook","endpoint":"/hook"}`), "endpoint"},
		{"bad header", sub("Communication", `{"type":"rest-hook","endpoint":"https://la.example/hook","header":["no colon"]}`), "header"},
		{"retry horizon in weeks", sub("Communication", `{"type":"rest-hook","endpoint":"https://la.example/hook","extension":[{"url":"`+subscription.HorizonExtension+`","valueDuration":{"value":1,"code":"wk"}}]}`), "retry horizon"},
		{"topic filter of another type", strings.Replace(sub(subscription.Topics[2].URL, `{"type":"rest-hook","endpoint":"https://la.example/hook"}`),
			`"channel"`, `"_criteria":{"extension":[{"url":"`+subscription.FilterCriteriaExtension+`","valueString":"Encounter?status=finished"}]},"channel"`, 1),
			"Flag or CarePlan or CareTeam or Patient"},
		{"topic filter unknown parameter", strings.Replace(sub(subscription.Topics[2].URL, `{"type":"rest-hook","endpoint":"https://la.example/hook"}`),
			`"channel"`, `"_criteria":{"extension":[{"url":"`+subscription.FilterCriteriaExtension+`","valueString":"CareTeam?no-such=1"}]},"channel"`, 1),
			"criteria"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, "POST", ts.Base+"/Subscription", c.body).wantStatus(t, http.StatusBadRequest)
			if _, diag, _ := res.outcome(t); !strings.Contains(diag, c.want) {
				t.Errorf("POST Subscription (%s): %s, want a message about %s", c.name, res.Body, c.want)
			}
		})
	}
	// A Subscription in status off is stored as it is.
	do(t, "POST", ts.Base+"/Subscription", strings.Replace(sub("Communication", `{"type":"email"}`), "requested", "off", 1)).wantStatus(t, http.StatusCreated)
}

// TestSubscription_EndpointAllowList: by default a rest-hook endpoint on an
// internal address is refused when written; an operator's allow-list lets
// only what it names through.
func TestSubscription_EndpointAllowList(t *testing.T) {
	sub := func(endpoint string) string {
		return fmt.Sprintf(`{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"Communication",
			"channel":{"type":"rest-hook","endpoint":%q}}`, endpoint)
	}
	def, err := subscription.NewEndpoints(nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, server.Config{SubscriptionEndpoints: def})
	for _, endpoint := range []string{"http://127.0.0.1:19250/hook", "http://localhost/hook", "http://169.254.169.254/latest", "http://10.0.0.7/hook", "http://[::1]/hook"} {
		res := do(t, "POST", ts.Base+"/Subscription", sub(endpoint)).wantStatus(t, http.StatusBadRequest)
		if _, diag, _ := res.outcome(t); !strings.Contains(diag, "internal address") {
			t.Errorf("POST Subscription to %s: %s, want a refusal naming the internal address", endpoint, res.Body)
		}
	}
	do(t, "POST", ts.Base+"/Subscription", sub("https://8.8.8.8/hook")).wantStatus(t, http.StatusCreated)

	list, err := subscription.NewEndpoints([]string{"127.0.0.1:19250"})
	if err != nil {
		t.Fatal(err)
	}
	ts = startServer(t, server.Config{SubscriptionEndpoints: list})
	do(t, "POST", ts.Base+"/Subscription", sub("http://127.0.0.1:19250/hook")).wantStatus(t, http.StatusCreated)
	res := do(t, "POST", ts.Base+"/Subscription", sub("https://8.8.8.8/hook")).wantStatus(t, http.StatusBadRequest)
	if _, diag, _ := res.outcome(t); !strings.Contains(diag, "list of allowed receivers") {
		t.Errorf("POST Subscription off the list: %s, want a refusal naming the list", res.Body)
	}
}

func TestSubscription_TopicsInCapabilityStatement(t *testing.T) {
	ts := startServer(t, server.Config{})
	res := do(t, "GET", ts.Base+"/metadata", "").wantStatus(t, http.StatusOK)
	codec, _ := fhir.NewCodec()
	if _, err := codec.Parse(res.Body); err != nil {
		t.Fatalf("CapabilityStatement is not valid R4: %v", err)
	}
	for _, topic := range subscription.Topics {
		want := fmt.Sprintf(`{"url":%q,"valueCanonical":%q}`, subscription.TopicCanonicalExtension, topic.URL)
		if !strings.Contains(string(res.Body), want) {
			t.Errorf("GET metadata: no %s", want)
		}
	}
	for _, op := range []string{`"name":"status"`, `"name":"events"`} {
		if !strings.Contains(string(res.Body), op) {
			t.Errorf("GET metadata: no operation %s", op)
		}
	}
}

// startEngine runs a subscription engine on the test server's store until
// the test ends.
func startEngine(t *testing.T, ts *testServer) {
	t.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := subscription.New(subscription.Config{Store: ts.Store, Queue: ts.Store, Codec: codec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Endpoints: loopbackEndpoints(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
