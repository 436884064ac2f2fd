package subscription

// The server's subscription topics and the notification Bundles of the
// Subscriptions R5 Backport IG on R4: a topic-based Subscription names a
// topic canonical in criteria, narrows it with backport-filter-criteria
// extensions on criteria, chooses the payload content with
// backport-payload-content on channel.payload and may ask for heartbeats
// (backport-heartbeat-period on channel). Notifications are history
// Bundles whose first entry is the SubscriptionStatus Parameters.
// See https://hl7.org/fhir/uv/subscriptions-backport/.

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/cpis-fhir/cpis/fhir"
)

// Backport IG extension URLs.
const (
	FilterCriteriaExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
	PayloadContentExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
	HeartbeatExtension      = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period"
	// TopicCanonicalExtension lists a topic on the CapabilityStatement's
	// Subscription resource.
	TopicCanonicalExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)

// Topic is a subscription topic the server offers.
type Topic struct {
	// URL is the topic's canonical, given as a Subscription's criteria.
	URL string
	// Title says what it notifies.
	Title string
	// Type is the resource type it notifies; filter criteria are searches
	// of this type.
	Type string
	// flagged makes the topic notify only resources whose subject has an
	// active CP-IS Flag.
	flagged bool
}

// Topics are the server's subscription topics.
var Topics = []Topic{
	{URL: "https://fhir.cpis.nhs.uk/SubscriptionTopic/communication-for-council", Title: "Communication for a council (filter: recipient:identifier)", Type: "Communication"},
	{URL: "https://fhir.cpis.nhs.uk/SubscriptionTopic/encounter-for-flagged-child", Title: "Encounter for a child with an active CP-IS Flag", Type: "Encounter", flagged: true},
}

func topicOf(url string) *Topic {
	for i := range Topics {
		if Topics[i].URL == url {
			return &Topics[i]
		}
	}
	return nil
}

// CP-IS Flag code, as server/validate.go knows it.
const (
	flagCategorySystem = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
	flagCode           = "child-protection-information-system-flag"
)

type param struct {
	Name           string  `json:"name"`
	ValueCode      string  `json:"valueCode,omitempty"`
	ValueString    string  `json:"valueString,omitempty"`
	ValueCanonical string  `json:"valueCanonical,omitempty"`
	ValueInstant   string  `json:"valueInstant,omitempty"`
	ValueReference *ref    `json:"valueReference,omitempty"`
	Part           []param `json:"part,omitempty"`
}

type ref struct {
	Reference string `json:"reference"`
}

// notificationBundle is the Backport IG notification of the kind typ
// (handshake, heartbeat, event-notification) for s, with the events
// since the subscription's start (total) and, for an event-notification,
// the event n with the version r (nil: content empty).
func notificationBundle(s *spec, typ string, total int64, n *fhir.Notification, r *fhir.Resource, now string) ([]byte, error) {
	status := s.status
	if status == StatusRequested {
		status = StatusActive
	}
	ps := []param{
		{Name: "subscription", ValueReference: &ref{"Subscription/" + s.id}},
		{Name: "topic", ValueCanonical: s.topic.URL},
		{Name: "status", ValueCode: status},
		{Name: "type", ValueCode: typ},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(total, 10)},
	}
	var entries []fhir.BundleEntry
	if n != nil {
		ev := param{Name: "notification-event", Part: []param{
			{Name: "event-number", ValueString: strconv.FormatInt(n.Number, 10)},
			{Name: "timestamp", ValueInstant: now},
		}}
		if s.content != "empty" && r != nil {
			ev.Part = append(ev.Part, param{Name: "focus", ValueReference: &ref{r.VersionRef()}})
			switch {
			case s.content != "full-resource":
			case r.Deleted():
				// No resource: the entry says what was deleted.
				entries = append(entries, fhir.BundleEntry{FullURL: r.Ref(),
					Request:  &fhir.BundleRequest{Method: http.MethodDelete, URL: r.Ref()},
					Response: &fhir.BundleResponse{Status: "204 No Content", Etag: r.ETag()}})
			default:
				entries = append(entries, fhir.BundleEntry{FullURL: r.Ref(), Resource: r.JSON,
					Request:  &fhir.BundleRequest{Method: http.MethodPut, URL: r.Ref()},
					Response: &fhir.BundleResponse{Status: "200 OK", Etag: r.ETag()}})
			}
		}
		ps = append(ps, ev)
	}
	id := fhir.NewID()
	pb, err := json.Marshal(struct {
		ResourceType string  `json:"resourceType"`
		ID           string  `json:"id"`
		Parameter    []param `json:"parameter"`
	}{"Parameters", id, ps})
	if err != nil {
		return nil, err
	}
	b := fhir.NewBundle("history")
	b.Entry = append([]fhir.BundleEntry{{FullURL: "urn:uuid:" + id, Resource: pb,
		Request:  &fhir.BundleRequest{Method: "GET", URL: "Subscription/" + s.id + "/$status"},
		Response: &fhir.BundleResponse{Status: "200 OK"}}}, entries...)
	return json.Marshal(b)
}
