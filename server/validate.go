package server

// Enforcement of the CP-IS profiles on writes: every resource a create,
// update (conditional forms included), patch or POST/PUT/PATCH Bundle entry
// writes is validated by package profiles when
//   - its meta.profile claims one or more profiles the server knows (it is
//     validated against each of them), or
//   - it is a CP-IS Flag by content: a Flag whose code has the coding
//     https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient|child-protection-information-system-flag
//     (validated against the CP-IS Flag profile). This is the only rule by
//     content: other CP-IS resource types are validated when they claim
//     their profile.
//
// A CP-IS Flag is also checked against its subject Patient (DOMAIN.md rules
// 1 and 8): the subject must not carry meta.security R (restricted), an
// unborn child protection plan (818901000000100) needs a female subject,
// and a child protection plan (342191000000101) or looked-after-child record
// (764841000000100) a subject under 18 at the plan start (period.start, or
// now when absent). The subject is read as the write will see it (see
// fhir.Service.Validate: another entry of the same Bundle, else the store's
// current version); when it cannot be read (not there yet, an identifier
// only or an absolute URL) these checks are skipped, and the age check is
// skipped when the birthDate is not a full date.
//
// Failures answer 422 Unprocessable Entity with an OperationOutcome whose
// issues have severity, code and expression, and the UK Core Spine error
// code in issue.details.coding when the validator gives one
// (INVALID_SEARCH_DATA for an NHS number whose check digit is wrong).
// See https://hl7.org/fhir/R4/validation.html and
// https://hl7.org/fhir/R4/http.html#create.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/profiles"
	"github.com/cpis-fhir/cpis/server/subscription"
	"github.com/cpis-fhir/cpis/terminology"
	flagpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/flag_go_proto"
)

// CP-IS codes the write checks use (DOMAIN.md).
const (
	cpisFlagCode     = "child-protection-information-system-flag"
	planCPP          = "342191000000101" // Subject to child protection plan
	planLAC          = "764841000000100" // Looked after child
	planUnborn       = "818901000000100" // Unborn child subject to child protection plan
	systemConfidence = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// cpisFlag reports whether p is a CP-IS Flag by content.
func cpisFlag(p *fhir.Parsed) bool {
	f, ok := p.Message().(*flagpb.Flag)
	if !ok {
		return false
	}
	for _, c := range f.GetCode().GetCoding() {
		if c.GetSystem().GetValue() == terminology.SystemFlagCategoryPatient && c.GetCode().GetValue() == cpisFlagCode {
			return true
		}
	}
	return false
}

// profilesOf returns the known profiles p is validated against: those its
// meta.profile claims, plus the CP-IS Flag profile for a CP-IS Flag.
func (s *Server) profilesOf(p *fhir.Parsed) []string {
	var out []string
	for _, c := range p.Meta().GetProfile() {
		if pr := s.validator.Profile(c.GetValue()); pr != nil && !contains(out, pr.URL) {
			out = append(out, pr.URL)
		}
	}
	if cpisFlag(p) {
		if u := s.validator.ProfileFor("Flag"); u != "" && !contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// validateWrite is the fhir.Service.Validate hook: see the file comment.
func (s *Server) validateWrite(p *fhir.Parsed, body []byte, resolve func(ref string) []byte) error {
	if p.Type == "Subscription" {
		// What the subscription engine cannot serve is refused here.
		// The hook has no request context: the endpoint's DNS lookup is
		// bounded by Check itself.
		if err := subscription.Check(context.Background(), p, s.registry, s.cfg.SubscriptionEndpoints); err != nil {
			return err
		}
	}
	urls := s.profilesOf(p)
	if len(urls) == 0 {
		return nil
	}
	if body == nil {
		var err error
		if body, err = s.codec.Marshal(p); err != nil {
			return err
		}
	}
	var issues []profiles.Issue
	for _, u := range urls {
		issues = append(issues, s.validator.Validate(body, u)...)
	}
	if cpisFlag(p) {
		issues = append(issues, s.flagRules(body, resolve)...)
	}
	return profiles.AsError(issues)
}

// flagRules checks a CP-IS Flag against its subject Patient (DOMAIN.md
// rules 1 and 8); see the file comment.
func (s *Server) flagRules(body []byte, resolve func(ref string) []byte) []profiles.Issue {
	var f struct {
		Category []struct {
			Coding []struct{ System, Code string }
		}
		Subject struct{ Reference string }
		Period  struct{ Start string }
	}
	if json.Unmarshal(body, &f) != nil || f.Subject.Reference == "" || resolve == nil {
		return nil
	}
	pb := resolve(f.Subject.Reference)
	if pb == nil {
		return nil
	}
	var pt struct {
		ResourceType string
		Meta         struct {
			Security []struct{ System, Code string }
		}
		Gender    string
		BirthDate string
	}
	if json.Unmarshal(pb, &pt) != nil || pt.ResourceType != "Patient" {
		return nil
	}
	var out []profiles.Issue
	add := func(expr, diag string) {
		out = append(out, profiles.Issue{Issue: fhir.Issue{Severity: fhir.SeverityError, Code: fhir.IssueBusinessRule,
			Diagnostics: diag, Expression: []string{expr}}})
	}
	for _, sec := range pt.Meta.Security {
		if sec.System == systemConfidence && sec.Code == "R" {
			add("Flag.subject", "the subject Patient is a restricted (sensitive) record (meta.security R): CP-IS information must not be recorded for it")
			return out
		}
	}
	plan := map[string]bool{}
	for _, c := range f.Category {
		for _, cd := range c.Coding {
			if cd.System == terminology.SystemSNOMED {
				plan[cd.Code] = true
			}
		}
	}
	if plan[planUnborn] && pt.Gender != "female" {
		add("Flag.subject", "an unborn child protection plan must be recorded on the pregnant woman: the subject Patient's gender is not female")
	}
	if plan[planCPP] || plan[planLAC] {
		birth, err := time.Parse(time.DateOnly, pt.BirthDate)
		if err != nil {
			return out
		}
		start := s.cfg.Now().UTC()
		if f.Period.Start != "" {
			d := f.Period.Start
			if len(d) > len(time.DateOnly) {
				d = d[:len(time.DateOnly)]
			}
			if t, err := time.Parse(time.DateOnly, d); err == nil {
				start = t
			} else {
				return out
			}
		}
		if !start.Before(birth.AddDate(18, 0, 0)) {
			add("Flag.period.start", "child protection and looked-after-child records are for people under 18: the subject Patient is 18 or over at the plan start")
		}
	}
	return out
}
