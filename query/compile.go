package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNotCompilable is wrapped by Compile's error when the query cannot be
// expressed in SQL for the schema. The caller should then fetch the
// collection's rows in pages and use Match/Evaluate.
var ErrNotCompilable = errors.New("query: not compilable to SQL")

func notCompilable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotCompilable}, args...)...)
}

// maxArgs stays under SQLite's limit on parameters in one statement
// (SQLITE_MAX_VARIABLE_NUMBER, 32766), leaving room for the caller's.
const maxArgs = 30000

// Plan is a query compiled for SQLite. SQL fragments refer to the schema's
// table unqualified; each fragment has its own arguments, in placeholder
// order.
type Plan struct {
	// Table is the schema's table.
	Table string
	// Where is a boolean SQL expression, true exactly for the rows of the
	// queried collection that match the WHERE condition. It is "1" when
	// every row matches.
	Where     string
	WhereArgs []any
	// Select is the comma-separated select list of a projection or
	// aggregate, in the order Row expects; "" for SELECT *, where the caller
	// selects its own columns and renders full documents.
	Select     string
	SelectArgs []any
	// GroupBy is the GROUP BY list of an aggregate, or "".
	GroupBy     string
	GroupByArgs []any
	// Source, for an aggregate, is the select list of a subquery over Table
	// filtered by Where, whose columns (c0, c1, …) Select and GroupBy
	// refer to: each stored value an aggregate needs is read from the
	// document once per row there, and the grouping works on those small
	// values. "" for other plans, whose fragments refer to Table directly.
	Source     string
	SourceArgs []any
	// Aggregate is true when the plan yields one row per group.
	Aggregate bool
	// Top is the query's TOP, or -1; the caller applies it as a LIMIT.
	Top int
	// Indexable lists the JSON value expressions of Where that a
	// comparison or IN could look up in an expression index (e.g.
	// json_extract(tags, '$."building"')), once each, when the schema
	// inlines paths; the text is exactly what an index must be created on
	// for SQLite to use it.
	Indexable []string

	outputs []output
	groups  []groupCol // an aggregate's GROUP BY values, selected after outputs
}

// groupCol is how a GROUP BY value is selected: JSON text or a plain column.
type groupCol struct {
	json bool
	col  Column
}

// output says how one selected column becomes a member of a result object.
type output struct {
	name string
	kind outputKind
	col  Column // outColumn
}

type outputKind int

const (
	outJSON    outputKind = iota // JSON text from ->, NULL when missing
	outColumn                    // a plain column
	outCount                     // COUNT(*)
	outMissing                   // a path in no document: always omitted
)

// Statement assembles the plan into one statement, without ORDER BY or
// LIMIT: SELECT <Select or *> FROM <Table> WHERE <Where>, or for an
// aggregate SELECT <Select> FROM (SELECT <Source> FROM <Table> WHERE <Where>
// LIMIT -1) [GROUP BY …].
func (p *Plan) Statement() (string, []any) {
	sel := p.Select
	if sel == "" {
		sel = "*"
	}
	var args []any
	args = append(args, p.SelectArgs...)
	from := p.Table + " WHERE " + p.Where
	if p.Source != "" {
		// LIMIT -1 (no limit) keeps SQLite from flattening the subquery
		// into the aggregate, which would substitute each column's JSON
		// extraction back into every place that uses it.
		from = "(SELECT " + p.Source + " FROM " + from + " LIMIT -1)"
		args = append(args, p.SourceArgs...)
	}
	args = append(args, p.WhereArgs...)
	s := "SELECT " + sel + " FROM " + from
	if p.GroupBy != "" {
		s += " GROUP BY " + p.GroupBy
		args = append(args, p.GroupByArgs...)
	}
	return s, args
}

// Columns is the number of columns Select yields.
func (p *Plan) Columns() int { return len(p.outputs) + len(p.groups) }

