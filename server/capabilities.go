package server

// capabilities answers GET /fhir/metadata with the CapabilityStatement built
// at start from the registered routes.
// See https://hl7.org/fhir/R4/http.html#capabilities. Statuses: 200.

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

func (s *Server) capabilities(c *gin.Context) {
	b := *s.capability.Load()
	if s.cfg.BaseURL == "" && s.cfg.Auth != nil {
		// The OAuth URLs are absolute, on the origin this request reached.
		b = bytes.ReplaceAll(b, []byte(originPlaceholder), []byte(s.origin(c)))
	}
	s.writeJSON(c, http.StatusOK, b)
}

// originPlaceholder stands for the request's origin in the stored
// CapabilityStatement when no base URL is configured.
const originPlaceholder = "urn:cpis:origin"

// security is the CapabilityStatement's rest.security, nil without the
// built-in authorization server.
func (s *Server) security() []byte {
	if s.cfg.Auth == nil {
		return nil
	}
	origin := strings.TrimSuffix(s.cfg.BaseURL, FHIRBase)
	if s.cfg.BaseURL == "" {
		origin = originPlaceholder
	}
	return securityExtension(origin)
}
