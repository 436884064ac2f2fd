package server

// AuditEvent resources projected from the audit trail (audit.go): each
// record becomes AuditEvent/audit-{seq} in the store, so that administrators
// search the trail with the normal search (AuditEvent?patient:identifier=,
// agent:identifier=, date=, entity=, action=, outcome=...). The trail is the
// durable log; the projection follows it in the same store transaction as
// its progress mark (audit_projection), so a crash never loses or doubles an
// AuditEvent. It is brought up to date when an AuditEvent is searched,
// read or its history asked for.
// See https://hl7.org/fhir/R4/auditevent.html.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/journal"
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// auditTrail is a store whose audit trail can be projected (sqlite.Store):
// the write trail in the store, the read trail in a journal file.
type auditTrail interface {
	EachAudit(ctx context.Context, after int64, limit int, fn func(seq, recorded int64, rec []byte) error) error
	AuditProjected(ctx context.Context) (int64, error)
	ReadAuditPath() string
	ReadAuditProjected(ctx context.Context) (seq, pos int64, err error)
}

// txAuditProjection marks, in a write, how far each trail is projected.
type txAuditProjection interface {
	SetAuditProjected(seq int64) error
	SetReadAuditProjected(seq, pos int64) error
}

// auditProjectBatch is how many records one projection transaction takes.
const auditProjectBatch = 200

// PrincipalSystem identifies principals (token subjects) in AuditEvent.agent.
const PrincipalSystem = "https://fhir.cpis-fhir.org/Id/principal"

// catchUpAudit projects the records not yet projected, when the request
// is an administrator's AuditEvent request (nobody else may read them).
func (s *Server) catchUpAudit(c *gin.Context, typ string) error {
	if typ != "AuditEvent" {
		return nil
	}
	if p := principalOf(c.Request.Context()); p == nil || p.Role != smart.RoleAdmin {
		return nil
	}
	return s.projectAudit(context.WithoutCancel(c.Request.Context()))
}

// auditRow is a record of a trail to project: AuditEvent/{id} is made of
// rec.
type auditRow struct {
	id  string
	rec []byte
}

// projectAudit brings the AuditEvent projection up to the heads of both
// trails: the write trail's records become AuditEvent/audit-{seq}, the
// read trail's AuditEvent/audit-r{seq}.
func (s *Server) projectAudit(ctx context.Context) error {
	trail, ok := s.store.(auditTrail)
	if !ok {
		return nil
	}
	s.projectMu.Lock()
	defer s.projectMu.Unlock()
	done, err := trail.AuditProjected(ctx)
	if err != nil {
		return err
	}
	for {
		var rows []auditRow
		last := done
		err := trail.EachAudit(ctx, done, auditProjectBatch, func(seq, recorded int64, rec []byte) error {
			rows = append(rows, auditRow{"audit-" + strconv.FormatInt(seq, 10), rec})
			last = seq
			return nil
		})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		if err := s.projectRows(ctx, rows, func(m txAuditProjection) error { return m.SetAuditProjected(last) }); err != nil {
			return err
		}
		done = last
	}
	seq, pos, err := trail.ReadAuditProjected(ctx)
	if err != nil {
		return err
	}
	for {
		var rows []auditRow
		err := journal.Each(trail.ReadAuditPath(), pos, func(e journal.Entry) error {
			rows = append(rows, auditRow{"audit-r" + strconv.FormatInt(e.Seq, 10), append([]byte(nil), e.Record...)})
			seq, pos = e.Seq, e.Next
			if len(rows) == auditProjectBatch {
				return journal.ErrStop
			}
			return nil
		})
		if err != nil || len(rows) == 0 {
			return err
		}
		if err := s.projectRows(ctx, rows, func(m txAuditProjection) error { return m.SetReadAuditProjected(seq, pos) }); err != nil {
			return err
		}
	}
}

// projectRows writes the AuditEvents of rows and, in the same
// transaction, the trail's mark.
func (s *Server) projectRows(ctx context.Context, rows []auditRow, mark func(txAuditProjection) error) error {
	parsed := make([]*fhir.Parsed, len(rows))
	for i, r := range rows {
		b, err := auditEventJSON(r.rec)
		if err != nil {
			return err
		}
		if parsed[i], err = s.codec.Parse(b); err != nil {
			return err
		}
	}
	return s.store.Write(ctx, func(tx fhir.Tx) error {
		for i, r := range rows {
			var version int64 = 1
			method := fhir.MethodCreate
			if cur, err := tx.Read("AuditEvent", r.id); err == nil {
				version, method = cur.VersionID+1, fhir.MethodUpdate
			} else if !fhir.IsNotFound(err) {
				return err
			}
			parsed[i].Stamp(r.id, version, tx.Now())
			b, err := s.codec.Marshal(parsed[i])
			if err != nil {
				return err
			}
			idx, err := s.svc.Indexer.Index("AuditEvent", b)
			if err != nil {
				return err
			}
			if err := tx.Put(&fhir.Resource{Type: "AuditEvent", ID: r.id, VersionID: version, LastUpdated: tx.Now(), Method: method, JSON: b, Index: idx}); err != nil {
				return err
			}
		}
		m, ok := tx.(txAuditProjection)
		if !ok {
			return fhir.Errorf(fhir.IssueException, "the store cannot record the audit projection")
		}
		return mark(m)
	})
}

