// Package smart is SMART on FHIR for the CP-IS server: the principal a
// verified access token stands for, SMART scopes (v1 and v2), token
// verification (golang-jwt, used only here) and the built-in authorization
// server.
//
//   - principal.go, scope.go: Principal, roles, scopes (the contract the
//     role policy reads with FromContext).
//   - keys.go, issue.go: the server's ES256 signing keys (a file in the data
//     folder, rotation, JWKS) and the access tokens they sign.
//   - verify.go, oidc.go: Verifier, with a bounded cache of verified tokens,
//     for the server's own tokens and an external OpenID Connect issuer's.
//   - registry.go, replay.go: registered clients and users (files, bcrypt)
//     and the persistent store of used one-time values (jti).
//   - authserver.go, authorize.go, oauth.go, jwk.go: the token endpoint
//     (client_credentials with private_key_jwt, authorization_code with
//     PKCE, refresh_token), the authorization endpoint's login and consent
//     state, EHR launches, OAuth errors, JWK parsing and remote JWKS.
//
// The HTTP side (gin) is in package server: auth.go, oauth.go, limits.go.
//
// See https://hl7.org/fhir/smart-app-launch/ (SMART App Launch 2.0).
package smart
