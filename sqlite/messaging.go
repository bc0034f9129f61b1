package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// MessageLog implements messaging.Log. A batch is stored with multi-row
// INSERTs of up to insertRows rows, each statement prepared once on the
// writer connection per row count: parsing SQL per batch cost more than the
// inserts, and one statement execution per row cost more than the rows.
type MessageLog struct {
	db *DB // unexported: build it with NewMessageLog, which reads where numbering stands

	// next is the last sequence number handed out. Only the telemetry
	// writer appends, but mu keeps Append safe for any caller; it also
	// guards inserts and args.
	mu      sync.Mutex
	next    int64
	inserts [insertRows + 1]*sql.Stmt // by row count
	args    []any
}

// insertRows is the most rows one INSERT stores (6 parameters a row, far
// below SQLite's 32766).
const insertRows = 64

// insertStmt returns the prepared INSERT of n rows.
func (s *MessageLog) insertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := s.inserts[n]; st != nil {
		return st, nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO d2c_messages (seq, device_id, module_id, enqueued_ms, props, body) VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?)`)
	}
	st, err := s.db.Writer().PrepareContext(ctx, q.String())
	if err != nil {
		return nil, err
	}
	s.inserts[n] = st
	return st, nil
}

var _ messaging.Log = (*MessageLog)(nil)

// NewMessageLog returns the log over db, numbering on from what it holds.
func NewMessageLog(ctx context.Context, db *DB) (*MessageLog, error) {
	s := &MessageLog{db: db}
	// Sequence numbers continue from the larger of the stored rows and the
	// d2c_seq counter, which Trim saves before it deletes: no per-batch
	// counter write, and no reuse after retention emptied the table.
	err := db.Writer().QueryRowContext(ctx, `SELECT MAX(COALESCE((SELECT value FROM counters WHERE name = 'd2c_seq'), 0),
		COALESCE((SELECT MAX(seq) FROM d2c_messages), 0))`).Scan(&s.next)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// d2cProps is the props column of d2c_messages: short names, empty members
// left out, so the row stays small.
type d2cProps struct {
	Auth  string            `json:"a,omitempty"`
	Gen   string            `json:"g,omitempty"`
	Tr    string            `json:"t,omitempty"`
	Mid   string            `json:"mid,omitempty"`
	Cid   string            `json:"cid,omitempty"`
	Uid   string            `json:"uid,omitempty"`
	To    string            `json:"to,omitempty"`
	Ct    string            `json:"ct,omitempty"`
	Ce    string            `json:"ce,omitempty"`
	Ctime int64             `json:"ctime,omitempty"` // Unix ns
	Exp   int64             `json:"exp,omitempty"`   // Unix ns
	Sys   map[string]string `json:"s,omitempty"`
	App   map[string]string `json:"p,omitempty"`
}

// encodeD2CProps is json.Marshal of p, byte for byte. Messages without
// property maps whose strings need no escaping, most telemetry, skip
// reflection; the rest go through json.Marshal.
func encodeD2CProps(p d2cProps) ([]byte, error) {
	if len(p.Sys) > 0 || len(p.App) > 0 {
		return json.Marshal(p)
	}
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for _, f := range [...]struct{ k, v string }{{"a", p.Auth}, {"g", p.Gen}, {"t", p.Tr}, {"mid", p.Mid}, {"cid", p.Cid},
		{"uid", p.Uid}, {"to", p.To}, {"ct", p.Ct}, {"ce", p.Ce}} {
		if f.v == "" {
			continue
		}
		if !plainJSON(f.v) {
			return json.Marshal(p)
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.k...)
		b = append(b, `":"`...)
		b = append(b, f.v...)
		b = append(b, '"')
	}
	for _, f := range [...]struct {
		k string
		v int64
	}{{"ctime", p.Ctime}, {"exp", p.Exp}} {
		if f.v == 0 {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, f.v, 10)
	}
	return append(b, '}'), nil
}

// plainJSON reports whether json.Marshal writes s between quotes unchanged:
// printable ASCII other than the quote, the backslash and the HTML
// characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func fromUnixMilli(n int64) time.Time { return time.UnixMilli(n).UTC() }

// Append stores msgs in one transaction. Sequence numbers come from the
// d2c_seq counter, bumped once per batch.
func (s *MessageLog) Append(ctx context.Context, msgs []*messaging.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.next
	args := s.args[:0]
	for _, m := range msgs {
		last++
		p, err := encodeD2CProps(d2cProps{Auth: m.AuthMethod, Gen: m.GenerationID, Tr: m.Transport, Mid: m.MessageID, Cid: m.CorrelationID,
			Uid: m.UserID, To: m.To, Ct: m.ContentType, Ce: m.ContentEncoding, Ctime: unixNano(m.CreationTime), Exp: unixNano(m.ExpiryTime),
			Sys: m.System, App: m.Properties})
		if err != nil {
			return err
		}
		body := m.Body
		if body == nil {
			body = []byte{}
		}
		args = append(args, last, m.DeviceID, m.ModuleID, m.EnqueuedTime.UnixMilli(), p, body)
	}
	// Statements are prepared before the transaction: preparing inside it
	// would need the writer's one connection twice.
	full, err := s.insertStmt(ctx, min(len(msgs), insertRows))
	if err != nil {
		return err
	}
	var rest *sql.Stmt
	if r := len(msgs) % insertRows; r != 0 && len(msgs) > insertRows {
		if rest, err = s.insertStmt(ctx, r); err != nil {
			return err
		}
	}
	err = s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		for i := 0; i < len(msgs); i += insertRows {
			n := min(len(msgs)-i, insertRows)
			st := full
			if n < insertRows && len(msgs) > insertRows {
				st = rest
			}
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args[i*6:(i+n)*6]...); err != nil {
				return err
			}
		}
		return nil
	})
	clear(args)
	s.args = args[:0]
	if err != nil {
		return err
	}
	// Numbers are only handed out once the transaction commits.
	first := s.next + 1
	s.next = last
	for i, m := range msgs {
		m.SequenceNumber = first + int64(i)
	}
	return nil
}

// List returns messages in ascending sequence order. A device filter has no
// index to use (one cost every append a dozen scattered page writes): it
// reads rows from From upwards, or from the newest backwards, until Limit
// match, which at most scans what retention keeps.
func (s *MessageLog) List(ctx context.Context, f messaging.Filter) ([]*messaging.Message, error) {
	var where []string
	var args []any
	if f.DeviceID != "" {
		where = append(where, "device_id = ?")
		args = append(args, f.DeviceID)
	}
	if f.ModuleID != "" {
		where = append(where, "module_id = ?")
		args = append(args, f.ModuleID)
	}
	if f.From > 0 {
		where = append(where, "seq >= ?")
		args = append(args, f.From)
	}
	q := `SELECT seq, device_id, module_id, enqueued_ms, props, body FROM d2c_messages`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.From > 0 {
		q += " ORDER BY seq LIMIT ?"
	} else {
		// The most recent Limit, returned oldest first.
		q = `SELECT * FROM (` + q + ` ORDER BY seq DESC LIMIT ?) ORDER BY seq`
	}
	args = append(args, f.Limit)
	rows, err := s.db.Reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*messaging.Message{}
	for rows.Next() {
		var (
			m     messaging.Message
			ms    int64
			props []byte
		)
		if err := rows.Scan(&m.SequenceNumber, &m.DeviceID, &m.ModuleID, &ms, &props, &m.Body); err != nil {
			return nil, err
		}
		var p d2cProps
		if err := json.Unmarshal(props, &p); err != nil {
			return nil, err
		}
		m.EnqueuedTime = fromUnixMilli(ms)
		m.AuthMethod, m.GenerationID, m.Transport = p.Auth, p.Gen, p.Tr
		m.MessageID, m.CorrelationID, m.UserID, m.To, m.ContentType, m.ContentEncoding = p.Mid, p.Cid, p.Uid, p.To, p.Ct, p.Ce
		m.CreationTime, m.ExpiryTime = fromUnixNano(p.Ctime), fromUnixNano(p.Exp)
		m.System, m.Properties = p.Sys, p.App
		out = append(out, &m)
	}
	return out, rows.Err()
}

// Trim applies retention: the newest keep rows stay, and rows enqueued
// before cutoff go.
func (s *MessageLog) Trim(ctx context.Context, keep int, cutoff time.Time) (int64, error) {
	var n int64
	err := s.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (name, value) SELECT 'd2c_seq', MAX(seq) FROM d2c_messages WHERE true HAVING MAX(seq) IS NOT NULL
			ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)`); err != nil {
			return err
		}
		if keep > 0 {
			r, err := tx.ExecContext(ctx, `DELETE FROM d2c_messages WHERE seq <= (SELECT MAX(seq) FROM d2c_messages) - ?`, keep)
			if err != nil {
				return err
			}
			c, _ := r.RowsAffected()
			n += c
		}
		if !cutoff.IsZero() {
			// Enqueued times grow with seq, so the oldest rows are a prefix.
			r, err := tx.ExecContext(ctx, `DELETE FROM d2c_messages WHERE seq <= (SELECT MAX(seq) FROM d2c_messages WHERE enqueued_ms < ?)`, cutoff.UnixMilli())
			if err != nil {
				return err
			}
			c, _ := r.RowsAffected()
			n += c
		}
		return nil
	})
	return n, err
}

