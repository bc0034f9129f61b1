package query

import (
	"encoding/json"
	"math"
	"strings"
)

// tri is a three-valued truth value (package doc, "Semantics").
type tri int8

const (
	undefined tri = iota
	isFalse
	isTrue
)

func triOf(b bool) tri {
	if b {
		return isTrue
	}
	return isFalse
}

// class is the type of a document value as the language sees it.
type class int8

const (
	classUndefined class = iota
	classNull
	classBool
	classNumber
	classString
	classObject
	classArray
)

// value is a document value resolved for evaluation; numbers are float64.
type value struct {
	class class
	v     any
}

// valueOf classifies a Go value as decoded by encoding/json (float64 or
// json.Number for numbers); ints are accepted for convenience.
func valueOf(v any, ok bool) value {
	if !ok {
		return value{}
	}
	switch x := v.(type) {
	case nil:
		return value{classNull, nil}
	case bool:
		return value{classBool, x}
	case string:
		return value{classString, x}
	case float64:
		return value{classNumber, x}
	case json.Number:
		f, err := x.Float64()
		if err != nil && !math.IsInf(f, 0) {
			return value{} // not a number at all: treat as absent
		}
		return value{classNumber, f}
	case int:
		return value{classNumber, float64(x)}
	case int64:
		return value{classNumber, float64(x)}
	case float32:
		return value{classNumber, float64(x)}
	case map[string]any:
		return value{classObject, x}
	case []any:
		return value{classArray, x}
	}
	return value{}
}

