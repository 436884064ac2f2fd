package subscription_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/server/subscription"
)

// eventCodes returns focus -> event code (EventExtension) of the
// notification-events of a notification Bundle.
func eventCodes(t *testing.T, body []byte) map[string]string {
	t.Helper()
	n, _ := decodeNotification(t, body)
	var p struct {
		Parameter []struct {
			Name      string
			Extension []struct{ URL, ValueCode string }
			Part      []struct {
				Name           string
				ValueReference struct{ Reference string }
			}
		}
	}
	if err := json.Unmarshal(n.Entry[0].Resource, &p); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range p.Parameter {
		if x.Name != "notification-event" {
			continue
		}
		var focus, code string
		for _, part := range x.Part {
			if part.Name == "focus" {
				focus = part.ValueReference.Reference
			}
		}
		for _, e := range x.Extension {
			if e.URL == subscription.EventExtension {
				code = e.ValueCode
			}
		}
		out[focus] = code
	}
	return out
}

func TestTopic_RecordForCouncil(t *testing.T) {
	rc := newReceiver(t)
	e := start(t, subscription.Config{})
	topic := subscription.Topics[2].URL
	la := func(code string) string { return fmt.Sprintf(`{"identifier":{"system":%q,"value":%q}}`, ods, code) }
	cpis := `"code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]}`
	flag := func(id, status, council string) string {
		return fmt.Sprintf(`{"resourceType":"Flag","id":%q,"status":%q,%s,"subject":{"reference":"Patient/p1"},"author":%s}`, id, status, cpis, la(council))
	}
	sub := e.create(t, fmt.Sprintf(`{"resourceType":"Subscription","meta":{"tag":[{"system":%q,"code":"LA1"}]},"status":"requested","reason":"records",
		"criteria":%q,"_criteria":{"extension":[
			{"url":%q,"valueString":"Flag?author:identifier=%s|LA1"},
			{"url":%q,"valueString":"CarePlan?author:identifier=%s|LA1"},
			{"url":%q,"valueString":"CareTeam?managing-organization:identifier=%s|LA1"},
			{"url":%q,"valueString":"Patient?organization:identifier=%s|LA1"}]},
		"channel":{"type":"rest-hook","endpoint":%q,"payload":"application/fhir+json"}}`, ods, topic,
		subscription.FilterCriteriaExtension, ods, subscription.FilterCriteriaExtension, ods,
		subscription.FilterCriteriaExtension, ods, subscription.FilterCriteriaExtension, ods, rc.URL))
	eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
	// Filters that name only Flag choose the Flags alone.
	flags := e.create(t, topicSubscriptionJSON("LA1", topic, "Flag?author:identifier="+ods+"|LA1", rc.URL+"/flags", "id-only", ""))
	eventually(t, "status active", func() bool { s, _ := e.status(t, flags.ID); return s == "active" })

	e.update(t, "Patient", "p1", fmt.Sprintf(`{"resourceType":"Patient","id":"p1","managingOrganization":%s}`, la("LA1")))
	e.update(t, "Patient", "p2", fmt.Sprintf(`{"resourceType":"Patient","id":"p2","managingOrganization":%s}`, la("LA2")))
	e.update(t, "Flag", "f1", flag("f1", "active", "LA1"))
	e.update(t, "Flag", "f2", flag("f2", "active", "LA2"))
	e.update(t, "Flag", "other", strings.Replace(flag("other", "active", "LA1"), "child-protection-information-system-flag", "something-else", 1))
	e.update(t, "CarePlan", "cp1", fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"author":%s,"period":{"start":"2026-01-01"}}`, la("LA1")))
	e.update(t, "CareTeam", "ct1", fmt.Sprintf(`{"resourceType":"CareTeam","id":"ct1","status":"active","subject":{"reference":"Patient/p1"},"managingOrganization":[%s]}`, la("LA1")))
	e.update(t, "Flag", "f1", strings.Replace(flag("f1", "active", "LA1"), `"status"`, `"period":{"start":"2026-01-01"},"status"`, 1))
	e.update(t, "Flag", "f1", strings.Replace(flag("f1", "inactive", "LA1"), `"status"`, `"period":{"start":"2026-01-01","end":"2026-02-01"},"status"`, 1))
	e.update(t, "CarePlan", "cp1", fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"author":%s,"period":{"start":"2026-01-01","end":"2026-02-01"}}`, la("LA1")))
	e.delete(t, "CareTeam", "ct1")

	want := []struct{ focus, code string }{
		{"Patient/p1/_history/1", "create"},
		{"Flag/f1/_history/1", "create"},
		{"CarePlan/cp1/_history/1", "create"},
		{"CareTeam/ct1/_history/1", "create"},
		{"Flag/f1/_history/2", "update"},
		{"Flag/f1/_history/3", "end"},      // status inactive
		{"CarePlan/cp1/_history/2", "end"}, // period.end passed
		{"CareTeam/ct1/_history/2", "delete"},
	}
	at := func(path string) []receipt {
		var out []receipt
		for _, r := range rc.receipts() {
			if r.Path == path && r.Key != sub.ID+":handshake" && r.Key != flags.ID+":handshake" {
				out = append(out, r)
			}
		}
		return out
	}
	eventually(t, "the notifications", func() bool { return len(at("/")) >= len(want) && len(at("/flags")) >= 3 })
	for i, r := range at("/flags") {
		if codes := eventCodes(t, r.Body); len(codes) != 1 || codes[fmt.Sprintf("Flag/f1/_history/%d", i+1)] == "" {
			t.Errorf("Flag-only notification %d: events %v, want Flag/f1/_history/%d", i+1, codes, i+1)
		}
	}
	got := at("/")
	if len(got) != len(want) {
		t.Fatalf("notifications: %d, want %d (LA2's records and the non-CP-IS Flag notify nothing)", len(got), len(want))
	}
	for i, w := range want {
		codes := eventCodes(t, got[i].Body)
		if len(codes) != 1 || codes[w.focus] != w.code {
			t.Errorf("notification %d: events %v, want %s -> %s", i+1, codes, w.focus, w.code)
		}
	}
}
