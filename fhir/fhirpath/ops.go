package fhirpath

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// binaryExpr is an operator with two operands.
// See https://hl7.org/fhirpath/N1/#operations.
type binaryExpr struct {
	op          string
	left, right expr
}

func newBinary(op string, left, right expr) expr {
	return &binaryExpr{op: op, left: left, right: right}
}

func (b *binaryExpr) eval(e *env, this Collection) (Collection, error) {
	l, err := b.left.eval(e, this)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "and", "or", "implies":
		lb, lok, err := toBool(l)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.op, err)
		}
		// Short-circuit where the right operand cannot change the result.
		switch {
		case b.op == "and" && lok && !lb:
			return boolean(false), nil
		case b.op == "or" && lok && lb:
			return boolean(true), nil
		case b.op == "implies" && lok && !lb:
			return boolean(true), nil
		}
		r, err := b.right.eval(e, this)
		if err != nil {
			return nil, err
		}
		rb, rok, err := toBool(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.op, err)
		}
		return logic(b.op, lb, lok, rb, rok), nil
	}
	r, err := b.right.eval(e, this)
	if err != nil {
		return nil, err
	}
	switch b.op {
	case "xor":
		lb, lok, err := toBool(l)
		if err != nil {
			return nil, err
		}
		rb, rok, err := toBool(r)
		if err != nil {
			return nil, err
		}
		if !lok || !rok {
			return nil, nil
		}
		return boolean(lb != rb), nil
	case "|":
		return union(l, r), nil
	case "=", "!=":
		eq, ok := collectionsEqual(l, r)
		if !ok {
			return nil, nil
		}
		return boolean(eq == (b.op == "=")), nil
	case "~", "!~":
		eq := collectionsEquivalent(l, r)
		return boolean(eq == (b.op == "~")), nil
	case "<", ">", "<=", ">=":
		return compareOp(b.op, l, r)
	case "in":
		return membership(l, r)
	case "contains":
		return membership(r, l)
	case "&":
		ls, _, err := stringArg(l)
		if err != nil {
			return nil, err
		}
		rs, _, err := stringArg(r)
		if err != nil {
			return nil, err
		}
		return Collection{{Type: TypeString, Value: ls + rs}}, nil
	}
	return arithmetic(b.op, l, r)
}

func logic(op string, lb, lok, rb, rok bool) Collection {
	switch op {
	case "and":
		switch {
		case (lok && !lb) || (rok && !rb):
			return boolean(false)
		case lok && rok:
			return boolean(true)
		}
	case "or":
		switch {
		case (lok && lb) || (rok && rb):
			return boolean(true)
		case lok && rok:
			return boolean(false)
		}
	case "implies":
		switch {
		case lok && !lb, rok && rb:
			return boolean(true)
		case lok && rok:
			return boolean(false)
		}
	}
	return nil
}

func boolean(b bool) Collection { return Collection{{Type: TypeBoolean, Value: b}} }

func integer(i int64) Node {
	return Node{Type: TypeInteger, Value: json.Number(strconv.FormatInt(i, 10))}
}

func decimal(f float64) Node {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	return Node{Type: TypeDecimal, Value: json.Number(s)}
}

func str(s string) Node { return Node{Type: TypeString, Value: s} }

