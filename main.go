// Command cpis runs the CP-IS FHIR R4 server.
//
//	cpis serve [--addr HOST:PORT] [--data DIR] [--base-url URL] [--auth on|off] [--demo] [--redis-url URL]
//	cpis token --data DIR --role ROLE [--ods CODE] [--scope SCOPES] [--ttl D]
//	cpis keys rotate --data DIR
//	cpis seed [--children N] [--seed S] [--base URL | --data DIR]
//	cpis bench --base URL --scenario lookup|careteam|attendance|upload|mixed|healthz
//	cpis audit verify|export --data DIR
//
// See README.md.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/server/subscription"
	"github.com/cpis-fhir/cpis/synthetic"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cpis:", err)
		}
		os.Exit(2)
	}
}

const usage = `cpis runs the CP-IS FHIR R4 server.

Usage:
  cpis serve [flags]    serve the FHIR API (cpis serve -h lists the flags)
  cpis reindex [flags]  rebuild the search index of a data folder (cpis reindex -h)
  cpis seed [flags]     load a synthetic national data set (cpis seed -h)
  cpis bench [flags]    drive a realistic load against a server (cpis bench -h)
  cpis token [flags]    print a signed access token (cpis token -h); every use is audited
  cpis keys rotate      start signing with a new key (cpis keys rotate -h)
  cpis audit verify     check the audit trail's hash chain; report the first break
  cpis audit export     print the audit trail's records, one JSON object a line
  cpis client add       register an OAuth client (cpis client add -h)
  cpis user add         register a user of the login page (cpis user add -h)
  cpis subscriptions    list subscriptions with status, lag and last error (cpis subscriptions -h)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		m := &Main{Stdout: stdout, Stderr: stderr}
		if err := m.ParseFlags(args[1:]); err != nil {
			return err
		}
		return m.Run(ctx)
	case "reindex":
		fs := flag.NewFlagSet("cpis reindex", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("data", "./cpis-data", "data folder")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		// Alone in the folder, as cpis seed --data: a server on it
		// would go on answering from the index being rebuilt.
		lock, err := lockData(*dir, false)
		if err != nil {
			return err
		}
		defer lock.Close()
		store, err := sqlite.Open(filepath.Join(*dir, dbFile), sqlite.Config{})
		if err != nil {
			return err
		}
		defer store.Close()
		return reindex(ctx, store, fhir.NewSearchRegistry(), stdout)
	case "seed":
		return runSeed(ctx, args[1:], stdout, stderr)
	case "subscriptions":
		return subscriptionsCommand(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCommand(args[1:], stdout, stderr)
	case "client", "user":
		if len(args) < 2 || args[1] != "add" {
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("usage: cpis %s add --data DIR --id ID ... (cpis %s add -h)", args[0], args[0])
		}
		if args[0] == "client" {
			return clientAdd(args[2:], os.Stdin, stdout, stderr)
		}
		return userAdd(args[2:], os.Stdin, stdout, stderr)
	case "keys":
		if len(args) < 2 || args[1] != "rotate" {
			fmt.Fprint(stderr, usage)
			return errors.New("usage: cpis keys rotate --data DIR")
		}
		fs := flag.NewFlagSet("cpis keys rotate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		dir := fs.String("data", "./cpis-data", "data folder")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
		kid, err := smart.RotateKeys(filepath.Join(*dir, keysFile), time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "cpis: new signing key %s; older keys stay published for %s\n", kid, smart.MaxTokenTTL)
		return auditAdmin(*dir, "keys-rotate", map[string]string{"kid": kid})
	case "audit":
		if len(args) < 2 || (args[1] != "verify" && args[1] != "export") {
			fmt.Fprint(stderr, usage)
			return errors.New("usage: cpis audit verify|export --data DIR")
		}
		return auditCommand(ctx, args[1], args[2:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// Main is the serve command: its flags, its store and its HTTP server.
// Tests start the whole program with Addr "127.0.0.1:0".
type Main struct {
	Addr         string
	DataDir      string
	BaseURL      string
	MaxBodyBytes int64
	LogLevel     string
	// MaxBundleEntries and MaxConditionalDeletes are server.Config's.
	MaxBundleEntries, MaxConditionalDeletes int
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM or SIGINT.
	ShutdownTimeout time.Duration
	// Auth is "on" (the default when empty) or "off"; off serves every
	// request as an anonymous administrator, for development only.
	Auth string
	// RetentionDays is how many days ended CP-IS records stay visible;
	// zero means 365.
	RetentionDays int
	// TokenTTL is the lifetime of the access tokens the authorization
	// server issues.
	TokenTTL time.Duration
	// RateLimit, RateBurst, OAuthRateLimit and CORSOrigins are
	// server.Config's (CORSOrigins comma separated).
	RateLimit      float64
	RateBurst      int
	OAuthRateLimit float64
	CORSOrigins    string
	// OIDCIssuer and OIDCAudience, when set, also trust an external OpenID
	// Connect issuer's access tokens (resource-server mode); the claim
	// flags name the claims of role, ODS code and SDS role.
	OIDCIssuer, OIDCAudience                      string
	OIDCRoleClaim, OIDCODSClaim, OIDCSDSRoleClaim string
	// Demo seeds a small synthetic data set into a folder without
	// Patients (demo.go), registers demo users and an app (registerDemo)
	// and prints how to try them.
	Demo bool
	// TLSCert and TLSKey are PEM files; with both the server speaks only
	// HTTPS and sends HSTS.
	TLSCert, TLSKey string
	// SubscriptionHorizon and SubscriptionBackoff are the subscription
	// engine's retry horizon and first retry wait (subscription.Config).
	SubscriptionHorizon, SubscriptionBackoff time.Duration
	// RedisURL, when set, is the Redis database (redis://HOST:PORT/DB)
	// through which the server processes of one store share the
	// subscription engine's work (subscription.Config.Bus).
	RedisURL string
	// SubscriptionEndpoints, comma separated, are the only hosts and URL
	// prefixes rest-hooks may call; empty means any public address
	// (subscription.NewEndpoints).
	SubscriptionEndpoints string

	Stdout, Stderr io.Writer

	// Ready, when not nil, receives the listening address once the server
	// accepts connections.
	Ready chan<- string
}

// ParseFlags reads the serve command's flags.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("cpis serve", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.StringVar(&m.Addr, "addr", ":8080", "listen address HOST:PORT")
	fs.StringVar(&m.DataDir, "data", "./cpis-data", "data folder (created if missing)")
	fs.StringVar(&m.BaseURL, "base-url", "", "public FHIR base URL, such as https://cpis.example/fhir (default: from each request's Host)")
	fs.Int64Var(&m.MaxBodyBytes, "max-body", 10<<20, "largest request body accepted, in bytes")
	fs.StringVar(&m.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&m.MaxBundleEntries, "max-bundle-entries", 10000, "most entries a batch or transaction Bundle may hold (413 beyond)")
	fs.IntVar(&m.MaxConditionalDeletes, "max-conditional-deletes", 1, "most resources one conditional delete removes (412 beyond); 1 is single mode")
	fs.DurationVar(&m.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "time in-flight requests get to finish on shutdown")
	fs.DurationVar(&m.TokenTTL, "token-ttl", time.Hour, "lifetime of the access tokens the built-in authorization server issues (at most 24h)")
	fs.Float64Var(&m.RateLimit, "rate-limit", 0, "requests per second one client (token client_id) may send to /fhir; 0 means no limit")
	fs.IntVar(&m.RateBurst, "rate-burst", 0, "burst of --rate-limit (default 2 x the rate)")
	fs.Float64Var(&m.OAuthRateLimit, "oauth-rate-limit", 10, "POSTs per second one remote address may send to the OAuth endpoints (bursts of 5 x)")
	fs.StringVar(&m.CORSOrigins, "cors-origins", "", "comma-separated origins browser apps may call from, or * (default: none)")
	fs.StringVar(&m.OIDCIssuer, "oidc-issuer", "", "also accept access tokens of this OpenID Connect issuer (resource-server mode)")
	fs.StringVar(&m.OIDCAudience, "oidc-audience", "", "the aud the issuer's tokens must carry (required with --oidc-issuer)")
	fs.StringVar(&m.OIDCRoleClaim, "oidc-role-claim", "cpis_role", "claim of the issuer's tokens holding the CP-IS role")
	fs.StringVar(&m.OIDCODSClaim, "oidc-ods-claim", "cpis_ods", "claim holding the organisation's ODS code")
	fs.StringVar(&m.OIDCSDSRoleClaim, "oidc-sds-role-claim", "cpis_sds_role", "claim holding the SDS job role code")
	fs.BoolVar(&m.Demo, "demo", false, "seed a small synthetic data set when the folder holds no Patient, register demo users and a demo app (new passwords at each start), and print commands to try")
	fs.StringVar(&m.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves HTTPS only")
	fs.StringVar(&m.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.DurationVar(&m.SubscriptionHorizon, "subscription-horizon", 72*time.Hour, "how long a subscription notification is retried before the Subscription goes to status error")
	fs.DurationVar(&m.SubscriptionBackoff, "subscription-backoff", time.Second, "first wait before retrying a failed notification (doubling, with jitter, up to 5m)")
	fs.StringVar(&m.RedisURL, "redis-url", "", "Redis database, such as redis://127.0.0.1:6379/0, through which several server processes of one data folder share subscription delivery (default: none, this process alone)")
	fs.StringVar(&m.SubscriptionEndpoints, "subscription-endpoints", "", "comma-separated hosts, host:port or URL prefixes that are the only rest-hook endpoints called (default: any endpoint on a public address)")
	fs.StringVar(&m.Auth, "auth", "on", "on: every /fhir request needs a bearer token; off: no authentication, for development only")
	fs.IntVar(&m.RetentionDays, "retention", 365, "days ended CP-IS records stay visible before they leave searches (they stay in the history)")
	return fs.Parse(args)
}

// Run opens the store, serves until ctx ends, then shuts down gracefully:
// in-flight requests finish, the store commits what is queued and closes.
func (m *Main) Run(ctx context.Context) error {
	var level slog.Level
	if m.LogLevel != "" {
		if err := level.UnmarshalText([]byte(m.LogLevel)); err != nil {
			return fmt.Errorf("--log-level: %w", err)
		}
	}
	if m.ShutdownTimeout <= 0 {
		m.ShutdownTimeout = 30 * time.Second
	}
	logger := slog.New(slog.NewJSONHandler(m.Stderr, &slog.HandlerOptions{Level: level}))
	tuneGC()

	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	lock, err := lockData(m.DataDir, m.RedisURL != "")
	if err != nil {
		return err
	}
	defer lock.Close()
	rbus, err := openBus(ctx, m.RedisURL, logger, m.Stderr)
	if err != nil {
		return err
	}
	var bus fhir.Bus // nil without --redis-url (not a nil *redis.Bus)
	var onces smart.Onces
	var buckets server.Buckets
	if rbus != nil {
		defer rbus.Close()
		bus, onces, buckets = rbus, loggedOnces{rbus, logger}, rbus
	}
	store, err := sqlite.Open(filepath.Join(m.DataDir, dbFile), sqlite.Config{Shared: bus != nil})
	if err != nil {
		return err
	}
	defer store.Close()
	registry := fhir.NewSearchRegistry()
	if v, err := store.IndexVersion(context.WithoutCancel(ctx)); err != nil {
		return err
	} else if rules, _, _ := strings.Cut(v, "+"); rules != fhir.IndexVersion && ctx.Err() == nil {
		// The part after "+" names the run-time SearchParameters, which the
		// server reindexes for itself. A start that is already being
		// stopped skips the reindex; the next start does it.
		logger.Info("search index version changed: reindexing", "from", v, "to", fhir.IndexVersion)
		if err := reindex(ctx, store, registry, m.Stdout); err != nil {
			return err
		}
	}
	cursorKey, err := loadKey(filepath.Join(m.DataDir, "cursor.key"))
	if err != nil {
		return err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return err
	}
	var verifier *smart.Verifier
	var authServer *smart.AuthServer
	var authRegistry *smart.Registry
	switch m.Auth {
	case "", "on":
		keys, err := smart.OpenKeySet(filepath.Join(m.DataDir, keysFile))
		if err != nil {
			return err
		}
		vc := smart.VerifierConfig{Keys: keys, Audience: m.BaseURL}
		if m.OIDCIssuer != "" {
			if m.OIDCAudience == "" {
				return errors.New("--oidc-issuer needs --oidc-audience")
			}
			vc.External = &smart.OIDCConfig{Issuer: m.OIDCIssuer, Audience: m.OIDCAudience,
				RoleClaim: m.OIDCRoleClaim, ODSClaim: m.OIDCODSClaim, SDSRoleClaim: m.OIDCSDSRoleClaim}
		}
		verifier = smart.NewVerifier(vc)
		registry, err := openRegistry(store, m.DataDir)
		if err != nil {
			return err
		}
		authRegistry = registry
		replay, err := smart.OpenSharedReplayStore(filepath.Join(m.DataDir, replayFile), nil, onces)
		if err != nil {
			return err
		}
		defer replay.Close()
		authServer = smart.NewAuthServer(smart.AuthServerConfig{Keys: keys, Registry: registry, Replay: replay, AccessTTL: m.TokenTTL})
	case "off":
		logger.Warn("AUTHENTICATION IS OFF (--auth=off): every request acts as an administrator; never run this with real data")
		fmt.Fprintln(m.Stderr, "cpis: WARNING: authentication is off (--auth=off); every request acts as an administrator")
	default:
		return fmt.Errorf("--auth %q: want on or off", m.Auth)
	}
	endpoints, err := subscription.NewEndpoints(splitList(m.SubscriptionEndpoints))
	if err != nil {
		return fmt.Errorf("--subscription-endpoints: %w", err)
	}
	engine, err := subscription.New(subscription.Config{Store: store, Queue: store, Codec: codec, Registry: registry,
		Logger: logger, Horizon: m.SubscriptionHorizon, BackoffMin: m.SubscriptionBackoff, Endpoints: endpoints, Bus: bus})
	if err != nil {
		return err
	}
	srv, err := server.New(store, codec, server.Config{
		AccessWindow: accessWindow,
		// Several processes share the store: each lookup writes its own.
		AccessInRequest: m.RedisURL != "",
		Verifier:        verifier,
		Auth:            authServer,
		RateLimit:       m.RateLimit,
		RateBurst:       m.RateBurst,
		OAuthRateLimit:  m.OAuthRateLimit,
		SharedLimits:    buckets,
		CORSOrigins:     splitList(m.CORSOrigins),
		BaseURL:         m.BaseURL,
		MaxBodyBytes:    m.MaxBodyBytes,
		Logger:          logger,
		Version:         version,
		Registry:        registry,
		CursorKey:       cursorKey,
		Subscriptions:   store,

		SubscriptionEndpoints: endpoints,

		SubscriptionSockets: engine,

		MaxBundleEntries:      m.MaxBundleEntries,
		MaxConditionalDeletes: m.MaxConditionalDeletes,
		Retention:             time.Duration(m.RetentionDays) * 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	if m.Demo && authServer == nil {
		return errors.New("--demo needs authentication on")
	}
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		if err := engine.Run(engineCtx); err != nil && engineCtx.Err() == nil {
			logger.Error("subscription engine stopped", "error", err)
		}
	}()
	// The engine stops before the store closes (defers run last first).
	defer func() { stopEngine(); <-engineDone }()
	var tlsConfig *tls.Config
	if (m.TLSCert == "") != (m.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	} else if m.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	var demo *synthetic.Generator
	if m.Demo {
		// The demo data set goes in through a server of its own without
		// authentication, in this process, before anything listens.
		seeder, err := server.New(store, codec, server.Config{BaseURL: m.BaseURL, Logger: logger, Version: version,
			Registry: registry, CursorKey: cursorKey, MaxBundleEntries: m.MaxBundleEntries})
		if err != nil {
			return err
		}
		if demo, err = seedDemo(ctx, seeder, m.Stdout); err != nil {
			return err
		}
	}
	if m.RetentionDays < 0 {
		return fmt.Errorf("--retention %d: want a number of days, 0 or more", m.RetentionDays)
	}
	// The plan lifecycle: on start, then daily (safe with several servers).
	lctx, stopLifecycle := context.WithCancel(ctx)
	defer stopLifecycle()
	host, _ := os.Hostname()
	srv.StartLifecycle(lctx, fmt.Sprintf("%s:%d", host, os.Getpid()))
	ln, err := net.Listen("tcp", m.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving", "addr", ln.Addr().String(), "fhir_base", server.FHIRBase, "data", m.DataDir)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		hs.TLSConfig = tlsConfig
	}
	fmt.Fprintf(m.Stdout, "cpis: serving FHIR R4 at %s://%s%s (data in %s)\n", scheme, displayAddr(ln.Addr()), server.FHIRBase, m.DataDir)
	if m.Demo {
		base := m.BaseURL
		if base == "" {
			base = scheme + "://" + displayAddr(ln.Addr()) + server.FHIRBase
		}
		if err := registerDemo(authRegistry, m.DataDir, base, m.Stdout); err != nil {
			ln.Close()
			return err
		}
		token, err := demoToken(m.DataDir, base)
		if err != nil {
			ln.Close()
			return err
		}
		printDemo(m.Stdout, demo, strings.TrimSuffix(base, "/"), token)
	}
	if m.Ready != nil {
		m.Ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), m.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Requests still running past the timeout are cut off before the
		// store closes, so none of them can be acknowledged afterwards.
		hs.Close()
		srv.Close()
		stopEngine()
		<-engineDone
		store.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	srv.Close() // the access histories answered are written
	stopEngine()
	<-engineDone
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// accessWindow is how long the server gathers the access histories of
// lookups answered into few commits (server.Config.AccessWindow). Each
// commit costs the readers their page caches and the checkpointer a
// round, whatever it holds: on the national lookup bench (README
// "Performance") a window of 100 ms gave 11.0-12.3k lookups a second,
// 1 s 12.5-12.9k and 3 s 13.9-14.5k. Nobody reads them late (requests
// that may read them wait for them); only a council's subscription hears
// of a lookup up to this much later.
const accessWindow = 3 * time.Second

// tuneGC sets the garbage collector for serving unless the environment
// does (GOGC, GOMEMLIMIT): GOGC 200 rather than 100 cut the server's CPU
// per uploaded resource by 12% (378 to 332 µs in a 25,000-child seed) for
// 38 MB more peak RSS, and a 128 MiB soft memory limit makes the collector
// work harder before the heap gets past that. Serving the national data
// set the live heap is about 25 MB (7 MB of it the store's identifier
// set), so the limit leaves about 100 MB for garbage between collections,
// as 160 MiB did when the identifier set took 44 MB, and keeps RSS, with
// SQLite's page caches beside the heap, under 300 MB.
// See https://go.dev/doc/gc-guide.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(128 << 20)
	}
}

func displayAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", ta.Port)
	}
	return a.String()
}

// reindex rebuilds the search index of every current resource, printing
// progress, and records the index version.
func reindex(ctx context.Context, store *sqlite.Store, registry *fhir.SearchRegistry, out io.Writer) error {
	ix := fhir.NewIndexer(registry)
	start := time.Now()
	last := time.Time{}
	err := store.Reindex(ctx, ix.Index, func(done, total int) {
		if time.Since(last) > time.Second || done == total {
			last = time.Now()
			fmt.Fprintf(out, "cpis: reindexed %d of %d resources\n", done, total)
		}
	})
	if err != nil {
		return fmt.Errorf("reindex: %w", err)
	}
	if err := store.SetIndexVersion(context.WithoutCancel(ctx), fhir.IndexVersion); err != nil {
		return err
	}
	fmt.Fprintf(out, "cpis: search index rebuilt in %s (index version %s)\n", time.Since(start).Round(time.Millisecond), fhir.IndexVersion)
	return nil
}

// loadKey returns the 32-byte key kept in path, making it on first use. The
// key seals search paging links, so that they stay valid across restarts.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}

// appScope is what an app (a client with redirect URIs) may be granted by
// default: reads in the patient and user contexts, Encounter creates, and
// the launch and refresh scopes; the role policy narrows it per user.
const appScope = "launch launch/patient offline_access online_access patient/*.rs user/*.rs patient/Encounter.c user/Encounter.c"

// dbFile is the store in the data folder; keysFile the signing key file;
// replayFile keeps the used client assertion jtis and refresh tokens.
const (
	dbFile     = "cpis.db"
	keysFile   = "signing-keys.json"
	replayFile = "jti.log"
)

// tokenCommand is cpis token: it prints an access token signed with the
// data folder's current key and audits the issue in the audit trail.
func tokenCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cpis token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./cpis-data", "data folder whose signing key signs the token")
	role := fs.String("role", "", "role: la, clinician-unscheduled, clinician-scheduled or admin (required)")
	ods := fs.String("ods", "", "ODS code of the organisation (required but for admin)")
	sdsRole := fs.String("sds-role", "", "SDS job role code of a clinician, such as R8000")
	scope := fs.String("scope", "", "space-separated SMART scopes (default: the role's scopes)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token, at most 24h")
	patient := fs.String("patient", "", "launch context: the Patient id the token is for")
	sub := fs.String("sub", "", "subject (default: cli-ROLE)")
	base := fs.String("base-url", "http://localhost:8080/fhir", "FHIR base URL of the server (the token's issuer and audience)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := smart.Role(*role)
	if !r.Valid() {
		return fmt.Errorf("--role %q: want one of %v", *role, smart.Roles)
	}
	if *scope == "" {
		*scope = smart.DefaultScope(r)
	}
	if *sub == "" {
		*sub = "cli-" + *role
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	keys, err := smart.OpenKeySet(filepath.Join(*dir, keysFile))
	if err != nil {
		return err
	}
	tok, jti, err := keys.Sign(smart.AccessToken{Issuer: *base, Subject: *sub, ClientID: "cpis-cli", Role: r, ODS: *ods,
		SDSRole: *sdsRole, Scope: *scope, Patient: *patient, IssuedAt: time.Now(), TTL: *ttl})
	if err != nil {
		return err
	}
	if err := auditAdmin(*dir, "token-issued", map[string]string{"jti": jti, "sub": *sub, "role": *role, "ods": *ods,
		"sds_role": *sdsRole, "scope": *scope, "patient": *patient, "ttl": ttl.String(), "aud": *base}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// auditAdmin appends the audit record of an administrator's command (when,
// which command, the operating-system user and the details, never a token
// or a key) to the data folder's read trail, the hash-chained journal that
// a running server appends to as well (fhir/journal orders the two).
func auditAdmin(dir, event string, details map[string]string) error {
	v := url.Values{}
	for k, d := range details {
		if d != "" {
			v.Set(k, d)
		}
	}
	who := os.Getenv("USER")
	if u, err := user.Current(); who == "" && err == nil {
		who = u.Username
	}
	rec, err := server.AdminAuditRecord(time.Now(), event, who, v)
	if err != nil {
		return err
	}
	j, err := journal.Open(sqlite.ReadAuditPath(filepath.Join(dir, dbFile)), nil)
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	if err := j.Append(rec); err != nil {
		j.Close()
		return fmt.Errorf("audit trail: %w", err)
	}
	return j.Close()
}

// errAuditBroken is the error of cpis audit verify when the chain does not
// hold.
var errAuditBroken = errors.New("the audit trail's hash chain is broken")

// auditCommand runs cpis audit verify (check both chains, the write
// trail in the store and the read trail in its journal, and report the
// first break of each) or cpis audit export (print every record that the
// chains vouch for, one JSON object a line, with trail, seq, recorded and
// hash).
func auditCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cpis audit "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./cpis-data", "data folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path := filepath.Join(*dir, dbFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no store in %s: %w", *dir, err)
	}
	store, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	var export func(trail string, seq, recorded int64, hash []byte, rec []byte) error
	out := stdout
	if cmd == "export" {
		enc := json.NewEncoder(stdout)
		export = func(trail string, seq, recorded int64, hash []byte, rec []byte) error {
			return enc.Encode(struct {
				Trail    string          `json:"trail"`
				Seq      int64           `json:"seq"`
				Recorded string          `json:"recorded"`
				Hash     string          `json:"hash"`
				Record   json.RawMessage `json:"record"`
			}{trail, seq, time.UnixMilli(recorded).UTC().Format(time.RFC3339Nano), fmt.Sprintf("%x", hash), rec})
		}
		out = stderr
	}
	var eachRow func(sqlite.AuditRow) error
	var eachEntry func(journal.Entry) error
	if export != nil {
		eachRow = func(r sqlite.AuditRow) error { return export("writes", r.Seq, r.Recorded, r.Hash, r.Record) }
		eachEntry = func(e journal.Entry) error { return export("reads", e.Seq, e.Recorded, e.Hash[:], e.Record) }
	}
	writes, err := store.VerifyAudit(ctx, eachRow)
	if err != nil {
		return err
	}
	reads, err := journal.Verify(store.ReadAuditPath(), eachEntry)
	if err != nil {
		return err
	}
	broken := false
	if b := writes.Break; b != nil {
		fmt.Fprintf(out, "cpis: write trail broken at record %d: %s (%d records before it hold)\n", b.Seq, b.Reason, writes.Rows)
		broken = true
	} else {
		fmt.Fprintf(out, "cpis: write trail intact: %d records; head %d %x\n", writes.Rows, writes.HeadSeq, writes.HeadHash)
	}
	if b := reads.Break; b != nil {
		fmt.Fprintf(out, "cpis: read trail broken at record %d: %s (%d records before it hold)\n", b.Seq, b.Reason, reads.Entries)
		broken = true
	} else {
		fmt.Fprintf(out, "cpis: read trail intact: %d records; head %d %x\n", reads.Entries, reads.HeadSeq, reads.HeadHash)
	}
	if broken {
		return errAuditBroken
	}
	return nil
}

// clientAdd is cpis client add: it registers an OAuth client in the data
// folder. A secret is read from stdin (one line) and kept only as a hash.
func clientAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cpis client add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./cpis-data", "data folder")
	id := fs.String("id", "", "client id (required)")
	jwksFile := fs.String("jwks", "", "file with the client's public JWK Set (private_key_jwt)")
	jwksURL := fs.String("jwks-url", "", "URL of the client's public JWK Set (private_key_jwt)")
	secretStdin := fs.Bool("secret-stdin", false, "read a client secret from stdin (client_secret_basic/post)")
	public := fs.Bool("public", false, "a public client (browser app, PKCE, no secret)")
	role := fs.String("role", "", "role of the client's own tokens (client_credentials): la, clinician-unscheduled, clinician-scheduled or admin; optional for --public")
	ods := fs.String("ods", "", "ODS code of the client's organisation")
	sdsRole := fs.String("sds-role", "", "SDS job role code")
	scope := fs.String("scope", "", "every scope the client may be granted, space separated (default: the role's scopes)")
	var redirects []string
	fs.Func("redirect-uri", "a redirect URI of an app (repeatable)", func(v string) error {
		redirects = append(redirects, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := smart.Client{ID: *id, Role: smart.Role(*role), ODS: *ods, SDSRole: *sdsRole, Scope: *scope, RedirectURIs: redirects,
		JWKSURL: *jwksURL, Public: *public}
	if c.Scope == "" {
		c.Scope = smart.DefaultScope(c.Role)
		if len(redirects) > 0 {
			c.Scope = strings.TrimSpace(c.Scope + " " + appScope)
		}
	}
	if *jwksFile != "" {
		b, err := os.ReadFile(*jwksFile)
		if err != nil {
			return err
		}
		var set smart.JWKS
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
			return fmt.Errorf("--jwks %s: not a JWK Set with keys", *jwksFile)
		}
		for _, k := range set.Keys {
			if k.D != "" {
				return fmt.Errorf("--jwks %s: holds a private key; register the public keys only", *jwksFile)
			}
		}
		c.JWKS = &set
	}
	secret := ""
	if *secretStdin {
		var err error
		if secret, err = readLine(stdin); err != nil {
			return err
		}
		if len(secret) < 16 {
			return errors.New("--secret-stdin: a client secret needs at least 16 characters")
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if err := withRegistry(*dir, func(reg *smart.Registry) error { return reg.AddClient(c, secret) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cpis: client %s registered\n", c.ID)
	return auditAdmin(*dir, "client-add", map[string]string{"id": c.ID, "role": *role, "ods": *ods, "scope": c.Scope})
}

// userAdd is cpis user add: it registers a user of the login page; the
// password is read from stdin (one line) and kept only as a bcrypt hash.
func userAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cpis user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./cpis-data", "data folder")
	id := fs.String("id", "", "user name (required)")
	role := fs.String("role", "", "role: la, clinician-unscheduled, clinician-scheduled or admin")
	ods := fs.String("ods", "", "ODS code of the user's organisation")
	sdsRole := fs.String("sds-role", "", "SDS job role code, such as R8000")
	passwordStdin := fs.Bool("password-stdin", false, "read the password from stdin (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*passwordStdin {
		return errors.New("--password-stdin is required: passwords are never given as arguments")
	}
	password, err := readLine(stdin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if err := withRegistry(*dir, func(reg *smart.Registry) error {
		return reg.AddUser(smart.User{ID: *id, Role: smart.Role(*role), ODS: *ods, SDSRole: *sdsRole}, password)
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cpis: user %s registered\n", *id)
	return auditAdmin(*dir, "user-add", map[string]string{"id": *id, "role": *role, "ods": *ods, "sds_role": *sdsRole})
}

// readLine reads one line from r, without its line end.
func readLine(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// demoUsers are the users --demo registers, one per role.
var demoUsers = []smart.User{
	{ID: "demo-la", Role: smart.RoleLA, ODS: "LA001"},
	{ID: "demo-clinician", Role: smart.RoleClinicianUnscheduled, ODS: "RXX01", SDSRole: "R8000"},
	{ID: "demo-gp", Role: smart.RoleClinicianScheduled, ODS: "RYY02", SDSRole: "R8000"},
	{ID: "demo-admin", Role: smart.RoleAdmin},
}

// registerDemo registers the demo users with new random passwords and the
// public app demo-app (redirect http://localhost:9000/callback), then
// prints the passwords and the commands that make tokens. The passwords
// go to stdout only, never to the log.
func registerDemo(reg *smart.Registry, dir, base string, out io.Writer) error {
	if err := reg.AddClient(smart.Client{ID: "demo-app", Public: true, RedirectURIs: []string{"http://localhost:9000/callback"},
		Scope: appScope}, ""); err != nil {
		return err
	}
	fmt.Fprintf(out, "cpis: DEMO MODE: demo users (passwords are new at each start):\n")
	for _, u := range demoUsers {
		pw := smart.NewID()
		if err := reg.AddUser(u, pw); err != nil {
			return err
		}
		fmt.Fprintf(out, "cpis:   %-15s role %-22s ODS %-6s password %s\n", u.ID, u.Role, u.ODS, pw)
	}
	fmt.Fprintf(out, "cpis: SMART app: client_id demo-app (public, PKCE), redirect_uri http://localhost:9000/callback, "+
		"discovery %s/.well-known/smart-configuration\n", base)
	fmt.Fprintf(out, "cpis: tokens without a login, for curl:\n")
	for _, u := range demoUsers {
		ods := ""
		if u.ODS != "" {
			ods = " --ods " + u.ODS
		}
		fmt.Fprintf(out, "cpis:   TOKEN=$(cpis token --data %s --base-url %s --role %s%s)\n", dir, base, u.Role, ods)
	}
	return auditAdmin(dir, "demo-registered", map[string]string{"users": "demo-la demo-clinician demo-gp demo-admin", "client": "demo-app"})
}

// openRegistry opens the SMART clients and users kept in the store, moving
// the clients.json and users.json of an older data folder dir into it.
func openRegistry(store *sqlite.Store, dir string) (*smart.Registry, error) {
	reg, err := smart.OpenRegistry(store)
	if err != nil {
		return nil, err
	}
	if err := reg.ImportFiles(dir); err != nil {
		return nil, err
	}
	return reg, nil
}

// withRegistry opens the store of the data folder dir for a command (a
// running server reads the change within a second), runs fn on its
// registry and closes the store.
func withRegistry(dir string, fn func(*smart.Registry) error) error {
	store, err := sqlite.Open(filepath.Join(dir, dbFile), sqlite.Config{})
	if err != nil {
		return err
	}
	reg, err := openRegistry(store, dir)
	if err == nil {
		err = fn(reg)
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return err
}
