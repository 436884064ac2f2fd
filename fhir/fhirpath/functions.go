package fhirpath

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// function is an entry of the function table.
type function struct {
	minArgs, maxArgs int
	// typeArg marks functions whose argument is a type name (is, as, ofType).
	typeArg bool
	// impl computes the result; this is the focus of the call's expression
	// (used for arguments that are not iterated) and input the collection
	// the function is invoked on.
	impl func(e *env, this, input Collection, args []expr) (Collection, error)
}

// functions is the table of supported functions, by name.
// See https://hl7.org/fhirpath/N1/#functions and
// https://hl7.org/fhir/R4/fhirpath.html#functions.
var functions = map[string]*function{
	// Existence.
	"empty": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) { return boolean(len(in) == 0), nil }},
	"exists": {maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		if len(args) == 1 {
			var err error
			if in, err = filter(e, in, args[0]); err != nil {
				return nil, err
			}
		}
		return boolean(len(in) > 0), nil
	}},
	"all": {minArgs: 1, maxArgs: 1, impl: func(e *env, _, in Collection, args []expr) (Collection, error) {
		ok := true
		err := iterate(e, in, func(i int, n Node) (bool, error) {
			r, err := args[0].eval(e, Collection{n})
			if err != nil {
				return false, err
			}
			b, bok, err := toBool(r)
			if err != nil {
				return false, err
			}
			if !bok || !b {
				ok = false
				return false, nil
			}
			return true, nil
		})
		return boolean(ok), err
	}},
	"allTrue":    {impl: boolAggregate(func(b bool) bool { return !b }, false)},
	"anyTrue":    {impl: boolAggregate(func(b bool) bool { return b }, true)},
	"allFalse":   {impl: boolAggregate(func(b bool) bool { return b }, false)},
	"anyFalse":   {impl: boolAggregate(func(b bool) bool { return !b }, true)},
	"subsetOf":   {minArgs: 1, maxArgs: 1, impl: subsetOf(false)},
	"supersetOf": {minArgs: 1, maxArgs: 1, impl: subsetOf(true)},
	"count": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		return Collection{integer(int64(len(in)))}, nil
	}},
	"distinct": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) { return union(in, nil), nil }},
	"isDistinct": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		return boolean(len(union(in, nil)) == len(in)), nil
	}},
	"hasValue": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		return boolean(len(in) == 1 && isPrimitiveType(in[0].Type) && in[0].Value != nil), nil
	}},
	"getValue": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		if len(in) != 1 || !isPrimitiveType(in[0].Type) {
			return nil, nil
		}
		return Collection{{Type: systemType(in[0].Type), Value: in[0].Value}}, nil
	}},

	// Filtering and projection.
	"where": {minArgs: 1, maxArgs: 1, impl: func(e *env, _, in Collection, args []expr) (Collection, error) {
		return filter(e, in, args[0])
	}},
	"select": {minArgs: 1, maxArgs: 1, impl: func(e *env, _, in Collection, args []expr) (Collection, error) {
		var out Collection
		err := iterate(e, in, func(_ int, n Node) (bool, error) {
			r, err := args[0].eval(e, Collection{n})
			out = append(out, r...)
			return err == nil, err
		})
		return out, err
	}},
	"repeat": {minArgs: 1, maxArgs: 1, impl: func(e *env, _, in Collection, args []expr) (Collection, error) {
		var out Collection
		queue := in
		for len(queue) > 0 {
			var next Collection
			err := iterate(e, queue, func(_ int, n Node) (bool, error) {
				r, err := args[0].eval(e, Collection{n})
				for _, m := range r {
					if !containsItem(out, m) {
						out = append(out, m)
						next = append(next, m)
					}
				}
				return err == nil, err
			})
			if err != nil {
				return nil, err
			}
			queue = next
		}
		return out, nil
	}},
	"ofType": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(_ *env, _, in Collection, args []expr) (Collection, error) {
		return ofType(in, args[0].(*typeNameExpr).name), nil
	}},
	"as": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(_ *env, _, in Collection, args []expr) (Collection, error) {
		return ofType(in, args[0].(*typeNameExpr).name), nil
	}},
	"is": {minArgs: 1, maxArgs: 1, typeArg: true, impl: func(_ *env, _, in Collection, args []expr) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("input has %d items", len(in))
		}
		return boolean(isType(in[0].Type, args[0].(*typeNameExpr).name)), nil
	}},

	// Subsetting.
	"single": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		if len(in) > 1 {
			return nil, fmt.Errorf("input has %d items", len(in))
		}
		return in, nil
	}},
	"first": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) { return sub(in, 0, 1), nil }},
	"last": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		return sub(in, len(in)-1, len(in)), nil
	}},
	"tail": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) { return sub(in, 1, len(in)), nil }},
	"skip": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		n, ok, err := intParam(e, this, args[0])
		if err != nil || !ok {
			return nil, err
		}
		return sub(in, max(int(n), 0), len(in)), nil
	}},
	"take": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		n, ok, err := intParam(e, this, args[0])
		if err != nil || !ok {
			return nil, err
		}
		return sub(in, 0, int(n)), nil
	}},
	"intersect": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		other, err := args[0].eval(e, this)
		var out Collection
		for _, n := range in {
			if containsItem(other, n) && !containsItem(out, n) {
				out = append(out, n)
			}
		}
		return out, err
	}},
	"exclude": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		other, err := args[0].eval(e, this)
		var out Collection
		for _, n := range in {
			if !containsItem(other, n) {
				out = append(out, n)
			}
		}
		return out, err
	}},

	// Combining.
	"union": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		other, err := args[0].eval(e, this)
		return union(in, other), err
	}},
	"combine": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		other, err := args[0].eval(e, this)
		return append(append(Collection(nil), in...), other...), err
	}},

	// Conversion.
	"iif": {minArgs: 2, maxArgs: 3, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		focus := this
		if len(in) == 1 {
			focus = in
		}
		c, err := args[0].eval(e, focus)
		if err != nil {
			return nil, err
		}
		b, ok, err := toBool(c)
		if err != nil {
			return nil, err
		}
		if ok && b {
			return args[1].eval(e, focus)
		}
		if len(args) == 3 {
			return args[2].eval(e, focus)
		}
		return nil, nil
	}},
	"toBoolean":          {impl: convert(toBoolean)},
	"convertsToBoolean":  {impl: convertsTo(toBoolean)},
	"toInteger":          {impl: convert(toInteger)},
	"convertsToInteger":  {impl: convertsTo(toInteger)},
	"toDecimal":          {impl: convert(toDecimal)},
	"convertsToDecimal":  {impl: convertsTo(toDecimal)},
	"toString":           {impl: convert(toStringValue)},
	"convertsToString":   {impl: convertsTo(toStringValue)},
	"toDate":             {impl: convert(toDate)},
	"convertsToDate":     {impl: convertsTo(toDate)},
	"toDateTime":         {impl: convert(toDateTime)},
	"convertsToDateTime": {impl: convertsTo(toDateTime)},
	"toTime":             {impl: convert(toTime)},
	"convertsToTime":     {impl: convertsTo(toTime)},
	"toQuantity":         {maxArgs: 1, impl: convert(toQuantity)},
	"convertsToQuantity": {maxArgs: 1, impl: convertsTo(toQuantity)},

	// Strings.
	"indexOf": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		return Collection{integer(int64(strings.Index(s, a[0])))}, nil
	})},
	"substring": {minArgs: 1, maxArgs: 2, impl: substring},
	"startsWith": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		return boolean(strings.HasPrefix(s, a[0])), nil
	})},
	"endsWith": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		return boolean(strings.HasSuffix(s, a[0])), nil
	})},
	"contains": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		return boolean(strings.Contains(s, a[0])), nil
	})},
	"upper": {impl: stringFunc(func(s string, _ []string) (Collection, error) { return Collection{str(strings.ToUpper(s))}, nil })},
	"lower": {impl: stringFunc(func(s string, _ []string) (Collection, error) { return Collection{str(strings.ToLower(s))}, nil })},
	"trim":  {impl: stringFunc(func(s string, _ []string) (Collection, error) { return Collection{str(strings.TrimSpace(s))}, nil })},
	"replace": {minArgs: 2, maxArgs: 2, impl: stringFunc(func(s string, a []string) (Collection, error) {
		return Collection{str(strings.ReplaceAll(s, a[0], a[1]))}, nil
	})},
	"matches": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		re, err := regexp.Compile("(?s)" + a[0])
		if err != nil {
			return nil, fmt.Errorf("bad regular expression: %w", err)
		}
		return boolean(re.MatchString(s)), nil
	})},
	"replaceMatches": {minArgs: 2, maxArgs: 2, impl: stringFunc(func(s string, a []string) (Collection, error) {
		re, err := regexp.Compile(a[0])
		if err != nil {
			return nil, fmt.Errorf("bad regular expression: %w", err)
		}
		return Collection{str(re.ReplaceAllString(s, a[1]))}, nil
	})},
	"length": {impl: stringFunc(func(s string, _ []string) (Collection, error) {
		return Collection{integer(int64(len([]rune(s))))}, nil
	})},
	"toChars": {impl: stringFunc(func(s string, _ []string) (Collection, error) {
		var out Collection
		for _, r := range s {
			out = append(out, str(string(r)))
		}
		return out, nil
	})},
	"split": {minArgs: 1, maxArgs: 1, impl: stringFunc(func(s string, a []string) (Collection, error) {
		var out Collection
		for _, p := range strings.Split(s, a[0]) {
			out = append(out, str(p))
		}
		return out, nil
	})},
	"join": {maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		sep := ""
		if len(args) == 1 {
			s, _, err := stringParam(e, this, args[0])
			if err != nil {
				return nil, err
			}
			sep = s
		}
		parts := make([]string, 0, len(in))
		for _, n := range in {
			s, ok := n.String()
			if !ok {
				return nil, fmt.Errorf("item of type %s is not a string", typeName(n))
			}
			parts = append(parts, s)
		}
		return Collection{str(strings.Join(parts, sep))}, nil
	}},

	// Math.
	"abs": {impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		if len(in) == 1 && isIntegerType(in[0].Type) {
			if _, i, isInt, _ := number(in[0]); isInt {
				return Collection{integer(max(i, -i))}, nil
			}
		}
		if len(in) == 1 && kindOf(in[0]) == kQuantity {
			q := in[0].Object()
			v, err := mathFunc(math.Abs, true)(e, this, Collection{{Type: TypeDecimal, Value: q["value"]}}, nil)
			if err != nil || len(v) == 0 {
				return nil, err
			}
			return Collection{{Type: TypeQuantity, Value: map[string]any{"value": v[0].Value, "unit": q["unit"], "system": q["system"], "code": q["code"]}}}, nil
		}
		return mathFunc(math.Abs, true)(e, this, in, args)
	}},
	"ceiling":  {impl: mathFunc(math.Ceil, false)},
	"floor":    {impl: mathFunc(math.Floor, false)},
	"truncate": {impl: mathFunc(math.Trunc, false)},
	"exp":      {impl: mathFunc(math.Exp, true)},
	"ln":       {impl: mathFunc(math.Log, true)},
	"sqrt":     {impl: mathFunc(math.Sqrt, true)},
	"log": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		return math2(e, this, in, args[0], func(a, b float64) float64 { return math.Log(a) / math.Log(b) })
	}},
	"power": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		out, err := math2(e, this, in, args[0], math.Pow)
		if err == nil && len(out) == 1 && isIntegerType(in[0].Type) {
			if f, _, _, _ := number(out[0]); f == math.Trunc(f) {
				return Collection{integer(int64(f))}, nil
			}
		}
		return out, err
	}},
	"round": {maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		p := int64(0)
		if len(args) == 1 {
			var ok bool
			var err error
			if p, ok, err = intParam(e, this, args[0]); err != nil || !ok {
				return nil, err
			}
		}
		scale := math.Pow(10, float64(p))
		return mathFunc(func(f float64) float64 { return math.Round(f*scale) / scale }, true)(e, this, in, nil)
	}},

	// Tree navigation.
	"children": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		var out Collection
		for _, n := range in {
			out = allChildren(n, out)
		}
		return out, nil
	}},
	"descendants": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		var out Collection
		queue := in
		for len(queue) > 0 {
			var next Collection
			for _, n := range queue {
				next = allChildren(n, next)
			}
			out = append(out, next...)
			queue = next
		}
		return out, nil
	}},

	// Utility.
	"trace": {minArgs: 1, maxArgs: 2, impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) { return in, nil }},
	"now": {impl: func(*env, Collection, Collection, []expr) (Collection, error) {
		return Collection{{Type: TypeDateTime, Value: time.Now().Format("2006-01-02T15:04:05.000-07:00")}}, nil
	}},
	"today": {impl: func(*env, Collection, Collection, []expr) (Collection, error) {
		return Collection{{Type: TypeDate, Value: time.Now().Format("2006-01-02")}}, nil
	}},
	"timeOfDay": {impl: func(*env, Collection, Collection, []expr) (Collection, error) {
		return Collection{{Type: TypeTime, Value: time.Now().Format("15:04:05.000")}}, nil
	}},
	"not": {impl: func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		b, ok, err := toBool(in)
		if err != nil || !ok {
			return nil, err
		}
		return boolean(!b), nil
	}},

	// FHIR additions. See https://hl7.org/fhir/R4/fhirpath.html#functions.
	"extension": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		url, ok, err := stringParam(e, this, args[0])
		if err != nil || !ok {
			return nil, err
		}
		return extensions(in, url), nil
	}},
	"hasExtension": {minArgs: 1, maxArgs: 1, impl: func(e *env, this, in Collection, args []expr) (Collection, error) {
		url, ok, err := stringParam(e, this, args[0])
		if err != nil || !ok {
			return nil, err
		}
		return boolean(len(extensions(in, url)) > 0), nil
	}},
	"resolve": {impl: func(e *env, _, in Collection, _ []expr) (Collection, error) {
		var out Collection
		for _, n := range in {
			if r, ok := resolve(e, n); ok {
				out = append(out, r)
			}
		}
		return out, nil
	}},
	"memberOf":          {minArgs: 1, maxArgs: 1, impl: unsupported},
	"subsumes":          {minArgs: 1, maxArgs: 1, impl: unsupported},
	"subsumedBy":        {minArgs: 1, maxArgs: 1, impl: unsupported},
	"conformsTo":        {minArgs: 1, maxArgs: 1, impl: unsupported},
	"htmlChecks":        {impl: unsupported},
	"elementDefinition": {impl: unsupported},
	"slice":             {minArgs: 2, maxArgs: 2, impl: unsupported},
	"checkModifiers":    {minArgs: 1, maxArgs: 1, impl: unsupported},
}

