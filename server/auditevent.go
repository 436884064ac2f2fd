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
	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/gin-gonic/gin"
)

// auditTrail is a store whose audit trail can be projected (sqlite.Store).
type auditTrail interface {
	EachAudit(ctx context.Context, after int64, limit int, fn func(seq, recorded int64, rec []byte) error) error
	AuditProjected(ctx context.Context) (int64, error)
}

// txAuditProjection marks, in a write, how far the trail is projected.
type txAuditProjection interface {
	SetAuditProjected(seq int64) error
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

// projectAudit brings the AuditEvent projection up to the trail's head.
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
		type row struct {
			seq int64
			p   *fhir.Parsed
		}
		var rows []row
		err := trail.EachAudit(ctx, done, auditProjectBatch, func(seq, recorded int64, rec []byte) error {
			b, err := auditEventJSON(seq, rec)
			if err != nil {
				return err
			}
			p, err := s.codec.Parse(b)
			if err != nil {
				return err
			}
			rows = append(rows, row{seq, p})
			return nil
		})
		if err != nil || len(rows) == 0 {
			return err
		}
		err = s.store.Write(ctx, func(tx fhir.Tx) error {
			for _, r := range rows {
				id := "audit-" + strconv.FormatInt(r.seq, 10)
				var version int64 = 1
				method := fhir.MethodCreate
				if cur, err := tx.Read("AuditEvent", id); err == nil {
					version, method = cur.VersionID+1, fhir.MethodUpdate
				} else if !fhir.IsNotFound(err) {
					return err
				}
				r.p.Stamp(id, version, tx.Now())
				b, err := s.codec.Marshal(r.p)
				if err != nil {
					return err
				}
				idx, err := s.svc.Indexer.Index("AuditEvent", b)
				if err != nil {
					return err
				}
				if err := tx.Put(&fhir.Resource{Type: "AuditEvent", ID: id, VersionID: version, LastUpdated: tx.Now(), Method: method, JSON: b, Index: idx}); err != nil {
					return err
				}
			}
			mark, ok := tx.(txAuditProjection)
			if !ok {
				return fhir.Errorf(fhir.IssueException, "the store cannot record the audit projection")
			}
			return mark.SetAuditProjected(rows[len(rows)-1].seq)
		})
		if err != nil {
			return err
		}
		done = rows[len(rows)-1].seq
	}
}

// auditEventJSON is the AuditEvent of one audit record.
func auditEventJSON(seq int64, rec []byte) ([]byte, error) {
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
	if r.Status != 0 {
		desc = "HTTP " + strconv.Itoa(r.Status)
	}
	desc += "; request " + r.RequestID
	ae := map[string]any{
		"resourceType": "AuditEvent",
		"type":         coding{System: "http://terminology.hl7.org/CodeSystem/audit-event-type", Code: "rest", Display: "RESTful Operation"},
		"action":       action,
		"recorded":     r.Time,
		"outcome":      outcome,
		"outcomeDesc":  desc,
		"source":       map[string]any{"site": "cpis", "observer": ref{Display: "cpis"}},
	}
	if interaction != "unknown" && interaction != "" {
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