// lookup follows path through nested objects.
func lookup(doc map[string]any, path Path) (any, bool) {
	var cur any = doc
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func operandValue(doc map[string]any, o Operand) value {
	switch x := o.(type) {
	case Path:
		return valueOf(lookup(doc, x))
	case Literal:
		return valueOf(x.Value, true)
	}
	return value{}
}

// Match reports whether doc satisfies the query's WHERE condition: whether
// the condition evaluates to true. doc is a twin or device-job document as
// the hub renders it in JSON, decoded into maps.
func (q *Query) Match(doc map[string]any) bool {
	return q.Where == nil || eval(doc, q.Where) == isTrue
}

func eval(doc map[string]any, e Expr) tri {
	switch e := e.(type) {
	case *Logical:
		l := eval(doc, e.L)
		if e.Op == And && l == isFalse || e.Op == Or && l == isTrue {
			return l
		}
		r := eval(doc, e.R)
		switch {
		case e.Op == And && r == isFalse, e.Op == Or && r == isTrue:
			return r
		case l == undefined || r == undefined:
			return undefined
		}
		return l // both true (AND) or both false (OR)
	case *Not:
		switch eval(doc, e.X) {
		case isTrue:
			return isFalse
		case isFalse:
			return isTrue
		}
		return undefined
	case *Compare:
		return compare(e.Op, operandValue(doc, e.L), operandValue(doc, e.R))
	case *In:
		x := operandValue(doc, e.X)
		if x.class < classNull || x.class > classString {
			return undefined
		}
		r := isFalse
		for _, l := range e.List {
			if compare(Equal, x, valueOf(l.Value, true)) == isTrue {
				r = isTrue
				break
			}
		}
		if e.Negate {
			r = isTrue + isFalse - r
		}
		return r
	case *Call:
		return call(e.Fn, operandValue(doc, e.Args[0]), func() value { return operandValue(doc, e.Args[1]) })
	case *Truth:
		return compare(Equal, operandValue(doc, e.X), value{classBool, true})
	}
	return undefined
}

// compare applies op to two values; it is defined only between values of
// the same primitive class, and ordering only for numbers and strings.
func compare(op CompareOp, a, b value) tri {
	if a.class != b.class {
		return undefined
	}
	switch a.class {
	case classNull:
		if op == Equal || op == NotEqual {
			return triOf(op == Equal)
		}
	case classBool:
		if op == Equal || op == NotEqual {
			return triOf((a.v == b.v) == (op == Equal))
		}
	case classNumber:
		x, y := a.v.(float64), b.v.(float64)
		return triOf(cmpResult(op, cmpFloat(x, y)))
	case classString:
		return triOf(cmpResult(op, strings.Compare(a.v.(string), b.v.(string))))
	}
	return undefined
}

func cmpFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func cmpResult(op CompareOp, c int) bool {
	switch op {
	case Equal:
		return c == 0
	case NotEqual:
		return c != 0
	case Less:
		return c < 0
	case LessEqual:
		return c <= 0
	case Greater:
		return c > 0
	}
	return c >= 0
}

// call evaluates a function; the second argument is computed only for the
// two-argument functions.
func call(fn Func, a value, second func() value) tri {
	switch fn {
	case IsDefined:
		return triOf(a.class != classUndefined)
	case IsNull:
		return triOf(a.class == classNull)
	case IsBool:
		return triOf(a.class == classBool)
	case IsNumber:
		return triOf(a.class == classNumber)
	case IsString:
		return triOf(a.class == classString)
	case IsObject:
		return triOf(a.class == classObject)
	case IsPrimitive:
		return triOf(a.class >= classNull && a.class <= classString)
	}
	b := second()
	if a.class != classString || b.class != classString {
		return undefined
	}
	if fn == StartsWith {
		return triOf(strings.HasPrefix(a.v.(string), b.v.(string)))
	}
	return triOf(strings.HasSuffix(a.v.(string), b.v.(string)))
}

// Evaluate runs the whole query over docs, in order, and returns the hub's
// result items: the matching documents themselves for SELECT *, one object
// per document for a projection (keyed by alias or last path segment, with
// missing values omitted), or one object per group for GROUP BY/COUNT().
// TOP applies last. The documents are returned, not copied.
func (q *Query) Evaluate(docs []map[string]any) ([]map[string]any, error) {
	var out []map[string]any
	limit := func() bool { return q.Top >= 0 && len(out) >= q.Top }
	if !q.Aggregate() {
		for _, d := range docs {
			if limit() {
				break
			}
			if !q.Match(d) {
				continue
			}
			if q.Star {
				out = append(out, d)
				continue
			}
			row := map[string]any{}
			for i, p := range q.Select {
				if v, ok := lookup(d, p.Path); ok {
					row[p.Name(i)] = v
				}
			}
			out = append(out, row)
		}
		return out, nil
	}

	// Group in order of first appearance. Without GROUP BY there is exactly
	// one group, even over no documents ([{"n":0}]).
	type group struct {
		first map[string]any
		count int
	}
	var groups []*group
	index := map[string]*group{}
	if len(q.GroupBy) == 0 {
		groups = append(groups, &group{})
		index[""] = groups[0]
	}
	for _, d := range docs {
		if !q.Match(d) {
			continue
		}
		key := groupKey(d, q.GroupBy)
		g := index[key]
		if g == nil {
			g = &group{first: d}
			index[key] = g
			groups = append(groups, g)
		}
		g.count++
	}
	for _, g := range groups {
		if limit() {
			break
		}
		row := map[string]any{}
		for i, p := range q.Select {
			if p.Count {
				row[p.Name(i)] = g.count
			} else if v, ok := lookup(g.first, p.Path); ok {
				row[p.Name(i)] = v
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// groupKey identifies the group of a document: one value per GROUP BY path,
// distinguishing classes so that 1, true and "1" are different groups and
// undefined differs from null.
func groupKey(doc map[string]any, paths []Path) string {
	var b strings.Builder
	for _, p := range paths {
		writeGroupValue(&b, valueOf(lookup(doc, p)))
	}
	return b.String()
}

// writeGroupValue appends one value of a group key.
func writeGroupValue(b *strings.Builder, v value) {
	b.WriteByte(byte('0' + v.class))
	if v.class != classUndefined {
		js, err := json.Marshal(v.v) // maps marshal with sorted keys
		if err != nil {
			js = []byte("?")
		}
		b.Write(js)
	}
	b.WriteByte(0)
}