func unsupported(*env, Collection, Collection, []expr) (Collection, error) {
	return nil, ErrUnsupported
}

// iterate calls f for every item of in with $index set; f returns false to stop.
func iterate(e *env, in Collection, f func(int, Node) (bool, error)) error {
	saved := e.index
	defer func() { e.index = saved }()
	for i, n := range in {
		e.index = i
		more, err := f(i, n)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// filter returns the items of in for which cond is true.
func filter(e *env, in Collection, cond expr) (Collection, error) {
	var out Collection
	err := iterate(e, in, func(_ int, n Node) (bool, error) {
		r, err := cond.eval(e, Collection{n})
		if err != nil {
			return false, err
		}
		b, ok, err := toBool(r)
		if err != nil {
			return false, err
		}
		if ok && b {
			out = append(out, n)
		}
		return true, nil
	})
	return out, err
}

func boolAggregate(stop func(bool) bool, stopResult bool) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		for _, n := range in {
			b, ok := n.Value.(bool)
			if !ok {
				return nil, fmt.Errorf("item of type %s is not a boolean", typeName(n))
			}
			if stop(b) {
				return boolean(stopResult), nil
			}
		}
		return boolean(!stopResult), nil
	}
}

func subsetOf(super bool) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(e *env, this, in Collection, args []expr) (Collection, error) {
		other, err := args[0].eval(e, this)
		if err != nil {
			return nil, err
		}
		a, b := in, other
		if super {
			a, b = other, in
		}
		for _, n := range a {
			if !containsItem(b, n) {
				return boolean(false), nil
			}
		}
		return boolean(true), nil
	}
}

