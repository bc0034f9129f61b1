package query

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
)

// gen builds random twins, job records and queries over them. Value and
// key pools are small so that random conditions often hit.
type gen struct {
	r *rand.Rand
	// docs, when set, supply literals that some document actually has.
	docs []map[string]any
}

var (
	genKeys    = []string{"a", "b", "c", "x", "A", "é", "a-b"} // "a-b" cannot be queried: only noise
	genStrings = []string{"", "a", "ab", "abc", "b", "A", "é", "1", "true", "null", "a'b", `a"b`, "ba", "\u00e9t\u00e9", "Z"}
	genInts    = []float64{-2, -1, 0, 1, 2, 3, 43}
	genFloats  = []float64{0.5, -1.5, 2.25, 1e-3, 1e15}
)

func (g gen) pick(n int) int { return g.r.IntN(n) }

func (g gen) value(depth int) any {
	switch g.pick(12) {
	case 0:
		return nil
	case 1, 2:
		return g.pick(2) == 0
	case 3, 4:
		return genInts[g.pick(len(genInts))]
	case 5:
		return genFloats[g.pick(len(genFloats))]
	case 6, 7, 8:
		return genStrings[g.pick(len(genStrings))]
	case 9, 10:
		if depth < 3 {
			return g.object(depth + 1)
		}
		return "deep"
	}
	return []any{1.0, "a", g.pick(2) == 0}
}

func (g gen) object(depth int) map[string]any {
	m := map[string]any{}
	for _, k := range genKeys {
		if g.pick(2) == 0 {
			m[k] = g.value(depth)
		}
	}
	return m
}

func (g gen) of(xs ...string) string { return xs[g.pick(len(xs))] }

