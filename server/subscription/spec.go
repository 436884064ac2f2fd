package subscription

// Reading a Subscription resource into what the engine acts on.
// See https://hl7.org/fhir/R4/subscription.html#resource.

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/access"
	"github.com/cpis-fhir/cpis/server/smart"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/subscription_go_proto"
)

// SecretExtension is the URL of the extension on Subscription.channel
// whose valueString is the subscription's signing secret: with it, every
// rest-hook request carries SignatureHeader.
const SecretExtension = "https://fhir.cpis.nhs.uk/StructureDefinition/subscription-signing-secret"

// HorizonExtension is the URL of the extension on Subscription.channel
// whose valueDuration (unit s, min, h or d) is how long this
// subscription's notifications are retried before it goes to status
// error; at most the server's horizon (Config.Horizon), which applies
// without it.
const HorizonExtension = "https://fhir.cpis.nhs.uk/StructureDefinition/subscription-retry-horizon"

// Subscription statuses. See https://hl7.org/fhir/R4/valueset-subscription-status.html.
const (
	StatusRequested = "requested"
	StatusActive    = "active"
	StatusError     = "error"
	StatusOff       = "off"
)

// spec is one Subscription version as the engine uses it.
type spec struct {
	id       string
	version  int64
	status   string
	typ      string     // the criteria's resource type
	query    url.Values // the criteria's search parameters
	end      time.Time  // zero: none
	channel  string     // rest-hook, websocket, ...
	endpoint string
	payload  string // "" (no body) or a MIME type
	headers  []string
	secret   string
	horizon  time.Duration // zero: the server's
	owner    *smart.Principal
	// invalid, when set, is why the engine cannot serve the subscription.
	invalid string
	// since is the commit sequence number after which changes match.
	since int64
	// topic, for a topic-based Subscription, is its topic; content its
	// payload content and heartbeat its heartbeat period (zero: none).
	topic     *Topic
	content   string
	heartbeat time.Duration
	// simple are the criteria's filters decided on a version's own index
	// rows; exact says they are all of them (prefilter.go).
	simple []fhir.Filter
	exact  bool
	// more are the criteria of a topic's other resource types: each a
	// copy of s with its own typ, query, simple and exact, matched like s
	// under the same id; parent points back to s.
	more   []*spec
	parent *spec
}

// horizonOr returns s's retry horizon, at most max (max when it has none).
func (s *spec) horizonOr(max time.Duration) time.Duration {
	if s.horizon > 0 && s.horizon < max {
		return s.horizon
	}
	return max
}

