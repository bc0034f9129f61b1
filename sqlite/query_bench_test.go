package sqlite

import (
	"path/filepath"
	"testing"
)

// BenchmarkQueryStore runs queries through QueryStore.Run over 100,000
// device twins in an on-disk database: the first page (100 items) of a
// selective SELECT * with and without its automatic index, the first such
// query (which builds the index), and a GROUP BY over every twin.
func BenchmarkQueryStore(b *testing.B) {
	db := openTestDB(b, filepath.Join(b.TempDir(), "hub.db"))
	seedTwins(b, db, 100_000)
	const where = "SELECT * FROM devices WHERE tags.building = 43"
	dropIndexes := func() {
		for _, n := range autoIndexNames(b, db) {
			if _, err := db.Writer().Exec(`DROP INDEX "` + n + `"`); err != nil {
				b.Fatal(err)
			}
		}
		db.auto.loaded = false
	}
	b.Run("where/no-index", func(b *testing.B) {
		dropIndexes()
		db.MaxAutoIndexes = 0
		defer func() { db.MaxAutoIndexes = DefaultMaxAutoIndexes }()
		for b.Loop() {
			if p := runQuery(b, db, where, "", 100); len(p.Items) != 100 {
				b.Fatalf("%d items", len(p.Items))
			}
		}
	})
	b.Run("where/first-query", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dropIndexes()
			b.StartTimer()
			if p := runQuery(b, db, where, "", 100); len(p.Items) != 100 {
				b.Fatalf("%d items", len(p.Items))
			}
		}
	})
	b.Run("where/indexed", func(b *testing.B) {
		runQuery(b, db, where, "", 100)
		for b.Loop() {
			if p := runQuery(b, db, where, "", 100); len(p.Items) != 100 {
				b.Fatalf("%d items", len(p.Items))
			}
		}
	})
	b.Run("groupby", func(b *testing.B) {
		for b.Loop() {
			p := runQuery(b, db, "SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw", "", 100)
			if len(p.Items) != 5 {
				b.Fatalf("%d groups", len(p.Items))
			}
		}
	})
}