// C2DQueue implements messaging.Queue.
type C2DQueue struct{ DB *DB }

var _ messaging.Queue = (*C2DQueue)(nil)

type c2dProps struct {
	To  string            `json:"to,omitempty"`
	Cid string            `json:"cid,omitempty"`
	Uid string            `json:"uid,omitempty"`
	Ct  string            `json:"ct,omitempty"`
	Ce  string            `json:"ce,omitempty"`
	App map[string]string `json:"p,omitempty"`
}

const c2dColumns = `seq, device_id, generation_id, message_id, enqueued_ms, expiry_ms, ack, delivery_count, lock_token, lock_until_ms, props, body`

func scanC2D(row scanner) (*messaging.C2DMessage, error) {
	var (
		m         messaging.C2DMessage
		enq, exp  int64
		ack       string
		lockTok   sql.NullString
		lockUntil sql.NullInt64
		props     []byte
	)
	if err := row.Scan(&m.SequenceNumber, &m.DeviceID, &m.GenerationID, &m.MessageID, &enq, &exp, &ack, &m.DeliveryCount,
		&lockTok, &lockUntil, &props, &m.Body); err != nil {
		return nil, err
	}
	var p c2dProps
	if err := json.Unmarshal(props, &p); err != nil {
		return nil, err
	}
	m.EnqueuedTime, m.ExpiryTime = fromUnixMilli(enq), fromUnixMilli(exp)
	m.Ack = messaging.Ack(ack)
	m.LockToken = lockTok.String
	if lockUntil.Valid {
		m.LockedUntil = fromUnixMilli(lockUntil.Int64)
	}
	m.To, m.CorrelationID, m.UserID, m.ContentType, m.ContentEncoding, m.Properties = p.To, p.Cid, p.Uid, p.Ct, p.Ce, p.App
	return &m, nil
}

