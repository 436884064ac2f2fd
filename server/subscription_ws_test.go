package server_test

import (
	"context"
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

func TestSubscription_Websocket(t *testing.T) {
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

	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	sub := `{"resourceType":"Subscription","meta":{"tag":[{"system":"` + ods + `","code":"LA1"}]},"status":"requested","reason":"ws",
		"criteria":"Communication?recipient:identifier=` + ods + `|LA1","channel":{"type":"websocket"}}`
	id := do(t, "POST", ts.Base+"/Subscription", sub).wantStatus(t, http.StatusCreated).object(t)["id"].(string)
	// A notification committed before any client binds waits for one.
	comm := `{"resourceType":"Communication","status":"completed","recipient":[{"identifier":{"system":"` + ods + `","value":"LA1"}}]}`
	do(t, "POST", ts.Base+"/Communication", comm).wantStatus(t, http.StatusCreated)

	dial := func(token string) *websocket.Conn {
		t.Helper()
		wsURL := "ws" + strings.TrimPrefix(ts.URL, "http") + server.WebsocketPath
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
		if err != nil {
			t.Fatalf("dial %s: %v", wsURL, err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	read := func(c *websocket.Conn) string {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, time.Minute)
		defer rcancel()
		_, b, err := c.Read(rctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b)
	}
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

	res, err := http.Get(ts.URL + server.WebsocketPath)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET %s without a token: %d, want 401", server.WebsocketPath, res.StatusCode)
	}
}
