package server

// $get-ws-binding-token: a short-lived token with which a websocket client
// binds to Subscriptions ("bind-with-token <token>" on WebsocketPath)
// without an Authorization header on the upgrade, which browsers cannot
// send. The token is sealed with the server's cursor key (AES-GCM, its own
// additional data), names the Subscriptions it is good for and when it
// expires; it is issued only for Subscriptions the caller may read whose
// channel is websocket.
// See https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html
// and https://hl7.org/fhir/uv/subscriptions-backport/channels.html.
//
// Statuses: 200; 400 no id (type level), a Subscription whose channel is
// not websocket; 403/404 a Subscription the caller may not read (the
// policy's answer); 410 a deleted one; 404 another resource type.

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// BindingTokenTTL is how long a websocket binding token is good for.
const BindingTokenTTL = 5 * time.Minute

// bindingPurpose is the additional data binding tokens are sealed with.
var bindingPurpose = []byte("cpis websocket binding token")

// bindingToken is what a binding token carries.
type bindingToken struct {
	Subscriptions []string `json:"s"`
	Expires       int64    `json:"e"` // Unix seconds
}

// openBindingToken returns the Subscription ids of the token s; an error
// when it is not one this server sealed or has expired.
func (s *Server) openBindingToken(tok string) ([]string, error) {
	plain, ok := s.cursors.openBytes(tok, bindingPurpose)
	var t bindingToken
	if !ok || json.Unmarshal(plain, &t) != nil || len(t.Subscriptions) == 0 {
		return nil, fhir.Errorf(fhir.IssueSecurity, "not a binding token of this server (get one with $get-ws-binding-token)")
	}
	if !s.cfg.Now().Before(time.Unix(t.Expires, 0)) {
		return nil, fhir.Errorf(fhir.IssueSecurity, "the binding token has expired (get a new one with $get-ws-binding-token)")
	}
	return t.Subscriptions, nil
}

// websocketChannel reports whether the Subscription JSON uses the
// websocket channel.
func websocketChannel(body []byte) bool {
	var sub struct {
		Channel struct{ Type string }
	}
	return json.Unmarshal(body, &sub) == nil && sub.Channel.Type == "websocket"
}

// bindingTokenOp answers [base]/Subscription/[id]/$get-ws-binding-token and
// [base]/Subscription/$get-ws-binding-token?id=..&id=.. (GET or POST).
func (s *Server) bindingTokenOp(c *gin.Context) {
	p, ok := s.operationInput(c, "Subscription", "get-ws-binding-token")
	if !ok {
		return
	}
	ids := p.all("id")
	if id := c.Param("id"); id != "" {
		ids = []string{id} // at the instance level the parameter is ignored
	}
	if len(ids) == 0 {
		s.fail(c, fhir.Errorf(fhir.IssueRequired, "parameter id is required: the Subscriptions to bind"))
		return
	}
	ctx := c.Request.Context()
	st := s.storeFor(ctx)
	for _, id := range ids {
		r, err := st.Read(ctx, "Subscription", id)
		if err == nil && r.Deleted() {
			err = fhir.Errorf(fhir.IssueDeleted, "Subscription: the resource was deleted")
		}
		if err == nil && !websocketChannel(r.JSON) {
			err = fhir.Errorf(fhir.IssueInvalid, "Subscription/%s does not use the websocket channel", safeToken(id))
		}
		if err != nil {
			s.fail(c, err)
			return
		}
	}
	exp := s.cfg.Now().Add(BindingTokenTTL).Truncate(time.Second)
	plain, err := json.Marshal(bindingToken{Subscriptions: ids, Expires: exp.Unix()})
	if err != nil {
		s.fail(c, err)
		return
	}
	out := &statusParameters{ResourceType: "Parameters", Parameter: []statusParam{
		{Name: "token", ValueString: s.cursors.sealBytes(plain, bindingPurpose)},
		{Name: "expiration", ValueDateTime: fhir.FormatInstant(exp)},
	}}
	for _, id := range ids {
		out.Parameter = append(out.Parameter, statusParam{Name: "subscription", ValueString: "Subscription/" + id})
	}
	// The websocket is below the FHIR base (WebsocketPath): http -> ws,
	// https -> wss.
	ws := "ws" + strings.TrimPrefix(s.baseURL(c), "http") + strings.TrimPrefix(WebsocketPath, FHIRBase)
	out.Parameter = append(out.Parameter, statusParam{Name: "websocket-url", ValueURL: ws})
	b, err := json.Marshal(out)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}
