package query

import (
	"strings"
	"unicode/utf8"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// MaxLength is the longest query text the hub accepts, in characters
// (digest §6).
const MaxLength = 8192

// maxDepth bounds the nesting of conditions so evaluation and compilation
// recursion stay shallow whatever the input.
const maxDepth = 100

// invalid builds the error every rejected query gets: 400004 ArgumentInvalid,
// worded like the hub's "The query is invalid…" (digest §3.6).
func invalid(format string, args ...any) *iothub.Error {
	return iothub.Errorf(iothub.ArgumentInvalid, "The query is invalid: "+format, args...)
}

// position turns a byte offset into the 1-based character position that
// error messages report.
func position(src string, off int) int { return utf8.RuneCountInString(src[:off]) + 1 }

func syntaxError(src string, off int, near string) *iothub.Error {
	if near == "" {
		return invalid("syntax error at position %d: unexpected end of query", position(src, off))
	}
	if utf8.RuneCountInString(near) > 32 {
		near = string([]rune(near)[:32]) + "…"
	}
	return invalid("syntax error at position %d near '%s'", position(src, off), near)
}

// Parse parses a full query: SELECT … FROM … [WHERE …] [GROUP BY …].
// Errors are *iothub.Error with code ArgumentInvalid and a message naming
// the position (1-based, in characters) of the offending token.
func Parse(text string) (*Query, error) {
	p, err := newParser(text)
	if err != nil {
		return nil, err
	}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	return q, nil
}

// ParseCondition parses a jobs queryCondition (digest §3.7): a WHERE clause
// without the WHERE keyword, over device twins. A bare "*" selects every
// device. The result behaves as SELECT * FROM devices WHERE <condition>.
func ParseCondition(text string) (*Query, error) {
	p, err := newParser(text)
	if err != nil {
		return nil, err
	}
	q := &Query{From: Devices, Top: -1, Star: true}
	p.from = Devices
	if p.tok.kind == tokPunct && p.tok.text == "*" {
		if err := p.advance(); err != nil {
			return nil, err
		}
	} else if q.Where, err = p.condition(0); err != nil {
		return nil, err
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	return q, nil
}

type parser struct {
	lex  lexer
	tok  token
	from Collection
}

func newParser(text string) (*parser, error) {
	if !utf8.ValidString(text) {
		return nil, invalid("the query text is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(text); n > MaxLength {
		return nil, invalid("the query is %d characters long; the limit is %d", n, MaxLength)
	}
	p := &parser{lex: lexer{src: text}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// errHere reports a syntax error at the current token.
func (p *parser) errHere() error {
	near := p.tok.text
	if p.tok.kind == tokEOF {
		near = ""
	}
	return syntaxError(p.lex.src, p.tok.pos, near)
}

// isKeyword reports whether the current token is the keyword kw (given in
// upper case); keywords are case-insensitive.
func (p *parser) isKeyword(kw string) bool {
	return p.tok.kind == tokIdent && strings.EqualFold(p.tok.text, kw)
}

func (p *parser) keyword(kw string) error {
	if !p.isKeyword(kw) {
		return p.errHere()
	}
	return p.advance()
}

func (p *parser) isPunct(s string) bool { return p.tok.kind == tokPunct && p.tok.text == s }

func (p *parser) punct(s string) error {
	if !p.isPunct(s) {
		return p.errHere()
	}
	return p.advance()
}

func (p *parser) expectEOF() error {
	if p.tok.kind != tokEOF {
		return p.errHere()
	}
	return nil
}

// reserved words cannot start an attribute path or be an alias.
var reserved = map[string]bool{"SELECT": true, "TOP": true, "FROM": true, "WHERE": true,
	"GROUP": true, "BY": true, "AS": true, "AND": true, "OR": true, "NOT": true, "IN": true,
	"NIN": true, "TRUE": true, "FALSE": true, "NULL": true}

func (p *parser) query() (*Query, error) {
	q := &Query{Top: -1}
	if err := p.keyword("SELECT"); err != nil {
		return nil, err
	}
	if p.isKeyword("TOP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n := p.tok.num
		if p.tok.kind != tokNumber || n < 0 || n != float64(int(n)) || n > 1<<31-1 {
			return nil, p.errHere()
		}
		q.Top = int(n)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	// The projection refers to paths whose prefix depends on FROM, which
	// comes later: collect raw paths now and canonicalize after FROM.
	type rawItem struct {
		path  []string
		count bool
		alias string
		pos   int
	}
	var items []rawItem
	if p.isPunct("*") {
		q.Star = true
		if err := p.advance(); err != nil {
			return nil, err
		}
	} else {
		for {
			it := rawItem{pos: p.tok.pos}
			if p.isKeyword("COUNT") {
				if err := p.advance(); err != nil {
					return nil, err
				}
				if err := p.punct("("); err != nil {
					return nil, err
				}
				if err := p.punct(")"); err != nil {
					return nil, err
				}
				it.count = true
			} else {
				segs, err := p.rawPath()
				if err != nil {
					return nil, err
				}
				if p.isPunct("(") { // AVG(x), SUM(x), …
					return nil, invalid("function '%s' at position %d is not supported in SELECT",
						strings.Join(segs, "."), position(p.lex.src, it.pos))
				}
				it.path = segs
			}
			if p.isKeyword("AS") {
				if err := p.advance(); err != nil {
					return nil, err
				}
				if p.tok.kind != tokIdent || reserved[strings.ToUpper(p.tok.text)] {
					return nil, p.errHere()
				}
				it.alias = p.tok.text
				if err := p.advance(); err != nil {
					return nil, err
				}
			}
			items = append(items, it)
			if !p.isPunct(",") {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	if err := p.keyword("FROM"); err != nil {
		return nil, err
	}
	if err := p.collection(q); err != nil {
		return nil, err
	}
	p.from = q.From
	for _, it := range items {
		pr := Projection{Count: it.count, Alias: it.alias}
		if !it.count {
			pr.Path = canonical(q.From, it.path)
		}
		q.Select = append(q.Select, pr)
	}
	if p.isKeyword("WHERE") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		w, err := p.condition(0)
		if err != nil {
			return nil, err
		}
		q.Where = w
	}
	groupPos := p.tok.pos
	if p.isKeyword("GROUP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if err := p.keyword("BY"); err != nil {
			return nil, err
		}
		for {
			path, err := p.path()
			if err != nil {
				return nil, err
			}
			q.GroupBy = append(q.GroupBy, path)
			if !p.isPunct(",") {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	return q, check(q, p.lex.src, groupPos)
}

// check applies the rules that are not syntax (digest §6, §3.8).
func check(q *Query, src string, groupPos int) error {
	if q.From == Jobs && (!q.Star || len(q.GroupBy) > 0) {
		return invalid("only SELECT * is supported on devices.jobs")
	}
	if q.Star && len(q.GroupBy) > 0 {
		return invalid("SELECT * cannot be used with GROUP BY at position %d", position(src, groupPos))
	}
	names := map[string]bool{}
	for i, pr := range q.Select {
		n := pr.Name(i)
		if names[n] {
			return invalid("the name '%s' appears twice in SELECT", n)
		}
		names[n] = true
		if pr.Count || !q.Aggregate() {
			continue
		}
		grouped := false
		for _, g := range q.GroupBy {
			grouped = grouped || g.Equal(pr.Path)
		}
		if !grouped {
			return invalid("'%s' in SELECT is neither aggregated nor in GROUP BY", pr.Path)
		}
	}
	return nil
}

func (p *parser) collection(q *Query) error {
	pos := p.tok.pos
	segs, err := p.rawPath()
	if err != nil {
		return err
	}
	switch strings.ToLower(strings.Join(segs, ".")) {
	case "devices":
		q.From = Devices
	case "devices.modules":
		q.From = Modules
	case "devices.jobs":
		q.From = Jobs
	default:
		return invalid("unknown collection '%s' at position %d", strings.Join(segs, "."), position(p.lex.src, pos))
	}
	return nil
}

// rawPath reads ident {'.' ident}. Only the first segment may not be a
// reserved word; later ones can be anything an identifier can be.
func (p *parser) rawPath() ([]string, error) {
	if p.tok.kind != tokIdent || reserved[strings.ToUpper(p.tok.text)] {
		return nil, p.errHere()
	}
	segs := []string{p.tok.text}
	if err := p.advance(); err != nil {
		return nil, err
	}
	for p.isPunct(".") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokIdent {
			return nil, p.errHere()
		}
		segs = append(segs, p.tok.text)
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	return segs, nil
}

func (p *parser) path() (Path, error) {
	segs, err := p.rawPath()
	if err != nil {
		return nil, err
	}
	return canonical(p.from, segs), nil
}

// condition parses OR-separated terms. depth counts nesting.
func (p *parser) condition(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, invalid("conditions are nested too deeply at position %d", position(p.lex.src, p.tok.pos))
	}
	l, err := p.conjunction(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("OR") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.conjunction(depth)
		if err != nil {
			return nil, err
		}
		l = &Logical{Op: Or, L: l, R: r}
	}
	return l, nil
}

func (p *parser) conjunction(depth int) (Expr, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.isKeyword("AND") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = &Logical{Op: And, L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (Expr, error) {
	if depth > maxDepth {
		return nil, invalid("conditions are nested too deeply at position %d", position(p.lex.src, p.tok.pos))
	}
	switch {
	case p.isKeyword("NOT"):
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Not{X: x}, nil
	case p.isPunct("("):
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.condition(depth + 1)
		if err != nil {
			return nil, err
		}
		return x, p.punct(")")
	}
	return p.predicate()
}

var compareOps = map[string]CompareOp{"=": Equal, "!=": NotEqual, "<>": NotEqual,
	"<": Less, "<=": LessEqual, ">": Greater, ">=": GreaterEqual}

// predicate parses a function call, a comparison, an IN/NIN test, or a bare
// operand.
func (p *parser) predicate() (Expr, error) {
	if p.tok.kind == tokIdent {
		// A function is an identifier followed by '('; look ahead on a copy
		// of the lexer so a path is not consumed.
		la := p.lex
		if t, err := la.next(); err == nil && t.kind == tokPunct && t.text == "(" {
			return p.call()
		}
	}
	x, err := p.operand()
	if err != nil {
		return nil, err
	}
	if op, ok := compareOps[p.tok.text]; ok && p.tok.kind == tokPunct {
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.operand()
		if err != nil {
			return nil, err
		}
		return &Compare{Op: op, L: x, R: y}, nil
	}
	if p.isKeyword("IN") || p.isKeyword("NIN") {
		in := &In{X: x, Negate: p.isKeyword("NIN")}
		if err := p.advance(); err != nil {
			return nil, err
		}
		close := "]"
		if p.isPunct("(") {
			close = ")"
		} else if !p.isPunct("[") {
			return nil, p.errHere()
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		for !p.isPunct(close) {
			if len(in.List) > 0 {
				if err := p.punct(","); err != nil {
					return nil, err
				}
			}
			l, ok, err := p.literal()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, p.errHere()
			}
			in.List = append(in.List, l)
		}
		return in, p.advance()
	}
	return &Truth{X: x}, nil
}

func (p *parser) call() (Expr, error) {
	name, pos := p.tok.text, p.tok.pos
	fn := -1
	for i, n := range funcNames {
		if strings.EqualFold(n, name) {
			fn = i
		}
	}
	if fn < 0 {
		return nil, invalid("unknown function '%s' at position %d", name, position(p.lex.src, pos))
	}
	c := &Call{Fn: Func(fn)}
	if err := p.advance(); err != nil { // name
		return nil, err
	}
	if err := p.advance(); err != nil { // (
		return nil, err
	}
	for !p.isPunct(")") {
		if len(c.Args) > 0 {
			if err := p.punct(","); err != nil {
				return nil, err
			}
		}
		a, err := p.operand()
		if err != nil {
			return nil, err
		}
		c.Args = append(c.Args, a)
	}
	if len(c.Args) != c.Fn.arity() {
		return nil, invalid("%s at position %d takes %d argument(s), not %d",
			c.Fn, position(p.lex.src, pos), c.Fn.arity(), len(c.Args))
	}
	return c, p.advance()
}

func (p *parser) operand() (Operand, error) {
	l, ok, err := p.literal()
	if err != nil || ok {
		return l, err
	}
	if p.tok.kind != tokIdent {
		return nil, p.errHere()
	}
	return p.path()
}

// literal parses a constant if the current token is one.
func (p *parser) literal() (Literal, bool, error) {
	var l Literal
	switch {
	case p.tok.kind == tokNumber:
		l.Value = p.tok.num
	case p.tok.kind == tokString:
		l.Value = p.tok.str
	case p.isKeyword("TRUE"):
		l.Value = true
	case p.isKeyword("FALSE"):
		l.Value = false
	case p.isKeyword("NULL"):
		l.Value = nil
	default:
		return l, false, nil
	}
	return l, true, p.advance()
}
