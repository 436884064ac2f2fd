package sqlite

import (
	"github.com/cpis-fhir/cpis/fhir"
)

// reference compiles a reference parameter: Type/id, a bare id (any
// target type, or the type the modifier names: subject:Patient=123), an
// absolute URL or canonical (url, with |version when given); :identifier
// matches Reference.identifier like a token; a chain (patient.identifier=)
// matches when the referenced resource is current and matches the chained
// filter. See https://hl7.org/fhir/R4/search.html#reference and
// https://hl7.org/fhir/R4/search.html#chaining.
func (c *compiler) reference(f *fhir.Filter, typ string) (cond, error) {
	name := f.Param.Name
	if len(f.Chain) > 0 {
		return c.chain(f, typ)
	}
	switch {
	case f.Modifier == "identifier":
		preds, err := tokenPreds(f)
		if err != nil {
			return nil, err
		}
		pid, err := c.pid(typ, name+":identifier")
		if err != nil {
			return nil, err
		}
		return &rowCond{table: "idx_token", pid: pid, preds: preds, rk: identifierRank(f)}, nil
	case f.Modifier == "" || fhir.IsResourceType(f.Modifier):
	default:
		return nil, unsupportedModifier(f)
	}
	var preds []pred
	for _, v := range f.Values {
		if v.URL == "" && v.RefID == "" {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: a reference needs an id, Type/id or a URL", name)
		}
		preds = append(preds, refPred(v, f.Modifier, true))
	}
	pid, err := c.pid(typ, name)
	if err != nil {
		return nil, err
	}
	return &rowCond{table: "idx_reference", pid: pid, preds: preds, rk: rankReference}, nil
}

// refPred matches the reference row x with v; targetType, when not
// empty, is the type a bare id must have. withVersion says whether x has a
// version column (the composite table has none).
func refPred(v fhir.Value, targetType string, withVersion bool) pred {
	return func(b *sqlb, x string) {
		if v.URL != "" {
			b.w(x, ".url = ")
			b.arg(v.URL)
			if v.Version != "" && withVersion {
				b.w(" AND ", x, ".version = ")
				b.arg(v.Version)
			}
			return
		}
		b.w(x, ".ref_id = ")
		b.arg(v.RefID)
		t := v.RefType
		if t == "" {
			t = targetType
		}
		if t != "" {
			b.w(" AND ", x, ".ref_type = ")
			b.arg(t)
		}
		if v.RefType != "" && targetType != "" && v.RefType != targetType {
			b.w(" AND 0 = 1") // subject:Patient=Group/1 names two types
		}
	}
}

// chainCond matches resources whose reference parameter pid refers to a
// current resource of one of the target types that matches its filter.
type chainCond struct {
	pid     int64
	targets []chainTarget
}

type chainTarget struct {
	typ   string
	inner cond
}

func (c *chainCond) match(b *sqlb, r string) {
	x, t := b.alias("x"), b.alias("t")
	b.w("EXISTS (SELECT 1 FROM idx_reference ", x, " CROSS JOIN res ", t, " WHERE ", x, ".rid = ", r, ".rid AND ", x, ".pid = ")
	b.key(c.pid)
	b.w(" AND ", t, ".type = ", x, ".ref_type AND ", t, ".id = ", x, ".ref_id AND ", t, ".deleted = 0 AND (")
	for i, ct := range c.targets {
		if i > 0 {
			b.w(" OR ")
		}
		b.w("(", t, ".type = ")
		b.key(ct.typ)
		b.w(" AND ")
		ct.inner.match(b, t)
		b.w(")")
	}
	b.w("))")
}

func (c *chainCond) rank() int {
	rk := rankID
	for _, ct := range c.targets {
		rk = max(rk, ct.inner.rank())
	}
	if rk >= notDrivable {
		return notDrivable
	}
	return rk + 1
}

// rids goes from the chained filter's rids to the referenced resources
// and from them, through the reference index, to the referring ones.
func (c *chainCond) rids(b *sqlb) {
	for i, ct := range c.targets {
		if i > 0 {
			b.w(" UNION ALL ")
		}
		t, x := b.alias("t"), b.alias("x")
		b.w("SELECT ", x, ".rid FROM res ", t, " CROSS JOIN idx_reference ", x, " WHERE ", t, ".rid IN (")
		ct.inner.rids(b)
		b.w(") AND ", t, ".type = ")
		b.key(ct.typ)
		b.w(" AND ", t, ".deleted = 0 AND ", x, ".pid = ")
		b.key(c.pid)
		b.w(" AND ", x, ".ref_id = ", t, ".id AND ", x, ".ref_type = ", t, ".type")
	}
}

func (c *compiler) chain(f *fhir.Filter, typ string) (cond, error) {
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	cc := &chainCond{pid: pid}
	for i := range f.Chain {
		ct := &f.Chain[i]
		if !fhir.IsResourceType(ct.Type) {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: chained type %s is not a resource type", f.Param.Name, ct.Type)
		}
		inner, err := c.filter(&ct.Filter, ct.Type)
		if err != nil {
			return nil, err
		}
		if inner, err = c.withRestriction(inner, ct.Type); err != nil {
			return nil, err
		}
		cc.targets = append(cc.targets, chainTarget{typ: ct.Type, inner: inner})
	}
	return cc, nil
}

