package server

// capabilities answers GET /fhir/metadata with the CapabilityStatement built
// at start from the registered routes.
// See https://hl7.org/fhir/R4/http.html#capabilities. Statuses: 200.

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

func (s *Server) capabilities(c *gin.Context) {
	s.writeJSON(c, http.StatusOK, *s.capability.Load())
}
