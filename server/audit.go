package server

// The audit trail: every request that touches CP-IS data (every /fhir
// request but GET metadata and the conformance and terminology resources)
// leaves a record of who did what and how it ended, appended to the
// store's hash-chained audit trail durably before the response is sent
// (the response is held back until then; when the record cannot be
// written the answer is 503 and nothing is disclosed). A write also
// carries, in its own store transaction, a record of the versions it
// commits, so that a committed write never lacks one. The records hold
// the query parameters with NHS numbers: the audit trail is the one place
// allowed to keep them, and they are never logged.
// See README "Security: policy and audit"; fhir/sqlite/audit.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/conformance"
	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// auditLog is the audit trail of a store that keeps one (sqlite.Store).
type auditLog interface {
	AppendAudit(ctx context.Context, rec []byte) error
}

// txAuditLog is a write transaction that can append a record with its
// writes.
type txAuditLog interface {
	AppendAudit(rec []byte) error
}

// auditRecord is the canonical audit record: a fixed field order (so equal
// records are equal bytes), compact JSON.
type auditRecord struct {
	Time        string   `json:"time"`
	RequestID   string   `json:"request"`
	Subject     string   `json:"sub,omitempty"`
	ClientID    string   `json:"client,omitempty"`
	Role        string   `json:"role,omitempty"`
	ODS         string   `json:"ods,omitempty"`
	SDSRole     string   `json:"sdsRole,omitempty"`
	TokenID     string   `json:"jti,omitempty"`
	Interaction string   `json:"interaction"`
	Method      string   `json:"method"`
	Path        string   `json:"path"`
	Type        string   `json:"type,omitempty"`
	ID          string   `json:"id,omitempty"`
	Query       string   `json:"query,omitempty"`
	Status      int      `json:"status,omitempty"`
	Unscheduled *bool    `json:"unscheduled,omitempty"`
	Patients    []string `json:"patients,omitempty"`
	Resources   []string `json:"resources,omitempty"`
	Written     []string `json:"written,omitempty"`
	// Access is the access history the request is due, which the access
	// queue writes (cpis_access_queue.go).
	Access *accessIntent `json:"access,omitempty"`
}

// JSON returns the record's JSON, the bytes json.Marshal writes for it
// (TestAuditRecord_JSONAsMarshal), without reflection: every request
// that touches CP-IS data writes one.
func (r *auditRecord) JSON() ([]byte, error) {
	n := 256 + len(r.Query)
	for _, l := range [][]string{r.Patients, r.Resources, r.Written} {
		for _, x := range l {
			n += len(x) + 3
		}
	}
	dst := make([]byte, 0, n)
	dst = append(dst, `{"time":`...)
	dst = fhir.AppendJSONString(dst, r.Time)
	dst = append(dst, `,"request":`...)
	dst = fhir.AppendJSONString(dst, r.RequestID)
	for _, f := range [...]struct{ name, v string }{
		{"sub", r.Subject}, {"client", r.ClientID}, {"role", r.Role}, {"ods", r.ODS}, {"sdsRole", r.SDSRole}, {"jti", r.TokenID},
	} {
		dst = appendOptString(dst, f.name, f.v)
	}
	dst = append(dst, `,"interaction":`...)
	dst = fhir.AppendJSONString(dst, r.Interaction)
	dst = append(dst, `,"method":`...)
	dst = fhir.AppendJSONString(dst, r.Method)
	dst = append(dst, `,"path":`...)
	dst = fhir.AppendJSONString(dst, r.Path)
	dst = appendOptString(dst, "type", r.Type)
	dst = appendOptString(dst, "id", r.ID)
	dst = appendOptString(dst, "query", r.Query)
	if r.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(r.Status), 10)
	}
	if r.Unscheduled != nil {
		dst = append(dst, `,"unscheduled":`...)
		dst = strconv.AppendBool(dst, *r.Unscheduled)
	}
	dst = appendOptStrings(dst, "patients", r.Patients)
	dst = appendOptStrings(dst, "resources", r.Resources)
	dst = appendOptStrings(dst, "written", r.Written)
	return append(dst, '}'), nil
}

func appendOptString(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return fhir.AppendJSONString(dst, v)
}

func appendOptStrings(dst []byte, name string, vs []string) []byte {
	if len(vs) == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':', '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = fhir.AppendJSONString(dst, v)
	}
	return append(dst, ']')
}