// Row turns one scanned row of the Select columns (as database/sql scans
// into *any) into a result object, omitting missing values. The rows of an
// aggregate go through Results instead, which merges equal groups.
func (p *Plan) Row(vals []any) (map[string]any, error) {
	if len(vals) != p.Columns() {
		return nil, fmt.Errorf("query: row has %d columns, plan selects %d", len(vals), p.Columns())
	}
	row := map[string]any{}
	for i, o := range p.outputs {
		v := vals[i]
		switch o.kind {
		case outMissing:
		case outCount:
			n, ok := v.(int64)
			if !ok {
				return nil, fmt.Errorf("query: COUNT column holds %T", v)
			}
			row[o.name] = int(n)
		case outJSON:
			if v == nil {
				continue
			}
			var text []byte
			switch t := v.(type) {
			case string:
				text = []byte(t)
			case []byte:
				text = t
			default:
				return nil, fmt.Errorf("query: JSON column %s holds %T", o.name, v)
			}
			var x any
			if err := json.Unmarshal(text, &x); err != nil {
				return nil, fmt.Errorf("query: JSON column %s: %w", o.name, err)
			}
			row[o.name] = x
		case outColumn:
			x, ok, err := columnValue(o.col, v)
			if err != nil {
				return nil, err
			}
			if ok {
				row[o.name] = x
			}
		}
	}
	return row, nil
}

// Results turns all scanned rows of the plan into result objects. For an
// aggregate, SQL groups JSON values by their text, so groups whose values
// are equal as the evaluator sees them (1 and 1.0) are merged here, adding
// their counts; the merged group keeps the first row's other values.
func (p *Plan) Results(rows [][]any) ([]map[string]any, error) {
	out := make([]map[string]any, 0, len(rows))
	var index map[string]int
	if len(p.groups) > 0 {
		index = make(map[string]int, len(rows))
	}
	for _, vals := range rows {
		row, err := p.Row(vals)
		if err != nil {
			return nil, err
		}
		if index == nil {
			out = append(out, row)
			continue
		}
		key, err := p.groupKey(vals[len(p.outputs):])
		if err != nil {
			return nil, err
		}
		i, ok := index[key]
		if !ok {
			index[key] = len(out)
			out = append(out, row)
			continue
		}
		for j, o := range p.outputs {
			if o.kind == outCount {
				n, _ := vals[j].(int64)
				out[i][o.name] = out[i][o.name].(int) + int(n)
			}
		}
	}
	return out, nil
}

// groupKey renders a row's GROUP BY values as the evaluator's groupKey does.
func (p *Plan) groupKey(vals []any) (string, error) {
	var b strings.Builder
	for i, g := range p.groups {
		var v value
		switch {
		case g.json:
			if vals[i] == nil {
				break
			}
			var text []byte
			switch t := vals[i].(type) {
			case string:
				text = []byte(t)
			case []byte:
				text = t
			default:
				return "", fmt.Errorf("query: JSON group value holds %T", vals[i])
			}
			d := json.NewDecoder(bytes.NewReader(text))
			d.UseNumber()
			var x any
			if err := d.Decode(&x); err != nil {
				return "", fmt.Errorf("query: JSON group value: %w", err)
			}
			v = valueOf(x, true)
		case vals[i] == nil:
		default:
			x, ok, err := columnValue(g.col, vals[i])
			if err != nil {
				return "", err
			}
			v = valueOf(x, ok)
		}
		writeGroupValue(&b, v)
	}
	return b.String(), nil
}

// columnValue converts a scanned plain-column value to its JSON value, and
// reports whether the property is present.
func columnValue(c Column, v any) (any, bool, error) {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	switch {
	case v == nil:
		return nil, false, nil
	case c.Absent == AbsentEmpty && v == "":
		return nil, false, nil
	}
	switch c.Kind {
	case Bool:
		n, ok := v.(int64)
		if !ok {
			return nil, false, fmt.Errorf("query: bool column %s holds %T", c.Name, v)
		}
		return n != 0, true, nil
	case Number:
		switch n := v.(type) {
		case int64:
			return float64(n), true, nil
		case float64:
			return n, true, nil
		}
		return nil, false, fmt.Errorf("query: number column %s holds %T", c.Name, v)
	}
	s, ok := v.(string)
	if !ok {
		return nil, false, fmt.Errorf("query: string column %s holds %T", c.Name, v)
	}
	return s, true, nil
}

