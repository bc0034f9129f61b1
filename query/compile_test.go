package query

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestCompile_SQL(t *testing.T) {
	tests := []struct {
		cond   string
		inline bool
		where  string
		args   []any
	}{
		{"*", false, "+module_id = ''", nil},
		{"tags.building = 43", true,
			`(+module_id = '' AND json_type(tags, '$."building"') IN ('integer', 'real') AND json_extract(tags, '$."building"') = ?)`,
			[]any{int64(43)}},
		{"tags.building = 43", false,
			`(+module_id = '' AND json_type(tags, ?) IN ('integer', 'real') AND json_extract(tags, ?) = ?)`,
			[]any{`$."building"`, `$."building"`, int64(43)}},
		{"deviceId IN ['a','b']", false, `(+module_id = '' AND device_id IN (?, ?))`, []any{"a", "b"}},
		{"status = 'enabled' AND capabilities.iotEdge = true", false,
			`(+module_id = '' AND status = ? AND iot_edge = ?)`, []any{"enabled", int64(1)}},
		{"NOT status = 'enabled'", false, `(+module_id = '' AND status <> ?)`, []any{"enabled"}},
		{"status = 1", false, `0`, nil},
		{"capabilities.x = 1 OR properties.nope = 1 OR tags.a.b = 1 AND deviceId.x = 1", false, `0`, nil},
		{"moduleId = 'm'", false, `(+module_id = '' AND module_id <> '' AND module_id = ?)`, []any{"m"}},
		{"properties.desired.$version >= 2.5", false, `(+module_id = '' AND desired_version >= ?)`, []any{2.5}},
		{"IS_OBJECT(properties.desired) AND NOT IS_DEFINED(properties.reported)", false, `0`, nil},
		{"tags.x = null", true, `(+module_id = '' AND json_type(tags, '$."x"') = 'null')`, nil},
		{"tags.x != null", true, `0`, nil},
		{"properties.desired.$metadata.fw.$lastUpdated > '2024'", true,
			`(+module_id = '' AND json_type(desired_meta, '$."fw"."$lastUpdated"') = 'text' AND json_extract(desired_meta, '$."fw"."$lastUpdated"') > ?)`,
			[]any{"2024"}},
	}
	for _, tt := range tests {
		q, err := ParseCondition(tt.cond)
		if err != nil {
			t.Fatal(err)
		}
		s := TwinSchema(Devices)
		s.InlinePaths = tt.inline
		p, err := Compile(q, s)
		if err != nil {
			t.Fatalf("%s: %v", tt.cond, err)
		}
		if p.Where != tt.where || !reflect.DeepEqual(p.WhereArgs, tt.args) {
			t.Errorf("%s:\n got %s %#v\nwant %s %#v", tt.cond, p.Where, p.WhereArgs, tt.where, tt.args)
		}
	}
}

func TestCompile_NotCompilable(t *testing.T) {
	for _, text := range []string{
		"SELECT * FROM devices WHERE etag = 'AAAAAAAAAAE='",
		"SELECT * FROM devices WHERE IS_DEFINED(x509Thumbprint.primaryThumbprint)",
		"SELECT properties.desired FROM devices",
		"SELECT properties.reported AS r, COUNT() AS n FROM devices GROUP BY properties.reported",
		"SELECT deviceEtag FROM devices",
		"SELECT * FROM devices WHERE tags.dotted = 1", // the segment is replaced below
	} {
		q, err := Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := q.Where.(*Compare); ok && c.L.(Path).String() == "tags.dotted" {
			c.L = Path{"tags", "a.b"} // the parser never makes such a segment
		}
		if _, err := Compile(q, TwinSchema(q.From)); !errors.Is(err, ErrNotCompilable) {
			t.Errorf("%s: err = %v, want ErrNotCompilable", text, err)
		}
	}
}

