package smart

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AccessToken is what the server signs into an access token.
type AccessToken struct {
	// Issuer is the FHIR base URL: the token's iss and aud.
	Issuer string
	// Subject, ClientID, Role, ODS, SDSRole are the principal's.
	Subject, ClientID string
	Role              Role
	ODS, SDSRole      string
	// Scope is the granted scope string (space separated).
	Scope string
	// Patient and Encounter are the SMART launch context, if any.
	Patient, Encounter string
	// IssuedAt is the token's iat; TTL its lifetime, at most MaxTokenTTL.
	IssuedAt time.Time
	TTL      time.Duration
}

// Sign returns the signed access token and its id (jti). It fails for an
// unknown role, a malformed scope or a lifetime beyond MaxTokenTTL.
//
// See https://www.rfc-editor.org/rfc/rfc9068 (JWT access tokens).
func (ks *KeySet) Sign(t AccessToken) (token, jti string, err error) {
	if !t.Role.Valid() {
		return "", "", fmt.Errorf("smart: unknown role %q", t.Role)
	}
	if t.Role != RoleAdmin && t.ODS == "" {
		return "", "", fmt.Errorf("smart: role %s needs an ODS code", t.Role)
	}
	if _, _, err := ParseScopes(t.Scope); err != nil {
		return "", "", err
	}
	if t.TTL <= 0 || t.TTL > MaxTokenTTL {
		return "", "", fmt.Errorf("smart: token lifetime %s: want more than 0 and at most %s", t.TTL, MaxTokenTTL)
	}
	jti = NewID()
	iss := strings.TrimSuffix(t.Issuer, "/")
	c := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss,
			Subject:   t.Subject,
			Audience:  jwt.ClaimStrings{iss},
			ExpiresAt: jwt.NewNumericDate(t.IssuedAt.Add(t.TTL)),
			IssuedAt:  jwt.NewNumericDate(t.IssuedAt),
			ID:        jti,
		},
		Scope:     strings.Join(strings.Fields(t.Scope), " "),
		ClientID:  t.ClientID,
		Role:      string(t.Role),
		ODS:       t.ODS,
		SDSRole:   t.SDSRole,
		Patient:   t.Patient,
		Encounter: t.Encounter,
	}
	token, err = ks.sign(c, accessTokenType)
	return token, jti, err
}

// NewID returns a random 128-bit identifier, base64url without padding.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DefaultScope is the scope a token for role gets when none is asked for:
// what the role policy can use at most.
func DefaultScope(role Role) string {
	switch role {
	case RoleAdmin:
		return "system/*.*"
	case RoleLA:
		return "system/Patient.cruds system/Flag.cruds system/CarePlan.cruds system/CareTeam.cruds " +
			"system/Organization.cruds system/PractitionerRole.cruds system/Communication.rs system/Subscription.cruds system/AuditEvent.rs"
	case RoleClinicianUnscheduled, RoleClinicianScheduled:
		return "user/Patient.rs user/Flag.rs user/CarePlan.rs user/CareTeam.rs user/Organization.rs " +
			"user/PractitionerRole.rs user/AuditEvent.rs user/Encounter.cr"
	}
	return ""
}