// Compile translates q into SQL over the schema s. It returns an error
// wrapping ErrNotCompilable when some part of q has no SQL form (for example
// a path into an Unmapped property, or a projection of a synthesized object).
//
// The WHERE translation keeps the hub's three-valued semantics without
// relying on SQL NULL: each condition is compiled in two polarities, one
// true exactly when the condition is true and one true exactly when it is
// false, and NOT swaps them. Type checks use json_type so that JSON true
// (which json_extract turns into 1) never equals the number 1.
func Compile(q *Query, s *Schema) (*Plan, error) {
	c := &compiler{s: s}
	p := &Plan{Table: s.Table, Top: q.Top, Aggregate: q.Aggregate()}
	where := c.cond(q.Where, true)
	if q.Where == nil {
		where = fTrue
	}
	if s.Filter != "" {
		where = and(frag{s: s.Filter}, where)
	}
	if c.err != nil {
		return nil, c.err
	}
	if len(where.args) > maxArgs {
		return nil, notCompilable("the condition needs %d SQL parameters", len(where.args))
	}
	p.Where, p.WhereArgs = where.s, where.args
	p.Indexable = c.indexable
	if q.Star {
		return p, nil
	}
	if p.Aggregate {
		return c.aggregate(q, p)
	}

	if err := c.selectList(q, p, func(f frag) frag { return f }); err != nil {
		return nil, err
	}
	return p, c.err
}

// arrow reads a JSON value as JSON text (NULL when missing).
func arrow(col, path string) string { return col + " -> " + path }

// selectList compiles the projections into p.Select and p.outputs. place
// turns a stored value's expression into what the select list reads: the
// expression itself, or, for aggregates, the subquery column holding it.
func (c *compiler) selectList(q *Query, p *Plan, place func(frag) frag) error {
	var sel []frag
	for i, pr := range q.Select {
		o := output{name: pr.Name(i)}
		var f frag
		if pr.Count {
			o.kind, f = outCount, frag{s: "COUNT(*)"}
		} else {
			t := c.s.resolve(pr.Path)
			switch t.kind {
			case targetColumn:
				o.kind, o.col, f = outColumn, t.col, place(frag{s: t.col.Name})
			case targetJSON:
				o.kind, f = outJSON, place(c.pathFrag(t, arrow))
			case targetMissing:
				o.kind, f = outMissing, frag{s: "NULL"}
			case targetObject:
				return notCompilable("projecting '%s' needs several columns", pr.Path)
			default:
				return notCompilable("%s", t.reason)
			}
		}
		sel = append(sel, f)
		p.outputs = append(p.outputs, o)
	}
	selF := join(sel, ", ")
	p.Select, p.SelectArgs = selF.s, selF.args
	return nil
}