func queryC2D(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*messaging.C2DMessage, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*messaging.C2DMessage{}
	for rows.Next() {
		m, err := scanC2D(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *C2DQueue) EnqueueMany(ctx context.Context, msgs []*messaging.C2DMessage, limit int) ([]error, error) {
	errs := make([]error, len(msgs))
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		gen, err := tx.PrepareContext(ctx, `SELECT generation_id FROM identities WHERE device_id = ? AND module_id = ''`)
		if err != nil {
			return err
		}
		defer gen.Close()
		count, err := tx.PrepareContext(ctx, `SELECT COUNT(*) FROM c2d_messages WHERE device_id = ?`)
		if err != nil {
			return err
		}
		defer count.Close()
		ins, err := tx.PrepareContext(ctx, `INSERT INTO c2d_messages (device_id, generation_id, message_id, enqueued_ms, expiry_ms, ack, props, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`)
		if err != nil {
			return err
		}
		defer ins.Close()
		type device struct {
			gen     string
			pending int
			missing bool
		}
		devices := map[string]*device{}
		for i, m := range msgs {
			d := devices[m.DeviceID]
			if d == nil {
				d = &device{}
				devices[m.DeviceID] = d
				err := gen.QueryRowContext(ctx, m.DeviceID).Scan(&d.gen)
				if errors.Is(err, sql.ErrNoRows) {
					d.missing = true
				} else if err != nil {
					return err
				} else if err := count.QueryRowContext(ctx, m.DeviceID).Scan(&d.pending); err != nil {
					return err
				}
			}
			if d.missing {
				errs[i] = iothub.Errorf(iothub.DeviceNotFound, "Device %s not registered", m.DeviceID)
				continue
			}
			if d.pending >= limit {
				errs[i] = iothub.Errorf(iothub.DeviceMaximumQueueDepthExceeded, "Maximum queue depth of %d exceeded for device %s.", limit, m.DeviceID)
				continue
			}
			p, err := json.Marshal(c2dProps{To: m.To, Cid: m.CorrelationID, Uid: m.UserID, Ct: m.ContentType, Ce: m.ContentEncoding, App: m.Properties})
			if err != nil {
				return err
			}
			body := m.Body
			if body == nil {
				body = []byte{}
			}
			m.GenerationID = d.gen
			if err := ins.QueryRowContext(ctx, m.DeviceID, m.GenerationID, m.MessageID, m.EnqueuedTime.UnixMilli(),
				m.ExpiryTime.UnixMilli(), string(m.Ack), p, body).Scan(&m.SequenceNumber); err != nil {
				return err
			}
			d.pending++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

func (s *C2DQueue) Lock(ctx context.Context, deviceID string, now, until time.Time, n int) ([]*messaging.C2DMessage, error) {
	var out []*messaging.C2DMessage
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		msgs, err := queryC2D(ctx, tx, `SELECT `+c2dColumns+` FROM c2d_messages
			WHERE device_id = ? AND lock_token IS NULL AND expiry_ms > ? ORDER BY seq LIMIT ?`, deviceID, now.UnixMilli(), n)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			m.LockToken, m.LockedUntil = uuid.NewString(), until.UTC().Truncate(time.Millisecond)
			if _, err := tx.ExecContext(ctx, `UPDATE c2d_messages SET lock_token = ?, lock_until_ms = ? WHERE seq = ?`,
				m.LockToken, until.UnixMilli(), m.SequenceNumber); err != nil {
				return err
			}
		}
		out = msgs
		return nil
	})
	return out, err
}

func (s *C2DQueue) LockMany(ctx context.Context, deviceIDs []string, now, until time.Time, n int) (map[string][]*messaging.C2DMessage, error) {
	out := map[string][]*messaging.C2DMessage{}
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		sel, err := tx.PrepareContext(ctx, `SELECT `+c2dColumns+` FROM c2d_messages
			WHERE device_id = ? AND lock_token IS NULL AND expiry_ms > ? ORDER BY seq LIMIT ?`)
		if err != nil {
			return err
		}
		defer sel.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE c2d_messages SET lock_token = ?, lock_until_ms = ? WHERE seq = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		for _, d := range deviceIDs {
			msgs, err := queryC2D(ctx, stmtQuerier{sel}, "", d, now.UnixMilli(), n)
			if err != nil {
				return err
			}
			for _, m := range msgs {
				m.LockToken, m.LockedUntil = uuid.NewString(), until.UTC().Truncate(time.Millisecond)
				if _, err := upd.ExecContext(ctx, m.LockToken, until.UnixMilli(), m.SequenceNumber); err != nil {
					return err
				}
			}
			if len(msgs) > 0 {
				out[d] = msgs
			}
		}
		return nil
	})
	return out, err
}

