package sqlite

import (
	"github.com/cpis-fhir/cpis/fhir"
)

// str compiles a string parameter: by default the normalised value starts
// with the normalised search value (accents removed, case folded, see
// fhir.NormalizeString), :contains finds it anywhere in the value, :exact
// compares the value as written. See https://hl7.org/fhir/R4/search.html#string.
//
// Starts-with is a range on the index (norm >= v AND norm < v+U+10FFFF),
// not LIKE, which folds ASCII case only and cannot use the index under the
// default collation. :contains reads every row of the parameter.
func (c *compiler) str(f *fhir.Filter, typ string) (cond, error) {
	rk := rankPrefix
	var preds []pred
	for _, v := range f.Values {
		switch f.Modifier {
		case "":
			preds = append(preds, startsWith("norm", valueNorm(v)))
		case "contains":
			preds = append(preds, contains("norm", valueNorm(v)))
			rk = notDrivable
		case "exact":
			preds = append(preds, exactString(v.Exact))
			rk = rankExact
		default:
			return nil, unsupportedModifier(f)
		}
	}
	pid, err := c.pid(typ, f.Param.Name)
	if err != nil {
		return nil, err
	}
	return &rowCond{table: "idx_string", pid: pid, preds: preds, rk: rk}, nil
}

// valueNorm returns the normalised search value of v.
func valueNorm(v fhir.Value) string {
	if v.Norm == "" && v.Exact != "" {
		return fhir.NormalizeString(v.Exact)
	}
	return v.Norm
}

// maxRune follows every valid UTF-8 text that starts with the same prefix,
// in byte order: no valid encoding is greater than U+10FFFF's.
const maxRune = "\U0010FFFF"

// startsWith matches the column col of x when it starts with prefix.
func startsWith(col, prefix string) pred {
	return func(b *sqlb, x string) {
		b.w(x, ".", col, " >= ")
		b.arg(prefix)
		b.w(" AND ", x, ".", col, " < ")
		b.arg(prefix + maxRune)
	}
}

// contains matches the column col of x when it contains s.
func contains(col, s string) pred {
	return func(b *sqlb, x string) {
		b.w("instr(", x, ".", col, ", ")
		b.arg(s)
		b.w(") > 0")
	}
}

// exactString matches the value as written; the normalised column narrows
// the index range first.
func exactString(s string) pred {
	return func(b *sqlb, x string) {
		b.w(x, ".norm = ")
		b.arg(fhir.NormalizeString(s))
		b.w(" AND ", x, ".exact = ")
		b.arg(s)
	}
}
