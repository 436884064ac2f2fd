package sqlite

import (
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

// token compiles a token parameter: code (any system), system|code,
// |code (no system), system| (any code in the system), and the modifiers
// :not (no row matches, so resources without the element match too),
// :text (starts-with on the display text rows "<code>:text") and :of-type
// (the identifier type rows "<code>:of-type").
// See https://hl7.org/fhir/R4/search.html#token.
func (c *compiler) token(f *fhir.Filter, typ string) (cond, error) {
	name := f.Param.Name
	switch f.Modifier {
	case "", "not":
		preds, err := tokenPreds(f)
		if err != nil {
			return nil, err
		}
		pid, err := c.pid(typ, name)
		if err != nil {
			return nil, err
		}
		return &rowCond{table: "idx_token", pid: pid, preds: preds, neg: f.Modifier == "not", rk: tokenRank(f)}, nil
	case "of-type":
		preds, err := tokenPreds(f)
		if err != nil {
			return nil, err
		}
		pid, err := c.pid(typ, name+":of-type")
		if err != nil {
			return nil, err
		}
		return &rowCond{table: "idx_token", pid: pid, preds: preds, rk: identifierRank(f)}, nil
	case "text":
		pid, err := c.pid(typ, name+":text")
		if err != nil {
			return nil, err
		}
		var preds []pred
		for _, v := range f.Values {
			preds = append(preds, startsWith("norm", valueNorm(v)))
		}
		return &rowCond{table: "idx_string", pid: pid, preds: preds, rk: rankPrefix}, nil
	}
	return nil, unsupportedModifier(f)
}

// tokenRank ranks identifiers above other codes: an identifier value is
// nearly unique, a code such as a status is shared by many resources.
func tokenRank(f *fhir.Filter) int {
	if n := f.Param.Name; n == "identifier" || strings.HasSuffix(n, "-identifier") {
		return identifierRank(f)
	}
	return rankCode
}

// identifierRank ranks identifier values: selective when every value has
// one (system| alone names every identifier of the system).
func identifierRank(f *fhir.Filter) int {
	for _, v := range f.Values {
		if v.Code == "" {
			return rankCode
		}
	}
	return rankIdentifier
}

// tokenPreds compiles the values of a token filter, or of the token rows
// of :identifier and :of-type.
func tokenPreds(f *fhir.Filter) ([]pred, error) {
	var preds []pred
	for _, v := range f.Values {
		if v.Code == "" && (!v.HasSystem || v.System == "") {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s: a token needs a code or a system", f.Param.Name)
		}
		preds = append(preds, tokenPred(v))
	}
	return preds, nil
}

// tokenPred matches the code and system columns of the row x with v.
func tokenPred(v fhir.Value) pred {
	return func(b *sqlb, x string) {
		switch {
		case v.Code == "":
			b.w(x, ".system = ")
			b.arg(v.System)
		case !v.HasSystem:
			b.w(x, ".code = ")
			b.arg(v.Code)
		default:
			b.w(x, ".code = ")
			b.arg(v.Code)
			b.w(" AND ", x, ".system = ")
			b.arg(v.System)
		}
	}
}

// idFilter compiles _id from res.id: the values are ids (codes), matched
// exactly. :not keeps the other resources; :missing is false for every
// resource. See https://hl7.org/fhir/R4/search.html#id.
func (c *compiler) idFilter(f *fhir.Filter, typ string) (cond, error) {
	return c.resColumnFilter(f, typ, "id", rankID)
}

// typeFilter compiles _type given as a filter: the resource's type.
// See https://hl7.org/fhir/R4/search.html#type.
func (c *compiler) typeFilter(f *fhir.Filter) (cond, error) {
	return c.resColumnFilter(f, "", "type", notDrivable)
}

func (c *compiler) resColumnFilter(f *fhir.Filter, typ, col string, rk int) (cond, error) {
	switch f.Modifier {
	case "missing":
		return constCond(!f.Values[0].Missing), nil
	case "", "not":
	default:
		return nil, unsupportedModifier(f)
	}
	var codes []string
	for _, v := range f.Values {
		if v.Code == "" || (v.HasSystem && v.System != "") {
			return nil, fhir.Errorf(fhir.IssueInvalid, "search parameter %s takes plain values without a system", f.Param.Name)
		}
		codes = append(codes, v.Code)
	}
	not := f.Modifier == "not"
	if not {
		rk = notDrivable
	}
	return &resCond{typ: typ, rk: rk, pred: func(b *sqlb, x string) {
		b.w(x, ".", col)
		if not {
			b.w(" NOT")
		}
		b.w(" IN (")
		for i, code := range codes {
			if i > 0 {
				b.w(", ")
			}
			b.arg(code)
		}
		b.w(")")
	}}, nil
}
