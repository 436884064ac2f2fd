package fhirpath

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Expression is a compiled FHIRPath expression. It is immutable after Parse
// and safe for concurrent use by multiple goroutines.
type Expression struct {
	src  string
	root expr
}

// Parse compiles a FHIRPath expression. It fails on a syntax error, on an
// unknown function (the error names it) and on a function called with the
// wrong number of arguments.
func Parse(src string) (*Expression, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, fmt.Errorf("fhirpath: parse %q: %w", src, err)
	}
	p := &parser{toks: toks}
	e, err := p.expression(0)
	if err == nil && p.peek().kind != tokEOF {
		err = p.errorf("unexpected %q", p.peek().text)
	}
	if err != nil {
		return nil, fmt.Errorf("fhirpath: parse %q: %w", src, err)
	}
	return &Expression{src: src, root: e}, nil
}

// MustParse is like Parse but panics on error. It is meant for expressions
// fixed in the program text.
func MustParse(src string) *Expression {
	x, err := Parse(src)
	if err != nil {
		panic(err)
	}
	return x
}

// String returns the source text of the expression.
func (x *Expression) String() string { return x.src }

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at %d: %s", p.peek().pos, fmt.Sprintf(format, args...))
}

func (p *parser) expectOp(op string) error {
	if t := p.peek(); t.kind != tokOp || t.text != op {
		if t.kind == tokEOF {
			return p.errorf("expected %q, found end of expression", op)
		}
		return p.errorf("expected %q, found %q", op, t.text)
	}
	p.next()
	return nil
}

// Binary operator precedence, lowest first.
// See https://hl7.org/fhirpath/N1/#operator-precedence.
const (
	precImplies = 1 + iota
	precOr
	precAnd
	precMembership
	precEquality
	precInequality
	precUnion
	precType
	precAdditive
	precMultiplicative
)

// binaryPrec returns the precedence of t as a binary operator, or 0.
func binaryPrec(t token) int {
	switch t.kind {
	case tokOp:
		switch t.text {
		case "*", "/":
			return precMultiplicative
		case "+", "-", "&":
			return precAdditive
		case "|":
			return precUnion
		case "<", ">", "<=", ">=":
			return precInequality
		case "=", "~", "!=", "!~":
			return precEquality
		}
	case tokIdent:
		switch t.text {
		case "div", "mod":
			return precMultiplicative
		case "is", "as":
			return precType
		case "in", "contains":
			return precMembership
		case "and":
			return precAnd
		case "or", "xor":
			return precOr
		case "implies":
			return precImplies
		}
	}
	return 0
}

// expression parses operators binding tighter than minPrec.
func (p *parser) expression(minPrec int) (expr, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec := binaryPrec(t)
		if prec == 0 || prec <= minPrec {
			return left, nil
		}
		p.next()
		if prec == precType {
			typ, err := p.typeSpecifier()
			if err != nil {
				return nil, err
			}
			left = &typeExpr{op: t.text, operand: left, typ: typ}
			continue
		}
		right, err := p.expression(prec)
		if err != nil {
			return nil, err
		}
		left = newBinary(t.text, left, right)
	}
}

func (p *parser) typeSpecifier() (string, error) {
	t := p.next()
	if t.kind != tokIdent && t.kind != tokDelimited {
		return "", p.errorf("expected type name")
	}
	name := t.text
	if n := p.peek(); n.kind == tokOp && n.text == "." && p.toks[p.i+1].kind == tokIdent && (name == "FHIR" || name == "System") {
		p.next()
		name += "." + p.next().text
	}
	return name, nil
}

