package server

// The websocket channel of Subscriptions at GET [base]/$websocket. The
// client's first message binds it:
//
//   - "bind <Subscription id>" (R4): the upgrade request carries
//     Authorization: Bearer <token>, and the Subscription must be one that
//     token may read.
//   - "bind-with-token <token>" (Subscriptions R5 Backport IG; also
//     "bind-with-token: <token>"): the token from $get-ws-binding-token
//     (subscription_token.go) names the Subscriptions; no Authorization
//     header is needed, so browsers can bind.
//
// Each bound Subscription must use the websocket channel. A criteria
// (R4) Subscription answers "bound <id>", then "ping <id>" for each
// notification (the client reads the resources with its token); a topic
// Subscription sends a handshake Bundle, then each notification Bundle
// (content per its payload setting) and heartbeats, as text messages.
// Errors before the upgrade are OperationOutcomes (401 for an invalid
// bearer token); after it, an "error <id> <reason>" message and a close.
// See https://hl7.org/fhir/R4/subscription.html#2.46.7.2 and
// https://hl7.org/fhir/uv/subscriptions-backport/channels.html.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/coder/websocket"
	"github.com/cpis-fhir/cpis/fhir"
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

// authenticateSocket authenticates an upgrade request that carries an
// Authorization header (every one when authentication is off); one
// without may only bind with a binding token.
func (s *Server) authenticateSocket(c *gin.Context) {
	if s.cfg.Verifier != nil && c.GetHeader("Authorization") == "" {
		c.Next()
		return
	}
	s.authenticate(c)
}

// socketSubscription is what binding needs of a Subscription.
type socketSubscription struct {
	id    string
	topic bool // topic-based: Bundles, not pings
}

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
	verb, arg, _ := strings.Cut(strings.TrimSpace(string(msg)), " ")
	verb, arg = strings.TrimSuffix(verb, ":"), strings.TrimSpace(arg)
	var subs []socketSubscription
	switch {
	case verb == "bind" && arg != "":
		subs, err = s.bindByID(ctx, arg)
	case verb == "bind-with-token" && arg != "":
		subs, err = s.bindByToken(ctx, arg)
	default:
		conn.Close(websocket.StatusPolicyViolation, "send: bind <Subscription id>, or bind-with-token <token>")
		return
	}
	if err != nil {
		var fe *fhir.Error
		reason := "internal error"
		if errors.As(err, &fe) {
			reason = fe.Message
		}
		name := arg
		if verb == "bind-with-token" {
			name = "token"
		}
		conn.Write(ctx, websocket.MessageText, []byte("error "+safeToken(name)+" "+reason))
		conn.Close(websocket.StatusPolicyViolation, "not bound")
		return
	}
	var inbox []<-chan string
	for _, sub := range subs {
		msgs, unbind := s.cfg.SubscriptionSockets.Bind(sub.id)
		defer unbind()
		inbox = append(inbox, msgs)
		if !sub.topic {
			if err := conn.Write(ctx, websocket.MessageText, []byte("bound "+sub.id)); err != nil {
				return
			}
		}
	}
	ctx = conn.CloseRead(ctx) // ends when the client closes
	out := make(chan string)
	for _, msgs := range inbox {
		go forward(ctx, msgs, out)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-out:
			if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
	}
}

// forward passes the messages of in to out until ctx ends.
func forward(ctx context.Context, in <-chan string, out chan<- string) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-in:
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

// bindByID checks "bind <id>": the upgrade's token may read Subscription
// id, whose channel is websocket.
func (s *Server) bindByID(ctx context.Context, id string) ([]socketSubscription, error) {
	if principalOf(ctx) == nil {
		return nil, fhir.Errorf(fhir.IssueLogin, "bind needs Authorization: Bearer <token> on the upgrade request; without it, get a token with $get-ws-binding-token and send bind-with-token <token>")
	}
	sub, err := socketSubscriptionOf(ctx, s.storeFor(ctx), id)
	if err != nil {
		return nil, err
	}
	return []socketSubscription{sub}, nil
}

// bindByToken checks "bind-with-token <token>": a binding token of this
// server, not expired, whose Subscriptions still exist and use the
// websocket channel (the caller's right to read them was checked when the
// token was issued).
func (s *Server) bindByToken(ctx context.Context, tok string) ([]socketSubscription, error) {
	ids, err := s.openBindingToken(tok)
	if err != nil {
		return nil, err
	}
	var subs []socketSubscription
	for _, id := range ids {
		sub, err := socketSubscriptionOf(ctx, s.store, id)
		if err != nil {
			return nil, err
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// socketSubscriptionOf reads Subscription id through st, which must use the
// websocket channel.
func socketSubscriptionOf(ctx context.Context, st fhir.Store, id string) (socketSubscription, error) {
	r, err := st.Read(ctx, "Subscription", id)
	if err != nil || r.Deleted() {
		return socketSubscription{}, fhir.Errorf(fhir.IssueNotFound, "no such Subscription")
	}
	if !websocketChannel(r.JSON) {
		return socketSubscription{}, fhir.Errorf(fhir.IssueInvalid, "the Subscription's channel is not websocket")
	}
	var sub struct{ Criteria string }
	json.Unmarshal(r.JSON, &sub)
	return socketSubscription{id: id, topic: topicOf(sub.Criteria) != ""}, nil
}
