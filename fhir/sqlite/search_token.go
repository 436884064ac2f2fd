package sqlite

import (
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

// token compiles a token parameter: code (any system), system|code,
// |code (no system), system| (any code in the system), and the modifiers
// :not (no row matches, so resources without the element match too),
// :text (starts-with on the display text rows "<code>:text") and :of-type
// (the identifier type rows "<code>:of-type"), :in and :not-in (the codes
// of the value sets, expanded by the parser; see valueSetCond).
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
	case "in", "not-in":
		return c.valueSetCond(f, typ)
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

// valueSetCond compiles :in (a row with one of the codes of f.Values) and
// :not-in (no such row, so resources without the element match too). The
// codes are grouped by system, one IN list each. A row without a system
// matches by its code alone: code elements (Patient.gender) are indexed
// without the system their binding implies.
func (c *compiler) valueSetCond(f *fhir.Filter, typ string) (cond, error) {
	not := f.Modifier == "not-in"
	if len(f.Values) == 0 {
		return constCond(not), nil
	}
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	var systems []string
	codes := map[string][]string{}
	for _, v := range f.Values {
		if _, ok := codes[v.System]; !ok {
			systems = append(systems, v.System)
		}
		codes[v.System] = append(codes[v.System], v.Code)
	}
	preds := make([]pred, 0, len(systems))
	for _, sys := range systems {
		cs := codes[sys]
		preds = append(preds, func(b *sqlb, x string) {
			b.w(x, ".code IN (")
			for i, code := range cs {
				if i > 0 {
					b.w(", ")
				}
				b.arg(code)
			}
			b.w(") AND ", x, ".system IN (")
			b.arg(sys)
			b.w(", '')")
		})
	}
	return &rowCond{table: "idx_token", pid: pid, preds: preds, neg: not, rk: rankCode}, nil
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