func (p *parser) unary() (expr, error) {
	if t := p.peek(); t.kind == tokOp && (t.text == "-" || t.text == "+") {
		p.next()
		operand, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return operand, nil
		}
		return &negateExpr{operand: operand}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (expr, error) {
	e, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case t.kind == tokOp && t.text == ".":
			p.next()
			e, err = p.invocation(e)
		case t.kind == tokOp && t.text == "[":
			p.next()
			var idx expr
			if idx, err = p.expression(0); err == nil {
				err = p.expectOp("]")
			}
			e = &indexExpr{operand: e, index: idx}
		default:
			return e, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// invocation parses a member name or a function call applied to operand
// (nil for the focus).
func (p *parser) invocation(operand expr) (expr, error) {
	t := p.next()
	switch t.kind {
	case tokIdent, tokDelimited:
	case tokSpecial:
		if operand == nil {
			return p.special(t)
		}
		return nil, p.errorf("unexpected %s", t.text)
	default:
		return nil, fmt.Errorf("at %d: expected a name", t.pos)
	}
	if n := p.peek(); t.kind == tokIdent && n.kind == tokOp && n.text == "(" {
		p.next()
		return p.call(operand, t)
	}
	return &memberExpr{operand: operand, name: t.text}, nil
}

func (p *parser) special(t token) (expr, error) {
	switch t.text {
	case "$this":
		return thisExpr{}, nil
	case "$index":
		return indexVarExpr{}, nil
	case "$total":
		return totalExpr{}, nil
	}
	return nil, fmt.Errorf("at %d: unknown %s", t.pos, t.text)
}

func (p *parser) call(operand expr, name token) (expr, error) {
	fn, ok := functions[name.text]
	if !ok {
		return nil, fmt.Errorf("at %d: unknown function %s()", name.pos, name.text)
	}
	var args []expr
	if t := p.peek(); !(t.kind == tokOp && t.text == ")") {
		for {
			var arg expr
			var err error
			if fn.typeArg {
				var typ string
				typ, err = p.typeSpecifier()
				arg = &typeNameExpr{name: typ}
			} else {
				arg, err = p.expression(0)
			}
			if err != nil {
				return nil, err
			}
			args = append(args, arg)
			if t := p.peek(); t.kind == tokOp && t.text == "," {
				p.next()
				continue
			}
			break
		}
	}
	if err := p.expectOp(")"); err != nil {
		return nil, err
	}
	if len(args) < fn.minArgs || len(args) > fn.maxArgs {
		return nil, fmt.Errorf("at %d: %s() takes %s, got %d", name.pos, name.text, arity(fn), len(args))
	}
	return &callExpr{operand: operand, name: name.text, fn: fn, args: args}, nil
}

func arity(fn *function) string {
	if fn.minArgs == fn.maxArgs {
		return fmt.Sprintf("%d arguments", fn.minArgs)
	}
	return fmt.Sprintf("%d to %d arguments", fn.minArgs, fn.maxArgs)
}

func (p *parser) term() (expr, error) {
	t := p.peek()
	switch t.kind {
	case tokEOF:
		return nil, p.errorf("unexpected end of expression")
	case tokIdent:
		switch t.text {
		case "true", "false":
			p.next()
			return literalExpr{Node{Type: TypeBoolean, Value: t.text == "true"}}, nil
		}
		return p.invocation(nil)
	case tokDelimited, tokSpecial:
		return p.invocation(nil)
	case tokString:
		p.next()
		return literalExpr{Node{Type: TypeString, Value: t.text}}, nil
	case tokNumber:
		p.next()
		return p.number(t)
	case tokDateTime:
		p.next()
		n, err := dateTimeLiteral(t.text)
		if err != nil {
			return nil, fmt.Errorf("at %d: %w", t.pos, err)
		}
		return literalExpr{n}, nil
	case tokExternal:
		p.next()
		return &externalExpr{name: t.text}, nil
	case tokOp:
		switch t.text {
		case "(":
			p.next()
			e, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "{}":
			p.next()
			return literalExpr{}, nil
		}
	}
	return nil, p.errorf("unexpected %q", t.text)
}

// number parses a number literal and an optional quantity unit after it.
func (p *parser) number(t token) (expr, error) {
	typ := TypeInteger
	if strings.Contains(t.text, ".") {
		typ = TypeDecimal
	}
	n := Node{Type: typ, Value: json.Number(t.text)}
	u := p.peek()
	switch {
	case u.kind == tokString:
		p.next()
		return literalExpr{quantity(n.Value.(json.Number), u.text)}, nil
	case u.kind == tokIdent && calendarUnits[u.text] != "":
		p.next()
		return literalExpr{quantity(n.Value.(json.Number), u.text)}, nil
	}
	return literalExpr{n}, nil
}

// calendarUnits maps FHIRPath calendar duration keywords to UCUM codes.
var calendarUnits = map[string]string{
	"year": "a", "years": "a", "month": "mo", "months": "mo", "week": "wk", "weeks": "wk",
	"day": "d", "days": "d", "hour": "h", "hours": "h", "minute": "min", "minutes": "min",
	"second": "s", "seconds": "s", "millisecond": "ms", "milliseconds": "ms",
}

// quantity returns a System.Quantity shaped like a FHIR Quantity.
func quantity(v json.Number, unit string) Node {
	code := unit
	if c, ok := calendarUnits[unit]; ok {
		code = c
	}
	return Node{Type: TypeQuantity, Value: map[string]any{
		"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code,
	}}
}