func sub(in Collection, from, to int) Collection {
	to = min(to, len(in))
	if from < 0 || from >= to {
		return nil
	}
	return in[from:to]
}

// integerArg returns the single integer of c; ok is false if c is empty.
func integerArg(c Collection) (int64, bool, error) {
	if len(c) == 0 {
		return 0, false, nil
	}
	_, i, isInt, ok := number(c[0])
	if len(c) > 1 || !ok || !isInt {
		return 0, false, fmt.Errorf("expected a single integer")
	}
	return i, true, nil
}

func intParam(e *env, this Collection, arg expr) (int64, bool, error) {
	c, err := arg.eval(e, this)
	if err != nil {
		return 0, false, err
	}
	return integerArg(c)
}

// stringArg returns the single string-like value of c; ok is false if c is
// empty, which is the empty string.
func stringArg(c Collection) (string, bool, error) {
	if len(c) == 0 {
		return "", false, nil
	}
	s, ok := c[0].Value.(string)
	if len(c) > 1 || !ok {
		return "", false, fmt.Errorf("expected a single string")
	}
	return s, true, nil
}

func stringParam(e *env, this Collection, arg expr) (string, bool, error) {
	c, err := arg.eval(e, this)
	if err != nil {
		return "", false, err
	}
	return stringArg(c)
}

