package server

// $status and $events on a Subscription, in the shape of the Subscriptions
// R5 Backport IG on R4: a SubscriptionStatus Parameters resource, and a
// history Bundle whose first entry is that Parameters with the
// notification events asked for.
// See https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-status.html
// and https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-events.html.
//
// Statuses: 200; 400 bad eventsSinceNumber, eventsUntilNumber or content;
// 403/404 a Subscription the caller may not read (the policy's answer);
// 404 another resource type.

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/subscription"
	"github.com/gin-gonic/gin"
)

// SubscriptionEvents is the subscription engine's durable state that the
// operations read (fhir/sqlite.Store implements it).
type SubscriptionEvents interface {
	// Events returns up to limit notifications of sub after an event number.
	Events(ctx context.Context, sub string, after int64, limit int) ([]fhir.Notification, error)
	// SubscriptionState returns the engine's state of sub.
	SubscriptionState(ctx context.Context, sub string) (fhir.SubscriptionState, error)
}

// maxEvents is the most notification events one $events answer holds.
const maxEvents = 100

// statusParam is a parameter of a SubscriptionStatus Parameters resource.
type statusParam struct {
	Name                 string         `json:"name"`
	Extension            []statusExt    `json:"extension,omitempty"`
	ValueCode            string         `json:"valueCode,omitempty"`
	ValueString          string         `json:"valueString,omitempty"`
	ValueCanonical       string         `json:"valueCanonical,omitempty"`
	ValueDateTime        string         `json:"valueDateTime,omitempty"`
	ValueURL             string         `json:"valueUrl,omitempty"`
	ValueReference       *statusRef     `json:"valueReference,omitempty"`
	ValueCodeableConcept *statusConcept `json:"valueCodeableConcept,omitempty"`
	Part                 []statusParam  `json:"part,omitempty"`
}

// statusExt is an extension with a code, such as
// subscription.EventExtension.
type statusExt struct {
	URL       string `json:"url"`
	ValueCode string `json:"valueCode"`
}

type statusRef struct {
	Reference string `json:"reference"`
}

type statusConcept struct {
	Text string `json:"text"`
}

type statusParameters struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Parameter    []statusParam `json:"parameter"`
}

// subscriptionStatus reads Subscription id as the caller may, and returns
// its SubscriptionStatus parameters of the type (query-status,
// query-event).
func (s *Server) subscriptionStatus(c *gin.Context, typ string) (string, *statusParameters, bool) {
	if !s.operationType(c, "Subscription", "status or $events") {
		return "", nil, false
	}
	ctx := c.Request.Context()
	id := c.Param("id")
	r, err := s.storeFor(ctx).Read(ctx, "Subscription", id)
	if err == nil && r.Deleted() {
		err = fhir.Errorf(fhir.IssueDeleted, "Subscription: the resource was deleted")
	}
	if err != nil {
		s.fail(c, err)
		return "", nil, false
	}
	var sub struct{ Status, Error, Criteria string }
	if err := json.Unmarshal(r.JSON, &sub); err != nil {
		s.fail(c, err)
		return "", nil, false
	}
	st, err := s.cfg.Subscriptions.SubscriptionState(ctx, id)
	if err != nil {
		s.fail(c, err)
		return "", nil, false
	}
	p := &statusParameters{ResourceType: "Parameters", ID: fhir.NewID(), Parameter: []statusParam{
		{Name: "subscription", ValueReference: &statusRef{Reference: s.baseURL(c) + "/Subscription/" + id}},
		{Name: "topic", ValueCanonical: topicOf(sub.Criteria)},
		{Name: "status", ValueCode: sub.Status},
		{Name: "type", ValueCode: typ},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(st.Events, 10)},
	}}
	if p.Parameter[1].ValueCanonical == "" {
		p.Parameter = append(p.Parameter[:1], p.Parameter[2:]...) // a criteria Subscription has no topic
	}
	if sub.Error != "" {
		p.Parameter = append(p.Parameter, statusParam{Name: "error", ValueCodeableConcept: &statusConcept{Text: sub.Error}})
	}
	return id, p, true
}

