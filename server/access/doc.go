// Package access is the CP-IS role policy: what a principal (a verified
// access token, smart.Principal) may read, search and write. Effective
// access is the role policy AND the token's SMART scopes; without a
// principal nothing is allowed (fail closed).
//
// The one enforcement point is Policy.Store: the fhir.Store as one
// principal may use it. Every read path of the server goes through it:
// read and vread (Store.Read, VRead), search with chains, _has, _include,
// _revinclude and :iterate, compartments and the searches of conditional
// interactions and of Bundle entries (Store.Search and Tx.Search, narrowed
// by a fhir.Restriction that the store applies inside its query, before
// paging), history (Store.History) and every version a write puts
// (Tx.Put). Policy.Narrow and Policy.CanRead are the same decisions for
// callers that hold a principal and a search or a resource but no request,
// such as subscription delivery.
//
// Forbidden (the role or the scopes never allow it) is fhir.IssueForbidden
// (403); a resource the principal may not know exists is fhir.IssueNotFound
// (404), with the store's own message.
//
// See DOMAIN.md and DESIGN.md "Security", and
// https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html.
package access
