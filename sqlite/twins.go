package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
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

	stmtMu    sync.Mutex
	stmts     map[string]*sql.Stmt // prepared on the writer, by text
	stmtsGone bool                 // Close closed them
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
	// Devices wait for each patch's answer before sending the next, the case
	// Yields is for: with it, reported patches over MQTT cost about a tenth
	// less emulator CPU (docs/benchmarks.md, round two).
	s.updates = groupcommit.New(s.commit, groupcommit.Config{MaxBatch: maxTwinBatch, Yields: 8})
	return s
}

// Close runs the updates already queued, then stops the writer; later
// updates return iothub.ErrClosed.
func (s *TwinStore) Close() {
	s.updates.Close()
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	for _, p := range s.stmts {
		p.Close()
	}
	s.stmts, s.stmtsGone = nil, true
}

// twinStmts are the writer's statements, bound to one transaction. The
// store prepares each once on the writer connection (prepare, before its
// first transaction: inside one, the single writer connection is taken), and
// binding a statement to a later transaction on that connection does not
// prepare it again.
type twinStmts struct {
	ctx   context.Context
	tx    *sql.Tx
	store *TwinStore
	bound map[string]*sql.Stmt // bound to tx, by text
}

// Statement texts of the writer.
const (
	selectTwinSQL     = `SELECT ` + twinColumns + ` FROM identities WHERE device_id = ? AND module_id = ?`
	selectReportedSQL = `SELECT reported, reported_meta, reported_version, twin_version FROM identities WHERE device_id = ? AND module_id = ?`
	updateReportedSQL = `UPDATE identities SET reported = ?, reported_meta = ?, reported_version = ?, twin_version = ?
		WHERE device_id = ? AND module_id = ?`
	selectServiceSideSQL = `SELECT tags, desired, desired_meta, desired_version, twin_version, twin_etag
		FROM identities WHERE device_id = ? AND module_id = ?`
	selectServiceSidesSQL = `SELECT device_id, module_id, tags, desired, desired_meta, desired_version, twin_version, twin_etag
		FROM identities WHERE (device_id, module_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))`
	updateServiceSideSQL = `UPDATE identities SET tags = ?, desired = ?, desired_meta = ?,
		desired_version = ?, twin_version = ?, twin_etag = ? WHERE device_id = ? AND module_id = ?`
)

var writerStatements = []string{selectTwinSQL, updateTwinSQL, selectReportedSQL, updateReportedSQL, selectServiceSideSQL, selectServiceSidesSQL, updateServiceSideSQL}

// prepare prepares the writer's statements once; call it outside a
// transaction.
func (s *TwinStore) prepare(ctx context.Context) error {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.stmtsGone {
		return errStoreClosed
	}
	if s.stmts != nil {
		return nil
	}
	stmts := make(map[string]*sql.Stmt, len(writerStatements))
	for _, q := range writerStatements {
		p, err := s.DB.Writer().PrepareContext(ctx, q)
		if err != nil {
			for _, p := range stmts {
				p.Close()
			}
			return err
		}
		stmts[q] = p
	}
	s.stmts = stmts
	return nil
}

// get returns query bound to this transaction.
func (st *twinStmts) get(query string) (*sql.Stmt, error) {
	if b, ok := st.bound[query]; ok {
		return b, nil
	}
	st.store.stmtMu.Lock()
	p := st.store.stmts[query]
	st.store.stmtMu.Unlock()
	if p == nil {
		return nil, errStoreClosed // Close ran; prepare fills every text
	}
	if st.bound == nil {
		st.bound = map[string]*sql.Stmt{}
	}
	b := st.tx.StmtContext(st.ctx, p)
	st.bound[query] = b
	return b, nil
}

// commit runs a batch in one transaction. An update whose twin is missing
// or whose fn refuses gets its own error; a database error fails the batch.
func (s *TwinStore) commit(batch []*twinUpdate) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.prepare(ctx)
	if err == nil {
		err = s.writeBatch(ctx, batch)
	}
	for _, u := range batch {
		if err != nil {
			u.out, u.err = nil, err
		}
		close(u.done)
	}
}

// writeBatch runs the batch's updates in one transaction.
func (s *TwinStore) writeBatch(ctx context.Context, batch []*twinUpdate) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		st := &twinStmts{ctx: ctx, tx: tx, store: s}
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
}

// apply runs a whole-twin update; it returns only database errors.
func (st *twinStmts) apply(u *twinUpdate) error {
	sel, err := st.get(selectTwinSQL)
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
	upd, err := st.get(updateTwinSQL)
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
	sel, err := st.get(selectReportedSQL)
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
	upd, err := st.get(updateReportedSQL)
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
	if err := s.prepare(ctx); err != nil {
		return nil, nil, err
	}
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		updated = updated[:0]
		st := &twinStmts{ctx: ctx, tx: tx, store: s}
		sel, err := st.get(selectServiceSideSQL)
		if err != nil {
			return err
		}
		upd, err := st.get(updateServiceSideSQL)
		if err != nil {
			return err
		}
		pre, err := st.serviceSides(keys)
		if err != nil {
			return err
		}
		for i, key := range keys {
			t, ok := pre[key]
			delete(pre, key) // a key listed twice reads its first update below
			var err error
			if !ok {
				t, err = scanServiceSide(sel.QueryRowContext(ctx, key.DeviceID, key.ModuleID), key)
			}
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

// serviceSides reads the service side of every twin of keys that exists
// with one query (missing twins are simply absent from the map).
func (st *twinStmts) serviceSides(keys []twins.Key) (map[twins.Key]*twins.Twin, error) {
	list := make([][2]string, len(keys))
	for i, k := range keys {
		list[i] = [2]string{k.DeviceID, k.ModuleID}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	q, err := st.get(selectServiceSidesSQL)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(st.ctx, string(b))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[twins.Key]*twins.Twin, len(keys))
	for rows.Next() {
		var key twins.Key
		t, err := scanServiceSide(keyedRow{rows, &key}, key)
		if err != nil {
			return nil, err
		}
		t.Key = key
		out[key] = t
	}
	return out, rows.Err()
}

// keyedRow scans a row that starts with device_id and module_id into key,
// then the rest as the wrapped scan asks.
type keyedRow struct {
	rows *sql.Rows
	key  *twins.Key
}

func (r keyedRow) Scan(dest ...any) error {
	return r.rows.Scan(append([]any{&r.key.DeviceID, &r.key.ModuleID}, dest...)...)
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
