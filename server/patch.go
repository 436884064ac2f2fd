package server

// patch answers PATCH [base]/[type]/[id] with a JSON Patch
// (application/json-patch+json, RFC 6902) or a FHIRPath Patch (a Parameters
// resource, application/fhir+json). The patched resource is validated like
// any update body and stored as the next version. If-Match makes it
// version-aware. See https://hl7.org/fhir/R4/http.html#patch and
// https://hl7.org/fhir/R4/fhirpatch.html.
// Statuses: 200 patched (the body as Prefer asks); 400 a malformed patch
// or If-Match, or a patch that changes id or resourceType; 404 unknown
// type or id; 409 the resource kept changing while the patch was applied;
// 410 deleted; 412 If-Match is not the current version; 413 too large;
// 415 not one of the two patch media types; 422 a patch that does not
// apply to the resource (a failed JSON Patch test, a path that selects
// nothing) or that makes it invalid (the issues name the elements).

import (
	"context"
	"errors"
	"net/http"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/gin-gonic/gin"
)

// patchBody returns the Content-Type and body of a PATCH request, or fails
// with 415 for a media type that is not a patch format.
func (s *Server) patchBody(c *gin.Context) (ct string, body []byte, ok bool) {
	ct = c.GetHeader("Content-Type")
	if _, ok := fhir.PatchFormatOf(ct); !ok {
		s.fail(c, &statusError{http.StatusUnsupportedMediaType, fhir.Errorf(fhir.IssueNotSupported,
			"PATCH takes %s (JSON Patch) or application/fhir+json (FHIRPath Patch, a Parameters resource)", fhir.MediaJSONPatch)})
		return "", nil, false
	}
	body, err := s.readBody(c)
	if err != nil {
		s.fail(c, err)
		return "", nil, false
	}
	return ct, body, true
}

func (s *Server) patch(c *gin.Context) {
	typ, ok := s.resourceType(c)
	if !ok {
		return
	}
	ifMatch, ok := s.ifMatch(c)
	if !ok {
		return
	}
	ct, body, ok := s.patchBody(c)
	if !ok {
		return
	}
	r, err := s.patchResource(c.Request.Context(), typ, c.Param("id"), ct, body, ifMatch)
	if err != nil {
		s.fail(c, err)
		return
	}
	if typ == "SearchParameter" {
		s.searchParameterWritten(r)
	}
	s.writeWritten(c, http.StatusOK, r, "patched")
}

// patchAttempts bounds how often a patch without If-Match is applied again
// because another write got in between its read and its write.
const patchAttempts = 10

// patchResource applies a patch (contentType as fhir.ApplyPatch takes it)
// to the current version of type/id, validates the result and stores it as
// the next version, on the condition that the version read is still the
// current one (optimistic: the codec's work stays off the store's single
// writer). When ifMatch is zero and another write got in between, the
// patch is applied again to the newer version, up to patchAttempts times in
// all, then fails with IssueConflict (409). When ifMatch is not zero it
// must be the current version, else the error wraps fhir.ErrVersionConflict
// (412). Conditional patch calls it with the id its search found.
func (s *Server) patchResource(ctx context.Context, typ, id, contentType string, patch []byte, ifMatch int64) (*fhir.Resource, error) {
	for attempt := 1; ; attempt++ {
		cur, err := s.serviceFor(ctx).Read(ctx, typ, id)
		if err != nil {
			return nil, err
		}
		if ifMatch != 0 && cur.VersionID != ifMatch {
			return nil, fhir.VersionConflictf("If-Match names version %d but the current version is %s", ifMatch, cur.ETag())
		}
		p, err := s.applyPatch(cur, contentType, patch)
		if err != nil {
			return nil, err
		}
		r, _, err := s.serviceFor(ctx).Update(ctx, typ, id, p, cur.VersionID)
		switch {
		case err == nil:
			return r, nil
		case !errors.Is(err, fhir.ErrVersionConflict) || ifMatch != 0:
			return nil, err
		case attempt == patchAttempts:
			return nil, fhir.Errorf(fhir.IssueConflict, "the resource kept changing while the patch was being applied; send the patch again")
		}
	}
}

// applyPatch applies the patch (contentType as fhir.ApplyPatch takes it)
// to cur and parses the result: 422 when the result is not a valid
// resource, and a SearchParameter's result is checked as a PUT of it is.
func (s *Server) applyPatch(cur *fhir.Resource, contentType string, patch []byte) (*fhir.Parsed, error) {
	out, err := fhir.ApplyPatch(cur.JSON, contentType, patch)
	if err != nil {
		return nil, err
	}
	p, err := s.codec.Parse(out)
	if err != nil {
		return nil, fhir.InvalidPatchResult(err)
	}
	if cur.Type == "SearchParameter" {
		if err := s.checkSearchParameter(out); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// jsonPatchBody reports a JSON Patch body sent with PATCH, which the
// negotiate middleware lets through although it is not FHIR JSON.
func jsonPatchBody(c *gin.Context, ct string) bool {
	f, ok := fhir.PatchFormatOf(ct)
	return ok && f == fhir.PatchJSON && c.Request.Method == http.MethodPatch
}
