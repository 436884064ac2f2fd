package subscription

// Which rest-hook endpoints the engine calls: SSRF protection. A
// Subscription names a URL the server then calls from inside the network,
// so by default only endpoints on public addresses are called, checked when
// the Subscription is written and again on every connection after DNS
// resolution (a changed DNS answer cannot point a checked endpoint at an
// internal address). An operator's allow-list replaces that rule: then only
// the listed hosts and URL prefixes are called, wherever they resolve.
// See https://owasp.org/www-community/attacks/Server_Side_Request_Forgery.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Endpoints decides which rest-hook endpoints may be called. The zero
// value and nil allow every endpoint whose host resolves only to public
// addresses. It is safe for concurrent use.
type Endpoints struct {
	hosts    map[string]bool // host or host:port, lower case
	prefixes []string        // absolute URL prefixes
}

// NewEndpoints returns the allow-list of list's entries, each a host
// ("receiver.example", "127.0.0.1"), a host and port ("127.0.0.1:9000") or
// an absolute http(s) URL prefix ("https://hooks.example/cpis/"). An empty
// list gives the default: public addresses only. Errors: an entry that is
// none of these.
func NewEndpoints(list []string) (*Endpoints, error) {
	p := &Endpoints{hosts: map[string]bool{}}
	for _, e := range list {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case strings.Contains(e, "://"):
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("subscription endpoints: %q is not an absolute http(s) URL prefix", e)
			}
			p.prefixes = append(p.prefixes, e)
		case strings.ContainsAny(e, "/?#@ "):
			return nil, fmt.Errorf("subscription endpoints: %q is neither a host nor a URL prefix", e)
		default:
			p.hosts[strings.ToLower(e)] = true
		}
	}
	return p, nil
}

// listing reports whether p is an allow-list (else: public addresses only).
func (p *Endpoints) listing() bool {
	return p != nil && (len(p.hosts) > 0 || len(p.prefixes) > 0)
}

// listed reports whether u is on the allow-list.
func (p *Endpoints) listed(u *url.URL) bool {
	host := strings.ToLower(u.Hostname())
	if p.hosts[host] || p.hosts[strings.ToLower(u.Host)] {
		return true
	}
	s := u.String()
	for _, pre := range p.prefixes {
		if strings.HasPrefix(s, pre) {
			return true
		}
	}
	return false
}

// ErrEndpointRefused fails a call to an endpoint Endpoints does not allow.
var ErrEndpointRefused = errors.New("subscription: endpoint not allowed")

var errNotListed = fmt.Errorf("%w: the channel endpoint is not on this server's list of allowed receivers", ErrEndpointRefused)

// refusal returns the reason in err (from a call Endpoints refused), safe
// for Subscription.error, and whether there is one.
func refusal(err error) (string, bool) {
	for ; err != nil; err = errors.Unwrap(err) {
		if u := errors.Unwrap(err); u == ErrEndpointRefused {
			return strings.TrimPrefix(err.Error(), ErrEndpointRefused.Error()+": "), true
		}
	}
	return "", false
}

// refused is the reason, safe for Subscription.error and for clients, that
// u may not be called (nil: it may); it resolves u's host unless p lists
// endpoints.
func (p *Endpoints) refused(ctx context.Context, u *url.URL) error {
	if p.listing() {
		if p.listed(u) {
			return nil
		}
		return errNotListed
	}
	_, err := publicAddrs(ctx, u.Hostname())
	return err
}

// publicAddrs resolves host and returns its addresses, or an error when
// it does not resolve or any address is loopback, private, link-local,
// multicast or unspecified.
func publicAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("%w: the channel endpoint's host does not resolve", ErrEndpointRefused)
		}
		addrs = ips
	}
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return nil, fmt.Errorf("%w: the channel endpoint resolves to an internal address (loopback, private, link-local or unspecified); an operator may allow it with --subscription-endpoints", ErrEndpointRefused)
		}
	}
	return addrs, nil
}

// Check reports whether the endpoint raw may be called now. Errors:
// IssueInvalid with the reason.
func (p *Endpoints) Check(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fhir.Errorf(fhir.IssueInvalid, "Subscription: the channel endpoint must be an absolute http or https URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if reason, ok := refusal(p.refused(ctx, u)); ok {
		return fhir.Errorf(fhir.IssueInvalid, "Subscription: %s", reason)
	}
	return nil
}

// Client returns an HTTP client that calls only what p allows, with the
// timeout: each request's URL is checked, and without an allow-list each
// connection goes only to the public addresses its host resolves to at
// that moment. It follows no redirects (a 3xx is an answer like any other).
func (p *Endpoints) Client(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy would resolve the host itself
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p.listing() {
			return d.DialContext(ctx, network, addr)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := publicAddrs(ctx, host)
		if err != nil {
			return nil, err
		}
		var last error
		for _, a := range addrs { // dial what was checked, never a new lookup
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     guard{p, tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// guard refuses requests to URLs off the allow-list.
type guard struct {
	p    *Endpoints
	next http.RoundTripper
}

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if g.p.listing() && !g.p.listed(req.URL) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errNotListed
	}
	return g.next.RoundTrip(req)
}
