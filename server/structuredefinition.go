package server

// The CP-IS profiles are served as StructureDefinition resources: at start
// the server writes each embedded profile (package profiles) into the store
// under its fixed id (CPIS-Flag, CPIS-Patient...) when it is missing,
// deleted or different from the embedded one, in one transaction, so that
// read (GET [base]/StructureDefinition/CPIS-Flag), search
// (GET [base]/StructureDefinition?url=...) and history serve them as any
// other resource. They are also listed in the CapabilityStatement
// (rest.resource.supportedProfile).
// See https://hl7.org/fhir/R4/structuredefinition.html and
// https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.resource.supportedProfile.

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

// loadProfiles writes the profiles the store lacks or holds in another
// form.
func (s *Server) loadProfiles(ctx context.Context) error {
	var defs []definition
	for _, url := range s.validator.Profiles() {
		pr := s.validator.Profile(url)
		defs = append(defs, definition{Type: "StructureDefinition", JSON: pr.JSON})
	}
	return s.writeDefinitions(ctx, "profiles", defs)
}

// definition is a resource the server ships and writes into the store at
// start. An empty ID means the resource's own id.
type definition struct {
	Type, ID string
	JSON     []byte
}

// writeDefinitions writes, in one transaction, each definition the store
// lacks, holds deleted or holds in another form, under its fixed id, so that
// read, search and history serve it like any other resource; a restart with
// unchanged definitions writes nothing. what names them in errors and logs.
func (s *Server) writeDefinitions(ctx context.Context, what string, defs []definition) error {
	var entries []string
	for _, d := range defs {
		p, err := s.codec.Parse(d.JSON)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", what, d.Type, d.ID, err)
		}
		id := d.ID
		if id == "" {
			id = p.ID()
		}
		cur, err := s.store.Read(ctx, d.Type, id)
		switch {
		case err == nil && !cur.Deleted():
			// Stamped as stored, the embedded resource gives the same
			// canonical bytes when it has not changed.
			p.Stamp(id, cur.VersionID, cur.LastUpdated)
			b, err := s.codec.Marshal(p)
			if err != nil {
				return err
			}
			if bytes.Equal(b, cur.JSON) {
				continue
			}
		case err != nil && !fhir.IsNotFound(err):
			return err
		}
		entries = append(entries, `{"resource":`+string(d.JSON)+`,"request":{"method":"PUT","url":"`+d.Type+`/`+id+`"}}`)
	}
	if len(entries) == 0 {
		return nil
	}
	body := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	p, err := s.codec.Parse(body)
	if err != nil {
		return fmt.Errorf("%s bundle: %w", what, err)
	}
	svc := *s.svc
	svc.MaxBundleEntries = 0 // the configured limit is for clients
	res, err := svc.Bundle(ctx, p, fhir.BundleOptions{Minimal: true})
	if err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	s.log.Info(what+" written", "count", len(res.Entries))
	return nil
}
