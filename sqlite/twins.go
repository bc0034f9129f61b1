package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// TwinStore implements twins.Store over the identities table. Updates are
// group-committed: every update that queued while the previous transaction
// committed runs in the next one, so a thousand devices patching reported
// properties share commits instead of queueing one commit each for the
// single writer. Build it with NewTwinStore and Close it.
type TwinStore struct {
	DB      *DB
	updates *groupcommit.Batcher[*twinUpdate]
}

// errStoreClosed answers updates that arrive while the hub shuts down.
var errStoreClosed = iothub.ErrClosed

// maxTwinBatch bounds how many updates share one transaction.
const maxTwinBatch = 256

type twinUpdate struct {
	ctx  context.Context
	key  twins.Key
	fn   func(*twins.Twin) error
	out  *twins.Twin
	err  error
	done chan struct{}
	// reportedOnly loads and saves only the reported section and the twin
	// version (UpdateReported).
	reportedOnly bool
}

// NewTwinStore starts the store's writer.
func NewTwinStore(db *DB) *TwinStore {
	s := &TwinStore{DB: db}
	s.updates = groupcommit.New(s.commit, groupcommit.Config{MaxBatch: maxTwinBatch})
	return s
}

// Close runs the updates already queued, then stops the writer; later
// updates return iothub.ErrClosed.
func (s *TwinStore) Close() { s.updates.Close() }

// twinStmts are a batch's prepared statements, each prepared on first use:
// a batch of reported patches never prepares the whole-twin ones.
type twinStmts struct {
	ctx                                context.Context
	tx                                 *sql.Tx
	sel, upd, selReported, updReported *sql.Stmt
}

func (st *twinStmts) get(p **sql.Stmt, query string) (*sql.Stmt, error) {
	if *p == nil {
		s, err := st.tx.PrepareContext(st.ctx, query)
		if err != nil {
			return nil, err
		}
		*p = s
	}
	return *p, nil
}

func (st *twinStmts) close() {
	for _, s := range []*sql.Stmt{st.sel, st.upd, st.selReported, st.updReported} {
		if s != nil {
			s.Close()
		}
	}
}