// durationOf returns the FHIR Duration d (UCUM s, min, h or d), zero when
// it is none of these.
func durationOf(d *dtpb.Duration) time.Duration {
	units := map[string]time.Duration{"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[d.GetCode().GetValue()]
	if !ok {
		return 0
	}
	v, err := strconv.ParseFloat(d.GetValue().GetValue(), 64)
	if err != nil {
		return 0
	}
	return time.Duration(v * float64(u))
}

// parts returns s and the criteria of its other resource types.
func (s *spec) parts() []*spec { return append([]*spec{s}, s.more...) }

// root returns the Subscription's spec of a part.
func (s *spec) root() *spec {
	if s.parent != nil {
		return s.parent
	}
	return s
}

// setSince sets since on every part.
func (s *spec) setSince(seq int64) {
	for _, m := range s.parts() {
		m.since = seq
	}
}

// prepare parses the criteria of every part strictly with reg and
// compiles them (prefilter.go); s.invalid says why it cannot.
func (s *spec) prepare(reg *fhir.SearchRegistry) {
	for _, m := range s.parts() {
		if s.invalid != "" {
			return
		}
		q, err := fhir.ParseSearch(m.typ, m.query, fhir.SearchOptions{Registry: reg, Strict: true})
		if err != nil {
			s.invalid = "the criteria cannot be evaluated: " + errText(err)
			return
		}
		m.compile(q)
	}
}

// matching reports whether changes are matched for s.
func (s *spec) matching() bool {
	return s.invalid == "" && (s.status == StatusRequested || s.status == StatusActive)
}

func codeName(v fmt.Stringer) string {
	return strings.ReplaceAll(strings.ToLower(v.String()), "_", "-")
}

// parseSpec reads the Subscription version r.
func parseSpec(codec *fhir.Codec, r *fhir.Resource) (*spec, error) {
	p, err := codec.Parse(r.JSON)
	if err != nil {
		return nil, fmt.Errorf("parse Subscription: %w", err)
	}
	sub := p.Proto().GetSubscription()
	if sub == nil {
		return nil, fmt.Errorf("parse Subscription: not a Subscription")
	}
	return specOf(sub, r.ID, r.VersionID), nil
}

// specOf reads sub; invalid says what keeps the engine from serving it.
func specOf(sub *srpb.Subscription, id string, version int64) *spec {
	s := &spec{id: id, version: version, status: codeName(sub.GetStatus().GetValue())}
	if end := sub.GetEnd(); end != nil {
		s.end = time.UnixMicro(end.GetValueUs()).UTC()
	}
	ch := sub.GetChannel()
	s.channel = codeName(ch.GetType().GetValue())
	s.endpoint = ch.GetEndpoint().GetValue()
	s.payload = ch.GetPayload().GetValue()
	for _, h := range ch.GetHeader() {
		s.headers = append(s.headers, h.GetValue())
	}
	for _, ext := range ch.GetExtension() {
		switch ext.GetUrl().GetValue() {
		case SecretExtension:
			s.secret = ext.GetValue().GetStringValue().GetValue()
		case HorizonExtension:
			if s.horizon = durationOf(ext.GetValue().GetDuration()); s.horizon <= 0 {
				s.invalid = "the retry horizon must be a positive valueDuration in s, min, h or d"
			}
		}
	}
	s.owner = ownerOf(sub.GetMeta().GetTag())
	criteria := sub.GetCriteria().GetValue()
	typ, rawQuery, _ := strings.Cut(criteria, "?")
	q, qerr := url.ParseQuery(rawQuery)
	var filters map[string]url.Values // a topic's filters by resource type
	var types []string                // a topic's resource types notified
	if t := topicOf(criteria); t != nil {
		s.topic = t
		filters, types, qerr = topicFilters(t, sub.GetCriteria().GetExtension())
		if types == nil {
			s.invalid = fmt.Sprintf("the filter criteria of topic %s must be searches of %s (Type?...)", t.URL, strings.Join(t.Types, " or "))
			types = t.Types
		}
		typ, q = types[0], filters[types[0]]
		s.content = "id-only"
		for _, ext := range ch.GetPayload().GetExtension() {
			if ext.GetUrl().GetValue() == PayloadContentExtension {
				s.content = ext.GetValue().GetCode().GetValue()
			}
		}
		for _, ext := range ch.GetExtension() {
			if ext.GetUrl().GetValue() == HeartbeatExtension {
				s.heartbeat = time.Duration(ext.GetValue().GetUnsignedInt().GetValue()) * time.Second
			}
		}
		switch s.content {
		case "empty", "id-only", "full-resource":
		default:
			s.invalid = "the payload content must be empty, id-only or full-resource"
		}
	} else if strings.HasPrefix(criteria, "http:") || strings.HasPrefix(criteria, "https:") {
		s.invalid = "the criteria names a topic this server does not offer (see the CapabilityStatement)"
	}
	switch {
	case s.invalid != "":
	case !fhir.IsResourceType(typ):
		s.invalid = "the criteria must start with a resource type, such as Communication?recipient=..."
	case qerr != nil:
		s.invalid = "the criteria's query is not a valid URL query"
	case s.channel != "rest-hook" && s.channel != "websocket":
		s.invalid = fmt.Sprintf("the channel type %s is not supported by this server (rest-hook and websocket are)", s.channel)
	case s.payload != "" && s.payload != "application/fhir+json" && s.payload != "application/json":
		s.invalid = "the channel payload must be application/fhir+json or absent"
	}
	if s.invalid == "" && s.channel == "rest-hook" {
		if u, err := url.Parse(s.endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			s.invalid = "the channel endpoint must be an absolute http or https URL"
		}
	}
	for _, h := range s.headers {
		if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" {
			s.invalid = "each channel header must be \"Name: value\""
		}
	}
	s.typ, s.query = typ, q
	for i := 1; i < len(types); i++ { // a topic's other types
		ft := types[i]
		m := *s
		m.typ, m.query, m.more, m.parent = ft, filters[ft], nil, s
		s.more = append(s.more, &m)
	}
	return s
}