// auditEventJSON is the AuditEvent of one audit record.
func auditEventJSON(rec []byte) ([]byte, error) {
	var r auditRecord
	if err := json.Unmarshal(rec, &r); err != nil {
		return nil, err
	}
	type coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code,omitempty"`
		Display string `json:"display,omitempty"`
	}
	type ident struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type ref struct {
		Reference  string `json:"reference,omitempty"`
		Type       string `json:"type,omitempty"`
		Identifier *ident `json:"identifier,omitempty"`
		Display    string `json:"display,omitempty"`
	}
	type text struct {
		Text string `json:"text"`
	}
	type agent struct {
		Role      []text `json:"role,omitempty"`
		Who       ref    `json:"who"`
		AltID     string `json:"altId,omitempty"`
		Requestor bool   `json:"requestor"`
	}
	type entity struct {
		What  *ref    `json:"what,omitempty"`
		Type  *coding `json:"type,omitempty"`
		Role  *coding `json:"role,omitempty"`
		Query string  `json:"query,omitempty"`
	}
	interaction, _, _ := strings.Cut(r.Interaction, ":")
	switch {
	case interaction == "batch/transaction":
		interaction = "batch"
	case strings.HasPrefix(r.Interaction, "operation:"):
		interaction = "operation"
	}
	action := "E"
	switch interaction {
	case "read", "vread", "history-instance", "history-type", "history-system":
		action = "R"
	case "create":
		action = "C"
	case "update", "patch":
		action = "U"
	case "delete":
		action = "D"
	}
	outcome := "0"
	switch {
	case r.Status >= 500:
		outcome = "8"
	case r.Status >= 400:
		outcome = "4"
	}
	desc := "committed"
	switch {
	case interaction == "admin":
		desc = "cpis " + r.Path + " on the command line"
	case r.Status != 0:
		desc = "HTTP " + strconv.Itoa(r.Status)
	}
	if r.RequestID != "" {
		desc += "; request " + r.RequestID
	}
	ae := map[string]any{
		"resourceType": "AuditEvent",
		"type":         coding{System: "http://terminology.hl7.org/CodeSystem/audit-event-type", Code: "rest", Display: "RESTful Operation"},
		"action":       action,
		"recorded":     r.Time,
		"outcome":      outcome,
		"outcomeDesc":  desc,
		"source":       map[string]any{"site": "cpis", "observer": ref{Display: "cpis"}},
	}
	if interaction != "unknown" && interaction != "" && interaction != "admin" {
		ae["subtype"] = []coding{{System: "http://hl7.org/fhir/restful-interaction", Code: interaction}}
	}
	who := agent{Who: ref{Identifier: &ident{PrincipalSystem, r.Subject}}, AltID: r.ClientID, Requestor: true}
	if r.Subject == "" {
		who.Who = ref{Display: "unknown"}
	}
	if r.Role != "" {
		who.Role = []text{{r.Role}}
	}
	agents := []agent{who}
	if r.ODS != "" {
		agents = append(agents, agent{Who: ref{Type: "Organization", Identifier: &ident{"https://fhir.nhs.uk/Id/ods-organization-code", r.ODS}}})
	}
	ae["agent"] = agents
	var ents []entity
	for _, p := range r.Patients {
		if strings.HasPrefix(p, "Patient/") {
			ents = append(ents, entity{What: &ref{Reference: p}, Role: &coding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "1", Display: "Patient"}})
			continue
		}
		ents = append(ents, entity{What: &ref{Type: "Patient", Identifier: &ident{nhsNumberSystem, p}},
			Role: &coding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "1", Display: "Patient"}})
	}
	for _, v := range append(append([]string(nil), r.Resources...), r.Written...) {
		v, _, _ = strings.Cut(v, " ")
		ents = append(ents, entity{What: &ref{Reference: v}})
	}
	if r.Query != "" {
		ents = append(ents, entity{Type: &coding{System: "http://terminology.hl7.org/CodeSystem/audit-entity-type", Code: "2", Display: "System Object"},
			Query: base64.StdEncoding.EncodeToString([]byte(r.Query))})
	}
	if len(ents) > 0 {
		ae["entity"] = ents
	}
	return json.Marshal(ae)
}

const nhsNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"

// failProjection answers a failed projection.
func (s *Server) failProjection(c *gin.Context, err error) {
	s.log.Error("audit projection", "request_id", requestIDOf(c), "error", err)
	s.fail(c, &statusError{http.StatusServiceUnavailable, fhir.Errorf(fhir.IssueTransient, "the audit trail could not be brought up to date; try again")})
}
