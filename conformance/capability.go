package conformance

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// Level is where an interaction applies in the FHIR REST API.
type Level int

// The interaction levels.
const (
	System Level = iota
	Type
	Instance
)

// Interaction names a FHIR RESTful interaction by its code in
// http://hl7.org/fhir/restful-interaction, or "" for a route that is not a
// FHIR interaction (such as metadata).
// See https://hl7.org/fhir/R4/http.html.
type Interaction string

// The interactions the server can register.
const (
	Read            Interaction = "read"
	VRead           Interaction = "vread"
	Update          Interaction = "update"
	Patch           Interaction = "patch"
	Delete          Interaction = "delete"
	HistoryInstance Interaction = "history-instance"
	HistoryType     Interaction = "history-type"
	Create          Interaction = "create"
	SearchType      Interaction = "search-type"
	Transaction     Interaction = "transaction"
	Batch           Interaction = "batch"
	SearchSystem    Interaction = "search-system"
	HistorySystem   Interaction = "history-system"
	Capabilities    Interaction = "capabilities"
)

// Route is one registered route of the FHIR API.
type Route struct {
	Method      string
	Path        string // gin pattern below the FHIR base, such as /:type/:id
	Interaction Interaction
	// Conditional says the route also takes the interaction's conditional
	// form: If-None-Exist on create, PUT [type]?[search] for update,
	// DELETE [type]?[search] for delete.
	// See https://hl7.org/fhir/R4/http.html#cond-update.
	Conditional bool
	// Operation, when set, says the route serves this operation (such as
	// $validate) rather than an interaction; it is listed at
	// rest.resource.operation for type- and instance-level routes.
	// See https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.resource.operation.
	Operation *Operation
}

// Operation is CapabilityStatement.rest.resource.operation: the name the
// operation is called by (without $) and its OperationDefinition.
type Operation struct {
	Name       string `json:"name"`
	Definition string `json:"definition"`
	// Types, when set, are the only resource types the operation is
	// listed on (such as ValueSet for $expand); empty means every type.
	Types []string `json:"-"`
}

// on reports whether the operation is listed on the resource type.
func (o Operation) on(typ string) bool {
	if len(o.Types) == 0 {
		return true
	}
	for _, t := range o.Types {
		if t == typ {
			return true
		}
	}
	return false
}

// Options describe the server in its CapabilityStatement.
type Options struct {
	BaseURL         string
	SoftwareName    string
	SoftwareVersion string
	Date            time.Time
	// ResourceTypes are the types served at the type and instance levels.
	ResourceTypes []string
	// SearchParams returns the search parameters usable on a type; when
	// the search-type interaction is registered they are listed with the
	// _include and _revinclude values they allow.
	SearchParams func(resourceType string) []*fhir.SearchParam
	// ConditionalDelete is "single" or "multiple": how many resources a
	// conditional delete may remove, claimed when a conditional delete
	// route is registered.
	ConditionalDelete string
	// SupportedProfiles returns the canonical URLs of the profiles the
	// server supports for a type, listed at
	// rest.resource.supportedProfile; nil lists none.
	SupportedProfiles func(resourceType string) []string
	// Security is rest.security as JSON (the SMART on FHIR service and its
	// oauth-uris extension); nil leaves it out.
	// See https://hl7.org/fhir/smart-app-launch/conformance.html.
	Security json.RawMessage
	// ResourceExtensions returns extensions of rest.resource for a type
	// (such as the subscription topics on Subscription); nil adds none.
	ResourceExtensions func(resourceType string) []Extension
}

// Extension is an extension with a valueCanonical, the only kind the
// CapabilityStatement carries.
type Extension struct {
	URL            string `json:"url"`
	ValueCanonical string `json:"valueCanonical,omitempty"`
}

// CapabilityStatement is the JSON shape of the R4 CapabilityStatement this
// package builds; tests check it parses as valid R4 with the strict codec.
// See https://hl7.org/fhir/R4/capabilitystatement.html.
type CapabilityStatement struct {
	ResourceType   string          `json:"resourceType"`
	Status         string          `json:"status"`
	Date           string          `json:"date"`
	Publisher      string          `json:"publisher,omitempty"`
	Kind           string          `json:"kind"`
	Software       *Software       `json:"software,omitempty"`
	Implementation *Implementation `json:"implementation,omitempty"`
	FHIRVersion    string          `json:"fhirVersion"`
	Format         []string        `json:"format"`
	Rest           []Rest          `json:"rest"`
}

// Software is CapabilityStatement.software.
type Software struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Implementation is CapabilityStatement.implementation.
type Implementation struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// Rest is CapabilityStatement.rest.
type Rest struct {
	Mode        string            `json:"mode"`
	Security    json.RawMessage   `json:"security,omitempty"`
	Resource    []Resource        `json:"resource,omitempty"`
	Interaction []CodeInteraction `json:"interaction,omitempty"`
}

// Resource is CapabilityStatement.rest.resource.
type Resource struct {
	Extension         []Extension       `json:"extension,omitempty"`
	Type              string            `json:"type"`
	Interaction       []CodeInteraction `json:"interaction"`
	Versioning        string            `json:"versioning,omitempty"`
	ReadHistory       *bool             `json:"readHistory,omitempty"`
	UpdateCreate      *bool             `json:"updateCreate,omitempty"`
	ConditionalCreate *bool             `json:"conditionalCreate,omitempty"`
	ConditionalRead   string            `json:"conditionalRead,omitempty"`
	ConditionalUpdate *bool             `json:"conditionalUpdate,omitempty"`
	ConditionalDelete string            `json:"conditionalDelete,omitempty"`
	SearchInclude     []string          `json:"searchInclude,omitempty"`
	SearchRevInclude  []string          `json:"searchRevInclude,omitempty"`
	SearchParam       []SearchParam     `json:"searchParam,omitempty"`
	Operation         []Operation       `json:"operation,omitempty"`
	SupportedProfile  []string          `json:"supportedProfile,omitempty"`
}

