package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Apply implements registry.Store: every entry in one write transaction.
// The current identities are read with one query per 400 keys up front and
// tracked in memory as entries apply, the etag counter is read and written
// once, and the writes use prepared statements, so a bulk request of 100
// new devices costs about 100 row inserts and one commit.
func (s *RegistryStore) Apply(ctx context.Context, keys []registry.Key, decide func(int, *registry.Identity) (registry.Change, error)) ([]error, error) {
	errs := make([]error, len(keys))
	now := formatTime(s.DB.Now())
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		// Everything an entry may look at: its own row and its device's.
		want := make([]registry.Key, 0, len(keys)*2)
		for _, k := range keys {
			want = append(want, k)
			if k.ModuleID != "" {
				want = append(want, registry.Key{DeviceID: k.DeviceID})
			}
		}
		cur, err := loadIdentities(ctx, tx, want)
		if err != nil {
			return err
		}
		var etag int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE((SELECT value FROM counters WHERE name = 'identity_etag'), 0)`).Scan(&etag); err != nil {
			return err
		}
		startEtag := etag
		ins, err := tx.PrepareContext(ctx, insertIdentitySQL)
		if err != nil {
			return err
		}
		defer ins.Close()
		var insTwin *sql.Stmt // prepared on first use
		defer func() {
			if insTwin != nil {
				insTwin.Close()
			}
		}()
		upd, err := tx.PrepareContext(ctx, updateIdentitySQL)
		if err != nil {
			return err
		}
		defer upd.Close()

		for i, k := range keys {
			old := cur[k]
			ch, err := decide(i, old)
			if err != nil {
				if _, ok := err.(*iothub.Error); !ok {
					return err
				}
				errs[i] = err
				continue
			}
			switch ch.Kind {
			case registry.Insert:
				if old != nil {
					errs[i] = alreadyExists(ch.Identity)
					continue
				}
				if k.ModuleID != "" && cur[registry.Key{DeviceID: k.DeviceID}] == nil {
					errs[i] = registry.NotFound(k.DeviceID, "")
					continue
				}
				etag++
				ch.Identity.ETag = etag
				args := insertArgs(ch.Identity, now)
				stmt := ins
				if ch.Twin != nil {
					twinArgs, twinErr, err := initialTwinArgs(k, now, ch.Twin)
					if err != nil {
						return err
					}
					if twinErr != nil {
						errs[i] = twinErr // the identity is created with the fresh twin
					} else {
						if insTwin == nil {
							if insTwin, err = tx.PrepareContext(ctx, insertIdentityTwinSQL); err != nil {
								return err
							}
						}
						args, stmt = append(identityArgs(ch.Identity), now), insTwin
						args = append(args, twinArgs...)
					}
				}
				if _, err := stmt.ExecContext(ctx, args...); err != nil {
					return err
				}
				cur[k] = ch.Identity
			case registry.Replace:
				if old == nil {
					errs[i] = registry.NotFound(k.DeviceID, k.ModuleID)
					continue
				}
				etag++
				ch.Identity.ETag = etag
				if _, err := upd.ExecContext(ctx, updateArgs(ch.Identity)...); err != nil {
					return err
				}
				cur[k] = ch.Identity
			case registry.Remove:
				if old == nil {
					errs[i] = registry.NotFound(k.DeviceID, k.ModuleID)
					continue
				}
				if err := deleteIdentity(ctx, tx, k.DeviceID, k.ModuleID); err != nil {
					return err
				}
				cur[k] = nil
				if k.ModuleID == "" {
					for other := range cur {
						if other.DeviceID == k.DeviceID {
							cur[other] = nil
						}
					}
				}
			}
		}
		if etag != startEtag {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters(name, value) VALUES ('identity_etag', ?)
				ON CONFLICT(name) DO UPDATE SET value = excluded.value`, etag)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// insertIdentityTwinSQL inserts an identity with the twin of
// initialTwinArgs: identityArgs, created time, then the twin columns.
const insertIdentityTwinSQL = `INSERT INTO identities (` + identityColumns + `, created_time,
	tags, desired, reported, desired_meta, reported_meta, desired_version, reported_version, twin_version, twin_etag)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, ?, ?,?,?,?,?,?,?,?,?)`

// initialTwinArgs builds the fresh twin insertIdentitySQL would write for
// k, applies init to it and returns the twin columns of the result. An
// error of init (a twin limit) comes back as twinErr; err is an encoding
// failure.
func initialTwinArgs(k registry.Key, now string, init registry.TwinInit) (args []any, twinErr, err error) {
	fresh := func() twins.Properties {
		return twins.Properties{Data: map[string]any{}, Metadata: map[string]any{"$lastUpdated": now}, Version: 1}
	}
	t := &twins.Twin{Key: twins.Key{DeviceID: k.DeviceID, ModuleID: k.ModuleID}, Desired: fresh(), Reported: fresh(), Version: 2, ETag: 1}
	if twinErr := init(t); twinErr != nil {
		return nil, twinErr, nil
	}
	// A service patch never touches reported, and desired only when its
	// version moved: the fresh sections keep the insert's own text.
	meta := `{"$lastUpdated":"` + now + `"}`
	tags, err := encodeTags(t.Tags)
	if err != nil {
		return nil, nil, err
	}
	desired, desiredMeta := "{}", meta
	if t.Desired.Version != 1 {
		if desired, err = encodeObject(t.Desired.Data); err != nil {
			return nil, nil, err
		}
		if desiredMeta, err = encodeObject(t.Desired.Metadata); err != nil {
			return nil, nil, err
		}
	}
	if t.Reported.Version != 1 {
		return nil, nil, errors.New("initial twin: a service patch changed reported properties")
	}
	return []any{tags, desired, "{}", desiredMeta, meta, t.Desired.Version, t.Reported.Version, t.Version, t.ETag}, nil, nil
}

// loadBatch bounds the keys per lookup query (two variables each).
const loadBatch = 400

// loadIdentities reads the identities named by keys; absent ones map to nil.
func loadIdentities(ctx context.Context, tx *sql.Tx, keys []registry.Key) (map[registry.Key]*registry.Identity, error) {
	out := make(map[registry.Key]*registry.Identity, len(keys))
	for _, k := range keys {
		out[k] = nil
	}
	for start := 0; start < len(keys); start += loadBatch {
		batch := keys[start:min(start+loadBatch, len(keys))]
		var q strings.Builder
		q.WriteString(`SELECT ` + identityColumns + ` FROM identities WHERE (device_id, module_id) IN (VALUES `)
		args := make([]any, 0, 2*len(batch))
		for i, k := range batch {
			if i > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?)")
			args = append(args, k.DeviceID, k.ModuleID)
		}
		q.WriteString(")")
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			id, err := scanIdentity(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[registry.Key{DeviceID: id.DeviceID, ModuleID: id.ModuleID}] = id
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
