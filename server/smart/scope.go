package smart

import (
	"fmt"
	"net/url"
	"strings"
)

// Perm is a set of SMART v2 permissions on a resource type.
type Perm uint8

// The SMART v2 permissions, in the order scopes spell them (cruds).
const (
	PermCreate Perm = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch

	// PermAll is every permission (v1 ".*", v2 ".cruds").
	PermAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
)

// The scope contexts of SMART: what a scope's access is relative to.
const (
	ContextPatient = "patient"
	ContextUser    = "user"
	ContextSystem  = "system"
)

// Scope is one SMART resource scope, such as "patient/Flag.rs",
// "system/*.read" or "system/Communication.rs?recipient=Organization/x".
//
// See https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html.
type Scope struct {
	// Context is patient, user or system.
	Context string
	// Type is a resource type, or "*" for all.
	Type string
	// Perms is what the scope grants.
	Perms Perm
	// Query is a v2 granular restriction (the part after "?"): the scope
	// only covers resources that the search Type?Query matches. Nil when
	// unrestricted.
	Query url.Values
	// Raw is the scope as written.
	Raw string
}

// ParseScope parses a SMART v1 or v2 resource scope. ok is false for a
// scope that is not a resource scope (openid, fhirUser, launch,
// launch/patient, offline_access, online_access); err is set for a resource
// scope that is malformed.
func ParseScope(raw string) (s Scope, ok bool, err error) {
	ctx, rest, found := strings.Cut(raw, "/")
	if !found || (ctx != ContextPatient && ctx != ContextUser && ctx != ContextSystem) {
		return Scope{}, false, nil
	}
	s = Scope{Context: ctx, Raw: raw}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perms, found := strings.Cut(rest, ".")
	if !found || typ == "" || perms == "" {
		return Scope{}, true, fmt.Errorf("smart: scope %q: want context/Type.permissions", raw)
	}
	s.Type = typ
	switch perms {
	case "read":
		s.Perms = PermRead | PermSearch
	case "write":
		s.Perms = PermCreate | PermUpdate | PermDelete
	case "*":
		s.Perms = PermAll
	default:
		// v2: a non-empty subsequence of "cruds", in that order.
		order := "cruds"
		last := -1
		for _, r := range perms {
			i := strings.IndexRune(order, r)
			if i <= last {
				return Scope{}, true, fmt.Errorf("smart: scope %q: permissions must be a subsequence of cruds", raw)
			}
			last = i
			s.Perms |= Perm(1) << i
		}
	}
	if hasQuery {
		if perms == "read" || perms == "write" || perms == "*" {
			return Scope{}, true, fmt.Errorf("smart: scope %q: a search restriction needs v2 permissions", raw)
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return Scope{}, true, fmt.Errorf("smart: scope %q: malformed search restriction", raw)
		}
		s.Query = q
	}
	return s, true, nil
}

// ParseScopes splits a space-separated scope string into its resource
// scopes and the other scopes (openid, launch, offline_access...). It fails
// on the first malformed resource scope.
func ParseScopes(raw string) (resource []Scope, other []string, err error) {
	for _, f := range strings.Fields(raw) {
		s, ok, err := ParseScope(f)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			resource = append(resource, s)
		} else {
			other = append(other, f)
		}
	}
	return resource, other, nil
}

// Allows reports whether s grants perm on the resource type typ. A scope
// with a search restriction still allows it: the caller must narrow the
// request by Query.
func (s Scope) Allows(typ string, perm Perm) bool {
	return (s.Type == "*" || s.Type == typ) && s.Perms&perm == perm
}

// Covers reports whether s grants at least everything t grants, so that a
// refreshed token with t never widens access beyond s.
func (s Scope) Covers(t Scope) bool {
	if s.Context != t.Context || (s.Type != "*" && s.Type != t.Type) || s.Perms&t.Perms != t.Perms {
		return false
	}
	if s.Query == nil {
		return true
	}
	if t.Query == nil || len(s.Query) != len(t.Query) {
		return false
	}
	for k, v := range s.Query {
		if strings.Join(v, ",") != strings.Join(t.Query[k], ",") {
			return false
		}
	}
	return true
}
