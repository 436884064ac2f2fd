// Command cpis runs the CP-IS FHIR R4 server.
//
//	cpis serve [--addr HOST:PORT] [--data DIR] [--base-url URL] [--demo]
//	cpis seed [--children N] [--seed S] [--base URL | --data DIR]
//	cpis bench --base URL --scenario lookup|careteam|attendance|upload|mixed|healthz
//
// See README.md.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
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
		store, err := sqlite.Open(filepath.Join(*dir, "cpis.db"), sqlite.Config{})
		if err != nil {
			return err
		}
		defer store.Close()
		return reindex(ctx, store, fhir.NewSearchRegistry(), stdout)
	case "seed":
		return runSeed(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
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
	// Demo seeds a small synthetic data set into a folder without
	// Patients and prints example commands (demo.go).
	Demo bool

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
	fs.BoolVar(&m.Demo, "demo", false, "seed a small synthetic data set when the folder holds no Patient, and print commands to try")
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
	store, err := sqlite.Open(filepath.Join(m.DataDir, "cpis.db"), sqlite.Config{})
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
	srv, err := server.New(store, codec, server.Config{
		BaseURL:      m.BaseURL,
		MaxBodyBytes: m.MaxBodyBytes,
		Logger:       logger,
		Version:      version,
		Registry:     registry,
		CursorKey:    cursorKey,

		MaxBundleEntries:      m.MaxBundleEntries,
		MaxConditionalDeletes: m.MaxConditionalDeletes,
	})
	if err != nil {
		return err
	}
	var demo *synthetic.Generator
	if m.Demo {
		if demo, err = seedDemo(ctx, srv, m.Stdout); err != nil {
			return err
		}
	}
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
	fmt.Fprintf(m.Stdout, "cpis: serving FHIR R4 at http://%s%s (data in %s)\n", displayAddr(ln.Addr()), server.FHIRBase, m.DataDir)
	if demo != nil {
		base := m.BaseURL
		if base == "" {
			base = "http://" + displayAddr(ln.Addr()) + server.FHIRBase
		}
		printDemo(m.Stdout, demo, strings.TrimSuffix(base, "/"))
	}
	if m.Ready != nil {
		m.Ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
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
		store.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// tuneGC sets the garbage collector for serving unless the environment
// does (GOGC, GOMEMLIMIT): GOGC 200 rather than 100 cut the server's CPU
// per uploaded resource by 12% (378 to 332 µs in a 25,000-child seed) for
// 38 MB more peak RSS, and a 256 MiB soft memory limit makes the collector
// work harder before the heap would push RSS past that.
// See https://go.dev/doc/gc-guide.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
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
