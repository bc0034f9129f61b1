package query

import (
	"strconv"
	"strings"
)

// Collection is the document collection named in FROM.
type Collection int

// The three collections the hub queries (digest §6).
const (
	Devices Collection = iota // FROM devices: device twins
	Modules                   // FROM devices.modules: module twins
	Jobs                      // FROM devices.jobs: per-device job records
)

func (c Collection) String() string {
	switch c {
	case Modules:
		return "devices.modules"
	case Jobs:
		return "devices.jobs"
	}
	return "devices"
}

// Query is a parsed query. Build it with Parse or ParseCondition.
type Query struct {
	// From is the collection the query reads.
	From Collection
	// Top is the TOP n limit, or -1 when the query has none.
	Top int
	// Star is true for SELECT *; Select is then empty.
	Star bool
	// Select lists the projection of a non-star query, in order.
	Select []Projection
	// Where is the filter; nil means every document.
	Where Expr
	// GroupBy lists the GROUP BY paths.
	GroupBy []Path
}

// Aggregate reports whether the query produces one row per group rather than
// one row per document: it has GROUP BY or COUNT().
func (q *Query) Aggregate() bool {
	if len(q.GroupBy) > 0 {
		return true
	}
	for _, p := range q.Select {
		if p.Count {
			return true
		}
	}
	return false
}

// String renders the query in a canonical form that Parse accepts.
func (q *Query) String() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if q.Top >= 0 {
		b.WriteString("TOP " + strconv.Itoa(q.Top) + " ")
	}
	if q.Star {
		b.WriteString("*")
	}
	for i, p := range q.Select {
		if i > 0 {
			b.WriteString(", ")
		}
		if p.Count {
			b.WriteString("COUNT()")
		} else {
			b.WriteString(p.Path.String())
		}
		if p.Alias != "" {
			b.WriteString(" AS " + p.Alias)
		}
	}
	b.WriteString(" FROM " + q.From.String())
	if q.Where != nil {
		b.WriteString(" WHERE " + q.Where.String())
	}
	for i, p := range q.GroupBy {
		if i == 0 {
			b.WriteString(" GROUP BY ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Projection is one element of a SELECT list: an attribute path or COUNT().
type Projection struct {
	Path  Path // nil for COUNT()
	Count bool
	// Alias is the AS name, or "" when none was given.
	Alias string
}

// Name is the key the projection has in result objects: the alias, else the
// path's last segment, else "$1"-style positional names for an unaliased
// COUNT() (DocumentDB's rule; i is the projection's 0-based index).
func (p Projection) Name(i int) string {
	switch {
	case p.Alias != "":
		return p.Alias
	case len(p.Path) > 0:
		return p.Path[len(p.Path)-1]
	}
	return "$" + strconv.Itoa(i+1)
}

// Expr is a condition: one of *Logical, *Not, *Compare, *In, *Call or *Truth.
type Expr interface {
	// String renders the condition in a form Parse accepts.
	String() string
	expr()
}

// Operand is a value in a condition: a Path or a Literal.
type Operand interface {
	String() string
	operand()
}

// Path is an attribute path with the collection prefix stripped and system
// property names in their canonical spelling: tags.a.b is {"tags","a","b"}.
type Path []string

func (p Path) String() string { return strings.Join(p, ".") }

// Equal reports whether two paths have the same segments.
func (p Path) Equal(o Path) bool {
	if len(p) != len(o) {
		return false
	}
	for i := range p {
		if p[i] != o[i] {
			return false
		}
	}
	return true
}

// Literal is a constant: float64, string, bool, or nil for null.
type Literal struct{ Value any }

func (l Literal) String() string {
	switch v := l.Value.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return quote(v)
	}
	return "?"
}

// quote writes s as a single-quoted string literal with the escapes the lexer
// understands.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func (Path) operand()    {}
func (Literal) operand() {}

// LogicalOp is AND or OR.
type LogicalOp int

// Logical operators.
const (
	And LogicalOp = iota
	Or
)

// Logical is L AND R or L OR R.
type Logical struct {
	Op   LogicalOp
	L, R Expr
}

// String prints a chain of one operator flat, "(a AND b AND c)", so that
// printing a long chain does not nest it past the parser's depth limit.
func (e *Logical) String() string {
	op := " AND "
	if e.Op == Or {
		op = " OR "
	}
	var b strings.Builder
	b.WriteString("(")
	for i, x := range operands(e, e.Op, nil) {
		if i > 0 {
			b.WriteString(op)
		}
		b.WriteString(x.String())
	}
	b.WriteString(")")
	return b.String()
}

// Not is NOT X.
type Not struct{ X Expr }

func (e *Not) String() string { return "NOT " + e.X.String() }

// CompareOp is a comparison operator.
type CompareOp int

// Comparison operators; <> parses as NotEqual.
const (
	Equal CompareOp = iota
	NotEqual
	Less
	LessEqual
	Greater
	GreaterEqual
)

var compareOpText = [...]string{"=", "!=", "<", "<=", ">", ">="}

func (o CompareOp) String() string { return compareOpText[o] }

// negate returns the operator that is true exactly when o is false, for two
// values on which o is defined.
func (o CompareOp) negate() CompareOp {
	return [...]CompareOp{NotEqual, Equal, GreaterEqual, Greater, LessEqual, Less}[o]
}

// Compare is L op R.
type Compare struct {
	Op   CompareOp
	L, R Operand
}

func (e *Compare) String() string {
	return "(" + e.L.String() + " " + e.Op.String() + " " + e.R.String() + ")"
}

// In is X IN [List] or, with Negate, X NIN [List].
type In struct {
	X      Operand
	List   []Literal
	Negate bool
}

func (e *In) String() string {
	var b strings.Builder
	b.WriteString("(" + e.X.String())
	if e.Negate {
		b.WriteString(" NIN [")
	} else {
		b.WriteString(" IN [")
	}
	for i, l := range e.List {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.String())
	}
	b.WriteString("])")
	return b.String()
}

// Func is a built-in function usable in a condition.
type Func int

// The functions the hub accepts in twin and job queries (digest §6).
const (
	IsDefined Func = iota
	IsNull
	IsBool
	IsNumber
	IsString
	IsObject
	IsPrimitive
	StartsWith
	EndsWith
)

var funcNames = [...]string{"IS_DEFINED", "IS_NULL", "IS_BOOL", "IS_NUMBER", "IS_STRING",
	"IS_OBJECT", "IS_PRIMITIVE", "STARTSWITH", "ENDSWITH"}

func (f Func) String() string { return funcNames[f] }

// arity is the number of arguments f takes.
func (f Func) arity() int {
	if f == StartsWith || f == EndsWith {
		return 2
	}
	return 1
}

// Call is a function call used as a condition.
type Call struct {
	Fn   Func
	Args []Operand
}

func (e *Call) String() string {
	var b strings.Builder
	b.WriteString(e.Fn.String() + "(")
	for i, a := range e.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.String())
	}
	b.WriteString(")")
	return b.String()
}

// Truth is a bare operand used as a condition; it holds when X is true.
type Truth struct{ X Operand }

func (e *Truth) String() string { return e.X.String() }

func (*Logical) expr() {}
func (*Not) expr()     {}
func (*Compare) expr() {}
func (*In) expr()      {}
func (*Call) expr()    {}
func (*Truth) expr()   {}
