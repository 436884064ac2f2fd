package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokenKind classifies a lexical token.
type tokenKind uint8

const (
	tokEOF tokenKind = iota
	tokIdent
	tokDelimited // `identifier`
	tokString
	tokNumber
	tokDateTime // @2020-01-01, @2020-01-01T10:00, @T10:00
	tokExternal // %name
	tokSpecial  // $this, $index, $total
	tokOp       // punctuation and symbolic operators
)

type token struct {
	kind tokenKind
	text string // identifier name, unescaped string, literal text or operator
	pos  int
}

// lex splits a FHIRPath expression into tokens.
// See https://hl7.org/fhirpath/N1/#lexical-elements.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("at %d: unterminated comment", i)
			}
			i += end + 4
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, src[i:j], i})
			i = j
		case c == '`' || c == '\'':
			s, n, err := unquote(src[i:], c)
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			kind := tokString
			if c == '`' {
				kind = tokDelimited
			}
			toks = append(toks, token{kind, s, i})
			i += n
		case c >= '0' && c <= '9':
			j := i + 1
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{tokNumber, src[i:j], i})
			i = j
		case c == '@':
			j := i + 1
			for j < len(src) && isDateChar(src[j]) {
				j++
			}
			toks = append(toks, token{tokDateTime, src[i+1 : j], i})
			i = j
		case c == '%':
			if i+1 < len(src) && (src[i+1] == '`' || src[i+1] == '\'') {
				s, n, err := unquote(src[i+1:], src[i+1])
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				toks = append(toks, token{tokExternal, s, i})
				i += 1 + n
				continue
			}
			j := i + 1
			for j < len(src) && (isIdentPart(src[j]) || src[j] == '-') {
				j++
			}
			if j == i+1 {
				return nil, fmt.Errorf("at %d: missing name after %%", i)
			}
			toks = append(toks, token{tokExternal, src[i+1 : j], i})
			i = j
		case c == '$':
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tokSpecial, src[i:j], i})
			i = j
		default:
			op := ""
			for _, o := range []string{"<=", ">=", "!=", "!~", "{}"} {
				if strings.HasPrefix(src[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune(".,()[]+-*/&|=~<>{}", rune(c)) {
					r, _ := utf8.DecodeRuneInString(src[i:])
					return nil, fmt.Errorf("at %d: unexpected character %q", i, r)
				}
				op = src[i : i+1]
			}
			toks = append(toks, token{tokOp, op, i})
			i += len(op)
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(src)}), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDateChar(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == ':' || c == 'T' || c == '.' || c == '+' || c == 'Z'
}

// unquote reads a quoted string or delimited identifier starting at s[0]
// and returns its unescaped text and the number of bytes consumed.
func unquote(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\':
			i++
			if i >= len(s) {
				return "", 0, fmt.Errorf("unterminated string")
			}
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'f':
				b.WriteByte('\f')
			case 'u':
				if i+4 >= len(s) {
					return "", 0, fmt.Errorf("bad unicode escape")
				}
				r, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
				if err != nil {
					return "", 0, fmt.Errorf("bad unicode escape: %w", err)
				}
				b.WriteRune(rune(r))
				i += 4
			default: // \' \" \` \\ \/
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}
