package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/server/subscription"
)

// lateSockets lets the test start the engine on the server's store after
// the server.
type lateSockets struct {
	e atomic.Pointer[subscription.Engine]
}

func (l *lateSockets) Bind(id string) (<-chan string, func()) { return l.e.Load().Bind(id) }

// startSocketServer starts a test server with the websocket channel and
// its engine, which runs until the test ends.
func startSocketServer(t *testing.T) (*testServer, context.Context) {
	t.Helper()
	socks := &lateSockets{}
	ts := startServer(t, server.Config{SubscriptionSockets: socks})
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := subscription.New(subscription.Config{Store: ts.Store, Queue: ts.Store, Codec: codec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	socks.e.Store(eng)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ts, ctx
}

// wsURL is the test server's websocket endpoint.
func wsURL(ts *testServer) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + server.WebsocketPath
}

// dialSocket connects to the websocket endpoint with the headers (name,
// value pairs).
func dialSocket(t *testing.T, ctx context.Context, ts *testServer, headers ...string) *websocket.Conn {
	t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	c, _, err := websocket.Dial(ctx, wsURL(ts), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL(ts), err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// readSocket returns the next text message of c (waiting up to a minute).
func readSocket(t *testing.T, ctx context.Context, c *websocket.Conn) string {
	t.Helper()
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	_, b, err := c.Read(rctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestSubscription_Websocket(t *testing.T) {
	ts, ctx := startSocketServer(t)

	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	sub := `{"resourceType":"Subscription","meta":{"tag":[{"system":"` + ods + `","code":"LA1"}]},"status":"requested","reason":"ws",
		"criteria":"Communication?recipient:identifier=` + ods + `|LA1","channel":{"type":"websocket"}}`
	id := do(t, "POST", ts.Base+"/Subscription", sub).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	// A notification committed before any client binds waits for one.
	comm := `{"resourceType":"Communication","status":"completed","recipient":[{"identifier":{"system":"` + ods + `","value":"LA1"}}]}`
	do(t, "POST", ts.Base+"/Communication", comm).wantStatus(t, http.StatusCreated)

	dial := func(token string) *websocket.Conn {
		t.Helper()
		return dialSocket(t, ctx, ts, "Authorization", "Bearer "+token)
	}
	read := func(c *websocket.Conn) string { t.Helper(); return readSocket(t, ctx, c) }
	la2 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA2", Subject: "la2", ClientID: "la2"})
	other := dial(la2)
	other.Write(ctx, websocket.MessageText, []byte("bind "+id))
	if got := read(other); !strings.HasPrefix(got, "error "+id) {
		t.Errorf("another council binds: %q, want an error", got)
	}

	la1 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA1", Subject: "la1", ClientID: "la1"})
	c := dial(la1)
	c.Write(ctx, websocket.MessageText, []byte("bind "+id))
	if got := read(c); got != "bound "+id {
		t.Fatalf("bind: %q, want bound %s", got, id)
	}
	if got := read(c); got != "ping "+id {
		t.Errorf("after bind: %q, want the waiting notification's ping", got)
	}
	do(t, "POST", ts.Base+"/Communication", comm).wantStatus(t, http.StatusCreated)
	if got := read(c); got != "ping "+id {
		t.Errorf("after a second Communication: %q, want ping %s", got, id)
	}

	req, err := http.NewRequest(http.MethodGet, ts.URL+server.WebsocketPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer not-a-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET %s with an invalid token: %d, want 401", server.WebsocketPath, res.StatusCode)
	}
	// Without Authorization the upgrade succeeds, but only for
	// bind-with-token.
	anon := dialSocket(t, ctx, ts)
	anon.Write(ctx, websocket.MessageText, []byte("bind "+id))
	if got := read(anon); !strings.HasPrefix(got, "error "+id+" bind needs Authorization") {
		t.Errorf("bind without Authorization: %q, want an error naming the header", got)
	}
}

// TestSubscription_WebsocketBindingToken: the Backport IG's websocket
// channel. A council gets a binding token for its Subscriptions with
// $get-ws-binding-token, connects to the websocket-url without an
// Authorization header (as a browser does), binds with the token and
// receives the handshake, the notification Bundles and heartbeats; another
// council gets no token, and an expired or altered token binds nothing.
func TestSubscription_WebsocketBindingToken(t *testing.T) {
	ts, ctx := startSocketServer(t)
	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	la1 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA1", Subject: "la1", ClientID: "la1"})
	la2 := ts.TokenFor(t, smart.AccessToken{Role: smart.RoleLA, ODS: "LA2", Subject: "la2", ClientID: "la2"})
	auth := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	tag := `"meta":{"tag":[{"system":"` + ods + `","code":"LA1"}]}`
	topic := `{"resourceType":"Subscription",` + tag + `,"status":"requested","reason":"ws topic","criteria":"` + subscription.Topics[0].URL + `",
		"_criteria":{"extension":[{"url":"` + subscription.FilterCriteriaExtension + `","valueString":"Communication?recipient:identifier=` + ods + `|LA1"}]},
		"channel":{"type":"websocket","extension":[{"url":"` + subscription.HeartbeatExtension + `","valueUnsignedInt":1}],
		"payload":"application/fhir+json","_payload":{"extension":[{"url":"` + subscription.PayloadContentExtension + `","valueCode":"full-resource"}]}}}`
	topicID := do(t, "POST", ts.Base+"/Subscription", topic, auth(la1)...).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	r4 := `{"resourceType":"Subscription",` + tag + `,"status":"requested","reason":"ws","criteria":"Communication?recipient:identifier=` + ods + `|LA1","channel":{"type":"websocket"}}`
	r4ID := do(t, "POST", ts.Base+"/Subscription", r4, auth(la1)...).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	hook := `{"resourceType":"Subscription",` + tag + `,"status":"off","reason":"hook","criteria":"Communication","channel":{"type":"rest-hook","endpoint":"http://127.0.0.1:19251/hook"}}`
	hookID := do(t, "POST", ts.Base+"/Subscription", hook, auth(la1)...).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	for _, id := range []string{topicID, r4ID} {
		deadline := time.Now().Add(time.Minute)
		for do(t, "GET", ts.Base+"/Subscription/"+id, "").object(t)["status"] != "active" {
			if time.Now().After(deadline) {
				t.Fatalf("Subscription/%s not active within a minute", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The operation, in the CapabilityStatement and answering.
	if md := do(t, "GET", ts.Base+"/metadata", "").wantStatus(t, http.StatusOK); !strings.Contains(string(md.Body), `"name":"get-ws-binding-token"`) {
		t.Errorf("GET metadata: no operation get-ws-binding-token")
	}
	op := ts.Base + "/Subscription/" + topicID + "/$get-ws-binding-token"
	do(t, "GET", op, "", auth(la2)...).wantStatus(t, http.StatusNotFound)
	do(t, "GET", ts.Base+"/Subscription/"+hookID+"/$get-ws-binding-token", "", auth(la1)...).wantStatus(t, http.StatusBadRequest)
	do(t, "GET", ts.Base+"/Subscription/$get-ws-binding-token", "", auth(la1)...).wantStatus(t, http.StatusBadRequest)
	out := do(t, "GET", op, "", auth(la1)...).wantStatus(t, http.StatusOK).object(t)
	params := map[string][]string{}
	for _, p := range out["parameter"].([]any) {
		p := p.(map[string]any)
		for k, v := range p {
			if strings.HasPrefix(k, "value") {
				params[p["name"].(string)] = append(params[p["name"].(string)], v.(string))
			}
		}
	}
	exp, err := time.Parse(time.RFC3339, strings.Join(params["expiration"], ""))
	if len(params["token"]) != 1 || err != nil || !exp.After(ts.Clock.Now()) || strings.Join(params["subscription"], ",") != "Subscription/"+topicID ||
		strings.Join(params["websocket-url"], "") != wsURL(ts) {
		t.Fatalf("$get-ws-binding-token: %v, want a token, a future expiration, Subscription/%s and %s", params, topicID, wsURL(ts))
	}
	token := params["token"][0]

	// A browser-like client: no Authorization header.
	c := dialSocket(t, ctx, ts)
	c.Write(ctx, websocket.MessageText, []byte("bind-with-token "+token))
	kind := func(msg string) (typ, resources string) {
		t.Helper()
		var b struct {
			Type  string
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal([]byte(msg), &b); err != nil || b.Type != "history" || len(b.Entry) == 0 {
			t.Fatalf("message %q: want a notification Bundle", msg)
		}
		var p struct {
			Parameter []struct{ Name, ValueCode string }
		}
		json.Unmarshal(b.Entry[0].Resource, &p)
		for _, x := range p.Parameter {
			if x.Name == "type" {
				typ = x.ValueCode
			}
		}
		for _, e := range b.Entry[1:] {
			resources += string(e.Resource)
		}
		return typ, resources
	}
	if typ, _ := kind(readSocket(t, ctx, c)); typ != "handshake" {
		t.Fatalf("after bind-with-token: %s, want the handshake", typ)
	}
	comm := `{"resourceType":"Communication","status":"completed","recipient":[{"identifier":{"system":"` + ods + `","value":"LA1"}}]}`
	commID := do(t, "POST", ts.Base+"/Communication", comm).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	for {
		typ, res := kind(readSocket(t, ctx, c))
		if typ == "heartbeat" {
			continue // one may come first
		}
		if typ != "event-notification" || !strings.Contains(res, commID) {
			t.Fatalf("after a Communication: %s with %s, want its event-notification with the resource", typ, res)
		}
		break
	}
	if typ, _ := kind(readSocket(t, ctx, c)); typ != "heartbeat" {
		t.Errorf("idle: %s, want a heartbeat", typ)
	}

	// One token for two Subscriptions (type level, POST Parameters).
	both := fmt.Sprintf(`{"resourceType":"Parameters","parameter":[{"name":"id","valueId":%q},{"name":"id","valueId":%q}]}`, r4ID, topicID)
	out = do(t, "POST", ts.Base+"/Subscription/$get-ws-binding-token", both, auth(la1)...).wantStatus(t, http.StatusOK).object(t)
	token2 := out["parameter"].([]any)[0].(map[string]any)["valueString"].(string)
	c2 := dialSocket(t, ctx, ts)
	c2.Write(ctx, websocket.MessageText, []byte("bind-with-token: "+token2))
	if got := readSocket(t, ctx, c2); got != "bound "+r4ID {
		t.Errorf("bind-with-token for two: first %q, want bound %s", got, r4ID)
	}
	// Then, in either order, the R4 Subscription's waiting ping and the
	// topic's handshake.
	var ping, handshake bool
	for range 2 {
		switch m := readSocket(t, ctx, c2); {
		case m == "ping "+r4ID:
			ping = true
		case strings.HasPrefix(m, "{"):
			typ, _ := kind(m)
			handshake = handshake || typ == "handshake"
		}
	}
	if !ping || !handshake {
		t.Errorf("bind-with-token for two: ping %v, handshake %v; want both", ping, handshake)
	}

	// Altered and expired tokens bind nothing.
	for name, tok := range map[string]string{"altered": token[:len(token)-2] + "AA", "a paging cursor": "x" + token} {
		bad := dialSocket(t, ctx, ts)
		bad.Write(ctx, websocket.MessageText, []byte("bind-with-token "+tok))
		if got := readSocket(t, ctx, bad); !strings.HasPrefix(got, "error token not a binding token") {
			t.Errorf("bind-with-token (%s): %q, want an error", name, got)
		}
	}
	ts.Clock.Add(server.BindingTokenTTL + time.Second)
	late := dialSocket(t, ctx, ts)
	late.Write(ctx, websocket.MessageText, []byte("bind-with-token "+token))
	if got := readSocket(t, ctx, late); !strings.HasPrefix(got, "error token the binding token has expired") {
		t.Errorf("bind-with-token after expiry: %q, want an error", got)
	}
}
