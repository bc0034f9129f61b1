// Package sqlite is the one storage implementation: a SQLite database through
// modernc.org/sqlite (no cgo), WAL, embedded migrations, and one store type
// per domain.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"
)

//go:embed migration/*.sql
var migrations embed.FS

// DB holds the connection pools over one database: a single-connection
// writer, so writers queue in Go instead of failing with "database is
// locked", a reader pool that WAL lets run beside it, and (for files) one
// connection for the background checkpointer.
type DB struct {
	write *sql.DB
	read  *sql.DB
	path  string
	// Now is the clock for timestamps written by the stores.
	Now func() time.Time
	// MaxAutoIndexes bounds the expression indexes that queries create on
	// twin properties (see autoIndexes); 0 or less creates none.
	MaxAutoIndexes int

	auto autoIndexes

	// ckpt checkpoints the WAL in the background (files only).
	ckpt     *sql.DB
	ckptStop chan struct{}
	ckptDone chan struct{}
	ckptOnce sync.Once
}

// checkpointEvery is how often the background checkpointer copies the WAL
// into the database file. The writer's own automatic checkpoint stays, at a
// larger size: under continuous writes a passive checkpoint never catches up
// with the last frame, so the WAL only restarts from its beginning after
// the writer checkpointed its small remainder itself, once per
// autoCheckpointSize pages.
const (
	checkpointEvery    = 500 * time.Millisecond
	autoCheckpointSize = 4000 // pages, 16 MB
)

// Option adjusts a DB before Open uses it.
type Option func(*DB)

// WithClock sets the clock for the timestamps the stores write (the hub
// passes its one clock); the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(db *DB) { db.Now = func() time.Time { return now().UTC() } }
}

// Open opens (creating if needed) the database at path and runs pending
// migrations. An empty path opens a private in-memory database.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	db := &DB{path: path, Now: func() time.Time { return time.Now().UTC() }, MaxAutoIndexes: DefaultMaxAutoIndexes}
	for _, o := range opts {
		o(db)
	}
	// Pragmas go in the DSN so every pooled connection gets them (a PRAGMA
	// run through db.Exec reaches only one connection of the pool).
	pragmas := "_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
	if path == "" {
		// Shared-cache memory databases take table locks; one connection for
		// both pools keeps it simple and still correct.
		dsn := "file:mem-" + uuid.NewString() + "?mode=memory&cache=shared&" + pragmas
		w, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, err
		}
		w.SetMaxOpenConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		db.write, db.read = w, w
	} else {
		if err := ensureDir(path); err != nil {
			return nil, err
		}
		base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + pragmas + "&_pragma=journal_mode(WAL)"
		// The writer keeps statement journals in memory: a multi-row INSERT
		// inside a transaction (the telemetry log's batches) journals the
		// pages it changes in case it must undo itself, and in a temporary
		// file that was a write syscall per page, a sixth of the QoS 1
		// telemetry profile. They live for one statement.
		//
		// Checkpoints run on a connection of their own (see checkpointer):
		// done by the writer after the commit that crossed 1,000 pages, as
		// SQLite does by default, they put the copy and two fsyncs in front
		// of every write waiting behind it.
		w, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint("+fmt.Sprint(autoCheckpointSize)+")")
		if err != nil {
			return nil, err
		}
		w.SetMaxOpenConns(1)
		r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
		if err != nil {
			w.Close()
			return nil, err
		}
		r.SetMaxOpenConns(4)
		c, err := sql.Open("sqlite", base)
		if err != nil {
			w.Close()
			r.Close()
			return nil, err
		}
		c.SetMaxOpenConns(1)
		db.write, db.read, db.ckpt = w, r, c
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	if db.ckpt != nil {
		db.ckptStop, db.ckptDone = make(chan struct{}), make(chan struct{})
		go db.checkpointer()
	}
	return db, nil
}

// checkpointer runs passive checkpoints, which never block the writer or
// readers, until Close.
func (db *DB) checkpointer() {
	defer close(db.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-db.ckptStop:
			return
		case <-t.C:
			// Failures (busy with another checkpointer) are retried next tick.
			_, _ = db.ckpt.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

func ensureDir(path string) error {
	return mkdirAll(filepath.Dir(path))
}

// Close stops the checkpointer and closes every pool.
func (db *DB) Close() error {
	var err error
	if db.ckpt != nil {
		db.ckptOnce.Do(func() {
			if db.ckptStop != nil {
				close(db.ckptStop)
				<-db.ckptDone
			}
		})
		err = db.ckpt.Close()
	}
	err = errors.Join(err, db.write.Close())
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// migrate applies each embedded migration not yet recorded, each in its own
// transaction, in file-name order.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migration/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM migrations WHERE name = ?`, name).Scan(&n); err != nil || n > 0 {
				return err
			}
			body, err := fs.ReadFile(migrations, name)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO migrations (name, applied_at) VALUES (?, ?)`, name, db.Now().Format(time.RFC3339Nano))
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// WriteTx runs fn in a write transaction on the single writer connection and
// commits if fn returns nil.
func (db *DB) WriteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Reader is the pool for read-only queries.
func (db *DB) Reader() *sql.DB { return db.read }

// Writer is the single-connection pool for writes outside WriteTx.
func (db *DB) Writer() *sql.DB { return db.write }

// isUniqueViolation reports a UNIQUE or PRIMARY KEY constraint failure, by
// SQLite's extended code rather than by message text.
func isUniqueViolation(err error) bool {
	var se *sqlite3.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// NextCounter increments and returns the named counter inside tx.
func NextCounter(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `INSERT INTO counters(name, value) VALUES (?, 1)
		ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value`, name).Scan(&v)
	return v, err
}