func (g gen) twin(i int) twinRow {
	r := twinRow{
		deviceID: fmt.Sprintf("dev%02d", i/2), status: g.of("enabled", "disabled"),
		statusReason: g.of("", "", "maintenance"), statusUpdated: g.of("0001-01-01T00:00:00Z", "2024-05-28T11:04:38.4422737Z"),
		connState: g.of("Connected", "Disconnected"), lastActivity: g.of("0001-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
		auth: g.of("sas", "selfSigned", "none"), modelID: g.of("", "dtmi:com:example;1"),
		c2d: g.pick(3), iotEdge: g.pick(2) == 0,
		desired: g.object(1), reported: g.object(1),
		desiredVersion: 1 + g.pick(4), reportedVersion: 1 + g.pick(4), etag: 1 + g.pick(3),
	}
	if i%2 == 1 {
		r.moduleID = g.of("m1", "m2")
	}
	r.version = r.desiredVersion + r.reportedVersion
	if g.pick(4) > 0 {
		r.tags = g.object(1)
	}
	r.desiredMeta = meta(r.desired, r.desiredVersion, true)
	r.reportedMeta = meta(r.reported, r.reportedVersion, false)
	return r
}

// meta builds a $metadata tree for props (digest §4.2).
func meta(props map[string]any, version int, desired bool) map[string]any {
	m := map[string]any{"$lastUpdated": fmt.Sprintf("2024-05-28T11:04:%02dZ", version)}
	if desired {
		m["$lastUpdatedVersion"] = version
	}
	for k, v := range props {
		if o, ok := v.(map[string]any); ok {
			m[k] = meta(o, version, desired)
		} else {
			m[k] = map[string]any{"$lastUpdated": m["$lastUpdated"]}
		}
	}
	return m
}

func (g gen) job(i int) jobRow {
	ts := func() *string {
		if g.pick(3) == 0 {
			return nil
		}
		s := g.of("2016-09-29T18:18:52.7418462", "2024-01-01T00:00:00Z")
		return &s
	}
	r := jobRow{jobID: fmt.Sprintf("job%d", i%3), deviceID: fmt.Sprintf("dev%02d", i), moduleID: g.of("", "", "m1"),
		jobType: g.of("scheduleUpdateTwin", "scheduleDeviceMethod"),
		status:  g.of("pending", "scheduled", "running", "completed", "failed", "canceled"),
		created: g.of("2016-09-29T18:18:56.7787107Z", "2016-08-01T00:00:00Z"), updated: "2016-09-29T18:18:56.8894408Z",
		start: ts(), end: ts()}
	if g.pick(2) == 0 {
		r.outcome = map[string]any{"deviceMethodResponse": g.value(3)}
	}
	if g.pick(3) == 0 {
		r.errObj = map[string]any{"code": g.of("x", "y"), "description": "d"}
	}
	return r
}

// twinPaths are the paths random conditions use: present, nested, missing,
// synthesized objects, system properties in odd casing.
var twinPaths = []string{
	"tags", "tags.a", "tags.b", "tags.x", "tags.a.b", "tags.a.c", "tags.b.a.x", "tags.é", "tags.zz", "tags.A",
	"properties.desired.a", "properties.desired.b", "properties.desired.a.x", "properties.reported.a",
	"properties.reported.c", "properties.reported.x.a", "properties.desired.$version",
	"properties.reported.$version", "properties.desired.$metadata.a.$lastUpdated",
	"properties.desired.$metadata.$lastUpdatedVersion", "properties.reported.$metadata.b",
	"properties.desired", "properties", "properties.nope", "Properties.Reported.b",
	"deviceId", "DeviceId", "moduleId", "status", "statusReason", "connectionState", "lastActivityTime",
	"statusUpdateTime", "capabilities.iotEdge", "capabilities", "modelId", "version",
	"cloudToDeviceMessageCount", "authenticationType", "foo", "devices.tags.a", "deviceId.x",
}

var jobPaths = []string{"deviceId", "devices.jobs.deviceId", "moduleId", "jobId", "jobType", "status",
	"startTimeUtc", "endTimeUtc", "createdDateTimeUtc", "createdTimeUtc", "lastUpdatedDateTimeUtc",
	"outcome", "outcome.deviceMethodResponse", "outcome.deviceMethodResponse.a", "error.code", "tags.a"}

var literalPool = func() []Literal {
	var ls []Literal
	for _, s := range genStrings {
		ls = append(ls, Literal{s})
	}
	for _, f := range append(append([]float64{}, genInts...), genFloats...) {
		ls = append(ls, Literal{f})
	}
	for _, s := range []string{"enabled", "Connected", "sas", "dev03", "m1", "dtmi:com:example;1", "job1",
		"completed", "2016-09-01", "2024-01-01T00:00:00Z", "maintenance", "d", "de", "v0", "2024"} {
		ls = append(ls, Literal{s})
	}
	return append(ls, Literal{true}, Literal{false}, Literal{nil})
}()

func (g gen) path(paths []string, from Collection) Path {
	return canonical(from, splitDots(paths[g.pick(len(paths))]))
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func (g gen) literal() Literal { return literalPool[g.pick(len(literalPool))] }

func (g gen) operand(paths []string, from Collection) Operand {
	if g.pick(6) == 0 {
		return g.literal()
	}
	return g.path(paths, from)
}

func (g gen) cond(paths []string, from Collection, depth int) Expr {
	if depth > 0 && g.pick(3) > 0 {
		switch g.pick(6) {
		case 0:
			return &Logical{Op: And, L: g.cond(paths, from, depth-1), R: g.cond(paths, from, depth-1)}
		case 1, 2, 3:
			return &Logical{Op: Or, L: g.cond(paths, from, depth-1), R: g.cond(paths, from, depth-1)}
		}
		return &Not{X: g.cond(paths, from, depth-1)}
	}
	switch n := g.pick(20); {
	case n < 9:
		c := &Compare{Op: CompareOp(g.pick(6)), L: g.path(paths, from), R: g.literal()}
		if len(g.docs) > 0 && g.pick(2) == 0 {
			v := valueOf(lookup(g.docs[g.pick(len(g.docs))], c.L.(Path)))
			if v.class >= classNull && v.class <= classString {
				c.R = Literal{v.v}
			}
		}
		if n == 0 {
			c.L, c.R = c.R, c.L
		} else if n == 1 {
			c.R = g.path(paths, from)
		}
		return c
	case n < 12:
		in := &In{X: g.operand(paths, from), Negate: g.pick(2) == 0}
		for range g.pick(4) {
			in.List = append(in.List, g.literal())
		}
		return in
	case n < 18:
		c := &Call{Fn: Func(g.pick(9))}
		c.Args = []Operand{g.operand(paths, from)}
		if c.Fn.arity() == 2 {
			c.Args = append(c.Args, g.operand(paths, from))
			if g.pick(4) > 0 {
				s := genStrings[g.pick(len(genStrings))]
				c.Args[1] = Literal{s[:g.pick(len(s)+1)]}
			}
		}
		return c
	}
	return &Truth{X: g.operand(paths, from)}
}

// TestCompile_Property checks that the SQL compiled for random queries
// selects exactly the documents the reference evaluator matches, and that
// compiled projections and GROUP BY give the same rows.
func TestCompile_Property(t *testing.T) {
	var checked, projections, groups int
	selective = [3]int{}
	datasets := uint64(10)
	if raceEnabled {
		datasets = 3
	}
	for seed := range datasets {
		g := gen{r: rand.New(rand.NewPCG(seed, 0x10714b))}
		db := openDB(t)
		var rows []twinRow
		var docs [2][]map[string]any // decoded with float64, with json.Number
		for i := range 60 {
			r := g.twin(i)
			rows = append(rows, r)
			insertTwin(t, db, r)
			docs[0] = append(docs[0], r.doc(t, false))
			docs[1] = append(docs[1], r.doc(t, true))
		}
		for n := range 100 {
			from := []Collection{Devices, Modules}[g.pick(2)]
			var coll []map[string]any
			for i, r := range rows {
				if (r.moduleID == "") == (from == Devices) {
					coll = append(coll, docs[n%2][i])
				}
			}
			g.docs = coll
			q := &Query{From: from, Top: -1, Star: true}
			if g.pick(10) > 0 {
				q.Where = g.cond(twinPaths, from, g.pick(4))
			}
			s := TwinSchema(from)
			s.InlinePaths = n%3 == 0
			q = reparse(t, q)
			if !checkWhere(t, db, q, s, coll) {
				continue
			}
			checked++

			// A projection over the same filter.
			pq := *q
			pq.Star = false
			pq.Select = []Projection{{Path: Path{"deviceId"}}, {Path: Path{"moduleId"}}}
			for i := range 1 + g.pick(3) {
				p := g.path(twinPaths, from)
				pq.Select = append(pq.Select, Projection{Path: p, Alias: fmt.Sprintf("v%d", i)})
			}
			if g.pick(4) == 0 {
				pq.Top = g.pick(5)
			}
			if checkRows(t, db, reparse(t, &pq), s, coll, false) {
				projections++
			}

			// GROUP BY one or two paths, or a plain COUNT().
			gq := *q
			gq.Star = false
			gq.Select = nil
			for i := range g.pick(3) {
				p := g.path(twinPaths, from)
				gq.GroupBy = append(gq.GroupBy, p)
				gq.Select = append(gq.Select, Projection{Path: p, Alias: fmt.Sprintf("k%d", i)})
			}
			gq.Select = append(gq.Select, Projection{Count: true, Alias: "n"})
			if checkRows(t, db, reparse(t, &gq), s, coll, true) {
				groups++
			}
		}
	}
	// Jobs.
	for seed := range uint64(4) {
		g := gen{r: rand.New(rand.NewPCG(seed, 0x70b5))}
		db := openDB(t)
		var docs []map[string]any
		for i := range 40 {
			r := g.job(i)
			insertJob(t, db, r)
			docs = append(docs, r.doc(t))
		}
		sort.Slice(docs, func(i, j int) bool { return jobKey(docs[i]) < jobKey(docs[j]) })
		g.docs = docs
		for range 60 {
			q := reparse(t, &Query{From: Jobs, Top: -1, Star: true, Where: g.cond(jobPaths, Jobs, g.pick(4))})
			if checkWhere(t, db, q, JobSchema(), docs) {
				checked++
			}
		}
	}
	t.Logf("checked %d conditions (%d matched none, %d some, %d all), %d projections, %d group-bys",
		checked, selective[0], selective[1], selective[2], projections, groups)
	if least := int(datasets) * 30; checked < least || projections < least || groups < least {
		t.Errorf("too few compilable cases: %d conditions, %d projections, %d group-bys", checked, projections, groups)
	}
}

// reparse prints q and parses it back, so the test also covers the printer
// and the parser on everything the generator builds.
func reparse(t *testing.T, q *Query) *Query {
	t.Helper()
	q2, err := Parse(q.String())
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if q2.String() != q.String() {
		t.Fatalf("reparse changed\n%s\ninto\n%s", q, q2)
	}
	return q2
}

// selective counts conditions that matched no, some and all documents, to
// show the generator exercises real filtering.
var selective [3]int

func twinKey(d map[string]any) string {
	m, _ := d["moduleId"].(string)
	return d["deviceId"].(string) + "/" + m
}

func jobKey(d map[string]any) string {
	m, _ := d["moduleId"].(string)
	return d["jobId"].(string) + "/" + d["deviceId"].(string) + "/" + m
}

// compileOrSkip compiles q; a not-compilable query is acceptable only when
// it touches a path the schema cannot express.
func compileOrSkip(t *testing.T, q *Query, s *Schema) *Plan {
	t.Helper()
	p, err := Compile(q, s)
	if errors.Is(err, ErrNotCompilable) {
		return nil
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return p
}

func checkWhere(t *testing.T, db *sql.DB, q *Query, s *Schema, docs []map[string]any) bool {
	t.Helper()
	p := compileOrSkip(t, q, s)
	if p == nil {
		return false
	}
	var want []string
	for _, d := range docs {
		if q.Match(d) {
			if s.Table == "device_jobs" {
				want = append(want, jobKey(d))
			} else {
				want = append(want, twinKey(d))
			}
		}
	}
	got := selectKeys(t, db, p, s)
	switch len(want) {
	case 0:
		selective[0]++
	case len(docs):
		selective[2]++
	default:
		selective[1]++
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s\nWHERE %s %v\nSQL:       %v\nevaluator: %v", q, p.Where, p.WhereArgs, got, want)
	}
	return true
}

func checkRows(t *testing.T, db *sql.DB, q *Query, s *Schema, docs []map[string]any, unordered bool) bool {
	t.Helper()
	p := compileOrSkip(t, q, s)
	if p == nil {
		return false
	}
	want, err := q.Evaluate(docs)
	if err != nil {
		t.Fatal(err)
	}
	got := runPlan(t, db, p, s)
	g, w := canonicalRows(t, got, unordered), canonicalRows(t, want, unordered)
	if q.Top >= 0 && unordered {
		// TOP over groups picks groups in an unspecified order; compare
		// only the number of rows.
		g, w = []string{fmt.Sprint(len(g))}, []string{fmt.Sprint(len(w))}
	}
	if !reflect.DeepEqual(g, w) {
		stmt, args := p.Statement()
		i := 0
		for i < min(len(g), len(w)) && g[i] == w[i] {
			i++
		}
		t.Fatalf("%s\n%s %v\n%d rows from SQL, %d from the evaluator; first difference at %d:\nSQL:       %v\nevaluator: %v",
			q, stmt, args, len(g), len(w), i, g[i:min(i+1, len(g))], w[i:min(i+1, len(w))])
	}
	return true
}

func canonicalRows(t *testing.T, rows []map[string]any, unordered bool) []string {
	out := []string{}
	for _, r := range rows {
		b, err := json.Marshal(normalize(t, r))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	if unordered {
		sort.Strings(out)
	}
	return out
}
