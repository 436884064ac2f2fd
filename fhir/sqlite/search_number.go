package sqlite

import (
	"math"

	"github.com/cpis-fhir/cpis/fhir"
)

// number compiles a number parameter on the row's value v. The search
// value n (Value.Number) has the range [sl, sh) its precision implies
// (Value.Low, High): 100 means [99.5, 100.5).
// See https://hl7.org/fhir/R4/search.html#number.
//
//	eq  sl <= v < sh
//	ne  NOT eq
//	gt, sa  v > n        lt, eb  v < n
//	ge  v >= n           le  v <= n
//	ap  |v - n| <= 10% of |n|
//
// A Range row is compared by its Value as the index extraction sets it.
func (c *compiler) number(f *fhir.Filter, typ string) (cond, error) {
	return c.numeric(f, typ, "idx_number", false)
}

// quantity compiles a quantity parameter: a number comparison on the
// row's value (as number) and the unit: system and code when the search
// value gives a system (UnitSystem), the code or the unit text when it
// gives only a code, any unit when it gives none.
// See https://hl7.org/fhir/R4/search.html#quantity.
func (c *compiler) quantity(f *fhir.Filter, typ string) (cond, error) {
	return c.numeric(f, typ, "idx_quantity", true)
}

func (c *compiler) numeric(f *fhir.Filter, typ, table string, units bool) (cond, error) {
	if f.Modifier != "" {
		return nil, unsupportedModifier(f)
	}
	rk := rankCode
	var preds []pred
	for _, v := range f.Values {
		p, err := numberPred(f, v)
		if err != nil {
			return nil, err
		}
		if units {
			p = withUnit(p, v)
		}
		preds = append(preds, p)
		if v.Prefix == fhir.PrefixNe {
			rk = notDrivable
		}
	}
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	return &rowCond{table: table, pid: pid, preds: preds, rk: rk}, nil
}

// numberPred compiles one number value on the value column of the row.
func numberPred(f *fhir.Filter, v fhir.Value) (pred, error) {
	cmp := func(op string, val float64) pred {
		return func(b *sqlb, x string) {
			b.w(x, ".value ", op, " ")
			b.arg(val)
		}
	}
	both := func(p, q pred) pred {
		return func(b *sqlb, x string) { p(b, x); b.w(" AND "); q(b, x) }
	}
	n := v.Number
	eq := both(cmp(">=", v.Low), cmp("<", v.High))
	switch v.Prefix {
	case "", fhir.PrefixEq:
		return eq, nil
	case fhir.PrefixNe:
		return func(b *sqlb, x string) { b.w("NOT ("); eq(b, x); b.w(")") }, nil
	case fhir.PrefixGt, fhir.PrefixSa:
		return cmp(">", n), nil
	case fhir.PrefixLt, fhir.PrefixEb:
		return cmp("<", n), nil
	case fhir.PrefixGe:
		return cmp(">=", n), nil
	case fhir.PrefixLe:
		return cmp("<=", n), nil
	case fhir.PrefixAp:
		d := math.Abs(n) / 10
		return both(cmp(">=", n-d), cmp("<=", n+d)), nil
	}
	return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: prefix %s is not valid", f.Param.Name, v.Prefix)
}

// withUnit adds the unit of a quantity value to p.
func withUnit(p pred, v fhir.Value) pred {
	switch {
	case v.UnitSystem != "":
		return func(b *sqlb, x string) {
			p(b, x)
			b.w(" AND ", x, ".system = ")
			b.arg(v.UnitSystem)
			b.w(" AND ", x, ".code = ")
			b.arg(v.UnitCode)
		}
	case v.UnitCode != "":
		return func(b *sqlb, x string) {
			p(b, x)
			b.w(" AND (", x, ".code = ")
			b.arg(v.UnitCode)
			b.w(" OR ", x, ".unit = ")
			b.arg(v.UnitCode)
			b.w(")")
		}
	}
	return p
}
