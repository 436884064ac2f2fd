package sqlite

import (
	"strconv"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// composite compiles a composite parameter (code-value-quantity=
// loinc|1234$gt5.4|mmol/L): a value matches when one composite row of the
// resource matches every part, each by its component's type with that
// type's default matching. See https://hl7.org/fhir/R4/search.html#composite.
func (c *compiler) composite(f *fhir.Filter, typ string) (cond, error) {
	if f.Modifier != "" {
		return nil, unsupportedModifier(f)
	}
	comps := f.Param.Components
	if len(comps) == 0 {
		return nil, fhir.Errorf(fhir.IssueNotSupported, "search parameter %s has no components", f.Param.Name)
	}
	var values [][]pred
	for _, v := range f.Values {
		if len(v.Parts) != len(comps) {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s needs %d parts", f.Param.Name, len(comps))
		}
		var parts []pred
		for i, comp := range comps {
			p, err := partPred(f, comp.Type, v.Parts[i], c.now)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		}
		values = append(values, parts)
	}
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	return &compositeCond{pid: pid, parts: len(comps), values: values}, nil
}

// partPred compiles one part of a composite value on the columns of the
// composite table.
func partPred(f *fhir.Filter, t fhir.SearchParamType, v fhir.Value, now time.Time) (pred, error) {
	switch t {
	case fhir.SearchParamToken:
		if v.Code == "" && (!v.HasSystem || v.System == "") {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: a token part needs a code or a system", f.Param.Name)
		}
		return tokenPred(v), nil
	case fhir.SearchParamString:
		return startsWith("norm", valueNorm(v)), nil
	case fhir.SearchParamReference:
		return refPred(v, "", false), nil
	case fhir.SearchParamDate:
		return datePred(f, v, "low", "high", now)
	case fhir.SearchParamNumber:
		return numberPred(f, v)
	case fhir.SearchParamQuantity:
		p, err := numberPred(f, v)
		if err != nil {
			return nil, err
		}
		return withUnit(p, v), nil
	case fhir.SearchParamURI:
		return uriEq(v.URI), nil
	}
	return nil, fhir.Errorf(fhir.IssueNotSupported, "search parameter %s: a part of type %s is not supported", f.Param.Name, t)
}

// compositeCond matches resources with a composite row (cid) of pid whose
// parts all match one of the values.
type compositeCond struct {
	pid    int64
	parts  int
	values [][]pred
}

func (c *compositeCond) match(b *sqlb, r string) {
	as := make([]string, c.parts)
	for i := range as {
		as[i] = b.alias("c")
	}
	b.w("EXISTS (SELECT 1 FROM idx_composite ", as[0])
	for i := 1; i < c.parts; i++ {
		a := as[i]
		b.w(" JOIN idx_composite ", a, " ON ", a, ".rid = ", as[0], ".rid AND ", a, ".pid = ", as[0], ".pid AND ", a, ".cid = ", as[0], ".cid AND ", a, ".part = ", strconv.Itoa(i))
	}
	b.w(" WHERE ", as[0], ".rid = ", r, ".rid AND ", as[0], ".pid = ")
	b.key(c.pid)
	b.w(" AND ", as[0], ".part = 0 AND (")
	for j, parts := range c.values {
		if j > 0 {
			b.w(" OR ")
		}
		b.w("(")
		for i, p := range parts {
			if i > 0 {
				b.w(" AND ")
			}
			p(b, as[i])
		}
		b.w(")")
	}
	b.w("))")
}

func (c *compositeCond) rank() int  { return notDrivable }
func (c *compositeCond) rids(*sqlb) { panic("sqlite: compositeCond has no rids") }
