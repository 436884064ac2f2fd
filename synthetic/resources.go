package synthetic

// The JSON shapes of the CP-IS resources the generator writes: typed
// structs with only the elements it sets, marshalled by encoding/json in
// field order (deterministic). See https://hl7.org/fhir/R4/ and the CP-IS
// profiles in profiles/definitions.

import (
	"time"
)

// Systems and profiles (DOMAIN.md, "Identifiers and codes").
const (
	SystemNHSNumber   = "https://fhir.nhs.uk/Id/nhs-number"
	SystemODS         = "https://fhir.nhs.uk/Id/ods-organization-code"
	systemSDSRole     = "https://fhir.nhs.uk/Id/sds-role-profile-id"
	systemSNOMED      = "http://snomed.info/sct"
	systemFlagCat     = "https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient"
	systemVerifyState = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
	systemActCode     = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemOrgType     = "http://terminology.hl7.org/CodeSystem/organization-type"
	extVerifyStatus   = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
	extFlagDetail     = "http://hl7.org/fhir/StructureDefinition/flag-detail"
	cpisFlagCode      = "child-protection-information-system-flag"
	profileBase       = "https://fhir.cpis-fhir.org/StructureDefinition/CPIS-"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type codeableConcept struct {
	Coding []coding `json:"coding,omitempty"`
}

type extension struct {
	URL                  string           `json:"url"`
	ValueCodeableConcept *codeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueReference       *reference       `json:"valueReference,omitempty"`
}

type identifier struct {
	Extension []extension `json:"extension,omitempty"`
	System    string      `json:"system"`
	Value     string      `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type meta struct {
	Profile []string `json:"profile"`
}

type humanName struct {
	Use    string   `json:"use,omitempty"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
}

type contactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use"`
}

type patient struct {
	ResourceType string       `json:"resourceType"`
	Meta         *meta        `json:"meta,omitempty"`
	Identifier   []identifier `json:"identifier"`
	Name         []humanName  `json:"name"`
	Gender       string       `json:"gender"`
	BirthDate    string       `json:"birthDate"`
}

type flag struct {
	ResourceType string            `json:"resourceType"`
	Meta         *meta             `json:"meta,omitempty"`
	Extension    []extension       `json:"extension,omitempty"`
	Status       string            `json:"status"`
	Category     []codeableConcept `json:"category"`
	Code         codeableConcept   `json:"code"`
	Subject      reference         `json:"subject"`
	Period       period            `json:"period"`
	Author       reference         `json:"author"`
}

type carePlan struct {
	ResourceType string            `json:"resourceType"`
	Meta         *meta             `json:"meta,omitempty"`
	Status       string            `json:"status"`
	Intent       string            `json:"intent"`
	Category     []codeableConcept `json:"category"`
	Subject      reference         `json:"subject"`
	Period       period            `json:"period"`
	Author       reference         `json:"author"`
	CareTeam     []reference       `json:"careTeam"`
}

type careTeam struct {
	ResourceType         string            `json:"resourceType"`
	Meta                 *meta             `json:"meta,omitempty"`
	Status               string            `json:"status"`
	Category             []codeableConcept `json:"category"`
	Name                 string            `json:"name"`
	Subject              reference         `json:"subject"`
	Period               period            `json:"period"`
	ManagingOrganization []reference       `json:"managingOrganization"`
	Telecom              []contactPoint    `json:"telecom"`
}

type organization struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Meta         *meta             `json:"meta,omitempty"`
	Identifier   []identifier      `json:"identifier"`
	Active       bool              `json:"active"`
	Type         []codeableConcept `json:"type"`
	Name         string            `json:"name"`
	Telecom      []contactPoint    `json:"telecom,omitempty"`
}

type practitionerRole struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Meta         *meta             `json:"meta,omitempty"`
	Identifier   []identifier      `json:"identifier"`
	Active       bool              `json:"active"`
	Organization reference         `json:"organization"`
	Code         []codeableConcept `json:"code"`
	Telecom      []contactPoint    `json:"telecom"`
}

type encounter struct {
	ResourceType    string          `json:"resourceType"`
	Meta            *meta           `json:"meta,omitempty"`
	Status          string          `json:"status"`
	Class           coding          `json:"class"`
	ServiceType     codeableConcept `json:"serviceType"`
	Subject         reference       `json:"subject"`
	Period          period          `json:"period"`
	ServiceProvider reference       `json:"serviceProvider"`
}

// profile is the meta claiming the CP-IS profile of the name, or nil when
// the Config leaves the claims out.
func (g *Generator) profile(name string) *meta {
	if g.cfg.OmitProfiles {
		return nil
	}
	return &meta{Profile: []string{profileBase + name}}
}

func date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}

func nhsIdentifier(nhs string) *identifier {
	return &identifier{System: SystemNHSNumber, Value: nhs}
}

func odsIdentifier(code string) *identifier {
	return &identifier{System: SystemODS, Value: code}
}

func planCategory(p PlanType) []codeableConcept {
	return []codeableConcept{{Coding: []coding{{System: systemSNOMED, Code: p.Code(), Display: p.Display()}}}}
}

