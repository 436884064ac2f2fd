package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cpis-fhir/cpis/conformance"
	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/server/access"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/server/subscription"
	"github.com/cpis-fhir/cpis/terminology"
	"github.com/gin-gonic/gin"
)

// Config configures a Server. The zero value serves with defaults.
type Config struct {
	// BaseURL is the public FHIR base, such as https://cpis.example/fhir.
	// Empty means it is derived from each request's Host.
	BaseURL string
	// MaxBodyBytes limits request bodies; zero means 10 MB.
	MaxBodyBytes int64
	// Logger receives one line per request and the details of internal
	// errors; nil means slog.Default(). It never receives patient data.
	Logger *slog.Logger
	// Version is the software version reported in the CapabilityStatement.
	Version string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AccessWindow is how long the access queue gathers the access
	// histories of lookups answered into few commits (cpis_access_queue.go);
	// zero writes each as soon as the writer takes it.
	AccessWindow time.Duration
	// AccessBacklog is the most lookups answered whose access histories
	// the queue has not yet written; a lookup that finds records beyond
	// it waits for the queue before it is answered. Zero means 1024.
	AccessBacklog int
	// AccessInRequest writes each lookup's access history in the
	// request's own commit, without the access queue: for several
	// processes sharing one store, whose queues' marks could not speak
	// for one another.
	AccessInRequest bool
	// Registry holds the search parameters in force; nil means the
	// generated table alone.
	Registry *fhir.SearchRegistry
	// DefaultCount and MaxCount bound search pages; zero means 20 and
	// 1000.
	DefaultCount, MaxCount int
	// CursorKey is the 16-, 24- or 32-byte AES key that seals paging links;
	// empty means a random key, so that links do not outlive the process.
	CursorKey []byte
	// MaxBundleEntries is the most entries a batch or transaction Bundle
	// may hold (413 beyond); zero means 10,000.
	// See https://hl7.org/fhir/R4/http.html#transaction.
	MaxBundleEntries int
	// MaxConditionalDeletes is the most resources one conditional delete
	// removes (412 beyond); zero means 1, the "single" mode.
	// See https://hl7.org/fhir/R4/http.html#3.1.0.7.1.
	MaxConditionalDeletes int
	// Profiles validates writes and $validate against the CP-IS profiles
	// (see validate.go); nil means profiles.New over terminology.New().
	// See https://hl7.org/fhir/R4/validation.html.
	Profiles *profiles.Validator
	// Terminology answers the terminology operations and provides the
	// CodeSystems and ValueSets written at start (see terminology.go); nil
	// means terminology.New().
	// See https://hl7.org/fhir/R4/terminology-service.html.
	Terminology *terminology.Service
	// Verifier verifies the bearer token every /fhir request but GET
	// metadata must carry (auth.go). Nil turns authentication off: every
	// request then acts as an administrator ("anonymous", system/*.*).
	// See https://hl7.org/fhir/smart-app-launch/.
	Verifier *smart.Verifier
	// Retention is how long ended CP-IS records stay visible before the
	// lifecycle removes them from searches (cpis_lifecycle.go); zero
	// means DefaultRetention (365 days).
	Retention time.Duration
	// Auth is the built-in SMART authorization server (oauth.go), served at
	// /oauth2 and described at /fhir/.well-known/smart-configuration and in
	// the CapabilityStatement; nil serves none.
	Auth *smart.AuthServer
	// RateLimit is the sustained rate of /fhir requests a client (by the
	// token's client_id) may send, per second, with bursts of RateBurst
	// (zero means 2 x RateLimit); zero RateLimit means no limit. Beyond it
	// requests get 429 with Retry-After.
	RateLimit float64
	RateBurst int
	// OAuthRateLimit is the rate of POSTs to the OAuth endpoints (logins,
	// token requests) one remote address may send, per second, with
	// bursts of 5 x OAuthRateLimit; zero means 10. The remote address is the
	// connection's (X-Forwarded-For is not trusted).
	OAuthRateLimit float64
	// SharedLimits, when set, holds the buckets of RateLimit and
	// OAuthRateLimit for every server process (fhir/redis; cpis serve
	// --redis-url), so that the limits hold across them; while it fails
	// each process limits on its own.
	SharedLimits Buckets
	// CORSOrigins are the origins browser apps may call the API from; "*"
	// allows any. Empty allows none (no CORS headers).
	CORSOrigins []string
	// Subscriptions, when set, is the subscription engine's state, read by
	// the Subscription operations $status and $events (subscription_ops.go);
	// nil serves neither.
	Subscriptions SubscriptionEvents
	// SubscriptionEndpoints decides which rest-hook endpoints a
	// Subscription may name (checked on write); nil means those on public
	// addresses only. Give the engine the same.
	SubscriptionEndpoints *subscription.Endpoints
	// SubscriptionSockets, when set, serves the websocket channel at
	// WebsocketPath (subscription_ws.go); nil serves none.
	SubscriptionSockets SubscriptionSockets
}