// topicOf returns criteria when it is one of the server's topics.
func topicOf(criteria string) string {
	for _, t := range subscription.Topics {
		if t.URL == criteria {
			return criteria
		}
	}
	return ""
}

// subscriptionStatusOp answers GET [base]/Subscription/[id]/$status.
func (s *Server) subscriptionStatusOp(c *gin.Context) {
	_, p, ok := s.subscriptionStatus(c, "query-status")
	if !ok {
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, b)
}

// subscriptionEventsOp answers GET [base]/Subscription/[id]/$events
// ?eventsSinceNumber=&eventsUntilNumber=&content=: the stored notification
// events in that range (at most 100), oldest first, with the resources
// (content full-resource, the default) that the caller may read now.
func (s *Server) subscriptionEventsOp(c *gin.Context) {
	num := func(name string, def int64) (int64, bool) {
		v := c.Query(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			s.fail(c, fhir.Errorf(fhir.IssueInvalid, "%s must be a positive event number", name))
			return 0, false
		}
		return n, true
	}
	since, ok := num("eventsSinceNumber", 1)
	if !ok {
		return
	}
	until, ok := num("eventsUntilNumber", since+maxEvents-1)
	if !ok {
		return
	}
	content := c.DefaultQuery("content", "full-resource")
	switch content {
	case "empty", "id-only", "full-resource":
	default:
		s.fail(c, fhir.Errorf(fhir.IssueInvalid, "content must be empty, id-only or full-resource"))
		return
	}
	id, p, ok := s.subscriptionStatus(c, "query-event")
	if !ok {
		return
	}
	var topic string // the topic's canonical, for a topic Subscription
	for _, x := range p.Parameter {
		if x.Name == "topic" {
			topic = x.ValueCanonical
		}
	}
	ctx := c.Request.Context()
	limit := int(min(until-since+1, maxEvents))
	var ns []fhir.Notification
	if limit > 0 {
		var err error
		if ns, err = s.cfg.Subscriptions.Events(ctx, id, since-1, limit); err != nil {
			s.fail(c, err)
			return
		}
	}
	base := s.baseURL(c)
	st := s.storeFor(ctx)
	b := fhir.NewBundle("history")
	var resources []fhir.BundleEntry
	for _, n := range ns {
		ev := statusParam{Name: "notification-event", Part: []statusParam{{Name: "event-number", ValueString: strconv.FormatInt(n.Number, 10)}}}
		if content != "empty" {
			// Only what the caller may read now is named or sent.
			if r, err := st.VRead(ctx, n.Type, n.ID, n.Version); err == nil {
				if topic != "" {
					ev.Extension = []statusExt{{URL: subscription.EventExtension, ValueCode: subscription.EventCode(topic, r)}}
				}
				ref := base + "/" + r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
				ev.Part = append(ev.Part, statusParam{Name: "focus", ValueReference: &statusRef{Reference: ref}})
				if content == "full-resource" {
					resources = append(resources, historyEntry(base, r))
				}
			} else if code := fhir.ErrorCode(err); code != fhir.IssueNotFound && code != fhir.IssueForbidden {
				s.fail(c, err)
				return
			}
		}
		p.Parameter = append(p.Parameter, ev)
	}
	pb, err := json.Marshal(p)
	if err != nil {
		s.fail(c, err)
		return
	}
	b.Entry = append([]fhir.BundleEntry{{
		FullURL:  "urn:uuid:" + p.ID,
		Resource: pb,
		Request:  &fhir.BundleRequest{Method: http.MethodGet, URL: "Subscription/" + id + "/$events"},
		Response: &fhir.BundleResponse{Status: "200 OK"},
	}}, resources...)
	out, err := b.JSON()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.writeJSON(c, http.StatusOK, out)
}