// topicFilters returns the backport-filter-criteria among exts by resource
// type (each Type?params of one of t's types; several of a type are
// ANDed) and the types notified: those the filters name, in t's order, or
// all of t's when none does; nil types when a filter names another type.
// See https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-filter-criteria.html.
func topicFilters(t *Topic, exts []*dtpb.Extension) (map[string]url.Values, []string, error) {
	filters := map[string]url.Values{}
	var qerr error
	for _, ext := range exts {
		if ext.GetUrl().GetValue() != FilterCriteriaExtension {
			continue
		}
		ft, fq, _ := strings.Cut(ext.GetValue().GetStringValue().GetValue(), "?")
		if !slices.Contains(t.Types, ft) {
			return nil, nil, nil
		}
		vals, err := url.ParseQuery(fq)
		if err != nil {
			qerr = err
		}
		if filters[ft] == nil {
			filters[ft] = url.Values{}
		}
		for k, v := range vals {
			filters[ft][k] = append(filters[ft][k], v...)
		}
	}
	var types []string
	for _, ft := range t.Types {
		if len(filters) == 0 || filters[ft] != nil {
			types = append(types, ft)
		}
	}
	return filters, types, qerr
}

// Check reports whether the engine can serve the Subscription p, so that a
// write of one it cannot fails with a reason instead of being accepted and
// set to error: a requested or active Subscription needs criteria that
// parse strictly with reg's parameters and a rest-hook channel with an
// absolute http(s) endpoint that endpoints allows (nil: public addresses
// only). Errors: IssueInvalid with the reason. Other resource types and
// Subscriptions in status error or off pass.
func Check(ctx context.Context, p *fhir.Parsed, reg *fhir.SearchRegistry, endpoints *Endpoints) error {
	sub := p.Proto().GetSubscription()
	if sub == nil {
		return nil
	}
	s := specOf(sub, "", 0)
	if s.status != StatusRequested && s.status != StatusActive {
		return nil
	}
	s.prepare(reg)
	if s.invalid != "" {
		return fhir.Errorf(fhir.IssueInvalid, "Subscription: %s", s.invalid)
	}
	if s.channel == "rest-hook" {
		return endpoints.Check(ctx, s.endpoint)
	}
	return nil
}

// ownerOf returns the principal whose rights a Subscription's
// notifications are delivered with: the council whose ODS code is a
// meta.tag, else an administrator (the policy lets only an administrator
// write a Subscription without its council's tag).
func ownerOf(tags []*dtpb.Coding) *smart.Principal {
	for _, t := range tags {
		if t.GetSystem().GetValue() == access.ODSSystem && t.GetCode().GetValue() != "" {
			return principal(smart.RoleLA, t.GetCode().GetValue())
		}
	}
	return principal(smart.RoleAdmin, "")
}

func principal(role smart.Role, ods string) *smart.Principal {
	scopes, _, _ := smart.ParseScopes(smart.DefaultScope(role))
	return &smart.Principal{Subject: "subscription-owner", Role: role, ODS: ods, Scopes: scopes}
}

// statusCode is the proto code of a status.
var statusCode = map[string]cpb.SubscriptionStatusCode_Value{
	StatusRequested: cpb.SubscriptionStatusCode_REQUESTED,
	StatusActive:    cpb.SubscriptionStatusCode_ACTIVE,
	StatusError:     cpb.SubscriptionStatusCode_ERROR,
	StatusOff:       cpb.SubscriptionStatusCode_OFF,
}
