package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

const (
	headerRequestID = "X-Request-Id"
	ctxRequestID    = "cpis.request_id"
	mediaFHIRJSON   = "application/fhir+json"
	contentTypeJSON = mediaFHIRJSON + "; charset=utf-8"
)

// requestID takes a well-formed X-Request-Id from the client or makes one,
// and echoes it on the response.
func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader(headerRequestID)
	if !validRequestID(id) {
		var b [12]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	c.Set(ctxRequestID, id)
	c.Header(headerRequestID, id)
	c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return false
		}
	}
	return true
}

func requestIDOf(c *gin.Context) string { return c.GetString(ctxRequestID) }

// recover turns a panic into a 500 OperationOutcome.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.fail(c, fmt.Errorf("panic: %v", p))
		}
	}()
	c.Next()
}

// logRequest logs one line per request: no query string, no ids, no bodies,
// since any of them can carry patient data.
func (s *Server) logRequest(c *gin.Context) {
	start := time.Now()
	c.Next()
	if !s.log.Enabled(c.Request.Context(), slog.LevelInfo) {
		return // the line's arguments alone cost allocations
	}
	s.log.Info("request",
		"request_id", requestIDOf(c),
		"method", c.Request.Method,
		"route", c.FullPath(),
		"type", routeType(c),
		"status", c.Writer.Status(),
		"duration_ms", float64(time.Since(start).Microseconds())/1000,
		"client", clientOf(c),
	)
}

// clientOf is the OAuth client of the request's principal, for the log.
func clientOf(c *gin.Context) string {
	if p, ok := smart.FromContext(c.Request.Context()); ok {
		return p.ClientID
	}
	return ""
}

func routeType(c *gin.Context) string {
	if t := c.Param("type"); fhir.IsResourceType(t) {
		return t
	}
	return ""
}

// negotiate enforces JSON: an XML (or other) _format or Accept gets 406, a
// non-JSON request body 415.
// See https://hl7.org/fhir/R4/http.html#mime-type.
func (s *Server) negotiate(c *gin.Context) {
	if f := queryValue(c, "_format"); f != "" && !jsonFormat(f) {
		s.fail(c, &statusError{http.StatusNotAcceptable, fhir.Errorf(fhir.IssueNotSupported, "_format %q is not supported; this server supports JSON only (_format=json or application/fhir+json)", safeMedia(f))})
		return
	}
	if a := c.GetHeader("Accept"); a != "" && queryValue(c, "_format") == "" && !acceptsJSON(a) {
		s.fail(c, &statusError{http.StatusNotAcceptable, fhir.Errorf(fhir.IssueNotSupported, "the Accept header asks for a format this server does not produce; it supports JSON only (application/fhir+json)")})
		return
	}
	if ct := c.GetHeader("Content-Type"); ct != "" && c.Request.ContentLength != 0 && !jsonMedia(ct) && !searchForm(c, ct) && !jsonPatchBody(c, ct) {
		s.fail(c, &statusError{http.StatusUnsupportedMediaType, fhir.Errorf(fhir.IssueNotSupported, "Content-Type %q is not supported; send JSON (application/fhir+json)", safeMedia(ct))})
		return
	}
	c.Next()
}

func jsonFormat(f string) bool {
	// An unescaped + in a query string arrives as a space.
	f = strings.ReplaceAll(strings.TrimSpace(f), " ", "+")
	switch strings.ToLower(f) {
	case "json", "application/json", "application/fhir+json", "application/json+fhir", "text/json":
		return true
	}
	mt, _, err := mime.ParseMediaType(f)
	return err == nil && jsonMediaType(mt)
}

// searchForm reports a form body posted to _search, the one non-JSON body
// the API takes.
func searchForm(c *gin.Context, ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == mediaForm && c.Request.Method == http.MethodPost && strings.HasSuffix(c.Request.URL.Path, "/_search")
}

func jsonMedia(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && jsonMediaType(mt)
}

func jsonMediaType(mt string) bool {
	switch mt {
	case "application/fhir+json", "application/json", "application/json+fhir", "text/json":
		return true
	}
	return false
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		if jsonMediaType(mt) || mt == "*/*" || mt == "application/*" {
			return true
		}
	}
	return false
}

// safeMedia returns a media type as given when it is short and plain, for
// echoing in an error.
func safeMedia(s string) string {
	if len(s) > 64 {
		return "(the given value)"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return "(the given value)"
		}
	}
	return s
}

// readBody reads the request body within the configured limit: 413 beyond.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		return nil, s.tooLarge()
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, s.tooLarge()
		}
		return nil, fhir.Errorf(fhir.IssueStructure, "the request body could not be read")
	}
	return b, nil
}

func (s *Server) tooLarge() error {
	return &statusError{http.StatusRequestEntityTooLarge, fhir.Errorf(fhir.IssueTooLong, "the request body is larger than the limit of %d bytes", s.cfg.MaxBodyBytes)}
}

// queryValue is c.Query(name) for a name "_x", without parsing the query
// when its text does not hold "x" (most requests hold neither _format nor
// _pretty); the underscore may come encoded, %5F.
func queryValue(c *gin.Context, name string) string {
	if !strings.Contains(c.Request.URL.RawQuery, strings.TrimPrefix(name, "_")) {
		return ""
	}
	return c.Query(name)
}

// writeJSON writes a JSON body, indented when _pretty=true.
func (s *Server) writeJSON(c *gin.Context, status int, body []byte) {
	if queryValue(c, "_pretty") == "true" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, body, "", "  "); err == nil {
			body = buf.Bytes()
		}
	}
	c.Data(status, contentTypeJSON, body)
}

// writeResource writes one stored version with its ETag and Last-Modified.
func (s *Server) writeResource(c *gin.Context, status int, r *fhir.Resource) {
	setVersionHeaders(c, r)
	s.writeJSON(c, status, r.JSON)
}

func setVersionHeaders(c *gin.Context, r *fhir.Resource) {
	c.Header("ETag", r.ETag())
	c.Header("Last-Modified", r.LastUpdated.UTC().Format(http.TimeFormat))
}

// preferReturn returns the return preference of the Prefer header:
// "minimal", "representation" (the default) or "OperationOutcome".
// See https://hl7.org/fhir/R4/http.html#ops.
func preferReturn(c *gin.Context) string {
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.Split(h, ";") {
			p = strings.TrimSpace(p)
			if v, ok := strings.CutPrefix(p, "return="); ok {
				switch v = strings.Trim(v, `"`); v {
				case "minimal", "representation", "OperationOutcome":
					return v
				}
			}
		}
	}
	return "representation"
}

// writeWritten answers a create or update as the Prefer header asks.
func (s *Server) writeWritten(c *gin.Context, status int, r *fhir.Resource, what string) {
	c.Header("Location", s.baseURL(c)+"/"+r.VersionRef())
	switch preferReturn(c) {
	case "minimal":
		setVersionHeaders(c, r)
		c.Status(status)
	case "OperationOutcome":
		setVersionHeaders(c, r)
		issues := []fhir.Issue{{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational,
			Diagnostics: fmt.Sprintf("%s %s, version %d", what, r.Ref(), r.VersionID)}}
		if notesOf(c.Request.Context()).isFlagged(r.Ref()) {
			issues = append(issues, encounterIssue())
		}
		s.writeOutcome(c, status, issues)
	default:
		s.writeResource(c, status, r)
	}
}

// parseETag reads a version from an If-Match or If-None-Match value: W/"3",
// "3" or 3. ok is false when the value is not a version.
func parseETag(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n > 0
}