// stringFunc adapts a function on the string input and string arguments.
// An empty input or argument gives an empty result.
func stringFunc(f func(s string, args []string) (Collection, error)) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(e *env, this, in Collection, args []expr) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("input has %d items", len(in))
		}
		s, ok := in[0].Value.(string)
		if !ok {
			return nil, fmt.Errorf("input of type %s is not a string", typeName(in[0]))
		}
		strs := make([]string, len(args))
		for i, a := range args {
			v, ok, err := stringParam(e, this, a)
			if err != nil || !ok {
				return nil, err
			}
			strs[i] = v
		}
		return f(s, strs)
	}
}

func substring(e *env, this, in Collection, args []expr) (Collection, error) {
	if len(in) == 0 {
		return nil, nil
	}
	s, ok := in[0].Value.(string)
	if len(in) > 1 || !ok {
		return nil, fmt.Errorf("input is not a single string")
	}
	r := []rune(s)
	start, ok, err := intParam(e, this, args[0])
	if err != nil || !ok || start < 0 || start >= int64(len(r)) {
		return nil, err
	}
	end := int64(len(r))
	if len(args) == 2 {
		n, ok, err := intParam(e, this, args[1])
		if err != nil {
			return nil, err
		}
		if ok {
			end = min(start+max(n, 0), end)
		}
	}
	return Collection{str(string(r[start:end]))}, nil
}

