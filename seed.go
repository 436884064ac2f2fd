package main

// cpis seed loads a synthetic national data set (package synthetic) as
// council transaction Bundles: through the public API of a running server
// (--base) or straight into a data folder (--data, with the server
// stopped), where the Bundles go through the same server handler in the
// same process, so that they are validated and written exactly as over
// HTTP. See README.md, "Synthetic data, seed and bench", and
// https://hl7.org/fhir/R4/http.html#transaction for the Bundles.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
	"github.com/cpis-fhir/cpis/server"
	"github.com/cpis-fhir/cpis/synthetic"
)

// seedOptions are the flags of cpis seed.
type seedOptions struct {
	children, councils, sites, clients, attendances int
	seed                                            uint64
	base, data, token, date                         string
	omitProfiles                                    bool
}

// generatorFlags registers the flags that select a synthetic data set.
func generatorFlags(fs *flag.FlagSet, seed *uint64, children *int) {
	fs.Uint64Var(seed, "seed", 1, "seed of the synthetic data set (the same seed gives the same data)")
	fs.IntVar(children, "children", synthetic.NationalChildren, "number of children (and pregnant women) of the data set")
}

// runSeed is the seed command.
func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o seedOptions
	fs := flag.NewFlagSet("cpis seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	generatorFlags(fs, &o.seed, &o.children)
	fs.IntVar(&o.councils, "councils", synthetic.NationalCouncils, "number of councils (at most 152)")
	fs.IntVar(&o.sites, "sites", synthetic.NationalSites, "number of unscheduled-care sites")
	fs.IntVar(&o.attendances, "attendances", 0, "number of attendances (Encounters) to load after the children")
	fs.IntVar(&o.clients, "clients", 8, "concurrent uploads (8 keep the two cores busy while some wait for their commit: 9-14% faster than 4 at 25,000 children)")
	fs.StringVar(&o.base, "base", "", "FHIR base URL of a running server, such as http://localhost:8080/fhir")
	fs.StringVar(&o.data, "data", "", "data folder to load directly (the server must be stopped)")
	fs.StringVar(&o.token, "token", "", "bearer token sent with --base (default $CPIS_TOKEN)")
	fs.BoolVar(&o.omitProfiles, "omit-profiles", false, "leave out the meta.profile claims (the server then validates only CP-IS Flags, by content)")
	fs.StringVar(&o.date, "date", "", "reference day YYYY-MM-DD that dates count back from (default today, UTC)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.token == "" {
		o.token = os.Getenv("CPIS_TOKEN")
	}
	if (o.base == "") == (o.data == "") {
		return errors.New("seed: give exactly one of --base URL and --data DIR")
	}
	if o.clients < 1 {
		return errors.New("seed: --clients must be at least 1")
	}
	now := time.Now().UTC()
	if o.date != "" {
		d, err := time.Parse(time.DateOnly, o.date)
		if err != nil {
			return fmt.Errorf("seed: --date: %w", err)
		}
		now = d
	}
	g, err := synthetic.New(synthetic.Config{Seed: o.seed, Children: o.children, Councils: o.councils, Sites: o.sites, Now: now, OmitProfiles: o.omitProfiles})
	if err != nil {
		return err
	}
	var p poster
	if o.base != "" {
		p = newHTTPPoster(o.base, o.token, o.clients)
	} else {
		h, closeStore, err := openHandler(ctx, o.data, stderr)
		if err != nil {
			return err
		}
		defer closeStore()
		p = handlerPoster{h}
	}
	if n, err := countOf(ctx, p, "Patient?identifier="+url.QueryEscape(synthetic.SystemNHSNumber+"|"+g.NHSNumber(0))); err != nil {
		return fmt.Errorf("seed: %w", err)
	} else if n > 0 {
		return fmt.Errorf("seed: the server already holds the children of --seed %d (its first child is there); seed an empty data folder or choose another seed", o.seed)
	}
	return seed(ctx, g, p, o.clients, o.attendances, stdout, stderr)
}

