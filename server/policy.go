package server

// The role policy on every request: handlers reach the store only through
// storeFor and serviceFor, which wrap it in the request principal's view
// (access.Policy.Store), so that read, vread, search (chains, _has,
// includes, compartments), history, operations, conditional interactions
// and every Bundle entry are decided in one place. See server/access and
// README "Security: policy and audit".

import (
	"context"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/smart"
)

// principalOf returns the request's verified principal; nil (deny
// everything) when authentication put none in ctx.
func principalOf(ctx context.Context) *smart.Principal {
	p, _ := smart.FromContext(ctx)
	return p
}

// storeFor returns the store as the principal of ctx may use it, noting
// what the request reads and writes for its audit record (audit.go).
func (s *Server) storeFor(ctx context.Context) fhir.Store {
	st := s.policy.Store(s.store, principalOf(ctx))
	if ev := auditEventOf(ctx); ev != nil {
		return &auditStore{Store: st, ev: ev}
	}
	return st
}

// serviceFor returns the FHIR service over storeFor(ctx).
func (s *Server) serviceFor(ctx context.Context) *fhir.Service {
	svc := *s.svc
	svc.Store = s.storeFor(ctx)
	svc.AfterWrite = s.afterWrite(principalOf(ctx), notesOf(ctx))
	return &svc
}