// aggregate compiles the select list and GROUP BY of an aggregate over a
// subquery (Plan.Source) that selects each stored value they use once: a
// JSON path as its JSON text (col -> path, NULL when missing), a plain column
// as it is. Grouping on a JSON value uses its type class and its SQL value,
// since json_extract gives 1 for both true and 1 and NULL for both null and
// missing; both come from the small extracted text, so the document is read
// once per row however many times the query uses the path.
func (c *compiler) aggregate(q *Query, p *Plan) (*Plan, error) {
	s := c.s
	var source []frag
	alias := map[string]string{}
	col := func(f frag) string {
		key := f.s + "\x00" + fmt.Sprint(f.args...)
		if a, ok := alias[key]; ok {
			return a
		}
		a := "c" + strconv.Itoa(len(source))
		alias[key] = a
		source = append(source, frag{s: f.s + " AS " + a, args: f.args})
		return a
	}
	if err := c.selectList(q, p, func(f frag) frag { return frag{s: col(f)} }); err != nil {
		return nil, err
	}

	var groups []frag
	for _, g := range q.GroupBy {
		t := s.resolve(g)
		var f frag
		switch t.kind {
		case targetColumn:
			f = frag{s: col(frag{s: t.col.Name})}
		case targetJSON:
			// Group on the JSON text: it tells 1, true, "1", null and a
			// missing value (NULL) apart. Texts of equal values (1 and
			// 1.0) are merged by Results.
			f = frag{s: col(c.pathFrag(t, arrow))}
		case targetMissing:
			// Every row is in one group, but GROUP BY must stay so that no
			// rows means no groups (a constant that is not an integer, which
			// SQLite would read as a column number).
			f = frag{s: "NULL"}
		case targetObject:
			return nil, notCompilable("grouping by '%s' needs several columns", g)
		default:
			return nil, notCompilable("%s", t.reason)
		}
		groups = append(groups, f)
		p.groups = append(p.groups, groupCol{json: t.kind == targetJSON, col: t.col})
	}
	if len(groups) > 0 {
		gf := join(groups, ", ")
		p.GroupBy, p.GroupByArgs = gf.s, gf.args
		// The group values follow the outputs, for Results to merge on.
		p.Select += ", " + gf.s
		p.SelectArgs = append(p.SelectArgs, gf.args...)
	}
	if len(source) == 0 {
		source = append(source, frag{s: "1"})
	}
	src := join(source, ", ")
	p.Source, p.SourceArgs = src.s, src.args
	return p, c.err
}

// frag is a piece of SQL and the arguments of its placeholders, in order.
type frag struct {
	s    string
	args []any
	// op and parts record a conjunction or disjunction so that nesting the
	// same operator flattens.
	op    string
	parts []frag
}

var (
	fTrue  = frag{s: "1"}
	fFalse = frag{s: "0"}
)

func join(fs []frag, sep string) frag {
	var out frag
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(f.s)
		out.args = append(out.args, f.args...)
	}
	out.s = b.String()
	return out
}

// operands lists the terms of a chain of op (a AND b AND c parses as
// ((a AND b) AND c)), left to right.
func operands(e Expr, op LogicalOp, out []Expr) []Expr {
	if l, ok := e.(*Logical); ok && l.Op == op {
		return operands(l.R, op, operands(l.L, op, out))
	}
	return append(out, e)
}

// and conjoins fragments, folding the constants 1 and 0 and flattening
// nested conjunctions.
func and(fs ...frag) frag { return connect(" AND ", fTrue, fFalse, fs) }

// or disjoins fragments, folding the constants 1 and 0 and flattening
// nested disjunctions.
func or(fs ...frag) frag { return connect(" OR ", fFalse, fTrue, fs) }

// connect joins fs with op, where unit is op's identity and zero its
// absorbing element.
func connect(op string, unit, zero frag, fs []frag) frag {
	var keep []frag
	for _, f := range fs {
		switch {
		case f.s == zero.s:
			return zero
		case f.s == unit.s:
			continue
		case f.op == op:
			keep = append(keep, f.parts...)
		default:
			keep = append(keep, f)
		}
	}
	switch len(keep) {
	case 0:
		return unit
	case 1:
		return keep[0]
	}
	f := group(keep, op)
	f.op, f.parts = op, keep
	return f
}

// chunk bounds how many terms group puts side by side. SQLite parses
// "a AND b AND c …" into a left-deep tree and rejects trees deeper than
// 1000, so long lists are nested in parenthesized chunks instead, which
// keeps the depth logarithmic.
const chunk = 32

func group(fs []frag, op string) frag {
	if len(fs) > chunk {
		var outer []frag
		for i := 0; i < len(fs); i += chunk {
			outer = append(outer, group(fs[i:min(i+chunk, len(fs))], op))
		}
		return group(outer, op)
	}
	f := join(fs, op)
	f.s = "(" + f.s + ")"
	return f
}

