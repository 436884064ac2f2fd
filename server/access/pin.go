package access

import (
	"github.com/cpis-fhir/cpis/fhir"
)

// childPin is the one child a clinician's search names: by NHS number or
// by the id of a Patient.
type childPin struct {
	nhs string
	id  string
}

// findPin returns the child that q names, or nil. A search names a child
// when one of its filters (ANDed, so it bounds the result) takes exactly
// one value that is an NHS number or a Patient: Patient?identifier=nhs|X,
// Patient?_id=x, [type]?subject:identifier=nhs|X (or patient:), subject=
// Patient/x, patient=x, a chain subject:Patient.identifier=nhs|X or
// patient._id=x, or a compartment Patient/x. The other filters only
// narrow further.
func findPin(q *fhir.Search) *childPin {
	if c := q.Compartment; c != nil && c.Type == "Patient" {
		return &childPin{id: c.ID}
	}
	for i := range q.Filters {
		if pin := filterPin(&q.Filters[i], q.Type); pin != nil {
			return pin
		}
	}
	return nil
}

func filterPin(f *fhir.Filter, typ string) *childPin {
	if len(f.Any) > 0 {
		// A disjunction (made by the server, never by the parser, such as
		// the CP-IS lookup's identifier-or-chain) names a child when each
		// of its parts names the same one.
		var pin *childPin
		for i := range f.Any {
			p := filterPin(&f.Any[i], typ)
			if p == nil || (pin != nil && *p != *pin) {
				return nil
			}
			pin = p
		}
		return pin
	}
	if f.Param == nil || f.Has != nil {
		return nil
	}
	if typ == "Patient" {
		if len(f.Values) != 1 || f.Modifier != "" {
			return nil
		}
		v := f.Values[0]
		switch f.Param.Name {
		case "identifier":
			if v.HasSystem && v.System == NHSNumberSystem && v.Code != "" {
				return &childPin{nhs: v.Code}
			}
		case "_id":
			if v.Code != "" {
				return &childPin{id: v.Code}
			}
		}
		return nil
	}
	if f.Param.Type != fhir.SearchParamReference || (f.Param.Name != "subject" && f.Param.Name != "patient") {
		return nil
	}
	if len(f.Chain) > 0 {
		for i := range f.Chain {
			if ct := &f.Chain[i]; ct.Type == "Patient" {
				if pin := filterPin(&ct.Filter, "Patient"); pin != nil {
					return pin
				}
			}
		}
		return nil
	}
	if len(f.Values) != 1 {
		return nil
	}
	v := f.Values[0]
	switch f.Modifier {
	case "identifier":
		if v.HasSystem && v.System == NHSNumberSystem && v.Code != "" {
			return &childPin{nhs: v.Code}
		}
	case "", "Patient":
		if v.URL != "" || v.RefID == "" {
			return nil
		}
		if v.RefType == "Patient" || (v.RefType == "" && (f.Modifier == "Patient" || f.Param.Name == "patient")) {
			return &childPin{id: v.RefID}
		}
	}
	return nil
}

// pinFilter is the filter that keeps the resources of typ (a child type)
// about the pinned child: the Patient itself, or resources whose subject
// names it (by the NHS number in the reference, or by reference to a
// Patient with that NHS number or id).
func (pl *Policy) pinFilter(typ string, pin *childPin) fhir.Filter {
	if typ == "Patient" {
		if pin.id != "" {
			sp, _ := pl.reg.Lookup("Patient", "_id")
			return fhir.Filter{Param: sp, Values: []fhir.Value{{Code: pin.id}}}
		}
		sp, _ := pl.reg.Lookup("Patient", "identifier")
		return fhir.Filter{Param: sp, Values: []fhir.Value{{System: NHSNumberSystem, HasSystem: true, Code: pin.nhs}}}
	}
	sp, _ := pl.reg.Lookup(typ, childTypes[typ])
	if pin.id != "" {
		return fhir.Filter{Param: sp, Values: []fhir.Value{{RefType: "Patient", RefID: pin.id}}}
	}
	nhs := fhir.Value{System: NHSNumberSystem, HasSystem: true, Code: pin.nhs}
	if typ == "AuditEvent" {
		// The access history names the child by NHS number only.
		return fhir.Filter{Param: sp, Modifier: "identifier", Values: []fhir.Value{nhs}}
	}
	return fhir.Filter{Any: []fhir.Filter{
		{Param: sp, Modifier: "identifier", Values: []fhir.Value{nhs}},
		{Param: sp, Chain: []fhir.ChainTarget{{Type: "Patient", Filter: pl.pinFilter("Patient", pin)}}},
	}}
}

// matches reports whether the version with id and index idx matches f,
// for the filters the policy makes and v2 scope restrictions: _id, token
// (system|code, |code, code), reference (Type/id, id, URL), :identifier and
// Any. Anything else does not match (fail closed).
func matches(f *fhir.Filter, id string, idx *fhir.Index) bool {
	if len(f.Any) > 0 {
		for i := range f.Any {
			if matches(&f.Any[i], id, idx) {
				return true
			}
		}
		return false
	}
	if f.Param == nil || f.Has != nil || len(f.Chain) > 0 || len(f.Values) == 0 {
		return false
	}
	name := f.Param.Name
	switch {
	case name == "_id" && f.Modifier == "":
		for _, v := range f.Values {
			if v.Code == id {
				return true
			}
		}
		return false
	case f.Param.Type == fhir.SearchParamToken && f.Modifier == "":
		return tokenMatch(idx, name, f.Values)
	case f.Param.Type == fhir.SearchParamReference && f.Modifier == "identifier":
		return tokenMatch(idx, name+":identifier", f.Values)
	case f.Param.Type == fhir.SearchParamReference && (f.Modifier == "" || fhir.IsResourceType(f.Modifier)):
		for _, v := range f.Values {
			t := v.RefType
			if t == "" && f.Modifier != "" {
				t = f.Modifier
			}
			for _, r := range idx.References {
				if r.Param != name {
					continue
				}
				if v.URL != "" {
					if r.URL == v.URL {
						return true
					}
					continue
				}
				if r.ID == v.RefID && (t == "" || r.Type == t) {
					return true
				}
			}
		}
	}
	return false
}

func tokenMatch(idx *fhir.Index, param string, vs []fhir.Value) bool {
	// A value naming neither system nor code pins nothing.
	for i, v := range vs {
		if (v.Code != "" || v.HasSystem) && idx.HasToken(param, vs[i:i+1]) {
			return true
		}
	}
	return false
}
