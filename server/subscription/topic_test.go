package subscription_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server/subscription"
)

// topicSubscriptionJSON is a Backport IG topic-based Subscription.
func topicSubscriptionJSON(tag, topic, filter, endpoint, content, channelExt string) string {
	meta := ""
	if tag != "" {
		meta = fmt.Sprintf(`"meta":{"tag":[{"system":%q,"code":%q}]},`, ods, tag)
	}
	crit := ""
	if filter != "" {
		crit = fmt.Sprintf(`,"_criteria":{"extension":[{"url":%q,"valueString":%q}]}`, subscription.FilterCriteriaExtension, filter)
	}
	return fmt.Sprintf(`{"resourceType":"Subscription",%s"status":"requested","reason":"topic","criteria":%q%s,
		"channel":{%s"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json","_payload":{"extension":[{"url":%q,"valueCode":%q}]}}}`,
		meta, topic, crit, channelExt, endpoint, subscription.PayloadContentExtension, content)
}

// notification is the part of a notification Bundle the tests read.
type notification struct {
	Type  string
	Entry []struct {
		Resource json.RawMessage
	}
}

type statusParams struct {
	ResourceType string
	Parameter    []struct {
		Name           string
		ValueCode      string
		ValueString    string
		ValueCanonical string
		ValueReference struct{ Reference string }
		Part           []struct {
			Name           string
			ValueString    string
			ValueReference struct{ Reference string }
		}
	}
}

func (p statusParams) get(name string) string {
	for _, x := range p.Parameter {
		if x.Name == name {
			return x.ValueCode + x.ValueString + x.ValueCanonical + x.ValueReference.Reference
		}
	}
	return ""
}

// events returns event-number -> focus of the notification-events.
func (p statusParams) events() map[string]string {
	out := map[string]string{}
	for _, x := range p.Parameter {
		if x.Name != "notification-event" {
			continue
		}
		var num, focus string
		for _, part := range x.Part {
			switch part.Name {
			case "event-number":
				num = part.ValueString
			case "focus":
				focus = part.ValueReference.Reference
			}
		}
		out[num] = focus
	}
	return out
}

func decodeNotification(t *testing.T, body []byte) (notification, statusParams) {
	t.Helper()
	var n notification
	var p statusParams
	if err := json.Unmarshal(body, &n); err != nil || n.Type != "history" || len(n.Entry) == 0 {
		t.Fatalf("notification %s: want a history Bundle (%v)", body, err)
	}
	if err := json.Unmarshal(n.Entry[0].Resource, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("notification %s: first entry is not the SubscriptionStatus Parameters (%v)", body, err)
	}
	return n, p
}

func TestTopic_CommunicationForCouncil(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	topic := subscription.Topics[0].URL
	sub := e.create(t, topicSubscriptionJSON("LA1", topic, "Communication?recipient:identifier="+ods+"|LA1", rc.URL, "full-resource", ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	got := rc.receipts()
	if len(got) != 1 || got[0].Key != sub.ID+":handshake" {
		t.Fatalf("before activation: %d requests (%+v), want the handshake", len(got), got)
	}
	if _, p := decodeNotification(t, got[0].Body); p.get("type") != "handshake" || p.get("topic") != topic || p.get("events-since-subscription-start") != "0" {
		t.Errorf("handshake %s: want type handshake, the topic and 0 events", got[0].Body)
	}
	e.create(t, communicationJSON("LA2", "not for LA1"))
	c := e.create(t, communicationJSON("LA1", "for LA1"))
	eventually(t, "notification", func() bool { return len(rc.receipts()) >= 2 })
	n, p := decodeNotification(t, rc.receipts()[1].Body)
	if p.get("type") != "event-notification" || p.get("events-since-subscription-start") != "1" || p.get("subscription") != "Subscription/"+sub.ID {
		t.Errorf("notification %s: want event-notification, 1 event, the subscription", rc.receipts()[1].Body)
	}
	if ev := p.events(); ev["1"] != c.VersionRef() {
		t.Errorf("notification events %v, want 1 -> %s", ev, c.VersionRef())
	}
	if len(n.Entry) != 2 || !strings.Contains(string(n.Entry[1].Resource), c.ID) {
		t.Errorf("notification %s: want the Communication as the second entry (full-resource)", rc.receipts()[1].Body)
	}
}

func TestTopic_EncounterForFlaggedChild(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	e.update(t, "Patient", "p1", `{"resourceType":"Patient","id":"p1"}`)
	e.update(t, "Patient", "p2", `{"resourceType":"Patient","id":"p2"}`)
	e.create(t, `{"resourceType":"Flag","status":"active","code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]},"subject":{"reference":"Patient/p1"}}`)
	heartbeat := fmt.Sprintf(`"extension":[{"url":%q,"valueUnsignedInt":1}],`, subscription.HeartbeatExtension)
	sub := e.create(t, topicSubscriptionJSON("", subscription.Topics[1].URL, "", rc.URL, "id-only", heartbeat))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	enc := func(p string) string {
		return `{"resourceType":"Encounter","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/` + p + `"}}`
	}
	e.create(t, enc("p2"))
	flagged := e.create(t, enc("p1"))
	var notes []statusParams
	eventually(t, "notification and heartbeat", func() bool {
		notes = notes[:0]
		for _, r := range rc.receipts() {
			_, p := decodeNotification(t, r.Body)
			notes = append(notes, p)
		}
		var types []string
		for _, p := range notes {
			types = append(types, p.get("type"))
		}
		s := strings.Join(types, " ")
		return strings.Contains(s, "event-notification") && strings.Contains(s, "event-notification heartbeat")
	})
	var events []map[string]string
	for _, p := range notes {
		if p.get("type") == "event-notification" {
			events = append(events, p.events())
		}
	}
	if len(events) != 1 || events[0]["1"] != flagged.VersionRef() {
		t.Errorf("event notifications %v, want one: 1 -> %s (the unflagged child's Encounter notifies nothing)", events, flagged.VersionRef())
	}
}

func TestTopic_HandshakeRefused(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	e := start(t, subscription.Config{})
	sub := e.create(t, topicSubscriptionJSON("LA1", subscription.Topics[0].URL, "", rc.URL, "empty", ""))
	eventually(t, "status error", func() bool { s, _ := e.status(t, sub.ID); return s == "error" })
	if _, reason := e.status(t, sub.ID); !strings.Contains(reason, "handshake failed") {
		t.Errorf("error %q, want handshake failed", reason)
	}
	bad := e.create(t, topicSubscriptionJSON("LA1", "https://example.org/no-such-topic", "", rc.URL, "empty", ""))
	eventually(t, "unknown topic error", func() bool { s, _ := e.status(t, bad.ID); return s == "error" })
}