// not negates a condition that is never undefined; NULL (a missing JSON
// column) counts as false.
func not(f frag) frag {
	switch f.s {
	case "1":
		return fFalse
	case "0":
		return fTrue
	}
	return frag{s: "NOT coalesce(" + f.s + ", 0)", args: f.args}
}

type compiler struct {
	s         *Schema
	err       error
	indexable []string
}

// index records x's value expression as one an index could serve, when x
// is a JSON path and paths are inlined (a bound path matches no index).
func (c *compiler) index(x sqlOperand) {
	j, ok := x.(jsonOperand)
	if !ok || !c.s.InlinePaths {
		return
	}
	e := j.value().s
	for _, have := range c.indexable {
		if have == e {
			return
		}
	}
	c.indexable = append(c.indexable, e)
}

func (c *compiler) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// cond compiles e so that the result is true exactly when e is true
// (positive) or exactly when e is false (!positive). The result may be SQL
// NULL where it is not true; it is never negated with SQL NOT unless the
// condition cannot be undefined.
func (c *compiler) cond(e Expr, positive bool) frag {
	switch e := e.(type) {
	case *Logical:
		// Compile a chain of one operator in one go: joining pairwise would
		// copy the growing SQL at every link.
		var terms []frag
		for _, x := range operands(e, e.Op, nil) {
			terms = append(terms, c.cond(x, positive))
		}
		// true AND is all true; false AND is any false (De Morgan).
		if (e.Op == And) == positive {
			return and(terms...)
		}
		return or(terms...)
	case *Not:
		return c.cond(e.X, !positive)
	case *Compare:
		op := e.Op
		if !positive {
			op = op.negate()
		}
		return c.compare(op, c.operandOf(e.L), c.operandOf(e.R))
	case *In:
		return c.in(c.operandOf(e.X), e.List, positive != e.Negate)
	case *Call:
		return c.call(e, positive)
	case *Truth:
		return c.compare(Equal, c.operandOf(e.X), literalOperand(Literal{Value: positive}))
	}
	return fFalse
}

// sqlOperand is an operand as SQL: predicates for its class and an
// expression for its value (valid only where the class predicate holds).
type sqlOperand interface {
	is(class) frag
	value() frag
	classExpr() frag
}

func (c *compiler) operandOf(o Operand) sqlOperand {
	switch x := o.(type) {
	case Path:
		return c.operand(x)
	case Literal:
		return literalOperand(x)
	}
	return missingOperand{}
}

func (c *compiler) operand(p Path) sqlOperand {
	t := c.s.resolve(p)
	switch t.kind {
	case targetColumn:
		return columnOperand{t.col}
	case targetJSON:
		return jsonOperand{c: c, t: t}
	case targetObject:
		return objectOperand{}
	case targetUnmapped:
		c.fail(notCompilable("%s", t.reason))
	}
	return missingOperand{}
}

// pathFrag renders fn(column, path) with the JSON path inlined as an escaped
// SQL literal or bound as a parameter, per the schema.
func (c *compiler) pathFrag(t target, fn func(col, path string) string) frag {
	jp := jsonPath(t.inner)
	if c.s.InlinePaths {
		return frag{s: fn(t.json, "'"+strings.ReplaceAll(jp, "'", "''")+"'")}
	}
	return frag{s: fn(t.json, "?"), args: []any{jp}}
}

var primitives = []class{classNumber, classString, classBool, classNull}

