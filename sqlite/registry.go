package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
)

// RegistryStore implements registry.Store.
type RegistryStore struct {
	DB *DB

	// Every MQTT, AMQP and HTTPS device connection reads its identity and
	// writes its connection state: those two statements are prepared once,
	// outside any transaction (SQLite parsing them was a fifth of a
	// CONNECT's CPU). A nil statement means preparing failed; the SQL text
	// is run instead.
	getOnce, setConnOnce sync.Once
	getStmt, setConnStmt *sql.Stmt
}

const (
	getIdentitySQL   = `SELECT ` + identityColumns + ` FROM identities WHERE device_id = ? AND module_id = ?`
	setConnectionSQL = `UPDATE identities SET connection_state = ?, connection_state_updated_time = ?,
		last_activity_time = ?, model_id = CASE WHEN ? = 'Connected' THEN ? ELSE model_id END
		WHERE device_id = ? AND module_id = ?`
)

// The writer has one connection: preparing on it inside a transaction
// would wait for that transaction, so every statement is prepared before.
func (s *RegistryStore) getPrepared(ctx context.Context) *sql.Stmt {
	s.getOnce.Do(func() { s.getStmt, _ = s.DB.Reader().PrepareContext(context.WithoutCancel(ctx), getIdentitySQL) })
	return s.getStmt
}

func (s *RegistryStore) setConnPrepared(ctx context.Context) *sql.Stmt {
	s.setConnOnce.Do(func() { s.setConnStmt, _ = s.DB.Writer().PrepareContext(context.WithoutCancel(ctx), setConnectionSQL) })
	return s.setConnStmt
}

var _ registry.Store = (*RegistryStore)(nil)

const identityColumns = `device_id, module_id, generation_id, etag, status, status_reason, status_updated_time,
	connection_state, connection_state_updated_time, last_activity_time, c2d_count, auth_type,
	primary_key, secondary_key, primary_thumbprint, secondary_thumbprint, iot_edge, managed_by,
	device_scope, parent_scopes, model_id`

type scanner interface{ Scan(...any) error }

func scanIdentity(row scanner) (*registry.Identity, error) {
	var (
		id                        registry.Identity
		statusT, connT, activityT string
		parentScopes              string
		edge                      int
	)
	err := row.Scan(&id.DeviceID, &id.ModuleID, &id.GenerationID, &id.ETag, &id.Status, &id.StatusReason, &statusT,
		&id.ConnectionState, &connT, &activityT, &id.CloudToDeviceMessageCount, &id.Auth.Type,
		&id.Auth.PrimaryKey, &id.Auth.SecondaryKey, &id.Auth.PrimaryThumbprint, &id.Auth.SecondaryThumbprint, &edge, &id.ManagedBy,
		&id.DeviceScope, &parentScopes, &id.ModelID)
	if err != nil {
		return nil, err
	}
	id.StatusUpdatedTime, id.ConnectionStateUpdatedTime, id.LastActivityTime = parseTime(statusT), parseTime(connT), parseTime(activityT)
	id.IotEdge = edge != 0
	_ = json.Unmarshal([]byte(parentScopes), &id.ParentScopes)
	return &id, nil
}

func identityArgs(id *registry.Identity) []any {
	scopes, _ := json.Marshal(id.ParentScopes)
	if id.ParentScopes == nil {
		scopes = []byte("[]")
	}
	edge := 0
	if id.IotEdge {
		edge = 1
	}
	return []any{id.DeviceID, id.ModuleID, id.GenerationID, id.ETag, id.Status, id.StatusReason, formatTime(id.StatusUpdatedTime),
		id.ConnectionState, formatTime(id.ConnectionStateUpdatedTime), formatTime(id.LastActivityTime), id.CloudToDeviceMessageCount, id.Auth.Type,
		id.Auth.PrimaryKey, id.Auth.SecondaryKey, id.Auth.PrimaryThumbprint, id.Auth.SecondaryThumbprint, edge, id.ManagedBy,
		id.DeviceScope, string(scopes), id.ModelID}
}

func getIdentity(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, deviceID, moduleID string) (*registry.Identity, error) {
	id, err := scanIdentity(q.QueryRowContext(ctx, getIdentitySQL, deviceID, moduleID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, registry.NotFound(deviceID, moduleID)
	}
	return id, err
}

// insertIdentitySQL inserts an identity with a fresh twin: desired and
// reported $version 1, twin version 2, twin etag 1, as a new twin on the hub
// (digest §4.4). Arguments: identityArgs, then created time and the two
// $metadata documents.
const insertIdentitySQL = `INSERT INTO identities (` + identityColumns + `, created_time,
	tags, desired, reported, desired_meta, reported_meta, desired_version, reported_version, twin_version, twin_etag)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, ?, NULL, '{}', '{}', ?, ?, 1, 1, 2, 1)`

func insertArgs(id *registry.Identity, now string) []any {
	meta := `{"$lastUpdated":"` + now + `"}`
	return append(identityArgs(id), now, meta, meta)
}

// updateIdentitySQL saves an identity's mutable fields; see updateArgs.
const updateIdentitySQL = `UPDATE identities SET etag=?, status=?, status_reason=?, status_updated_time=?,
	auth_type=?, primary_key=?, secondary_key=?, primary_thumbprint=?, secondary_thumbprint=?, iot_edge=?, managed_by=?,
	device_scope=?, parent_scopes=? WHERE device_id=? AND module_id=?`

func updateArgs(id *registry.Identity) []any {
	a := identityArgs(id)
	return []any{a[3], a[4], a[5], a[6], a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], id.DeviceID, id.ModuleID}
}

