package sqlite

import (
	"math"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
)

// date compiles a date parameter. A row covers the range [rl, rh] of
// instants (index.go), the search value [sl, sh] (Value.DateLow,
// DateHigh), both from their precision, so that 2020-01 finds every
// instant of January. See https://hl7.org/fhir/R4/search.html#date and
// https://hl7.org/fhir/R4/search.html#prefix.
//
//	eq  rl >= sl AND rh <= sh   the search range contains the row's
//	ne  NOT eq
//	gt  rh > sh                 the row reaches past the search range
//	lt  rl < sl                 the row starts before it
//	ge  rh >= sl
//	le  rl <= sh
//	sa  rl > sh                 the row starts after the search range
//	eb  rh < sl                 the row ends before it starts
//	ap  the row overlaps the search range widened on each side by 10% of
//	    the time between that end and now (the spec's recommendation)
func (c *compiler) date(f *fhir.Filter, typ string) (cond, error) {
	if f.Modifier != "" {
		return nil, unsupportedModifier(f)
	}
	rk := rankCode
	var preds []pred
	for _, v := range f.Values {
		p, err := datePred(f, v, "low", "high", c.now)
		if err != nil {
			return nil, err
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
	return &rowCond{table: "idx_date", pid: pid, preds: preds, rk: rk}, nil
}

// lastUpdatedFilter compiles _lastUpdated from res.last_updated, an
// instant with millisecond precision (rl = rh).
// See https://hl7.org/fhir/R4/search.html#lastUpdated.
func (c *compiler) lastUpdatedFilter(f *fhir.Filter, typ string) (cond, error) {
	if f.Modifier == "missing" {
		return constCond(!f.Values[0].Missing), nil
	}
	if f.Modifier != "" {
		return nil, unsupportedModifier(f)
	}
	var preds []pred
	for _, v := range f.Values {
		p, err := datePred(f, v, "last_updated", "last_updated", c.now)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
	}
	return &resCond{typ: typ, rk: notDrivable, pred: func(b *sqlb, x string) {
		for i, p := range preds {
			if i > 0 {
				b.w(" OR ")
			}
			b.w("(")
			p(b, x)
			b.w(")")
		}
	}}, nil
}

// datePred compiles one date value on the columns lo and hi of the row.
func datePred(f *fhir.Filter, v fhir.Value, lo, hi string, now time.Time) (pred, error) {
	sl, sh := v.DateLow, v.DateHigh
	if sl > sh {
		return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: the date range is empty", f.Param.Name)
	}
	cmp := func(col, op string, val int64) pred {
		return func(b *sqlb, x string) {
			b.w(x, ".", col, " ", op, " ")
			b.arg(val)
		}
	}
	both := func(p, q pred) pred {
		return func(b *sqlb, x string) { p(b, x); b.w(" AND "); q(b, x) }
	}
	// rl <= sh follows from rh <= sh; it bounds the index range on rl.
	eq := both(both(cmp(lo, ">=", sl), cmp(lo, "<=", sh)), cmp(hi, "<=", sh))
	switch v.Prefix {
	case "", fhir.PrefixEq:
		return eq, nil
	case fhir.PrefixNe:
		return func(b *sqlb, x string) { b.w("NOT ("); eq(b, x); b.w(")") }, nil
	case fhir.PrefixGt:
		return cmp(hi, ">", sh), nil
	case fhir.PrefixLt:
		return cmp(lo, "<", sl), nil
	case fhir.PrefixGe:
		return cmp(hi, ">=", sl), nil
	case fhir.PrefixLe:
		return cmp(lo, "<=", sh), nil
	case fhir.PrefixSa:
		return cmp(lo, ">", sh), nil
	case fhir.PrefixEb:
		return cmp(hi, "<", sl), nil
	case fhir.PrefixAp:
		ms := now.UnixMilli()
		wl := sl - int64(math.Abs(float64(ms-sl))/10)
		wh := sh + int64(math.Abs(float64(ms-sh))/10)
		return both(cmp(lo, "<=", wh), cmp(hi, ">=", wl)), nil
	}
	return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: prefix %s is not valid", f.Param.Name, v.Prefix)
}