// stmtQuerier lets queryC2D run a prepared statement (the query text is
// the statement's own).
type stmtQuerier struct{ st *sql.Stmt }

func (q stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}

func (s *C2DQueue) RemoveMany(ctx context.Context, keys []messaging.LockKey, now time.Time) ([]*messaging.C2DMessage, []error, error) {
	msgs := make([]*messaging.C2DMessage, len(keys))
	errs := make([]error, len(keys))
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		del, err := tx.PrepareContext(ctx, `DELETE FROM c2d_messages WHERE lock_token = ? AND device_id = ? AND lock_until_ms > ? RETURNING `+c2dColumns)
		if err != nil {
			return err
		}
		defer del.Close()
		for i, k := range keys {
			m, err := scanC2D(del.QueryRowContext(ctx, k.Token, k.DeviceID, now.UnixMilli()))
			if errors.Is(err, sql.ErrNoRows) {
				errs[i] = lockLost(k.Token)
				continue
			}
			if err != nil {
				return err
			}
			msgs[i] = m
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return msgs, errs, nil
}

func lockLost(token string) error {
	return iothub.Errorf(iothub.DeviceMessageLockLost, "Message lock %s is lost or expired.", token)
}

// locked loads the message that token locks, if the lock is live.
func locked(ctx context.Context, tx *sql.Tx, deviceID, token string, now time.Time) (*messaging.C2DMessage, error) {
	m, err := scanC2D(tx.QueryRowContext(ctx, `SELECT `+c2dColumns+` FROM c2d_messages
		WHERE lock_token = ? AND device_id = ? AND lock_until_ms > ?`, token, deviceID, now.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, lockLost(token)
	}
	return m, err
}

func (s *C2DQueue) Remove(ctx context.Context, deviceID, token string, now time.Time) (*messaging.C2DMessage, error) {
	var out *messaging.C2DMessage
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		m, err := locked(ctx, tx, deviceID, token, now)
		if err != nil {
			return err
		}
		out = m
		_, err = tx.ExecContext(ctx, `DELETE FROM c2d_messages WHERE seq = ?`, m.SequenceNumber)
		return err
	})
	return out, err
}