func mathFunc(f func(float64) float64, keepDecimal bool) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		v, _, _, ok := number(in[0])
		if len(in) > 1 || !ok {
			return nil, fmt.Errorf("input is not a single number")
		}
		r := f(v)
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return nil, nil
		}
		if !keepDecimal {
			return Collection{integer(int64(r))}, nil
		}
		return Collection{decimal(r)}, nil
	}
}

func math2(e *env, this, in Collection, arg expr, f func(a, b float64) float64) (Collection, error) {
	other, err := arg.eval(e, this)
	if err != nil || len(in) == 0 || len(other) == 0 {
		return nil, err
	}
	a, _, _, ok1 := number(in[0])
	b, _, _, ok2 := number(other[0])
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("operands must be numbers")
	}
	r := f(a, b)
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return nil, nil
	}
	return Collection{decimal(r)}, nil
}

// convert adapts a single-item conversion: an item that does not convert
// gives an empty result.
func convert(f func(Node) (Node, bool)) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("input has %d items", len(in))
		}
		if n, ok := f(in[0]); ok {
			return Collection{n}, nil
		}
		return nil, nil
	}
}

func convertsTo(f func(Node) (Node, bool)) func(*env, Collection, Collection, []expr) (Collection, error) {
	return func(_ *env, _, in Collection, _ []expr) (Collection, error) {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("input has %d items", len(in))
		}
		_, ok := f(in[0])
		return boolean(ok), nil
	}
}