// compare is true exactly when a op b is true: both operands of one
// primitive class on which op is defined, and the values compare.
func (c *compiler) compare(op CompareOp, a, b sqlOperand) frag {
	if op != NotEqual {
		c.index(a)
		c.index(b)
	}
	var alts []frag
	for _, k := range primitives {
		ordered := op != Equal && op != NotEqual
		if ordered && (k == classBool || k == classNull) {
			continue
		}
		ia, ib := a.is(k), b.is(k)
		if ia.s == "0" || ib.s == "0" {
			continue
		}
		var v frag
		switch {
		case k == classNull:
			v = fFalse
			if op == Equal {
				v = fTrue
			}
		default:
			va, vb := a.value(), b.value()
			v = frag{s: va.s + " " + sqlOp[op] + " " + vb.s, args: append(append([]any{}, va.args...), vb.args...)}
			if la, ok := a.(literalOperand); ok {
				if lb, ok := b.(literalOperand); ok { // fold constants
					v = fFalse
					if compare(op, valueOf(la.Value, true), valueOf(lb.Value, true)) == isTrue {
						v = fTrue
					}
				}
			}
		}
		alts = append(alts, and(ia, ib, v))
	}
	return or(alts...)
}

var sqlOp = [...]string{"=", "<>", "<", "<=", ">", ">="}

// in is true exactly when x IN list is true (want) or false (!want).
func (c *compiler) in(x sqlOperand, list []Literal, want bool) frag {
	if want {
		c.index(x)
	}
	var alts []frag
	for _, k := range primitives {
		ix := x.is(k)
		if ix.s == "0" {
			continue
		}
		var vals []frag
		hasNull := false
		for _, l := range list {
			lo := literalOperand(l)
			if lo.is(k).s == "0" {
				continue
			}
			if k == classNull {
				hasNull = true
				continue
			}
			vals = append(vals, lo.value())
		}
		var v frag
		switch {
		case k == classNull:
			v = frag{s: strconv.Itoa(b2i(hasNull == want))}
		case len(vals) == 0:
			v = frag{s: strconv.Itoa(b2i(!want))}
		default:
			xv, lst := x.value(), join(vals, ", ")
			kw := " IN ("
			if !want {
				kw = " NOT IN ("
			}
			v = frag{s: xv.s + kw + lst.s + ")", args: append(append([]any{}, xv.args...), lst.args...)}
			if lx, ok := x.(literalOperand); ok { // fold constants
				found := false
				for _, l := range list {
					found = found || compare(Equal, valueOf(lx.Value, true), valueOf(l.Value, true)) == isTrue
				}
				v = frag{s: strconv.Itoa(b2i(found == want))}
			}
		}
		alts = append(alts, and(ix, v))
	}
	return or(alts...)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *compiler) call(e *Call, positive bool) frag {
	a := c.operandOf(e.Args[0])
	var f frag
	switch e.Fn {
	case IsDefined:
		f = or(a.is(classNull), a.is(classBool), a.is(classNumber), a.is(classString),
			a.is(classObject), a.is(classArray))
		if j, ok := a.(jsonOperand); ok {
			f = frag{s: j.typeExpr().s + " IS NOT NULL", args: j.typeExpr().args}
		}
	case IsNull:
		f = a.is(classNull)
	case IsBool:
		f = a.is(classBool)
	case IsNumber:
		f = a.is(classNumber)
	case IsString:
		f = a.is(classString)
	case IsObject:
		f = a.is(classObject)
	case IsPrimitive:
		f = or(a.is(classNull), a.is(classBool), a.is(classNumber), a.is(classString))
	case StartsWith, EndsWith:
		// Defined only for two strings; then compare the prefix or suffix
		// of a's characters with b (substr and length count characters).
		b := c.operandOf(e.Args[1])
		if lb, ok := b.(literalOperand); ok {
			if s, ok := lb.Value.(string); ok && utf8.RuneCountInString(s) == 0 {
				return and(a.is(classString), frag{s: strconv.Itoa(b2i(positive))})
			}
		}
		av, bv, bl := a.value(), b.value(), b.value()
		op := "="
		if !positive {
			op = "<>"
		}
		var cmp frag
		if e.Fn == StartsWith {
			cmp = frag{s: "substr(" + av.s + ", 1, length(" + bl.s + ")) " + op + " " + bv.s}
		} else {
			// length(b) = 0 makes substr(a, -0) the whole of a; handle it.
			cmp = frag{s: "(CASE WHEN length(" + bl.s + ") = 0 THEN " + strconv.Itoa(b2i(positive)) +
				" ELSE substr(" + av.s + ", -length(" + bl.s + ")) " + op + " " + bv.s + " END)"}
			cmp.args = append(cmp.args, bl.args...)
		}
		cmp.args = append(cmp.args, av.args...)
		cmp.args = append(cmp.args, bl.args...)
		cmp.args = append(cmp.args, bv.args...)
		return and(a.is(classString), b.is(classString), cmp)
	}
	if positive {
		return f
	}
	return not(f)
}