func (s *C2DQueue) Unlock(ctx context.Context, deviceID, token string, now time.Time, count bool, maxDelivery int) (*messaging.C2DMessage, bool, error) {
	var (
		out  *messaging.C2DMessage
		dead bool
	)
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		m, err := locked(ctx, tx, deviceID, token, now)
		if err != nil {
			return err
		}
		out = m
		if count {
			m.DeliveryCount++
		}
		m.LockToken, m.LockedUntil = "", time.Time{}
		if count && m.DeliveryCount >= maxDelivery {
			dead = true
			_, err = tx.ExecContext(ctx, `DELETE FROM c2d_messages WHERE seq = ?`, m.SequenceNumber)
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE c2d_messages SET lock_token = NULL, lock_until_ms = NULL, delivery_count = ? WHERE seq = ?`,
			m.DeliveryCount, m.SequenceNumber)
		return err
	})
	return out, dead, err
}

func (s *C2DQueue) Purge(ctx context.Context, deviceID string) ([]*messaging.C2DMessage, error) {
	var out []*messaging.C2DMessage
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM identities WHERE device_id = ? AND module_id = ''`, deviceID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return iothub.Errorf(iothub.DeviceNotFound, "Device %s not registered", deviceID)
		}
		msgs, err := queryC2D(ctx, tx, `DELETE FROM c2d_messages WHERE device_id = ? RETURNING `+c2dColumns, deviceID)
		out = msgs
		return err
	})
	return out, err
}

func (s *C2DQueue) Pending(ctx context.Context, deviceID string) ([]*messaging.C2DMessage, error) {
	return queryC2D(ctx, s.DB.Reader(), `SELECT `+c2dColumns+` FROM c2d_messages WHERE device_id = ? ORDER BY seq`, deviceID)
}

