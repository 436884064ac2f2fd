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
	// Types are the resource types it notifies; filter criteria are
	// searches of these types.
	Types []string
	// flagged makes the topic notify only resources whose subject has an
	// active CP-IS Flag.
	flagged bool
	// record makes the topic notify CP-IS records: of the Flags only
	// those with the CP-IS code, and an update that ends the record as
	// the event "end" (EventCode).
	record bool
}

// Topics are the server's subscription topics.
var Topics = []Topic{
	{URL: "https://fhir.cpis.nhs.uk/SubscriptionTopic/communication-for-council", Title: "Communication for a council (filter: recipient:identifier)", Types: []string{"Communication"}},
	{URL: "https://fhir.cpis.nhs.uk/SubscriptionTopic/encounter-for-flagged-child", Title: "Encounter for a child with an active CP-IS Flag", Types: []string{"Encounter"}, flagged: true},
	{URL: "https://fhir.cpis.nhs.uk/SubscriptionTopic/record-for-council",
		Title: "CP-IS record of a council's children created, updated, ended or deleted (filters: Flag?author:identifier, CarePlan?author:identifier, CareTeam?managing-organization:identifier, Patient?organization:identifier)",
		Types: []string{"Flag", "CarePlan", "CareTeam", "Patient"}, record: true},
}

// EventExtension is the URL of the extension on a notification-event parameter
// whose valueCode says what happened to the focus: create, update, end
// (a CP-IS record ended: record-for-council only) or delete.
const EventExtension = "https://fhir.cpis.nhs.uk/StructureDefinition/subscription-notification-event-type"

// EventCode returns what the version r is to a Subscription of the topic
// with the canonical topic (empty for criteria): delete, create (version
// 1), end (record-for-council: an update whose record has ended) or
// update.
func EventCode(topic string, r *fhir.Resource) string {
	switch t := topicOf(topic); {
	case r.Deleted():
		return "delete"
	case r.VersionID == 1:
		return "create"
	case t != nil && t.record && ended(r):
		return "end"
	}
	return "update"
}

// ended reports whether the CP-IS record version r has ended: its status
// is no longer current (Flag and CareTeam inactive, CarePlan completed or
// revoked, any entered-in-error) or its period ended at or before the
// change (an unborn plan carries its planned end date from the start).
func ended(r *fhir.Resource) bool {
	var v struct {
		Status string
		Period struct{ End string }
	}
	if json.Unmarshal(r.JSON, &v) != nil {
		return false
	}
	switch v.Status {
	case "inactive", "completed", "revoked", "entered-in-error":
		return true
	}
	if v.Period.End == "" {
		return false
	}
	end, _, ok := fhir.DateRange(v.Period.End, nil)
	return ok && end <= r.LastUpdated.UnixMilli()
}

// admits reports whether t notifies the version r at all, before its
// filters: a record topic only CP-IS Flags of the Flags.
func (t *Topic) admits(r *fhir.Resource) bool {
	return !t.record || r.Type != "Flag" || cpisFlag(r.JSON)
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
	Extension      []ext   `json:"extension,omitempty"`
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

type ext struct {
	URL       string `json:"url"`
	ValueCode string `json:"valueCode"`
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
		if r != nil {
			ev.Extension = []ext{{URL: EventExtension, ValueCode: EventCode(s.topic.URL, r)}}
		}
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