func toBoolean(n Node) (Node, bool) {
	switch v := n.Value.(type) {
	case bool:
		return Node{Type: TypeBoolean, Value: v}, true
	case string:
		switch strings.ToLower(v) {
		case "true", "t", "yes", "y", "1", "1.0":
			return Node{Type: TypeBoolean, Value: true}, true
		case "false", "f", "no", "n", "0", "0.0":
			return Node{Type: TypeBoolean, Value: false}, true
		}
	case json.Number:
		switch f, _, _, _ := number(n); f {
		case 1:
			return Node{Type: TypeBoolean, Value: true}, true
		case 0:
			return Node{Type: TypeBoolean, Value: false}, true
		}
	}
	return Node{}, false
}

var integerRE = regexp.MustCompile(`^[+-]?\d+$`)

func toInteger(n Node) (Node, bool) {
	switch v := n.Value.(type) {
	case bool:
		return integer(int64(boolInt(v))), true
	case string:
		if integerRE.MatchString(v) {
			i, err := strconv.ParseInt(v, 10, 64)
			return integer(i), err == nil
		}
	case json.Number:
		if _, i, isInt, _ := number(n); isInt {
			return integer(i), true
		}
	}
	return Node{}, false
}

var decimalRE = regexp.MustCompile(`^[+-]?\d+(\.\d+)?$`)

func toDecimal(n Node) (Node, bool) {
	switch v := n.Value.(type) {
	case bool:
		return Node{Type: TypeDecimal, Value: json.Number(strconv.Itoa(boolInt(v)) + ".0")}, true
	case string:
		if decimalRE.MatchString(v) {
			return Node{Type: TypeDecimal, Value: json.Number(strings.TrimPrefix(v, "+"))}, true
		}
	case json.Number:
		return Node{Type: TypeDecimal, Value: v}, true
	}
	return Node{}, false
}

func toStringValue(n Node) (Node, bool) {
	if kindOf(n) == kQuantity {
		m := n.Object()
		v, _ := m["value"].(json.Number)
		u := quantityUnit(m)
		return str(string(v) + " '" + u + "'"), true
	}
	s, ok := n.String()
	return str(s), ok
}

func toDate(n Node) (Node, bool) {
	s, ok := n.Value.(string)
	if !ok || kindOf(n) == kTime {
		return Node{}, false
	}
	if i := strings.IndexByte(s, 'T'); i >= 0 {
		s = s[:i]
	}
	if !dateRE.MatchString(s) {
		return Node{}, false
	}
	return Node{Type: TypeDate, Value: s}, true
}

func toDateTime(n Node) (Node, bool) {
	s, ok := n.Value.(string)
	if !ok || kindOf(n) == kTime || !dateTimeRE.MatchString(s) {
		return Node{}, false
	}
	return Node{Type: TypeDateTime, Value: s}, true
}