// maxReturned bounds the resources one record lists.
const maxReturned = 100

// auditEvent gathers one request's record while it is served.
type auditEvent struct {
	mu   sync.Mutex
	rec  auditRecord
	inTx bool // a write's own record was committed
	// access is the access history a lookup writes with the record
	// (cpis_access.go); nil for every other request.
	access  *accessRead
	seen    map[string]bool
	patient map[string]bool
}

type auditKey struct{}

func auditEventOf(ctx context.Context) *auditEvent {
	ev, _ := ctx.Value(auditKey{}).(*auditEvent)
	return ev
}

// setQuery records the request's search parameters (URL and form body).
func (ev *auditEvent) setQuery(q string) {
	if ev == nil {
		return
	}
	ev.mu.Lock()
	ev.rec.Query = q
	ev.mu.Unlock()
}

// returned records resources given to the client.
func (ev *auditEvent) returned(rs ...*fhir.Resource) {
	if ev == nil {
		return
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, r := range rs {
		if r == nil {
			continue
		}
		ref := r.VersionRef()
		if ev.seen[ref] {
			continue
		}
		if ev.seen == nil {
			ev.seen = map[string]bool{}
		}
		ev.seen[ref] = true
		if len(ev.rec.Resources) < maxReturned {
			ev.rec.Resources = append(ev.rec.Resources, ref)
		}
		if r.Type == "Patient" {
			ev.addPatient(r.Ref())
		}
	}
}

func (ev *auditEvent) addPatient(p string) {
	if ev.patient[p] {
		return
	}
	if ev.patient == nil {
		ev.patient = map[string]bool{}
	}
	ev.patient[p] = true
	ev.rec.Patients = append(ev.rec.Patients, p)
}

// AdminAuditRecord is the audit record of an administrator's command run
// beside the server (cpis token, client add, user add, keys rotate): the
// interaction admin:<command>, the operating-system user as the subject,
// the details as the query.
func AdminAuditRecord(now time.Time, command, osUser string, details url.Values) ([]byte, error) {
	return json.Marshal(&auditRecord{Time: fhir.FormatInstant(now), Subject: "os:" + osUser, ClientID: "cpis-cli",
		Role: "admin", Interaction: "admin:" + command, Method: "CLI", Path: command, Query: details.Encode()})
}

// nhsNumbersIn returns the NHS numbers given with their system in the
// query q: the 10 digits after "nhs-number|" (the bar also URL-encoded,
// %7C), in order.
func nhsNumbersIn(q string) []string {
	var out []string
	for {
		i := strings.Index(q, "nhs-number")
		if i < 0 {
			return out
		}
		q = q[i+len("nhs-number"):]
		switch {
		case strings.HasPrefix(q, "|"):
			q = q[1:]
		case len(q) >= 3 && q[0] == '%' && q[1] == '7' && (q[2] == 'C' || q[2] == 'c'):
			q = q[3:]
		default:
			continue
		}
		if len(q) >= 10 && allDigits(q[:10]) {
			out = append(out, q[:10])
			q = q[10:]
		}
	}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// auditRequest is the middleware that writes each request's record: see
// the file comment.
func (s *Server) auditRequest(c *gin.Context) {
	log, ok := s.store.(auditLog)
	if !ok || !audited(c) {
		c.Next()
		return
	}
	ev := &auditEvent{}
	p := principalOf(c.Request.Context())
	ev.rec = auditRecord{
		RequestID:   requestIDOf(c),
		Interaction: s.interactionOf(c),
		Method:      c.Request.Method,
		Path:        strings.TrimPrefix(c.Request.URL.Path, FHIRBase),
		Type:        routeType(c),
		ID:          c.Param("id"),
		Query:       c.Request.URL.RawQuery,
	}
	if p != nil {
		ev.rec.Subject, ev.rec.ClientID, ev.rec.Role, ev.rec.ODS, ev.rec.SDSRole, ev.rec.TokenID = p.Subject, p.ClientID, string(p.Role), p.ODS, p.SDSRole, p.TokenID
	}
	if c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead || strings.HasSuffix(c.Request.URL.Path, "/_search") {
		// DOMAIN rule 3: missing means true; a scheduled-setting
		// clinician's read is scheduled whatever the header says (its
		// token's setting is verified, the header is not).
		u := !strings.EqualFold(strings.TrimSpace(c.GetHeader("IsUnscheduledAccessEvent")), "false") &&
			(p == nil || p.Role != smart.RoleClinicianScheduled)
		ev.rec.Unscheduled = &u
	}
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), auditKey{}, ev))
	bw := &bufferedWriter{ResponseWriter: c.Writer, status: http.StatusOK}
	c.Writer = bw
	c.Next()
	c.Writer = bw.ResponseWriter

	ev.mu.Lock()
	ev.rec.Time = fhir.FormatInstant(s.cfg.Now())
	ev.rec.Status = bw.status
	q := ev.rec.Query
	for _, nhs := range nhsNumbersIn(q) {
		ev.addPatient(nhs)
	}
	if t := c.Param("type"); t == "Patient" && c.Param("ctype") != "" {
		ev.addPatient("Patient/" + c.Param("id"))
	}
	rec, err := ev.rec.JSON()
	inTx, acc, r := ev.inTx, ev.access, ev.rec
	ev.mu.Unlock()
	switch {
	case err != nil:
	case acc != nil && bw.status == http.StatusOK && s.access != nil:
		// The record keeps the access history due; the queue writes it.
		ticket := s.access.begin()
		r.Access = acc.intent()
		var b []byte
		if b, err = json.Marshal(&r); err == nil {
			err = log.AppendAudit(context.WithoutCancel(c.Request.Context()), b)
		}
		var it *accessItem
		if err == nil {
			r.Access = nil
			it = &accessItem{rec: r, read: acc}
		}
		s.access.end(ticket, it)
	case acc != nil && bw.status == http.StatusOK:
		// Without the queue (a store other processes share), a
		// lookup's access history goes in the same durable write as its
		// record.
		if err = s.completeAccess(c.Request.Context(), acc, newViewerCache()); err != nil {
			break
		}
		err = s.store.Write(context.WithoutCancel(c.Request.Context()), func(tx fhir.Tx) error {
			al, ok := tx.(txAuditLog)
			if !ok {
				return fhir.Errorf(fhir.IssueException, "the store cannot append to the audit trail in a write")
			}
			written, err := s.writeAccess(tx, acc)
			if err != nil {
				return err
			}
			r.Written = written
			b, err := json.Marshal(&r)
			if err != nil {
				return err
			}
			return al.AppendAudit(b)
		})
	default:
		err = log.AppendAudit(context.WithoutCancel(c.Request.Context()), rec)
	}
	if err != nil {
		s.log.Error("audit record not written", "request_id", requestIDOf(c), "error", err)
		if !inTx {
			// Nothing is disclosed without its record.
			c.Writer.Header().Del("Location")
			c.Writer.Header().Del("ETag")
			c.Writer.Header().Del("Last-Modified")
			s.writeOutcomeNow(c, http.StatusServiceUnavailable, fhir.Errorf(fhir.IssueTransient, "the access could not be recorded in the audit trail; try again"))
			return
		}
	}
	bw.flush()
}

