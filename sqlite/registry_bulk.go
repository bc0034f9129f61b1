package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
)

// Apply implements registry.Store: every entry in one write transaction,
// with the statements prepared once, so a bulk request of 100 devices costs
// one commit rather than 100.
func (s *RegistryStore) Apply(ctx context.Context, keys []registry.Key, decide func(int, *registry.Identity) (registry.Change, error)) ([]error, error) {
	errs := make([]error, len(keys))
	now := formatTime(s.DB.Now())
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		sel, err := tx.PrepareContext(ctx, `SELECT `+identityColumns+` FROM identities WHERE device_id = ? AND module_id = ?`)
		if err != nil {
			return err
		}
		defer sel.Close()
		ins, err := tx.PrepareContext(ctx, insertIdentitySQL)
		if err != nil {
			return err
		}
		defer ins.Close()
		upd, err := tx.PrepareContext(ctx, updateIdentitySQL)
		if err != nil {
			return err
		}
		defer upd.Close()
		counter, err := tx.PrepareContext(ctx, `INSERT INTO counters(name, value) VALUES ('identity_etag', 1)
			ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value`)
		if err != nil {
			return err
		}
		defer counter.Close()

		get := func(deviceID, moduleID string) (*registry.Identity, error) {
			id, err := scanIdentity(sel.QueryRowContext(ctx, deviceID, moduleID))
			if errors.Is(err, sql.ErrNoRows) {
				return nil, nil
			}
			return id, err
		}
		for i, k := range keys {
			cur, err := get(k.DeviceID, k.ModuleID)
			if err != nil {
				return err
			}
			ch, err := decide(i, cur)
			if err != nil {
				if _, ok := err.(*iothub.Error); !ok {
					return err
				}
				errs[i] = err
				continue
			}
			switch ch.Kind {
			case registry.Insert:
				if cur != nil {
					errs[i] = alreadyExists(ch.Identity)
					continue
				}
				if k.ModuleID != "" {
					dev, err := get(k.DeviceID, "")
					if err != nil {
						return err
					}
					if dev == nil {
						errs[i] = registry.NotFound(k.DeviceID, "")
						continue
					}
				}
				if err := counter.QueryRowContext(ctx).Scan(&ch.Identity.ETag); err != nil {
					return err
				}
				if _, err := ins.ExecContext(ctx, insertArgs(ch.Identity, now)...); err != nil {
					return err
				}
			case registry.Replace:
				if cur == nil {
					errs[i] = registry.NotFound(k.DeviceID, k.ModuleID)
					continue
				}
				if err := counter.QueryRowContext(ctx).Scan(&ch.Identity.ETag); err != nil {
					return err
				}
				if _, err := upd.ExecContext(ctx, updateArgs(ch.Identity)...); err != nil {
					return err
				}
			case registry.Remove:
				if cur == nil {
					errs[i] = registry.NotFound(k.DeviceID, k.ModuleID)
					continue
				}
				if err := deleteIdentity(ctx, tx, k.DeviceID, k.ModuleID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}