// Server serves the FHIR REST API. It is an http.Handler and safe for
// concurrent use.
type Server struct {
	cfg        Config
	svc        *fhir.Service
	codec      *fhir.Codec
	store      fhir.Store
	log        *slog.Logger
	engine     *gin.Engine
	routes     []conformance.Route
	capability atomic.Pointer[[]byte]
	registry   *fhir.SearchRegistry
	cursors    *cursorSealer
	sp         *searchParams
	validator  *profiles.Validator
	term       *terminology.Service
	outcomes   sync.Map // fixed OperationOutcomes as JSON (outcomeJSON)
	policy     *access.Policy
	projectMu  sync.Mutex // one audit projection at a time (auditevent.go)
	limit      *limiter   // nil without Config.RateLimit
	oauthLimit *limiter
	// authFailures counts refused bearer tokens per remote address: 20 a
	// second, bursts of 100.
	authFailures *limiter
	// access writes lookups' access histories after their answers
	// (cpis_access_queue.go); nil for a store without a read trail.
	access *accessQueue
}

// FHIRBase is the path of the FHIR base below the server root.
const FHIRBase = "/fhir"

// New returns a Server over the store.
func New(store fhir.Store, codec *fhir.Codec, cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Registry == nil {
		cfg.Registry = fhir.NewSearchRegistry()
	}
	if cfg.DefaultCount <= 0 {
		cfg.DefaultCount = defaultCount
	}
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = maxCount
	}
	cursors, err := newCursorSealer(cfg.CursorKey)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg,
		svc: &fhir.Service{Store: store, Codec: codec, Indexer: fhir.NewIndexer(cfg.Registry), Registry: cfg.Registry,
			MaxBundleEntries: cfg.MaxBundleEntries, MaxConditionalDeletes: cfg.MaxConditionalDeletes},
		codec:    codec,
		store:    store,
		log:      cfg.Logger,
		registry: cfg.Registry,
		cursors:  cursors,
	}
	s.sp = &searchParams{s: s}
	s.policy = access.New(cfg.Registry)
	if cfg.RateLimit > 0 {
		burst := cfg.RateBurst
		if burst <= 0 {
			burst = int(2 * cfg.RateLimit)
		}
		s.limit = newLimiter(cfg.RateLimit, burst, time.Now)
		s.limit.shared, s.limit.name = cfg.SharedLimits, "rate:fhir:"
	}
	if cfg.OAuthRateLimit <= 0 {
		cfg.OAuthRateLimit = 10
		s.cfg.OAuthRateLimit = 10
	}
	s.oauthLimit = newLimiter(cfg.OAuthRateLimit, int(5*cfg.OAuthRateLimit), time.Now)
	s.oauthLimit.shared, s.oauthLimit.name = cfg.SharedLimits, "rate:oauth:"
	s.authFailures = newLimiter(20, 100, time.Now)
	if cfg.Terminology == nil {
		cfg.Terminology = terminology.New()
		s.cfg.Terminology = cfg.Terminology
	}
	s.term = cfg.Terminology
	// :in and :not-in expand value sets from the embedded terminology, in
	// every search parsed with the registry (Bundle entries and
	// conditional interactions too).
	cfg.Registry.SetValueSets(cfg.Terminology.ValueSetCodes)
	if cfg.Profiles == nil {
		if cfg.Profiles, err = profiles.New(cfg.Terminology); err != nil {
			return nil, err
		}
		s.cfg.Profiles = cfg.Profiles
	}
	s.validator = cfg.Profiles
	s.svc.Validate = s.validateWrite
	// gin's mode is process-wide; this server never wants its debug output.
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	// ClientIP is the connection's address: no proxy header is trusted.
	e.SetTrustedProxies(nil)
	e.RedirectTrailingSlash = false
	e.Use(s.requestID, s.recover, s.logRequest, s.hsts, s.cors)
	e.NoRoute(s.noRoute)
	e.NoMethod(s.noMethod)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	s.registerOAuth(e)

	if cfg.SubscriptionSockets != nil {
		// Outside the audit middleware, which holds answers back: the
		// socket carries only pings, no resource data.
		e.GET(WebsocketPath, s.authenticateSocket, s.rateLimit, s.websocket)
	}
	api := e.Group(FHIRBase, echoTraceID, s.authenticate, s.rateLimit, s.auditRequest, s.accessBarrier, s.cpisRequest, s.negotiate)
	registered := map[string]bool{}
	for _, r := range s.fhirRoutes() {
		// One handler may serve several interactions (POST [base] is both
		// batch and transaction): register it once, claim each.
		if k := r.Method + " " + r.Path; !registered[k] {
			api.Handle(r.Method, r.Path, r.handler)
			registered[k] = true
		}
		s.routes = append(s.routes, r.Route)
	}
	s.engine = e

	if err := s.rebuildCapability(); err != nil {
		return nil, err
	}
	if err := s.loadSearchParameters(context.Background()); err != nil {
		return nil, err
	}
	if err := s.loadProfiles(context.Background()); err != nil {
		return nil, err
	}
	if err := s.loadTerminology(context.Background()); err != nil {
		return nil, err
	}
	if st, ok := store.(accessStore); ok && !cfg.AccessInRequest {
		if _, ok := store.(auditLog); ok {
			s.access = newAccessQueue(s, st, cfg.AccessWindow, cfg.AccessBacklog)
			if err := s.access.recover(context.Background()); err != nil {
				return nil, fmt.Errorf("access history: %w", err)
			}
		}
	}
	return s, nil
}