// hasCond matches resources referred to, through the reference parameter
// pid of resources of type typ, by a resource that matches inner.
type hasCond struct {
	typ   string
	pid   int64
	inner cond
}

func (c *hasCond) match(b *sqlb, r string) {
	x, o := b.alias("x"), b.alias("o")
	b.w("EXISTS (SELECT 1 FROM idx_reference ", x, " CROSS JOIN res ", o, " WHERE ", x, ".pid = ")
	b.key(c.pid)
	b.w(" AND ", x, ".ref_id = ", r, ".id AND ", x, ".ref_type = ", r, ".type AND ", o, ".rid = ", x, ".rid AND ", o, ".type = ")
	b.key(c.typ)
	b.w(" AND ", o, ".deleted = 0 AND ")
	c.inner.match(b, o)
	b.w(")")
}

func (c *hasCond) rank() int {
	if rk := c.inner.rank(); rk < notDrivable {
		return rk + 1
	}
	return notDrivable
}

// rids goes from the inner filter's rids (the referring resources)
// through their reference rows to the resources referred to.
func (c *hasCond) rids(b *sqlb) {
	o, x, t := b.alias("o"), b.alias("x"), b.alias("t")
	b.w("SELECT ", t, ".rid FROM res ", o, " CROSS JOIN idx_reference ", x, " CROSS JOIN res ", t, " WHERE ", o, ".rid IN (")
	c.inner.rids(b)
	b.w(") AND ", o, ".type = ")
	b.key(c.typ)
	b.w(" AND ", o, ".deleted = 0 AND ", x, ".rid = ", o, ".rid AND ", x, ".pid = ")
	b.key(c.pid)
	b.w(" AND ", t, ".type = ", x, ".ref_type AND ", t, ".id = ", x, ".ref_id")
}

// has compiles _has:Type:ref:param=value (f.Has), which may nest.
// See https://hl7.org/fhir/R4/search.html#has.
func (c *compiler) has(f *fhir.Filter, typ string) (cond, error) {
	h := f.Has
	if !fhir.IsResourceType(h.Type) || h.Ref == nil || h.Ref.Type != fhir.SearchParamReference {
		return nil, fhir.Errorf(fhir.IssueInvalid, "_has needs a resource type and a reference parameter of it")
	}
	if typ == "" {
		return nil, fhir.Errorf(fhir.IssueNotSupported, "_has is not supported in a search across types")
	}
	pid, err := c.pid(h.Type, h.Ref.Name)
	if err != nil {
		return nil, err
	}
	inner, err := c.filter(&h.Filter, h.Type)
	if err != nil {
		return nil, err
	}
	if inner, err = c.withRestriction(inner, h.Type); err != nil {
		return nil, err
	}
	return &hasCond{typ: h.Type, pid: pid, inner: inner}, nil
}

// compartment compiles a compartment search (Patient/123/Flag): the
// resources that one of the compartment's parameters for their type refers
// to the compartment's resource with, and the compartment's resource itself
// ({def}). types are the types searched (nil: all); it returns the types
// that can be in the compartment.
// See https://hl7.org/fhir/R4/compartmentdefinition.html and
// https://hl7.org/fhir/R4/search.html#compartments.
func (c *compiler) compartment(comp *fhir.CompartmentRef, types []string) (cond, []string, error) {
	if !fhir.IsCompartmentType(comp.Type) {
		return nil, nil, fhir.Errorf(fhir.IssueInvalid, "%s is not a compartment type", comp.Type)
	}
	if len(types) == 0 {
		for _, t := range fhir.ResourceTypes {
			if len(fhir.CompartmentParams(comp.Type, t)) > 0 {
				types = append(types, t)
			}
		}
	}
	var or orCond
	var in []string
	for _, t := range types {
		var parts orCond
		for _, name := range fhir.CompartmentParams(comp.Type, t) {
			if name == "{def}" {
				id := comp.ID
				parts = append(parts, &resCond{typ: t, rk: rankID, pred: func(b *sqlb, x string) {
					b.w(x, ".id = ")
					b.arg(id)
				}})
				continue
			}
			p, ok := fhir.LookupSearchParam(t, name)
			if !ok || p.Type != fhir.SearchParamReference {
				return nil, nil, fhir.Errorf(fhir.IssueNotSupported, "compartment %s: parameter %s of %s is not supported", comp.Type, name, t)
			}
			pid, err := c.pid(t, name)
			if err != nil {
				return nil, nil, err
			}
			v := fhir.Value{RefType: comp.Type, RefID: comp.ID}
			parts = append(parts, &rowCond{table: "idx_reference", pid: pid, preds: []pred{refPred(v, "", true)}, rk: rankReference})
		}
		if len(parts) == 0 {
			continue
		}
		in = append(in, t)
		if len(types) == 1 {
			or = parts
		} else {
			or = append(or, &typedCond{typ: t, inner: parts})
		}
	}
	if len(in) == 0 {
		return constCond(false), types, nil
	}
	return or, in, nil
}