// toBool evaluates a collection as a boolean: empty is unknown (ok false),
// a single boolean is its value and any other single item is true.
// See https://hl7.org/fhirpath/N1/#singleton-evaluation-of-collections.
func toBool(c Collection) (b, ok bool, err error) {
	switch len(c) {
	case 0:
		return false, false, nil
	case 1:
		if v, isBool := c[0].Value.(bool); isBool {
			return v, true, nil
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("expected a single boolean, got %d items", len(c))
}

// kind classifies a value for comparison.
type kind uint8

const (
	kObject kind = iota
	kString
	kNumber
	kBool
	kDate // date, dateTime, instant
	kTime
	kQuantity
)

func kindOf(n Node) kind {
	switch n.Type {
	case "date", "dateTime", "instant", TypeDate, TypeDateTime:
		return kDate
	case "time", TypeTime:
		return kTime
	case TypeQuantity, "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity":
		return kQuantity
	}
	switch n.Value.(type) {
	case string:
		return kString
	case json.Number:
		return kNumber
	case bool:
		return kBool
	}
	return kObject
}

// isIntegerType reports whether numbers of type t are integers.
func isIntegerType(t string) bool {
	switch t {
	case "integer", "positiveInt", "unsignedInt", TypeInteger:
		return true
	}
	return false
}

// number returns a numeric value as float64, and as int64 if it is an integer.
func number(n Node) (f float64, i int64, isInt bool, ok bool) {
	v, ok := n.Value.(json.Number)
	if !ok {
		return 0, 0, false, false
	}
	if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return float64(i), i, true, true
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, 0, false, err == nil
}

// collectionsEqual implements =: ok is false when the result is empty.
// See https://hl7.org/fhirpath/N1/#equality.
func collectionsEqual(l, r Collection) (eq, ok bool) {
	if len(l) == 0 || len(r) == 0 {
		return false, false
	}
	if len(l) != len(r) {
		return false, true
	}
	for i := range l {
		eq, ok := itemsEqual(l[i], r[i])
		if !ok {
			return false, false
		}
		if !eq {
			return false, true
		}
	}
	return true, true
}

func itemsEqual(a, b Node) (eq, ok bool) {
	ka, kb := kindOf(a), kindOf(b)
	switch {
	case ka == kDate && kb == kDate, ka == kTime && kb == kTime:
		c, ok := compareDateTimes(a.Value.(string), b.Value.(string), ka == kTime)
		return c == 0, ok
	case ka == kQuantity && kb == kQuantity:
		c, ok := compareQuantities(a, b)
		return c == 0, ok
	case ka == kNumber && kb == kNumber:
		fa, ia, inta, _ := number(a)
		fb, ib, intb, _ := number(b)
		if inta && intb {
			return ia == ib, true
		}
		return fa == fb, true
	}
	return jsonEqual(a.Value, b.Value), true
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, err1 := strconv.ParseFloat(string(x), 64)
		fy, err2 := strconv.ParseFloat(string(y), 64)
		return err1 == nil && err2 == nil && fx == fy
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return a == nil && b == nil
}

// collectionsEquivalent implements ~.
// See https://hl7.org/fhirpath/N1/#equivalence.
func collectionsEquivalent(l, r Collection) bool {
	if len(l) != len(r) {
		return false
	}
	used := make([]bool, len(r))
outer:
	for _, a := range l {
		for j, b := range r {
			if !used[j] && itemsEquivalent(a, b) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func itemsEquivalent(a, b Node) bool {
	ka, kb := kindOf(a), kindOf(b)
	switch {
	case ka == kString && kb == kString:
		return normalizeSpace(a.Value.(string)) == normalizeSpace(b.Value.(string))
	case ka == kNumber && kb == kNumber:
		fa, _, _, _ := number(a)
		fb, _, _, _ := number(b)
		p := min(decimalPlaces(a), decimalPlaces(b))
		scale := math.Pow(10, float64(p))
		return math.Round(fa*scale) == math.Round(fb*scale)
	case ka == kDate && kb == kDate, ka == kTime && kb == kTime:
		c, ok := compareDateTimes(a.Value.(string), b.Value.(string), ka == kTime)
		return ok && c == 0
	}
	eq, ok := itemsEqual(a, b)
	return ok && eq
}

func normalizeSpace(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

func decimalPlaces(n Node) int {
	s, _ := n.Value.(json.Number)
	if i := strings.IndexByte(string(s), '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

// compareOp implements <, >, <= and >= on single items.
// See https://hl7.org/fhirpath/N1/#comparison.
func compareOp(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, fmt.Errorf("%s: operands must be single items", op)
	}
	a, b := l[0], r[0]
	var c int
	ka, kb := kindOf(a), kindOf(b)
	switch {
	case ka == kNumber && kb == kNumber:
		fa, _, _, _ := number(a)
		fb, _, _, _ := number(b)
		c = cmpFloat(fa, fb)
	case (ka == kDate && kb == kDate) || (ka == kTime && kb == kTime):
		var ok bool
		if c, ok = compareDateTimes(a.Value.(string), b.Value.(string), ka == kTime); !ok {
			return nil, nil
		}
	case ka == kQuantity && kb == kQuantity:
		var ok bool
		if c, ok = compareQuantities(a, b); !ok {
			return nil, nil
		}
	case (ka == kString || ka == kDate || ka == kTime) && (kb == kString || kb == kDate || kb == kTime):
		c = strings.Compare(a.Value.(string), b.Value.(string))
	default:
		return nil, fmt.Errorf("%s: cannot compare %s with %s", op, typeName(a), typeName(b))
	}
	switch op {
	case "<":
		return boolean(c < 0), nil
	case ">":
		return boolean(c > 0), nil
	case "<=":
		return boolean(c <= 0), nil
	}
	return boolean(c >= 0), nil
}

func typeName(n Node) string {
	if n.Type == "" {
		return "value of unknown type"
	}
	return n.Type
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareQuantities compares quantities with the same unit; ok is false for
// different units (no UCUM conversion is done).
func compareQuantities(a, b Node) (int, bool) {
	am, bm := a.Object(), b.Object()
	if am == nil || bm == nil {
		return 0, false
	}
	if quantityUnit(am) != quantityUnit(bm) {
		return 0, false
	}
	av, _, _, ok1 := number(Node{Value: am["value"]})
	bv, _, _, ok2 := number(Node{Value: bm["value"]})
	if !ok1 || !ok2 {
		return 0, false
	}
	return cmpFloat(av, bv), true
}

func quantityUnit(m map[string]any) string {
	if c, ok := m["code"].(string); ok {
		return c
	}
	u, _ := m["unit"].(string)
	if c, ok := calendarUnits[u]; ok {
		return c
	}
	return u
}

// union merges two collections without duplicates.
func union(l, r Collection) Collection {
	out := make(Collection, 0, len(l)+len(r))
	for _, c := range [2]Collection{l, r} {
		for _, n := range c {
			if !containsItem(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

func containsItem(c Collection, n Node) bool {
	for _, m := range c {
		if eq, ok := itemsEqual(m, n); ok && eq {
			return true
		}
	}
	return false
}

// membership implements "item in collection".
func membership(item, c Collection) (Collection, error) {
	if len(item) == 0 {
		return nil, nil
	}
	if len(item) > 1 {
		return nil, fmt.Errorf("membership: left operand has %d items", len(item))
	}
	return boolean(containsItem(c, item[0])), nil
}

// arithmetic implements +, -, *, /, div and mod.
// See https://hl7.org/fhirpath/N1/#math-1.
func arithmetic(op string, l, r Collection) (Collection, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) > 1 || len(r) > 1 {
		return nil, fmt.Errorf("%s: operands must be single items", op)
	}
	a, b := l[0], r[0]
	ka, kb := kindOf(a), kindOf(b)
	switch {
	case ka == kString && kb == kString && op == "+":
		return Collection{str(a.Value.(string) + b.Value.(string))}, nil
	case (ka == kDate || ka == kTime) && kb == kQuantity && (op == "+" || op == "-"):
		return addDuration(a, b, op == "-")
	case ka == kQuantity && kb == kNumber && (op == "*" || op == "/"):
		q := a.Object()
		v, err := arithmetic(op, Collection{{Type: TypeDecimal, Value: q["value"]}}, Collection{b})
		if err != nil || len(v) == 0 {
			return nil, err
		}
		return Collection{{Type: TypeQuantity, Value: map[string]any{"value": v[0].Value, "unit": q["unit"], "system": q["system"], "code": q["code"]}}}, nil
	case ka != kNumber || kb != kNumber:
		return nil, fmt.Errorf("%s: cannot apply to %s and %s", op, typeName(a), typeName(b))
	}
	fa, ia, inta, _ := number(a)
	fb, ib, intb, _ := number(b)
	if inta && intb && isIntegerType(a.Type) || inta && intb && isIntegerType(b.Type) || inta && intb && a.Type == "" {
		switch op {
		case "+":
			return Collection{integer(ia + ib)}, nil
		case "-":
			return Collection{integer(ia - ib)}, nil
		case "*":
			return Collection{integer(ia * ib)}, nil
		case "div":
			if ib == 0 {
				return nil, nil
			}
			return Collection{integer(ia / ib)}, nil
		case "mod":
			if ib == 0 {
				return nil, nil
			}
			return Collection{integer(ia % ib)}, nil
		}
	}
	var v float64
	switch op {
	case "+":
		v = fa + fb
	case "-":
		v = fa - fb
	case "*":
		v = fa * fb
	case "/":
		if fb == 0 {
			return nil, nil
		}
		v = fa / fb
	case "div":
		if fb == 0 {
			return nil, nil
		}
		return Collection{integer(int64(math.Trunc(fa / fb)))}, nil
	case "mod":
		if fb == 0 {
			return nil, nil
		}
		v = math.Mod(fa, fb)
	}
	return Collection{decimal(v)}, nil
}