// Close writes the access histories of the lookups answered that are not
// yet written. Call it after the last request and before the store
// closes.
func (s *Server) Close() {
	if s.access != nil {
		s.access.close()
	}
}

type route struct {
	conformance.Route
	handler gin.HandlerFunc
}

// fhirRoutes is the route table of the FHIR API: what is registered here is
// what the CapabilityStatement claims.
func (s *Server) fhirRoutes() []route {
	r := func(method, path string, in conformance.Interaction, h gin.HandlerFunc) route {
		return route{conformance.Route{Method: method, Path: path, Interaction: in}, h}
	}
	cond := func(rt route) route {
		rt.Conditional = true
		return rt
	}
	// See https://hl7.org/fhir/R4/resource-operation-validate.html.
	validate := &conformance.Operation{Name: "validate", Definition: "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
	op := func(method, path string, o *conformance.Operation, h gin.HandlerFunc) route {
		return route{conformance.Route{Method: method, Path: path, Operation: o}, h}
	}
	// See https://hl7.org/fhir/R4/terminology-service.html (terminology.go).
	expand := &conformance.Operation{Name: "expand", Definition: "http://hl7.org/fhir/OperationDefinition/ValueSet-expand", Types: []string{"ValueSet"}}
	validateCode := &conformance.Operation{Name: "validate-code", Definition: "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code", Types: []string{"ValueSet"}}
	lookup := &conformance.Operation{Name: "lookup", Definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup", Types: []string{"CodeSystem"}}
	subsumes := &conformance.Operation{Name: "subsumes", Definition: "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes", Types: []string{"CodeSystem"}}
	var termOps []route
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		termOps = append(termOps,
			op(m, "/:type/$expand", expand, s.expandOp),
			op(m, "/:type/:id/$expand", expand, s.expandOp),
			op(m, "/:type/$validate-code", validateCode, s.validateCodeOp),
			op(m, "/:type/:id/$validate-code", validateCode, s.validateCodeOp),
			op(m, "/:type/$lookup", lookup, s.lookupOp),
			op(m, "/:type/$subsumes", subsumes, s.subsumesOp))
	}
	return append([]route{
		r(http.MethodGet, "/metadata", conformance.Capabilities, s.capabilities),
		r(http.MethodPost, "", conformance.Transaction, s.bundle),
		r(http.MethodPost, "", conformance.Batch, s.bundle),
		r(http.MethodGet, "", conformance.SearchSystem, s.searchSystem),
		r(http.MethodPost, "/_search", conformance.SearchSystem, s.searchSystem),
		r(http.MethodGet, "/_history", conformance.HistorySystem, s.historySystem),
		r(http.MethodGet, "/:type", conformance.SearchType, s.searchType),
		cond(r(http.MethodPost, "/:type", conformance.Create, s.create)),
		cond(r(http.MethodPut, "/:type", conformance.Update, s.conditionalUpdate)),
		cond(r(http.MethodDelete, "/:type", conformance.Delete, s.conditionalDelete)),
		cond(r(http.MethodPatch, "/:type", conformance.Patch, s.conditionalPatch)),
		r(http.MethodPost, "/:type/_search", conformance.SearchType, s.searchType),
		op(http.MethodPost, "/:type/$validate", validate, s.validateOp),
		op(http.MethodPost, "/:type/:id/$validate", validate, s.validateOp),
		r(http.MethodGet, "/:type/_history", conformance.HistoryType, s.historyType),
		r(http.MethodGet, "/:type/:id", conformance.Read, s.read),
		r(http.MethodHead, "/:type/:id", conformance.Read, s.read),
		r(http.MethodPut, "/:type/:id", conformance.Update, s.update),
		r(http.MethodPatch, "/:type/:id", conformance.Patch, s.patch),
		r(http.MethodDelete, "/:type/:id", conformance.Delete, s.delete),
		r(http.MethodGet, "/:type/:id/_history", conformance.HistoryInstance, s.historyInstance),
		r(http.MethodGet, "/:type/:id/:ctype", conformance.SearchType, s.searchCompartment),
		r(http.MethodGet, "/:type/:id/_history/:vid", conformance.VRead, s.vread),
		r(http.MethodHead, "/:type/:id/_history/:vid", conformance.VRead, s.vread),
	}, append(termOps, s.subscriptionRoutes()...)...)
}

// subscriptionRoutes are the Subscription operations, served when
// Config.Subscriptions is set ($get-ws-binding-token when
// Config.SubscriptionSockets is too).
func (s *Server) subscriptionRoutes() []route {
	if s.cfg.Subscriptions == nil {
		return nil
	}
	status := &conformance.Operation{Name: "status", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status", Types: []string{"Subscription"}}
	events := &conformance.Operation{Name: "events", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events", Types: []string{"Subscription"}}
	rs := []route{
		{conformance.Route{Method: http.MethodGet, Path: "/:type/:id/$status", Operation: status}, s.subscriptionStatusOp},
		{conformance.Route{Method: http.MethodGet, Path: "/:type/:id/$events", Operation: events}, s.subscriptionEventsOp},
	}
	if s.cfg.SubscriptionSockets == nil {
		return rs
	}
	token := &conformance.Operation{Name: "get-ws-binding-token", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token", Types: []string{"Subscription"}}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		rs = append(rs,
			route{conformance.Route{Method: m, Path: "/:type/:id/$get-ws-binding-token", Operation: token}, s.bindingTokenOp},
			route{conformance.Route{Method: m, Path: "/:type/$get-ws-binding-token", Operation: token}, s.bindingTokenOp})
	}
	return rs
}

// rebuildCapability builds the CapabilityStatement from the routes and the
// searchable parameters.
func (s *Server) rebuildCapability() error {
	cs := conformance.Build(conformance.Options{
		BaseURL:           s.cfg.BaseURL,
		SoftwareName:      "cpis",
		SoftwareVersion:   s.cfg.Version,
		Date:              s.cfg.Now(),
		ResourceTypes:     fhir.ResourceTypes,
		SearchParams:      s.registry.Searchable,
		ConditionalDelete: condDeleteMode(s.cfg.MaxConditionalDeletes),
		SupportedProfiles: func(typ string) []string {
			if u := s.validator.ProfileFor(typ); u != "" {
				return []string{u}
			}
			return nil
		},
		Security: s.security(),
		ResourceExtensions: func(typ string) []conformance.Extension {
			if typ != "Subscription" || s.cfg.Subscriptions == nil {
				return nil
			}
			// The topics of the Subscriptions R5 Backport IG.
			// See https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-capabilitystatement-subscriptiontopic-canonical.html.
			var ext []conformance.Extension
			for _, t := range subscription.Topics {
				ext = append(ext, conformance.Extension{URL: subscription.TopicCanonicalExtension, ValueCanonical: t.URL})
			}
			return ext
		},
	}, s.routes)
	b, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("capability statement: %w", err)
	}
	s.capability.Store(&b)
	return nil
}

// Routes returns the registered FHIR routes.
func (s *Server) Routes() []conformance.Route { return s.routes }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// baseURL returns the FHIR base URL for links and Location headers.
func (s *Server) baseURL(c *gin.Context) string {
	if s.cfg.BaseURL != "" {
		return s.cfg.BaseURL
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host + FHIRBase
}

func (s *Server) healthz(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", []byte(`{"status":"ok"}`))
}

func (s *Server) readyz(c *gin.Context) {
	if err := s.store.Ready(c.Request.Context()); err != nil {
		s.log.Warn("store not ready", "request_id", requestIDOf(c), "error", err)
		s.fail(c, &statusError{http.StatusServiceUnavailable, fhir.Errorf(fhir.IssueTransient, "the store is not ready")})
		return
	}
	c.Data(http.StatusOK, "application/json", []byte(`{"status":"ready"}`))
}

// resourceType returns the :type parameter, or fails with 404 when it is not
// an R4 resource type (405 for metadata, whose path only GET serves).
func (s *Server) resourceType(c *gin.Context) (string, bool) {
	typ := c.Param("type")
	if typ == "metadata" && c.Request.Method != http.MethodGet {
		s.noMethod(c)
		return "", false
	}
	if !fhir.IsResourceType(typ) {
		s.fail(c, fhir.Errorf(fhir.IssueNotFound, "%q is not a FHIR R4 resource type served here", safeToken(typ)))
		return "", false
	}
	return typ, true
}

// safeToken returns s when it is short and made of id characters, else a
// placeholder, so that client input echoed in errors stays harmless.
func safeToken(s string) string {
	if fhir.ValidID(s) {
		return s
	}
	return "(the given value)"
}

// condDeleteMode is the CapabilityStatement's conditionalDelete for the
// configured limit.
func condDeleteMode(max int) string {
	if max > 1 {
		return "multiple"
	}
	return "single"
}