// commit runs a batch in one transaction. An update whose twin is missing
// or whose fn refuses gets its own error; a database error fails the batch.
func (s *TwinStore) commit(batch []*twinUpdate) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		st := &twinStmts{ctx: ctx, tx: tx}
		defer st.close()
		for _, u := range batch {
			u.out, u.err = nil, nil
			if err := u.ctx.Err(); err != nil {
				u.err = err // the caller gave up; do not apply what it no longer waits for
				continue
			}
			var err error
			if u.reportedOnly {
				err = st.applyReported(u)
			} else {
				err = st.apply(u)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, u := range batch {
		if err != nil {
			u.out, u.err = nil, err
		}
		close(u.done)
	}
}

// apply runs a whole-twin update; it returns only database errors.
func (st *twinStmts) apply(u *twinUpdate) error {
	sel, err := st.get(&st.sel, `SELECT `+twinColumns+` FROM identities WHERE device_id = ? AND module_id = ?`)
	if err != nil {
		return err
	}
	t, err := ScanTwin(sel.QueryRowContext(st.ctx, u.key.DeviceID, u.key.ModuleID))
	if errors.Is(err, sql.ErrNoRows) {
		u.err = registry.NotFound(u.key.DeviceID, u.key.ModuleID)
		return nil
	}
	if err != nil {
		return err
	}
	if u.err = u.fn(t); u.err != nil {
		return nil
	}
	args, err := twinArgs(t)
	if err != nil {
		return err
	}
	upd, err := st.get(&st.upd, updateTwinSQL)
	if err != nil {
		return err
	}
	if _, err := upd.ExecContext(st.ctx, args...); err != nil {
		return err
	}
	u.out = t
	return nil
}

// applyReported runs an UpdateReported; it returns only database errors.
func (st *twinStmts) applyReported(u *twinUpdate) error {
	sel, err := st.get(&st.selReported, `SELECT reported, reported_meta, reported_version, twin_version
		FROM identities WHERE device_id = ? AND module_id = ?`)
	if err != nil {
		return err
	}
	t := &twins.Twin{Key: u.key}
	var data, meta string
	err = sel.QueryRowContext(st.ctx, u.key.DeviceID, u.key.ModuleID).Scan(&data, &meta, &t.Reported.Version, &t.Version)
	if errors.Is(err, sql.ErrNoRows) {
		u.err = registry.NotFound(u.key.DeviceID, u.key.ModuleID)
		return nil
	}
	if err != nil {
		return err
	}
	if t.Reported.Data, err = decodeObject(data); err != nil {
		return err
	}
	if t.Reported.Metadata, err = decodeObject(meta); err != nil {
		return err
	}
	if u.err = u.fn(t); u.err != nil {
		return nil
	}
	if data, err = encodeObject(t.Reported.Data); err != nil {
		return err
	}
	if meta, err = encodeObject(t.Reported.Metadata); err != nil {
		return err
	}
	upd, err := st.get(&st.updReported, `UPDATE identities SET reported = ?, reported_meta = ?, reported_version = ?, twin_version = ?
		WHERE device_id = ? AND module_id = ?`)
	if err != nil {
		return err
	}
	if _, err := upd.ExecContext(st.ctx, data, meta, t.Reported.Version, t.Version, u.key.DeviceID, u.key.ModuleID); err != nil {
		return err
	}
	// Only what was saved: fn may have set other fields.
	u.out = &twins.Twin{Key: u.key, Reported: t.Reported, Version: t.Version}
	return nil
}

var _ twins.Store = (*TwinStore)(nil)

// twinColumns are the identity columns a twin mirrors, then the twin's own.
const twinColumns = `device_id, module_id, etag, status, status_reason, status_updated_time, connection_state,
	last_activity_time, c2d_count, auth_type, primary_thumbprint, secondary_thumbprint, model_id, iot_edge,
	device_scope, parent_scopes, tags, desired, reported, desired_meta, reported_meta,
	desired_version, reported_version, twin_version, twin_etag`

// ScanTwin reads a row selected with twinColumns (queries reuse it).
func ScanTwin(row scanner) (*twins.Twin, error) {
	var (
		t                                            twins.Twin
		identityETag                                 int64
		statusT, activityT, scopes                   string
		edge                                         int
		tags                                         sql.NullString
		desired, reported, desiredMeta, reportedMeta string
	)
	err := row.Scan(&t.DeviceID, &t.ModuleID, &identityETag, &t.Status, &t.StatusReason, &statusT, &t.ConnectionState,
		&activityT, &t.CloudToDeviceMessageCount, &t.AuthenticationType, &t.PrimaryThumbprint, &t.SecondaryThumbprint,
		&t.ModelID, &edge, &t.DeviceScope, &scopes, &tags, &desired, &reported, &desiredMeta, &reportedMeta,
		&t.Desired.Version, &t.Reported.Version, &t.Version, &t.ETag)
	if err != nil {
		return nil, err
	}
	t.StatusUpdateTime, t.LastActivityTime = parseTime(statusT), parseTime(activityT)
	t.IotEdge = edge != 0
	t.DeviceEtag = registry.ETagString(identityETag)
	_ = json.Unmarshal([]byte(scopes), &t.ParentScopes)
	if tags.Valid {
		if t.Tags, err = decodeObject(tags.String); err != nil {
			return nil, err
		}
	}
	for _, x := range []struct {
		dst *map[string]any
		src string
	}{{&t.Desired.Data, desired}, {&t.Reported.Data, reported}, {&t.Desired.Metadata, desiredMeta}, {&t.Reported.Metadata, reportedMeta}} {
		if *x.dst, err = decodeObject(x.src); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// decodeObject reads stored JSON keeping integers exact.
func decodeObject(s string) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return twins.NormalizeMap(m), nil
}

func encodeObject(m map[string]any) (string, error) {
	if m == nil {
		m = map[string]any{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

func getTwin(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, key twins.Key) (*twins.Twin, error) {
	t, err := ScanTwin(q.QueryRowContext(ctx, `SELECT `+twinColumns+` FROM identities WHERE device_id = ? AND module_id = ?`, key.DeviceID, key.ModuleID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, registry.NotFound(key.DeviceID, key.ModuleID)
	}
	return t, err
}

func (s *TwinStore) Get(ctx context.Context, key twins.Key) (*twins.Twin, error) {
	return getTwin(ctx, s.DB.Reader(), key)
}

func (s *TwinStore) Update(ctx context.Context, key twins.Key, fn func(*twins.Twin) error) (*twins.Twin, error) {
	return s.update(ctx, &twinUpdate{ctx: ctx, key: key, fn: fn, done: make(chan struct{})})
}

var _ twins.ReportedStore = (*TwinStore)(nil)

// UpdateReported implements twins.ReportedStore: it reads and writes only
// the reported columns and the twin version, in the same group commit as
// Update.
func (s *TwinStore) UpdateReported(ctx context.Context, key twins.Key, fn func(*twins.Twin) error) (*twins.Twin, error) {
	return s.update(ctx, &twinUpdate{ctx: ctx, key: key, fn: fn, done: make(chan struct{}), reportedOnly: true})
}

func (s *TwinStore) update(ctx context.Context, u *twinUpdate) (*twins.Twin, error) {
	if err := s.updates.Add(ctx, u); err != nil {
		return nil, err
	}
	// Accepted updates are always committed (or skipped, if ctx ended
	// first), also when Close comes now, so this wait ends.
	<-u.done
	return u.out, u.err
}

var _ twins.BatchStore = (*TwinStore)(nil)

// UpdateMany updates many twins in one transaction: a twins job costs one
// commit per batch instead of one per device.
func (s *TwinStore) UpdateMany(ctx context.Context, keys []twins.Key, fn func(*twins.Twin) error) ([]*twins.Twin, []error, error) {
	var updated []*twins.Twin
	errs := make([]error, len(keys))
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		updated = updated[:0]
		sel, err := tx.PrepareContext(ctx, `SELECT tags, desired, desired_meta, desired_version, twin_version, twin_etag
			FROM identities WHERE device_id = ? AND module_id = ?`)
		if err != nil {
			return err
		}
		defer sel.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE identities SET tags = ?, desired = ?, desired_meta = ?,
			desired_version = ?, twin_version = ?, twin_etag = ? WHERE device_id = ? AND module_id = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		for i, key := range keys {
			t, err := scanServiceSide(sel.QueryRowContext(ctx, key.DeviceID, key.ModuleID), key)
			if errors.Is(err, sql.ErrNoRows) {
				errs[i] = registry.NotFound(key.DeviceID, key.ModuleID)
				continue
			}
			if err != nil {
				return err
			}
			if errs[i] = fn(t); errs[i] != nil {
				continue
			}
			tags, err := encodeTags(t.Tags)
			if err != nil {
				return err
			}
			desired, err := encodeObject(t.Desired.Data)
			if err != nil {
				return err
			}
			meta, err := encodeObject(t.Desired.Metadata)
			if err != nil {
				return err
			}
			if _, err := upd.ExecContext(ctx, tags, desired, meta, t.Desired.Version, t.Version, t.ETag, key.DeviceID, key.ModuleID); err != nil {
				return err
			}
			updated = append(updated, t)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return updated, errs, nil
}

// scanServiceSide reads the columns UpdateMany selects.
func scanServiceSide(row scanner, key twins.Key) (*twins.Twin, error) {
	t := &twins.Twin{Key: key}
	var tags sql.NullString
	var desired, meta string
	if err := row.Scan(&tags, &desired, &meta, &t.Desired.Version, &t.Version, &t.ETag); err != nil {
		return nil, err
	}
	var err error
	if tags.Valid {
		if t.Tags, err = decodeObject(tags.String); err != nil {
			return nil, err
		}
	}
	if t.Desired.Data, err = decodeObject(desired); err != nil {
		return nil, err
	}
	if t.Desired.Metadata, err = decodeObject(meta); err != nil {
		return nil, err
	}
	return t, nil
}

func encodeTags(tags map[string]any) (sql.NullString, error) {
	if tags == nil {
		return sql.NullString{}, nil
	}
	s, err := encodeObject(tags)
	return sql.NullString{String: s, Valid: err == nil}, err
}

const updateTwinSQL = `UPDATE identities SET tags = ?, desired = ?, reported = ?, desired_meta = ?, reported_meta = ?,
	desired_version = ?, reported_version = ?, twin_version = ?, twin_etag = ? WHERE device_id = ? AND module_id = ?`

// twinArgs are the arguments of updateTwinSQL for t.
func twinArgs(t *twins.Twin) ([]any, error) {
	tags, err := encodeTags(t.Tags)
	if err != nil {
		return nil, err
	}
	enc := make([]string, 4)
	for i, m := range []map[string]any{t.Desired.Data, t.Reported.Data, t.Desired.Metadata, t.Reported.Metadata} {
		if enc[i], err = encodeObject(m); err != nil {
			return nil, err
		}
	}
	return []any{tags, enc[0], enc[1], enc[2], enc[3], t.Desired.Version, t.Reported.Version, t.Version, t.ETag, t.DeviceID, t.ModuleID}, nil
}