// poster sends requests to the FHIR API: over HTTP or to the handler in
// this process.
type poster interface {
	// do sends the request (path is below the FHIR base) and returns the
	// status and body.
	do(ctx context.Context, method, path string, body []byte, hdr ...string) (int, []byte, error)
}

// httpPoster sends to a server's FHIR base over HTTP, with keep-alive.
type httpPoster struct {
	base, token string
	client      *http.Client
}

func newHTTPPoster(base, token string, conns int) *httpPoster {
	tr := &http.Transport{MaxIdleConns: 2 * conns, MaxIdleConnsPerHost: 2 * conns, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	return &httpPoster{base: strings.TrimSuffix(base, "/"), token: token, client: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

func (p *httpPoster) do(ctx context.Context, method, path string, body []byte, hdr ...string) (int, []byte, error) {
	req, err := newRequest(ctx, method, below(p.base, path), body, p.token, hdr...)
	if err != nil {
		return 0, nil, err
	}
	res, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// below returns the URL of path below the FHIR base (the base itself for
// "").
func below(base, path string) string {
	if path == "" {
		return base
	}
	return base + "/" + path
}

// newRequest builds a FHIR JSON request; hdr is name, value pairs.
func newRequest(ctx context.Context, method, u string, body []byte, token string, hdr ...string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req, nil
}

// handlerPoster sends to an http.Handler in this process.
type handlerPoster struct{ h http.Handler }

func (p handlerPoster) do(ctx context.Context, method, path string, body []byte, hdr ...string) (int, []byte, error) {
	req, err := newRequest(ctx, method, below("http://localhost"+server.FHIRBase, path), body, "", hdr...)
	if err != nil {
		return 0, nil, err
	}
	w := &recorder{header: http.Header{}}
	p.h.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.status, w.body.Bytes(), nil
}

// recorder is the http.ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// openHandler opens the data folder as cpis serve does (the store, the
// index version check, the cursor key, the profiles and terminology
// written at start) and returns the server's handler and a function that
// closes the store.
func openHandler(ctx context.Context, dir string, stderr io.Writer) (http.Handler, func() error, error) {
	tuneGC()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data folder: %w", err)
	}
	// Alone in the folder: a server running on it would not see what is
	// loaded behind its back (its identifier set would answer "no
	// record" for children just loaded).
	lock, err := lockData(dir, false)
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	fail := func(err error) (http.Handler, func() error, error) {
		store.Close()
		lock.Close()
		return nil, nil, err
	}
	registry := fhir.NewSearchRegistry()
	if v, err := store.IndexVersion(ctx); err != nil {
		return fail(err)
	} else if rules, _, _ := strings.Cut(v, "+"); rules != fhir.IndexVersion {
		if err := reindex(ctx, store, registry, stderr); err != nil {
			return fail(err)
		}
	}
	key, err := loadKey(filepath.Join(dir, "cursor.key"))
	if err != nil {
		return fail(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return fail(err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(store, codec, server.Config{Logger: logger, Version: version, Registry: registry, CursorKey: key})
	if err != nil {
		return fail(err)
	}
	return srv, func() error { defer lock.Close(); return store.Close() }, nil
}

// countOf returns the number of resources a search (below the FHIR base)
// finds.
func countOf(ctx context.Context, p poster, search string) (int, error) {
	sep := "?"
	if strings.Contains(search, "?") {
		sep = "&"
	}
	status, body, err := p.do(ctx, http.MethodGet, search+sep+"_summary=count", nil)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", strings.SplitN(search, "?", 2)[0], status)
	}
	var b struct {
		Total int `json:"total"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return 0, fmt.Errorf("search answer: %w", err)
	}
	return b.Total, nil
}

// seedJob is one Bundle to send.
type seedJob struct {
	upload     *synthetic.Upload
	attendance int // first attendance of an attendance Bundle
	children   int // children the Bundle completes
	resources  int // resources it writes
}

// seedStats counts what the seed did.
type seedStats struct {
	mu        sync.Mutex
	bundles   int
	children  atomic.Int64
	resources atomic.Int64
	errors    map[int]int // by status; 0 is a transport error
	firstErr  string
}

func (s *seedStats) fail(status int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors[status]++
	if s.firstErr == "" {
		s.firstErr = msg
	}
}

func (s *seedStats) failures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.errors {
		n += c
	}
	return n
}

// attendancesPerBundle is the size of the Bundles of Encounters.
const attendancesPerBundle = 100

// seed sends the data set: first the councils, social workers and sites
// (one Bundle, which must succeed), then the council uploads and the
// attendances from clients concurrent senders, with progress on progressOut
// and the summary on out.
func seed(ctx context.Context, g *synthetic.Generator, p poster, clients, attendances int, out, progressOut io.Writer) error {
	start := time.Now()
	cfg := g.Config()
	status, body, err := p.do(ctx, http.MethodPost, "", g.SetupBundle(), "Prefer", "return=minimal")
	if err != nil {
		return fmt.Errorf("seed: councils and sites: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("seed: councils and sites: status %d: %s", status, outcomeText(body))
	}
	uploads := g.Uploads()
	var jobs []seedJob
	records := 0
	for i := range uploads {
		u := &uploads[i]
		records += len(u.Items)
		// A child counts as done with its first record.
		first := 0
		for _, it := range u.Items {
			if it.Record == 0 {
				first++
			}
		}
		jobs = append(jobs, seedJob{upload: u, children: first, resources: first + 3*len(u.Items)})
	}
	for k := 0; k < attendances; k += attendancesPerBundle {
		jobs = append(jobs, seedJob{attendance: k, resources: min(attendancesPerBundle, attendances-k)})
	}
	total := g.SetupEntries() + cfg.Children + 3*records + attendances
	st := &seedStats{errors: map[int]int{}}
	st.resources.Store(int64(g.SetupEntries()))
	pr := newProgress(progressOut, "seed", total, start)
	pr.set(int(st.resources.Load()), 0)
	stop := pr.run(func() (int, int) { return int(st.resources.Load()), int(st.children.Load()) })

	queue := make(chan seedJob)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for j := range queue {
				var b []byte
				if j.upload != nil {
					b = g.UploadBundle(*j.upload)
				} else {
					b = g.AttendanceBundle(j.attendance, j.resources)
				}
				status, body, err := p.do(ctx, http.MethodPost, "", b, "Prefer", "return=minimal")
				switch {
				case err != nil:
					if ctx.Err() == nil {
						st.fail(0, err.Error())
					}
					continue
				case status != http.StatusOK:
					st.fail(status, fmt.Sprintf("status %d: %s", status, outcomeText(body)))
					continue
				}
				st.children.Add(int64(j.children))
				st.resources.Add(int64(j.resources))
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case queue <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	stop()
	st.bundles = len(jobs) + 1
	elapsed := time.Since(start)
	res := st.resources.Load()
	fmt.Fprintf(out, "seed: %d children (%d records), %d attendances, %d councils, %d sites: %d resources in %d Bundles in %s, %.0f resources/s; %d Bundles failed\n",
		st.children.Load(), records, attendances, len(g.Councils()), len(g.Sites()), res, st.bundles,
		elapsed.Round(100*time.Millisecond), float64(res)/elapsed.Seconds(), st.failures())
	if n := st.failures(); n > 0 {
		fmt.Fprintf(out, "seed: failures by status %v (0: no answer); first: %s\n", st.errors, st.firstErr)
		return fmt.Errorf("seed: %d Bundles failed", n)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("seed: stopped: %w", err)
	}
	return nil
}

// outcomeText returns the diagnostics of an OperationOutcome answer, cut
// short; the server's messages never carry patient data.
func outcomeText(body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || len(oo.Issue) == 0 {
		return "no OperationOutcome"
	}
	s := oo.Issue[0].Diagnostics
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
