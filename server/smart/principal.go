package smart

import (
	"context"
	"time"
)

// Role is a principal's role in the CP-IS role policy (DOMAIN.md, DESIGN.md).
type Role string

// The roles of the CP-IS role policy.
const (
	// RoleLA is a local authority (council) system or social worker,
	// identified by the council's ODS code: it writes and reads its own
	// council's records only.
	RoleLA Role = "la"
	// RoleClinicianUnscheduled is a clinician in an unscheduled-care
	// setting (A&E, walk-in, out-of-hours GP...): reads about one child at a
	// time, creates Encounters.
	RoleClinicianUnscheduled Role = "clinician-unscheduled"
	// RoleClinicianScheduled is a clinician in a scheduled setting (GP in
	// hours, 0-19 services): as RoleClinicianUnscheduled.
	RoleClinicianScheduled Role = "clinician-scheduled"
	// RoleAdmin may do everything, including reading the audit trail.
	RoleAdmin Role = "admin"
)

// Roles lists every role, in a stable order.
var Roles = []Role{RoleLA, RoleClinicianUnscheduled, RoleClinicianScheduled, RoleAdmin}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Principal is who a request acts for, as a verified access token says.
// Effective access is the role policy for Role AND Scopes. A Principal is
// immutable once made and safe to share between goroutines.
type Principal struct {
	// Subject is the token's sub: a user id, or a client id for a system.
	Subject string
	// ClientID is the OAuth client the token was issued to.
	ClientID string
	// Role is the role policy that applies.
	Role Role
	// ODS is the organisation's ODS code (the council for RoleLA, the care
	// organisation for clinicians); empty for admins.
	ODS string
	// SDSRole is the SDS job role code of a clinician (such as R8000).
	SDSRole string
	// Scopes are the token's SMART resource scopes.
	Scopes []Scope
	// Launch is the SMART launch context, such as "patient" -> a Patient id.
	Launch map[string]string
	// TokenID is the token's jti, for the audit trail.
	TokenID string
	// Expires is when the token stops being valid.
	Expires time.Time
}

// Allows reports whether any of p's scopes grants perm on the resource type
// typ (ignoring v2 search restrictions; see Scope.Query).
func (p *Principal) Allows(typ string, perm Perm) bool {
	for _, s := range p.Scopes {
		if s.Allows(typ, perm) {
			return true
		}
	}
	return false
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal NewContext put in ctx, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
