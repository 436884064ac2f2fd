package server

// The R4 websocket channel of Subscriptions: GET [base]/$websocket upgrades
// to a websocket; the client sends "bind <Subscription id>" (a
// Subscription with channel type websocket that its token may read), gets
// "bound <id>", then "ping <id>" for each notification, and reads the
// resources with its token. Errors before the upgrade are
// OperationOutcomes (401 without a valid bearer token); after it, an
// "error <id> <reason>" message and a close.
// See https://hl7.org/fhir/R4/subscription.html#2.46.7.2.

import (
	"encoding/json"
	"strings"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
)

// SubscriptionSockets binds websocket clients to Subscriptions
// (subscription.Engine implements it).
type SubscriptionSockets interface {
	// Bind registers a client of Subscription id; msgs receives the
	// messages to send it until unbind.
	Bind(id string) (msgs <-chan string, unbind func())
}

// WebsocketPath is the websocket endpoint below the server root.
const WebsocketPath = FHIRBase + "/$websocket"

func (s *Server) websocket(c *gin.Context) {
	conn, err := websocket.Accept(c.Writer, c.Request, nil)
	if err != nil {
		return // Accept answered the request
	}
	defer conn.CloseNow()
	ctx := c.Request.Context()
	_, msg, err := conn.Read(ctx)
	if err != nil {
		return
	}
	verb, id, _ := strings.Cut(strings.TrimSpace(string(msg)), " ")
	if verb != "bind" || id == "" {
		conn.Close(websocket.StatusPolicyViolation, "send: bind <Subscription id>")
		return
	}
	fail := func(reason string) {
		conn.Write(ctx, websocket.MessageText, []byte("error "+safeToken(id)+" "+reason))
		conn.Close(websocket.StatusPolicyViolation, reason)
	}
	r, err := s.storeFor(ctx).Read(ctx, "Subscription", id)
	if err != nil || r.Deleted() {
		fail("no such Subscription")
		return
	}
	var sub struct {
		Channel struct{ Type string }
	}
	if json.Unmarshal(r.JSON, &sub) != nil || sub.Channel.Type != "websocket" {
		fail("the Subscription's channel is not websocket")
		return
	}
	msgs, unbind := s.cfg.SubscriptionSockets.Bind(id)
	defer unbind()
	if err := conn.Write(ctx, websocket.MessageText, []byte("bound "+id)); err != nil {
		return
	}
	ctx = conn.CloseRead(ctx) // ends when the client closes
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
	}
}