// patientOf is the CPIS-Patient of s.
func (g *Generator) patientOf(s *Subject) *patient {
	return &patient{
		ResourceType: "Patient",
		Meta:         g.profile("Patient"),
		Identifier: []identifier{{
			Extension: []extension{{URL: extVerifyStatus, ValueCodeableConcept: &codeableConcept{Coding: []coding{{
				System: systemVerifyState, Code: "01", Display: "Number present and verified"}}}}},
			System: SystemNHSNumber,
			Value:  s.NHSNumber,
		}},
		Name:      []humanName{{Use: "official", Family: s.Family, Given: []string{s.Given}}},
		Gender:    s.Gender,
		BirthDate: date(s.BirthDate),
	}
}

// subjectRef references the subject's Patient entry and carries the NHS
// number, so that searches by :identifier find the record.
func subjectRef(ref string, s *Subject) reference {
	return reference{Reference: ref, Identifier: nhsIdentifier(s.NHSNumber)}
}

func councilRef(c *Council) reference {
	return reference{Reference: "Organization/" + c.ID, Identifier: odsIdentifier(c.ODSCode), Display: c.Name}
}

// flagOf is the CPIS-Flag of record rec of s; patientRef and planRef name
// the Patient and the CarePlan.
func (g *Generator) flagOf(s *Subject, rec *Record, c *Council, patientRef, planRef string) *flag {
	status := "active"
	if !rec.Active {
		status = "inactive"
	}
	return &flag{
		ResourceType: "Flag",
		Meta:         g.profile("Flag"),
		Extension:    []extension{{URL: extFlagDetail, ValueReference: &reference{Reference: planRef}}},
		Status:       status,
		Category:     planCategory(rec.Plan),
		Code: codeableConcept{Coding: []coding{{System: systemFlagCat, Code: cpisFlagCode,
			Display: "Child Protection Information System Flag"}}},
		Subject: subjectRef(patientRef, s),
		Period:  period{Start: date(rec.Start), End: date(rec.End)},
		Author:  councilRef(c),
	}
}

func (g *Generator) carePlanOf(s *Subject, rec *Record, c *Council, patientRef, teamRef string) *carePlan {
	status := "active"
	if !rec.Active {
		status = "completed"
	}
	return &carePlan{
		ResourceType: "CarePlan",
		Meta:         g.profile("CarePlan"),
		Status:       status,
		Intent:       "plan",
		Category:     planCategory(rec.Plan),
		Subject:      subjectRef(patientRef, s),
		Period:       period{Start: date(rec.Start), End: date(rec.End)},
		Author:       councilRef(c),
		CareTeam:     []reference{{Reference: teamRef}},
	}
}

func (g *Generator) careTeamOf(s *Subject, rec *Record, c *Council, patientRef string) *careTeam {
	status := "active"
	if !rec.Active {
		status = "inactive"
	}
	return &careTeam{
		ResourceType:         "CareTeam",
		Meta:                 g.profile("CareTeam"),
		Status:               status,
		Category:             planCategory(rec.Plan),
		Name:                 c.TeamName(),
		Subject:              subjectRef(patientRef, s),
		Period:               period{Start: date(rec.Start), End: date(rec.End)},
		ManagingOrganization: []reference{councilRef(c)},
		Telecom: []contactPoint{
			{System: "phone", Value: c.OfficeHours, Use: "work"},
			{System: "phone", Value: c.EmergencyDuty, Use: "mobile"},
		},
	}
}

func (g *Generator) councilOrganization(c *Council) *organization {
	return &organization{
		ResourceType: "Organization",
		ID:           c.ID,
		Meta:         g.profile("Organization"),
		Identifier:   []identifier{*odsIdentifier(c.ODSCode)},
		Active:       true,
		Type:         []codeableConcept{{Coding: []coding{{System: systemOrgType, Code: "govt", Display: "Government"}}}},
		Name:         c.Name,
		Telecom: []contactPoint{
			{System: "phone", Value: c.OfficeHours, Use: "work"},
			{System: "phone", Value: c.EmergencyDuty, Use: "mobile"},
		},
	}
}

func (g *Generator) socialWorkerRole(c *Council, k int) *practitionerRole {
	return &practitionerRole{
		ResourceType: "PractitionerRole",
		ID:           c.SocialWorkerRoleID(k),
		Meta:         g.profile("PractitionerRole"),
		Identifier:   []identifier{{System: systemSDSRole, Value: "5" + itoa3(c.Index) + "0000000" + itoa1(k)}},
		Active:       true,
		Organization: councilRef(c),
		Code:         []codeableConcept{{Coding: []coding{{System: systemSNOMED, Code: "106328005", Display: "Social worker"}}}},
		Telecom:      []contactPoint{{System: "phone", Value: "020 7946 0" + itoa3(3*c.Index+k), Use: "work"}},
	}
}

func (g *Generator) siteOrganization(s *Site) *organization {
	return &organization{
		ResourceType: "Organization",
		ID:           s.ID,
		Meta:         g.profile("Organization"),
		Identifier:   []identifier{*odsIdentifier(s.ODSCode)},
		Active:       true,
		Type:         []codeableConcept{{Coding: []coding{{System: systemOrgType, Code: "prov", Display: "Healthcare Provider"}}}},
		Name:         s.Name,
	}
}

func itoa1(k int) string { return string(rune('0' + k%10)) }
