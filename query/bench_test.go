package query

import (
	"database/sql"
	"fmt"
	"sync"
	"testing"
)

// benchRows is the size of the benchmark table.
const benchRows = 100_000

var bench struct {
	once sync.Once
	db   *sql.DB
	docs []map[string]any
	err  error
}

// benchDB builds, once per process, an in-memory identities table of
// benchRows device twins: tags.building takes 1000 values (so
// tags.building = 43 selects 0.1%), properties.reported.fw five.
func benchDB(b *testing.B) (*sql.DB, []map[string]any) {
	bench.once.Do(func() {
		db, err := sql.Open("sqlite", ":memory:")
		if err != nil {
			bench.err = err
			return
		}
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(schemaSQL); err != nil {
			bench.err = err
			return
		}
		tx, err := db.Begin()
		if err != nil {
			bench.err = err
			return
		}
		stmt, err := tx.Prepare(`INSERT INTO identities VALUES (?,'','enabled','','t','Disconnected','t',0,'sas',0,'',?,?,?,'{}','{}',1,1,2,1)`)
		if err != nil {
			bench.err = err
			return
		}
		for i := range benchRows {
			r := twinRow{deviceID: fmt.Sprintf("dev%06d", i), status: "enabled", statusUpdated: "t",
				connState: "Disconnected", lastActivity: "t", auth: "sas",
				tags:        map[string]any{"building": float64(i % 1000), "floor": float64(i % 10), "env": []string{"prod", "dev"}[i%2]},
				desired:     map[string]any{"interval": float64(i % 60)},
				reported:    map[string]any{"fw": fmt.Sprintf("1.%d.0", i%5), "temp": float64(i%400) / 10},
				desiredMeta: map[string]any{}, reportedMeta: map[string]any{}, desiredVersion: 1, reportedVersion: 1,
				version: 2, etag: 1}
			if _, err := stmt.Exec(r.deviceID, jsonText(b, r.tags), jsonText(b, r.desired), jsonText(b, r.reported)); err != nil {
				bench.err = err
				return
			}
			bench.docs = append(bench.docs, r.doc(b, false))
		}
		if bench.err = tx.Commit(); bench.err == nil {
			bench.db = db
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.db, bench.docs
}

func benchCount(b *testing.B, db *sql.DB, stmt string, args []any) int {
	rows, err := db.Query(stmt, args...)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkWhereSelective compiles and runs a condition matching 0.1% of
// 100,000 twins: with the JSON path bound as a parameter, inlined, and
// inlined with an expression index on json_extract(tags, '$."building"').
func BenchmarkWhereSelective(b *testing.B) {
	db, docs := benchDB(b)
	q, err := ParseCondition("tags.building = 43")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, inline bool) {
		s := TwinSchema(Devices)
		s.InlinePaths = inline
		for b.Loop() {
			p, err := Compile(q, s)
			if err != nil {
				b.Fatal(err)
			}
			if n := benchCount(b, db, "SELECT device_id FROM identities WHERE "+p.Where+
				" ORDER BY device_id, module_id LIMIT 100", p.WhereArgs); n != 100 {
				b.Fatalf("%d rows", n)
			}
		}
	}
	b.Run("bound", func(b *testing.B) { run(b, false) })
	b.Run("inline", func(b *testing.B) { run(b, true) })
	b.Run("inline+index", func(b *testing.B) {
		if _, err := db.Exec(`CREATE INDEX bench_building ON identities(json_extract(tags, '$."building"'))`); err != nil {
			b.Fatal(err)
		}
		defer db.Exec(`DROP INDEX bench_building`)
		run(b, true)
	})
	b.Run("evaluator", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for _, d := range docs {
				if q.Match(d) {
					n++
				}
			}
			if n != 100 {
				b.Fatalf("%d matches", n)
			}
		}
	})
}

// BenchmarkGroupBy counts 100,000 twins by a reported property (5 groups).
func BenchmarkGroupBy(b *testing.B) {
	db, docs := benchDB(b)
	q, err := Parse("SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sql", func(b *testing.B) {
		for b.Loop() {
			p, err := Compile(q, TwinSchema(Devices))
			if err != nil {
				b.Fatal(err)
			}
			stmt, args := p.Statement()
			if n := benchCount(b, db, stmt, args); n != 5 {
				b.Fatalf("%d groups", n)
			}
		}
	})
	b.Run("evaluator", func(b *testing.B) {
		for b.Loop() {
			rows, err := q.Evaluate(docs)
			if err != nil || len(rows) != 5 {
				b.Fatalf("%d groups, %v", len(rows), err)
			}
		}
	})
}