func alreadyExists(id *registry.Identity) error {
	if id.ModuleID != "" {
		return iothub.Errorf(iothub.ModuleAlreadyExistsOnDevice, "A module with ID '%s' already exists on device '%s'.", id.ModuleID, id.DeviceID)
	}
	return iothub.Errorf(iothub.DeviceAlreadyExists, "A device with ID '%s' is already registered.", id.DeviceID)
}

// Create inserts the identity with a fresh twin.
func (s *RegistryStore) Create(ctx context.Context, id *registry.Identity) (*registry.Identity, error) {
	now := formatTime(s.DB.Now())
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		if id.ModuleID != "" {
			if _, err := getIdentity(ctx, tx, id.DeviceID, ""); err != nil {
				return err
			}
		}
		etag, err := NextCounter(ctx, tx, "identity_etag")
		if err != nil {
			return err
		}
		id.ETag = etag
		_, err = tx.ExecContext(ctx, insertIdentitySQL, insertArgs(id, now)...)
		if isUniqueViolation(err) {
			return alreadyExists(id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return id, nil
}

func (s *RegistryStore) Get(ctx context.Context, deviceID, moduleID string) (*registry.Identity, error) {
	if get := s.getPrepared(ctx); get != nil {
		return getIdentity(ctx, stmtQuerier{get}, deviceID, moduleID)
	}
	return getIdentity(ctx, s.DB.Reader(), deviceID, moduleID)
}

// QueryRowContext lets getIdentity run a prepared statement too.
func (q stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
}

func (s *RegistryStore) Update(ctx context.Context, deviceID, moduleID string, fn func(*registry.Identity) error) (*registry.Identity, error) {
	var out *registry.Identity
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		cur, err := getIdentity(ctx, tx, deviceID, moduleID)
		if err != nil {
			return err
		}
		if err := fn(cur); err != nil {
			return err
		}
		if cur.ETag, err = NextCounter(ctx, tx, "identity_etag"); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, updateIdentitySQL, updateArgs(cur)...)
		out = cur
		return err
	})
	return out, err
}

func (s *RegistryStore) Delete(ctx context.Context, deviceID, moduleID string, fn func(*registry.Identity) error) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		cur, err := getIdentity(ctx, tx, deviceID, moduleID)
		if err != nil {
			return err
		}
		if err := fn(cur); err != nil {
			return err
		}
		return deleteIdentity(ctx, tx, deviceID, moduleID)
	})
}

// deleteIdentity removes an identity with its twin and stored MQTT session;
// for a device, its modules and their sessions as well.
func deleteIdentity(ctx context.Context, tx *sql.Tx, deviceID, moduleID string) error {
	var err error
	if moduleID == "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM identities WHERE device_id = ?`, deviceID)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM identities WHERE device_id = ? AND module_id = ?`, deviceID, moduleID)
	}
	if err != nil {
		return err
	}
	clientID := deviceID
	if moduleID != "" {
		clientID += "/" + moduleID
		_, err = tx.ExecContext(ctx, `DELETE FROM mqtt_subscriptions WHERE client_id = ?`, clientID)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM mqtt_subscriptions WHERE client_id = ? OR client_id LIKE ? ESCAPE '\'`, clientID, escapeLike(clientID)+"/%")
	}
	return err
}

func escapeLike(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || s[i] == '_' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func (s *RegistryStore) list(ctx context.Context, query string, args ...any) ([]*registry.Identity, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*registry.Identity{}
	for rows.Next() {
		id, err := scanIdentity(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *RegistryStore) List(ctx context.Context, top int) ([]*registry.Identity, error) {
	return s.list(ctx, `SELECT `+identityColumns+` FROM identities WHERE module_id = '' ORDER BY device_id LIMIT ?`, top)
}

func (s *RegistryStore) ListModules(ctx context.Context, deviceID string) ([]*registry.Identity, error) {
	return s.list(ctx, `SELECT `+identityColumns+` FROM identities WHERE device_id = ? AND module_id != '' ORDER BY module_id`, deviceID)
}

func (s *RegistryStore) Stats(ctx context.Context) (registry.Stats, error) {
	var st registry.Stats
	// device_counts is kept by triggers (migration 0026), in the same
	// transactions as the identities it counts.
	err := s.DB.Reader().QueryRowContext(ctx, `SELECT COALESCE(SUM(n), 0), COALESCE(SUM(CASE WHEN status = 'enabled' THEN n END), 0),
		COALESCE(SUM(CASE WHEN status = 'disabled' THEN n END), 0) FROM device_counts`).Scan(&st.Total, &st.Enabled, &st.Disabled)
	return st, err
}

func (s *RegistryStore) ConnectedCount(ctx context.Context) (int, error) {
	var n int
	err := s.DB.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM identities WHERE module_id = '' AND connection_state = 'Connected'`).Scan(&n)
	return n, err
}

func (s *RegistryStore) SetConnection(ctx context.Context, deviceID, moduleID, state string, at time.Time, modelID string) error {
	ts := formatTime(at)
	args := []any{state, ts, ts, state, modelID, deviceID, moduleID}
	if setConn := s.setConnPrepared(ctx); setConn != nil {
		_, err := setConn.ExecContext(ctx, args...)
		return err
	}
	_, err := s.DB.Writer().ExecContext(ctx, setConnectionSQL, args...)
	return err
}

// SetAllDisconnected marks every identity disconnected; the hub process calls
// it at start, since no connection survives a restart.
func (s *RegistryStore) SetAllDisconnected(ctx context.Context) error {
	_, err := s.DB.Writer().ExecContext(ctx, `UPDATE identities SET connection_state = 'Disconnected', connection_state_updated_time = ?
		WHERE connection_state = 'Connected'`, formatTime(s.DB.Now()))
	return err
}
