package server

// Per-client rate limiting (token buckets), CORS for browser SMART apps,
// and HSTS on TLS.
// See https://www.rfc-editor.org/rfc/rfc6585#section-4 (429),
// https://fetch.spec.whatwg.org/#http-cors-protocol and
// https://hl7.org/fhir/smart-app-launch/conformance.html (CORS).

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// limiter is a set of token buckets, one per key, each refilled at rate
// tokens a second up to burst. It is safe for concurrent use.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time
	// shared, when set, holds the buckets for every server process (under
	// keys starting with name); the local buckets serve while it fails.
	shared Buckets
	name   string

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory: beyond it, buckets that are full
// again (idle long enough) are dropped.
const maxBuckets = 100000

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	if burst < 1 {
		burst = int(math.Max(1, math.Ceil(rate)))
	}
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// Buckets are token buckets that several server processes share
// (fhir/redis implements them). Safe for concurrent use.
type Buckets interface {
	// Take takes one token from key's bucket (refilled at rate a second up
	// to burst); when it is empty it returns how long until one is back.
	Take(ctx context.Context, key string, rate float64, burst int) (ok bool, wait time.Duration, err error)
}

// sharedWait bounds how long a request waits for the shared buckets before
// the local ones decide.
const sharedWait = 200 * time.Millisecond

// take takes one token from key's bucket; when it is empty it returns how
// long until a token is back.
func (l *limiter) take(key string) (ok bool, wait time.Duration) {
	if l.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedWait)
		ok, wait, err := l.shared.Take(ctx, l.name+key, l.rate, int(l.burst))
		cancel()
		if err == nil {
			return ok, wait
		}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// empty reports whether key's bucket has no token left, without taking
// one.
func (l *limiter) empty(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	return b != nil && b.tokens+now.Sub(b.last).Seconds()*l.rate < 1
}

// sweep drops the buckets that are full again; l.mu is held.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// rateLimit limits /fhir requests per client (the token's client_id, else
// its subject; the remote address without authentication): 429 with
// Retry-After when the client's bucket is empty.
func (s *Server) rateLimit(c *gin.Context) {
	if s.limit == nil {
		c.Next()
		return
	}
	key := "ip:" + c.ClientIP()
	if p, ok := smart.FromContext(c.Request.Context()); ok && p != anonymous {
		key = "client:" + p.ClientID
		if p.ClientID == "" {
			key = "sub:" + p.Subject
		}
	}
	s.throttle(c, s.limit, key)
}

// throttle takes a token from key's bucket or answers 429.
func (s *Server) throttle(c *gin.Context, l *limiter, key string) {
	ok, wait := l.take(key)
	if ok {
		c.Next()
		return
	}
	secs := int(math.Ceil(wait.Seconds()))
	c.Header("Retry-After", strconv.Itoa(max(secs, 1)))
	s.fail(c, fhir.Errorf(fhir.IssueThrottled, "too many requests from this client; retry after %d s", max(secs, 1)))
}

// oauthRateLimit limits the OAuth endpoints per remote address (logins,
// token requests), against password and secret guessing.
func (s *Server) oauthRateLimit(c *gin.Context) {
	if c.Request.Method != http.MethodPost {
		c.Next()
		return
	}
	ok, wait := s.oauthLimit.take(c.ClientIP())
	if ok {
		c.Next()
		return
	}
	c.Header("Retry-After", strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1)))
	oauthError(c, &smart.OAuthError{Code: "slow_down", Description: "too many requests; retry later", Status: http.StatusTooManyRequests})
}

// The CORS headers: what a browser app may send and read.
const (
	corsAllowMethods  = "GET, HEAD, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-Modified-Since, If-None-Exist, Prefer, X-Request-Id, IsUnscheduledAccessEvent"
	corsExposeHeaders = "Location, Content-Location, ETag, Last-Modified, X-Request-Id, WWW-Authenticate, Retry-After"
)

// cors answers CORS for the origins in Config.CORSOrigins ("*" for any):
// preflights get 204, other requests the allow and expose headers. Bearer
// tokens travel in a header, so credentials (cookies) are never allowed.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" || len(s.cfg.CORSOrigins) == 0 || strings.HasPrefix(c.Request.URL.Path, OAuthBase+"/authorize") {
		c.Next()
		return
	}
	c.Writer.Header().Add("Vary", "Origin")
	if !slices.Contains(s.cfg.CORSOrigins, "*") && !slices.Contains(s.cfg.CORSOrigins, origin) {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	c.Next()
}

// hsts tells browsers to keep to HTTPS once they reached the server over
// TLS. See https://www.rfc-editor.org/rfc/rfc6797.
func (s *Server) hsts(c *gin.Context) {
	if c.Request.TLS != nil {
		c.Header("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	}
	c.Next()
}
