package sqlite

import (
	"github.com/cpis-fhir/cpis/fhir"
)

// uri compiles a uri parameter: equality with the value as written;
// :below matches the uris that start with the value, :above those that
// the value starts with. See https://hl7.org/fhir/R4/search.html#uri.
func (c *compiler) uri(f *fhir.Filter, typ string) (cond, error) {
	rk := rankExact
	var preds []pred
	for _, v := range f.Values {
		switch f.Modifier {
		case "":
			preds = append(preds, uriEq(v.URI))
		case "below":
			preds = append(preds, startsWith("uri", v.URI))
			rk = max(rk, rankPrefix)
		case "above":
			preds = append(preds, uriAbove(v.URI))
			rk = notDrivable
		default:
			return nil, unsupportedModifier(f)
		}
	}
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	return &rowCond{table: "idx_uri", pid: pid, preds: preds, rk: rk}, nil
}

func uriEq(u string) pred {
	return func(b *sqlb, x string) {
		b.w(x, ".uri = ")
		b.arg(u)
	}
}

// uriAbove matches the rows whose uri is a prefix of u.
func uriAbove(u string) pred {
	return func(b *sqlb, x string) {
		b.w(x, ".uri <= ")
		b.arg(u)
		b.w(" AND substr(")
		b.arg(u)
		b.w(", 1, length(", x, ".uri)) = ", x, ".uri")
	}
}