func (s *C2DQueue) Sweep(ctx context.Context, now time.Time, maxDelivery int) (expired, dead []*messaging.C2DMessage, devices []string, err error) {
	ms := now.UnixMilli()
	// A cheap read first: most sweeps find nothing and should not take the
	// writer from telemetry.
	var due int
	if err := s.DB.Reader().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM c2d_messages WHERE expiry_ms <= ?)
		OR EXISTS (SELECT 1 FROM c2d_messages WHERE lock_token IS NOT NULL AND lock_until_ms <= ?)`, ms, ms).Scan(&due); err != nil || due == 0 {
		return nil, nil, nil, err
	}
	err = s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		var err error
		expired, err = queryC2D(ctx, tx, `DELETE FROM c2d_messages WHERE expiry_ms <= ? RETURNING `+c2dColumns, ms)
		if err != nil {
			return err
		}
		dead, err = queryC2D(ctx, tx, `DELETE FROM c2d_messages WHERE lock_token IS NOT NULL AND lock_until_ms <= ? AND delivery_count + 1 >= ?
			RETURNING `+c2dColumns, ms, maxDelivery)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `UPDATE c2d_messages SET lock_token = NULL, lock_until_ms = NULL, delivery_count = delivery_count + 1
			WHERE lock_token IS NOT NULL AND lock_until_ms <= ? RETURNING device_id`, ms)
		if err != nil {
			return err
		}
		defer rows.Close()
		seen := map[string]bool{}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				devices = append(devices, d)
			}
		}
		return rows.Err()
	})
	return expired, dead, devices, err
}

func (s *C2DQueue) ReleaseAll(ctx context.Context) error {
	_, err := s.DB.Writer().ExecContext(ctx, `UPDATE c2d_messages SET lock_token = NULL, lock_until_ms = NULL WHERE lock_token IS NOT NULL`)
	return err
}

func (s *C2DQueue) AddFeedback(ctx context.Context, fb []*messaging.Feedback) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		for _, f := range fb {
			if err := tx.QueryRowContext(ctx, `INSERT INTO c2d_feedback (original_message_id, device_id, device_generation_id, enqueued_ms, status_code, description)
				VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`, f.OriginalMessageID, f.DeviceID, f.DeviceGenerationID, f.EnqueuedTime.UnixMilli(),
				f.StatusCode, f.Description).Scan(&f.Sequence); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *C2DQueue) Feedback(ctx context.Context, f messaging.FeedbackFilter) ([]*messaging.Feedback, error) {
	q := `SELECT seq, original_message_id, device_id, device_generation_id, enqueued_ms, status_code, description FROM c2d_feedback WHERE seq >= ?`
	args := []any{f.From}
	if f.DeviceID != "" {
		q += ` AND device_id = ?`
		args = append(args, f.DeviceID)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.DB.Reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanFeedback(rows)
}

func scanFeedback(rows *sql.Rows) ([]*messaging.Feedback, error) {
	out := []*messaging.Feedback{}
	for rows.Next() {
		var fb messaging.Feedback
		var ms int64
		if err := rows.Scan(&fb.Sequence, &fb.OriginalMessageID, &fb.DeviceID, &fb.DeviceGenerationID, &ms, &fb.StatusCode, &fb.Description); err != nil {
			return nil, err
		}
		fb.EnqueuedTime = fromUnixMilli(ms)
		out = append(out, &fb)
	}
	return out, rows.Err()
}

func (s *C2DQueue) LockFeedback(ctx context.Context, now, until time.Time, n int) (string, []*messaging.Feedback, error) {
	token := uuid.NewString()
	var out []*messaging.Feedback
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE c2d_feedback SET lock_token = ?, lock_until_ms = ?
			WHERE seq IN (SELECT seq FROM c2d_feedback WHERE settled = 0 AND (lock_token IS NULL OR lock_until_ms <= ?) ORDER BY seq LIMIT ?)
			RETURNING seq, original_message_id, device_id, device_generation_id, enqueued_ms, status_code, description`,
			token, until.UnixMilli(), now.UnixMilli(), n)
		if err != nil {
			return err
		}
		defer rows.Close()
		out, err = scanFeedback(rows)
		return err
	})
	if err != nil || len(out) == 0 {
		return "", nil, err
	}
	// RETURNING gives no order guarantee.
	sort.Slice(out, func(i, j int) bool { return out[i].Sequence < out[j].Sequence })
	return token, out, nil
}

func (s *C2DQueue) SettleFeedback(ctx context.Context, token string, now time.Time, remove bool) error {
	q := `UPDATE c2d_feedback SET lock_token = NULL, lock_until_ms = NULL WHERE lock_token = ? AND lock_until_ms > ?`
	if remove {
		q = `UPDATE c2d_feedback SET settled = 1, lock_token = NULL, lock_until_ms = NULL WHERE lock_token = ? AND lock_until_ms > ?`
	}
	res, err := s.DB.Writer().ExecContext(ctx, q, token, now.UnixMilli())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return iothub.Errorf(iothub.DeviceMessageLockLost, "Feedback lock %s is lost or expired.", token)
	}
	return nil
}