// literalOperand is a constant bound as a parameter.
type literalOperand Literal

func (l literalOperand) class() class { return valueOf(l.Value, true).class }

func (l literalOperand) is(k class) frag {
	if l.class() == k {
		return fTrue
	}
	return fFalse
}

func (l literalOperand) value() frag {
	switch v := l.Value.(type) {
	case bool:
		return frag{s: "?", args: []any{int64(b2i(v))}}
	case float64:
		// Bind integral values as integers so SQLite compares them with
		// integer JSON values exactly.
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return frag{s: "?", args: []any{int64(v)}}
		}
		return frag{s: "?", args: []any{v}}
	case nil:
		return frag{s: "NULL"}
	}
	return frag{s: "?", args: []any{l.Value}}
}

func (l literalOperand) classExpr() frag { return frag{s: "?", args: []any{classNames[l.class()]}} }

var classNames = map[class]string{classNull: "null", classBool: "bool", classNumber: "number",
	classString: "string", classObject: "object", classArray: "array"}

// missingOperand is a path that no document has.
type missingOperand struct{}

func (missingOperand) is(class) frag   { return fFalse }
func (missingOperand) value() frag     { return frag{s: "NULL"} }
func (missingOperand) classExpr() frag { return frag{s: "NULL"} }
func (objectOperand) value() frag      { return frag{s: "NULL"} }
func (objectOperand) classExpr() frag  { return frag{s: "'object'"} }
func (o objectOperand) is(k class) frag {
	if k == classObject {
		return fTrue
	}
	return fFalse
}

// objectOperand is a synthesized object that every document has.
type objectOperand struct{}

// columnOperand is a plain column.
type columnOperand struct{ col Column }

func (o columnOperand) present() frag {
	switch o.col.Absent {
	case AbsentNull:
		return frag{s: o.col.Name + " IS NOT NULL"}
	case AbsentEmpty:
		return frag{s: o.col.Name + " <> ''"}
	}
	return fTrue
}

func (o columnOperand) is(k class) frag {
	if map[Kind]class{String: classString, Number: classNumber, Bool: classBool}[o.col.Kind] != k {
		return fFalse
	}
	return o.present()
}

func (o columnOperand) value() frag { return frag{s: o.col.Name} }

func (o columnOperand) classExpr() frag { return frag{s: o.col.Name} }

// jsonOperand is a path inside a JSON column.
type jsonOperand struct {
	c *compiler
	t target
}

func (o jsonOperand) typeExpr() frag {
	return o.c.pathFrag(o.t, func(col, path string) string { return "json_type(" + col + ", " + path + ")" })
}

func (o jsonOperand) value() frag {
	return o.c.pathFrag(o.t, func(col, path string) string { return "json_extract(" + col + ", " + path + ")" })
}

var jsonTypes = map[class]string{classNull: "= 'null'", classBool: "IN ('true', 'false')",
	classNumber: "IN ('integer', 'real')", classString: "= 'text'", classObject: "= 'object'",
	classArray: "= 'array'"}

func (o jsonOperand) is(k class) frag {
	t := o.typeExpr()
	return frag{s: t.s + " " + jsonTypes[k], args: t.args}
}

// classExpr maps json_type to a class name, merging integer with real and
// true with false (their values tell those apart).
func (o jsonOperand) classExpr() frag {
	t := o.typeExpr()
	return frag{s: "CASE " + t.s + " WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number'" +
		" WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' ELSE " + t.s + " END",
		args: append(append([]any{}, t.args...), t.args...)}
}