func toTime(n Node) (Node, bool) {
	s, ok := n.Value.(string)
	if !ok || !timeRE.MatchString(strings.TrimPrefix(s, "T")) {
		return Node{}, false
	}
	return Node{Type: TypeTime, Value: strings.TrimPrefix(s, "T")}, true
}

var quantityRE = regexp.MustCompile(`^([+-]?\d+(?:\.\d+)?)\s*(?:'([^']+)'|([a-z]+))?$`)

func toQuantity(n Node) (Node, bool) {
	switch v := n.Value.(type) {
	case json.Number:
		return quantity(v, "1"), true
	case string:
		m := quantityRE.FindStringSubmatch(v)
		if m == nil {
			return Node{}, false
		}
		unit := m[2] + m[3]
		if m[3] != "" && calendarUnits[m[3]] == "" {
			return Node{}, false
		}
		if unit == "" {
			unit = "1"
		}
		return quantity(json.Number(m[1]), unit), true
	case map[string]any:
		if kindOf(n) == kQuantity {
			return n, true
		}
	}
	return Node{}, false
}

// allChildren appends every child element of n, in JSON order as decoded
// (map order is not kept, so children are sorted by element name).
func allChildren(n Node, out Collection) Collection {
	m, ok := n.Value.(map[string]any)
	if !ok {
		return out
	}
	for _, k := range sortedKeys(m) {
		if k == "resourceType" || k[0] == '_' {
			continue
		}
		name := k
		if def, ok := elements[n.model()+"."+k]; !ok || def.choice {
			// A choice element (valueQuantity) is found through its base name.
			if base, ok := choiceBase(n, k); ok {
				out = children(n, base, out)
				continue
			}
		}
		out = children(n, name, out)
	}
	return out
}

// choiceBase returns the element name of a choice element's JSON key.
func choiceBase(n Node, key string) (string, bool) {
	for i := len(key) - 1; i > 0; i-- {
		if isUpper(key[i]) {
			if def, ok := elements[n.model()+"."+key[:i]]; ok && def.choice {
				return key[:i], true
			}
		}
	}
	return "", false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// extensions returns the extensions of the items of in with the given url.
func extensions(in Collection, url string) Collection {
	var out Collection
	for _, n := range in {
		for _, x := range children(n, "extension", nil) {
			if u, _ := x.Object()["url"].(string); u == url {
				out = append(out, x)
			}
		}
	}
	return out
}

// resolve stands in for fetching the target of a Reference (or a
// reference string): a local reference "#id" resolves to the contained
// resource of %resource; any other reference resolves to a stub resource
// {"resourceType": T, "id": id} whose type T is taken from the reference
// (Patient/1, http://server/fhir/Patient/1, Patient/1/_history/2) or from
// Reference.type. References whose type cannot be told give no result.
func resolve(e *env, n Node) (Node, bool) {
	var ref, typ string
	switch v := n.Value.(type) {
	case string:
		ref = v
	case map[string]any:
		ref, _ = v["reference"].(string)
		typ, _ = v["type"].(string)
	}
	if strings.HasPrefix(ref, "#") {
		for _, c := range children(e.root, "contained", nil) {
			if id, _ := c.Object()["id"].(string); id == ref[1:] {
				return c, true
			}
		}
		return Node{}, false
	}
	id := ""
	parts := strings.Split(ref, "/")
	if i := len(parts) - 4; i >= 0 && parts[i+2] == "_history" {
		parts = parts[:i+2]
	}
	if len(parts) >= 2 && typeKinds[parts[len(parts)-2]] == kindResource {
		typ, id = parts[len(parts)-2], parts[len(parts)-1]
	}
	if typ == "" || typeKinds[typ] != kindResource {
		return Node{}, false
	}
	m := map[string]any{"resourceType": typ}
	if id != "" {
		m["id"] = id
	}
	return Node{Type: typ, Value: m}, true
}
