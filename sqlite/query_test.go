package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// seedTwins writes n device twins the way the stores do: tags.building
// takes 1000 values (so tags.building = 43 selects 0.1%), tags.floor 10,
// properties.reported.fw five.
func seedTwins(tb testing.TB, db *DB, n int) {
	tb.Helper()
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for start := 0; start < n; start += 5000 {
		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			ins, err := tx.PrepareContext(ctx, insertIdentitySQL)
			if err != nil {
				return err
			}
			defer ins.Close()
			upd, err := tx.PrepareContext(ctx, updateTwinSQL)
			if err != nil {
				return err
			}
			defer upd.Close()
			for i := start; i < min(start+5000, n); i++ {
				id := &registry.Identity{DeviceID: fmt.Sprintf("dev%06d", i), GenerationID: "g", ETag: 1, Status: "enabled",
					ConnectionState: "Disconnected", StatusUpdatedTime: now, ConnectionStateUpdatedTime: now, LastActivityTime: now,
					Auth: registry.Authentication{Type: "sas", PrimaryKey: "k1", SecondaryKey: "k2"}}
				if _, err := ins.ExecContext(ctx, insertArgs(id, formatTime(now))...); err != nil {
					return err
				}
				meta := map[string]any{"$lastUpdated": formatTime(now)}
				t := &twins.Twin{Key: twins.Key{DeviceID: id.DeviceID},
					Tags: map[string]any{"building": int64(i % 1000), "floor": int64(i % 10), "env": []string{"prod", "dev"}[i%2],
						"location": map[string]any{"region": "westeurope", "site": fmt.Sprintf("site-%d", i%50)}},
					Desired: twins.Properties{Data: map[string]any{"interval": int64(i % 60)}, Metadata: meta, Version: 2},
					Reported: twins.Properties{Data: map[string]any{"fw": fmt.Sprintf("1.%d.0", i%5), "temp": float64(i%400) / 10,
						"battery": map[string]any{"level": int64(i % 100), "charging": i%3 == 0}}, Metadata: meta, Version: 2},
					Version: 3, ETag: 2}
				args, err := twinArgs(t)
				if err != nil {
					return err
				}
				if _, err := upd.ExecContext(ctx, args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

func openTestDB(tb testing.TB, path string) *DB {
	tb.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func runQuery(tb testing.TB, db *DB, text, next string, limit int) *query.Page {
	tb.Helper()
	q, err := query.Parse(text)
	if err != nil {
		tb.Fatal(err)
	}
	page, err := (&QueryStore{DB: db}).Run(context.Background(), q, next, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return page
}

func autoIndexNames(tb testing.TB, db *DB) []string {
	tb.Helper()
	rows, err := db.Reader().Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'auto\_q\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

func TestQueryStore_AutoIndexes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	db := openTestDB(t, path)
	seedTwins(t, db, 3000)

	page := runQuery(t, db, "SELECT * FROM devices WHERE tags.building = 43", "", 2)
	if len(page.Items) != 2 || page.Next == "" {
		t.Fatalf("first page: %d items, next %q", len(page.Items), page.Next)
	}
	page = runQuery(t, db, "SELECT * FROM devices WHERE tags.building = 43", page.Next, 2)
	var ids []string
	for _, it := range page.Items {
		ids = append(ids, it.(*twins.Twin).DeviceID)
	}
	if strings.Join(ids, ",") != "dev002043" || page.Next != "" {
		t.Fatalf("second page: %v, next %q", ids, page.Next)
	}
	want := autoIndexName(`json_extract(tags, '$."building"')`)
	if got := autoIndexNames(t, db); len(got) != 1 || got[0] != want {
		t.Fatalf("indexes %v, want [%s]", got, want)
	}
	// SQLite uses it for the compiled statement, keyset condition included.
	q, _ := query.Parse("SELECT * FROM devices WHERE tags.building = 43")
	plan, err := query.Compile(q, schemaFor(q.From))
	if err != nil {
		t.Fatal(err)
	}
	var detail strings.Builder
	rows, err := db.Reader().Query("EXPLAIN QUERY PLAN SELECT device_id FROM identities WHERE ("+plan.Where+
		") AND (device_id, module_id) > (?, ?) ORDER BY device_id, module_id LIMIT 10", append(plan.WhereArgs, "dev000043", "")...)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, notused int
		var d string
		rows.Scan(&id, &parent, &notused, &d)
		detail.WriteString(d + "\n")
	}
	rows.Close()
	if !strings.Contains(detail.String(), want) {
		t.Fatalf("plan does not use %s:\n%s", want, detail.String())
	}

	// Aggregates and negative conditions: ranges index, <> does not.
	runQuery(t, db, "SELECT COUNT() AS n FROM devices WHERE properties.reported.battery.level > 90", "", 10)
	runQuery(t, db, "SELECT * FROM devices WHERE tags.env <> 'prod'", "", 10)
	if got := autoIndexNames(t, db); len(got) != 2 {
		t.Fatalf("indexes %v, want 2", got)
	}

	// At most MaxAutoIndexes: the least recently used goes.
	db.MaxAutoIndexes = 2
	runQuery(t, db, "SELECT * FROM devices WHERE tags.building = 1", "", 10) // building used last
	runQuery(t, db, "SELECT * FROM devices WHERE tags.floor = 1", "", 10)
	got := autoIndexNames(t, db)
	if len(got) != 2 || !strings.Contains(strings.Join(got, " "), want) ||
		!strings.Contains(strings.Join(got, " "), autoIndexName(`json_extract(tags, '$."floor"')`)) {
		t.Fatalf("after eviction: %v", got)
	}

	// They persist, and a restarted process counts them against its bound.
	db.Close()
	db = openTestDB(t, path)
	db.MaxAutoIndexes = 2
	runQuery(t, db, "SELECT * FROM devices WHERE properties.desired.interval = 1", "", 10)
	if got := autoIndexNames(t, db); len(got) != 2 || !strings.Contains(strings.Join(got, " "), autoIndexName(`json_extract(desired, '$."interval"')`)) {
		t.Fatalf("after restart: %v", got)
	}

	// Off: nothing is created.
	db.MaxAutoIndexes = 0
	runQuery(t, db, "SELECT * FROM devices WHERE tags.location.site = 'site-1'", "", 10)
	if got := autoIndexNames(t, db); len(got) != 2 {
		t.Fatalf("with indexes off: %v", got)
	}
}