// TestCompile_KeyQuoting runs conditions on keys that need quoting in
// SQLite JSON paths, and on keys that try to break out of the SQL literal,
// in both path modes. The parser cannot produce most of these keys, so the
// queries are built directly.
func TestCompile_KeyQuoting(t *testing.T) {
	keys := []string{`a"b`, `a\b`, `a'b`, `a'); DROP TABLE identities; --`, `x"]`, "tab\tkey",
		"[0]", `$x`, "é", "", " ", `\u0041`}
	db := openDB(t)
	for i, k := range keys {
		r := twinRow{deviceID: string(rune('a' + i)), status: "enabled", statusUpdated: "t", connState: "c",
			lastActivity: "t", auth: "sas", tags: map[string]any{k: "v", "other": map[string]any{k: 1.0}},
			desired: map[string]any{}, reported: map[string]any{}, desiredMeta: map[string]any{}, reportedMeta: map[string]any{}}
		insertTwin(t, db, r)
	}
	for i, k := range keys {
		for _, inline := range []bool{false, true} {
			s := TwinSchema(Devices)
			s.InlinePaths = inline
			q := &Query{Top: -1, Star: true, Where: &Logical{Op: And,
				L: &Compare{Op: Equal, L: Path{"tags", k}, R: Literal{"v"}},
				R: &Compare{Op: Equal, L: Path{"tags", "other", k}, R: Literal{1.0}}}}
			p, err := Compile(q, s)
			if err != nil {
				t.Fatal(err)
			}
			got := selectKeys(t, db, p, s)
			want := []string{string(rune('a'+i)) + "/"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("key %q inline=%v: got %v, want %v (WHERE %s)", k, inline, got, want, p.Where)
			}
		}
	}
}

// TestCompile_LargeQueries runs queries near the length limit: long
// chains must not exceed SQLite's expression depth of 1000, and must agree
// with the evaluator.
func TestCompile_LargeQueries(t *testing.T) {
	db, rows := fuzzFixture(t)
	var docs []map[string]any
	for _, r := range rows {
		if r.moduleID == "" {
			docs = append(docs, r.doc(t, false))
		}
	}
	for _, in := range []string{
		strings.Repeat("tags.a = 1 AND ", 540) + "true",
		strings.Repeat("tags.a = 2 OR ", 580) + "tags.a = 1",
		strings.Repeat("tags.a = tags.b OR ", 420) + "true",
		"tags.a IN [" + strings.Repeat("1,", 4000) + "1]",
		strings.Repeat("NOT (", 50) + "tags.a = 1" + strings.Repeat(")", 50),
		strings.Repeat("STARTSWITH(tags.b, tags.b) AND ", 260) + "true",
		strings.Repeat("(", 99) + strings.Repeat("tags.a=1 OR ", 600) + "b" + strings.Repeat(")", 99),
		strings.Repeat("(tags.a = 1 AND (tags.b = 'x' OR ", 45) + "true" + strings.Repeat("))", 45),
	} {
		q, err := ParseCondition(in)
		if err != nil {
			t.Fatalf("%.60s…: %v", in, err)
		}
		if !checkWhere(t, db, q, TwinSchema(Devices), docs) {
			t.Errorf("%.60s…: not compilable", in)
		}
	}
}

// SQL groups JSON values by their text; values the evaluator finds equal
// (1 and 1.0, which twins never store but older rows or other writers
// might) must still be one group, and 1, true, "1", null and a missing value
// five different ones.
func TestCompile_GroupByMergesEqualNumbers(t *testing.T) {
	db := openDB(t)
	texts := []string{`{"x":1}`, `{"x":1.0}`, `{"x":1e0}`, `{"x":true}`, `{"x":"1"}`, `{"x":null}`, `{}`, `{"x":2}`}
	for i, text := range texts {
		_, err := db.Exec(`INSERT INTO identities VALUES (?,'','enabled','','t','Disconnected','t',0,'sas',0,'',?,'{}','{}','{}','{}',1,1,2,1)`,
			fmt.Sprintf("d%d", i), text)
		if err != nil {
			t.Fatal(err)
		}
	}
	q, err := Parse("SELECT tags.x AS x, COUNT() AS n FROM devices GROUP BY tags.x")
	if err != nil {
		t.Fatal(err)
	}
	s := TwinSchema(Devices)
	s.InlinePaths = true
	p, err := Compile(q, s)
	if err != nil {
		t.Fatal(err)
	}
	got := canonicalRows(t, runPlan(t, db, p, s), true)
	want := []string{`{"n":1,"x":"1"}`, `{"n":1,"x":2}`, `{"n":1,"x":null}`, `{"n":1,"x":true}`, `{"n":1}`, `{"n":3,"x":1}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
