package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
)

// DefaultMaxAutoIndexes bounds how many expression indexes queries create.
const DefaultMaxAutoIndexes = 32

// autoIndexPrefix names the indexes that queries create; nothing else may
// use it, since eviction drops any index so named.
const autoIndexPrefix = "auto_q_"

// autoIndexes creates an expression index on a JSON value a query's WHERE
// compares (json_extract(tags, '$."building"') = ?) the first time a query
// needs it, so that later queries on the same property look rows up instead
// of parsing every twin. SQLite uses an expression index only when the
// expression's text is the same, which the compiler guarantees by inlining
// paths. The indexes live in the database, so they survive restarts; at most
// max exist, and making room drops the one used least recently (since the
// process started: older ones count as unused).
//
// The price is paid on writes: every twin update maintains every index on
// the JSON columns it writes. Building one index reads every twin once, on
// the single writer connection, so twin writes wait for it (about as long as
// one unindexed query takes).
type autoIndexes struct {
	mu       sync.Mutex
	loaded   bool
	lastUsed map[string]int64 // index name → use tick
	tick     int64
	building map[string]chan struct{}
}

// indexedColumns are the JSON columns of twins that get automatic indexes.
var indexedColumns = []string{"json_extract(tags, ", "json_extract(desired, ", "json_extract(reported, "}

func autoIndexName(expr string) string {
	h := fnv.New64a()
	h.Write([]byte(expr))
	return fmt.Sprintf("%s%016x", autoIndexPrefix, h.Sum64())
}

// ensureIndexes makes sure each of exprs over the identities table has an
// index, building missing ones before it returns. Failures are logged and
// otherwise ignored: the query is still right without the index.
func (db *DB) ensureIndexes(ctx context.Context, table string, exprs []string) {
	if db.MaxAutoIndexes <= 0 || table != "identities" {
		return
	}
	for _, e := range exprs {
		ok := false
		for _, p := range indexedColumns {
			ok = ok || strings.HasPrefix(e, p)
		}
		if ok {
			if err := db.ensureIndex(ctx, e); err != nil && ctx.Err() == nil {
				slog.Warn("query index", "expr", e, "err", err)
			}
		}
	}
}

func (db *DB) ensureIndex(ctx context.Context, expr string) error {
	a := &db.auto
	name := autoIndexName(expr)
	for {
		a.mu.Lock()
		if !a.loaded {
			if err := a.load(ctx, db); err != nil {
				a.mu.Unlock()
				return err
			}
		}
		a.tick++
		if _, ok := a.lastUsed[name]; ok {
			a.lastUsed[name] = a.tick
			a.mu.Unlock()
			return nil
		}
		if ch, ok := a.building[name]; ok {
			a.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var evict []string
		for len(a.lastUsed)-len(evict) >= db.MaxAutoIndexes {
			victim, oldest := "", int64(-1)
			for n, t := range a.lastUsed {
				if (oldest < 0 || t < oldest) && !contains(evict, n) {
					victim, oldest = n, t
				}
			}
			evict = append(evict, victim)
		}
		for _, n := range evict {
			delete(a.lastUsed, n)
		}
		ch := make(chan struct{})
		a.building[name] = ch
		a.mu.Unlock()

		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			for _, n := range evict {
				if _, err := tx.ExecContext(ctx, `DROP INDEX IF EXISTS "`+n+`"`); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS "`+name+`" ON identities(`+expr+`)`)
			return err
		})
		a.mu.Lock()
		delete(a.building, name)
		if err == nil {
			a.tick++
			a.lastUsed[name] = a.tick
		} else if len(evict) > 0 {
			// The drops rolled back with the create: read what exists.
			a.loaded = false
		}
		a.mu.Unlock()
		close(ch)
		return err
	}
}

// load reads the automatic indexes already in the database.
func (a *autoIndexes) load(ctx context.Context, db *DB) error {
	rows, err := db.Writer().QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'identities' AND substr(name, 1, ?) = ?`,
		len(autoIndexPrefix), autoIndexPrefix)
	if err != nil {
		return err
	}
	defer rows.Close()
	a.lastUsed = map[string]int64{}
	if a.building == nil {
		a.building = map[string]chan struct{}{}
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		a.lastUsed[n] = 0
	}
	if err := rows.Err(); err != nil {
		return err
	}
	a.loaded = true
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