// writeOutcomeNow answers with an OperationOutcome after the handler's
// answer was held back and dropped.
func (s *Server) writeOutcomeNow(c *gin.Context, status int, fe *fhir.Error) {
	b, err := s.codec.MarshalMessage(fhir.Outcome(fe.OutcomeIssues()))
	if err != nil {
		b = []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}`)
	}
	c.Writer.Header().Set("Content-Type", contentTypeJSON)
	c.Writer.Header().Del("Content-Length") // the held-back answer's
	c.Writer.WriteHeader(status)
	c.Writer.Write(b)
}

// audited reports whether the request touches CP-IS data: every FHIR
// request but the CapabilityStatement and the conformance and terminology
// resources (and their operations).
func audited(c *gin.Context) bool {
	switch c.FullPath() {
	case FHIRBase + "/metadata", "":
		return false
	}
	if strings.HasPrefix(c.Request.URL.Path, FHIRBase+"/.well-known") {
		return false
	}
	switch c.Param("type") {
	case "StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "CapabilityStatement",
		"ConceptMap", "NamingSystem", "OperationDefinition", "CompartmentDefinition", "ImplementationGuide":
		return false
	}
	return true
}

// interactionOf names the request's interaction from the route table.
func (s *Server) interactionOf(c *gin.Context) string {
	path := strings.TrimPrefix(c.FullPath(), FHIRBase)
	for _, r := range s.routes {
		if r.Method == c.Request.Method && r.Path == path {
			switch {
			case r.Operation != nil:
				return "operation:" + r.Operation.Name
			case r.Interaction == conformance.Transaction || r.Interaction == conformance.Batch:
				return "batch/transaction"
			}
			return string(r.Interaction)
		}
	}
	return "unknown"
}

// bufferedWriter holds a response back until the audit record is durable.
type bufferedWriter struct {
	gin.ResponseWriter
	buf     bytes.Buffer
	status  int
	written bool
}

func (w *bufferedWriter) WriteHeader(code int) {
	if !w.written {
		w.status = code
	}
}
func (w *bufferedWriter) WriteHeaderNow()             { w.written = true }
func (w *bufferedWriter) Write(b []byte) (int, error) { w.written = true; return w.buf.Write(b) }
func (w *bufferedWriter) WriteString(s string) (int, error) {
	w.written = true
	return w.buf.WriteString(s)
}
func (w *bufferedWriter) Status() int         { return w.status }
func (w *bufferedWriter) Size() int           { return w.buf.Len() }
func (w *bufferedWriter) Written() bool       { return w.written }
func (w *bufferedWriter) Flush()              {}
func (w *bufferedWriter) Pusher() http.Pusher { return nil }
func (w *bufferedWriter) flush() {
	w.ResponseWriter.WriteHeader(w.status)
	if w.buf.Len() > 0 {
		w.ResponseWriter.Write(w.buf.Bytes())
	} else {
		w.ResponseWriter.WriteHeaderNow()
	}
}

// auditStore records, for the request's audit record, the resources the
// policy lets the request read (Type/id/_history/n) and the versions it
// writes; a write's own record is appended inside its transaction. It
// wraps the principal's policy view of the store.
type auditStore struct {
	fhir.Store
	ev *auditEvent
}

func (a *auditStore) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := a.Store.Read(ctx, typ, id)
	if err == nil && !r.Deleted() {
		a.ev.returned(r)
	}
	return r, err
}

func (a *auditStore) VRead(ctx context.Context, typ, id string, v int64) (*fhir.Resource, error) {
	r, err := a.Store.VRead(ctx, typ, id, v)
	if err == nil && !r.Deleted() {
		a.ev.returned(r)
	}
	return r, err
}

func (a *auditStore) Search(ctx context.Context, q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	page, err := a.Store.Search(ctx, q, cursor, backward)
	if err == nil {
		a.ev.returned(page.Matches...)
		a.ev.returned(page.Included...)
	}
	return page, err
}

func (a *auditStore) History(ctx context.Context, q fhir.HistoryQuery) (*fhir.HistoryPage, error) {
	page, err := a.Store.History(ctx, q)
	if err == nil {
		a.ev.returned(page.Versions...)
	}
	return page, err
}

func (a *auditStore) Write(ctx context.Context, fn func(tx fhir.Tx) error) error {
	return a.Store.Write(ctx, func(tx fhir.Tx) error {
		rt := &auditTx{Tx: tx, ev: a.ev}
		if err := fn(rt); err != nil {
			return err
		}
		al, ok := tx.(txAuditLog)
		if !ok || len(rt.written) == 0 {
			return nil
		}
		a.ev.mu.Lock()
		rec := a.ev.rec
		a.ev.mu.Unlock()
		rec.Time = fhir.FormatInstant(tx.Now())
		rec.Interaction += ":commit"
		rec.Status, rec.Resources, rec.Patients, rec.Unscheduled = 0, nil, nil, nil
		rec.Written = rt.written
		b, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		if err := al.AppendAudit(b); err != nil {
			return err
		}
		a.ev.mu.Lock()
		a.ev.inTx = true
		a.ev.mu.Unlock()
		return nil
	})
}

// auditTx notes the versions a write puts.
type auditTx struct {
	fhir.Tx
	ev      *auditEvent
	written []string
}

func (t *auditTx) Put(r *fhir.Resource) error {
	if err := t.Tx.Put(r); err != nil {
		return err
	}
	t.written = append(t.written, r.VersionRef()+" "+string(r.Method))
	return nil
}

func (t *auditTx) Search(q *fhir.Search, cursor fhir.Cursor, backward bool) (*fhir.SearchPage, error) {
	page, err := t.Tx.Search(q, cursor, backward)
	if err == nil {
		t.ev.returned(page.Matches...)
		t.ev.returned(page.Included...)
	}
	return page, err
}