// SearchParam is CapabilityStatement.rest.resource.searchParam.
type SearchParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// unsupportedParams are defined for every resource but not searchable here.
var unsupportedParams = map[string]bool{"_content": true, "_text": true, "_filter": true, "_list": true, "_query": true, "_has": true, "_type": true}

// CodeInteraction is an interaction entry: {"code": ...}.
type CodeInteraction struct {
	Code Interaction `json:"code"`
}

// Build returns the CapabilityStatement for the routes: every type-level and
// instance-level interaction is listed for every resource type, and every
// system-level one at rest.interaction.
func Build(opts Options, routes []Route) *CapabilityStatement {
	has := map[Interaction]bool{}
	cond := map[Interaction]bool{}
	var ops []Operation
	seenOp := map[string]bool{}
	for _, r := range routes {
		if o := r.Operation; o != nil && strings.HasPrefix(r.Path, "/:type") && !seenOp[o.Name] {
			seenOp[o.Name] = true
			ops = append(ops, *o)
		}
		if r.Interaction != "" {
			has[r.Interaction] = true
			cond[r.Interaction] = cond[r.Interaction] || r.Conditional
		}
	}
	condCreate, condUpdate, condDelete := cond[Create], cond[Update], "not-supported"
	if cond[Delete] {
		condDelete = "single"
		if opts.ConditionalDelete == "multiple" {
			condDelete = "multiple"
		}
	}
	var typeLevel []CodeInteraction
	for _, in := range []Interaction{Read, VRead, Update, Patch, Delete, HistoryInstance, HistoryType, Create, SearchType} {
		if has[in] {
			typeLevel = append(typeLevel, CodeInteraction{Code: in})
		}
	}
	var systemLevel []CodeInteraction
	for _, in := range []Interaction{Transaction, Batch, SearchSystem, HistorySystem} {
		if has[in] {
			systemLevel = append(systemLevel, CodeInteraction{Code: in})
		}
	}
	t := true
	rest := Rest{Mode: "server", Interaction: systemLevel, Security: opts.Security}
	types := append([]string(nil), opts.ResourceTypes...)
	sort.Strings(types)
	for _, typ := range types {
		res := Resource{
			Type:              typ,
			Interaction:       typeLevel,
			ConditionalCreate: &condCreate,
			ConditionalRead:   "not-supported",
			ConditionalUpdate: &condUpdate,
			ConditionalDelete: condDelete,
		}
		if has[VRead] {
			res.Versioning = "versioned-update"
		}
		if has[HistoryInstance] {
			res.ReadHistory = &t
		}
		if has[Update] {
			res.UpdateCreate = &t
		}
		if has[SearchType] && opts.SearchParams != nil {
			addSearch(&res, opts.SearchParams, types)
		}
		for _, o := range ops {
			if o.on(typ) {
				res.Operation = append(res.Operation, o)
			}
		}
		if opts.SupportedProfiles != nil {
			res.SupportedProfile = opts.SupportedProfiles(typ)
		}
		if opts.ResourceExtensions != nil {
			res.Extension = opts.ResourceExtensions(typ)
		}
		rest.Resource = append(rest.Resource, res)
	}
	return &CapabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           opts.Date.UTC().Format(time.RFC3339),
		Publisher:      "CP-IS FHIR server project",
		Kind:           "instance",
		Software:       &Software{Name: opts.SoftwareName, Version: opts.SoftwareVersion},
		Implementation: &Implementation{Description: "CP-IS FHIR R4 server", URL: opts.BaseURL},
		FHIRVersion:    "4.0.1",
		Format:         []string{"application/fhir+json", "json"},
		Rest:           []Rest{rest},
	}
}

// addSearch lists the searchable parameters of res.Type and the _include and
// _revinclude values that follow its reference parameters.
// See https://hl7.org/fhir/R4/capabilitystatement-definitions.html#CapabilityStatement.rest.resource.searchParam.
func addSearch(res *Resource, params func(string) []*fhir.SearchParam, types []string) {
	for _, p := range params(res.Type) {
		if unsupportedParams[p.Name] || p.Type == fhir.SearchParamSpecial {
			continue
		}
		res.SearchParam = append(res.SearchParam, SearchParam{Name: p.Name, Definition: p.URL, Type: string(p.Type)})
		if p.Type == fhir.SearchParamReference {
			res.SearchInclude = append(res.SearchInclude, res.Type+":"+p.Name)
		}
	}
	if len(res.SearchInclude) > 0 {
		res.SearchInclude = append([]string{"*"}, res.SearchInclude...)
	}
	for _, src := range types {
		for _, p := range params(src) {
			if p.Type != fhir.SearchParamReference {
				continue
			}
			for _, tg := range p.Targets {
				if tg == res.Type {
					res.SearchRevInclude = append(res.SearchRevInclude, src+":"+p.Name)
					break
				}
			}
		}
	}
	sort.Slice(res.SearchRevInclude, func(i, j int) bool { return strings.Compare(res.SearchRevInclude[i], res.SearchRevInclude[j]) < 0 })
}
