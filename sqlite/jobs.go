package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
)

// JobStore implements jobs.Store.
type JobStore struct{ DB *DB }

var _ jobs.Store = (*JobStore)(nil)

const jobColumns = `job_id, type, query_condition, created_time, start_time, end_time, max_execution_seconds,
	method, update_twin, status, status_message, failure_reason, selected`

// methodJSON and twinJSON are how a job's request parts are stored.
type methodJSON struct {
	MethodName      string          `json:"methodName"`
	Payload         json.RawMessage `json:"payload"`
	ResponseTimeout int64           `json:"responseTimeoutInSeconds"`
	ConnectTimeout  int64           `json:"connectTimeoutInSeconds"`
}

type twinJSON struct {
	DeviceID string         `json:"deviceId,omitempty"`
	ETag     string         `json:"etag"`
	Tags     map[string]any `json:"tags,omitempty"`
	Desired  map[string]any `json:"desired,omitempty"`
}

func jobNotFound(id string) error {
	return iothub.Errorf(iothub.JobNotFound, "Job with id '%s' not found.", id)
}

func scanJob(row scanner) (*jobs.Job, error) {
	var (
		j                 jobs.Job
		created, start    string
		end, method, twin sql.NullString
		maxSecs           int64
		selected          int
	)
	if err := row.Scan(&j.ID, &j.Type, &j.QueryCondition, &created, &start, &end, &maxSecs, &method, &twin,
		&j.Status, &j.StatusMessage, &j.FailureReason, &selected); err != nil {
		return nil, err
	}
	j.CreatedTime, j.StartTime = parseTime(created), parseTime(start)
	if end.Valid {
		j.EndTime = parseTime(end.String)
	}
	j.MaxExecutionTime = time.Duration(maxSecs) * time.Second
	j.Selected = selected != 0
	if method.Valid {
		var m methodJSON
		if err := json.Unmarshal([]byte(method.String), &m); err != nil {
			return nil, err
		}
		j.Method = &jobs.Method{MethodName: m.MethodName, Payload: m.Payload,
			ResponseTimeout: time.Duration(m.ResponseTimeout) * time.Second, ConnectTimeout: time.Duration(m.ConnectTimeout) * time.Second}
	}
	if twin.Valid {
		var t twinJSON
		if err := json.Unmarshal([]byte(twin.String), &t); err != nil {
			return nil, err
		}
		j.UpdateTwin = &jobs.TwinPatch{DeviceID: t.DeviceID, ETag: t.ETag, Tags: t.Tags, Desired: t.Desired}
	}
	return &j, nil
}

func jobArgs(j *jobs.Job) ([]any, error) {
	var method, twin sql.NullString
	if j.Method != nil {
		b, err := json.Marshal(methodJSON{j.Method.MethodName, j.Method.Payload, int64(j.Method.ResponseTimeout / time.Second), int64(j.Method.ConnectTimeout / time.Second)})
		if err != nil {
			return nil, err
		}
		method = sql.NullString{String: string(b), Valid: true}
	}
	if j.UpdateTwin != nil {
		b, err := json.Marshal(twinJSON{j.UpdateTwin.DeviceID, j.UpdateTwin.ETag, j.UpdateTwin.Tags, j.UpdateTwin.Desired})
		if err != nil {
			return nil, err
		}
		twin = sql.NullString{String: string(b), Valid: true}
	}
	var end sql.NullString
	if !j.EndTime.IsZero() {
		end = sql.NullString{String: formatTime(j.EndTime), Valid: true}
	}
	selected := 0
	if j.Selected {
		selected = 1
	}
	return []any{j.ID, j.Type, j.QueryCondition, formatTime(j.CreatedTime), formatTime(j.StartTime), end,
		int64(j.MaxExecutionTime / time.Second), method, twin, j.Status, j.StatusMessage, j.FailureReason, selected}, nil
}

func (s *JobStore) Create(ctx context.Context, j *jobs.Job) error {
	args, err := jobArgs(j)
	if err != nil {
		return err
	}
	_, err = s.DB.Writer().ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`, args...)
	if isUniqueViolation(err) {
		return iothub.Errorf(iothub.JobAlreadyExists, "A job with id '%s' already exists.", j.ID)
	}
	return err
}

type queryRower interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func getJob(ctx context.Context, q queryRower, id string) (*jobs.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, jobNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	return j, fillStats(ctx, q, j)
}

// fillStats reads the job's device record counts by status, which
// triggers on device_jobs keep (migration 0025).
func fillStats(ctx context.Context, q queryRower, j *jobs.Job) error {
	rows, err := q.QueryContext(ctx, `SELECT status, n FROM job_device_counts WHERE job_id = ?`, j.ID)
	if err != nil {
		return err
	}
	defer rows.Close()
	st := jobs.Stats{}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return err
		}
		st.DeviceCount += n
		switch status {
		case jobs.DeviceCompleted:
			st.SucceededCount += n
		case jobs.DeviceFailed:
			st.FailedCount += n
		case jobs.DevicePending:
			st.PendingCount += n
		case jobs.DeviceRunning:
			st.RunningCount += n
		}
	}
	j.Stats = st
	return rows.Err()
}

func (s *JobStore) Get(ctx context.Context, id string) (*jobs.Job, error) {
	return getJob(ctx, s.DB.Reader(), id)
}

func (s *JobStore) Update(ctx context.Context, id string, fn func(*jobs.Job) error) (*jobs.Job, error) {
	var out *jobs.Job
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		j, err := getJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := fn(j); err != nil {
			return err
		}
		args, err := jobArgs(j)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET type=?, query_condition=?, created_time=?, start_time=?, end_time=?,
			max_execution_seconds=?, method=?, update_twin=?, status=?, status_message=?, failure_reason=?, selected=? WHERE job_id=?`,
			append(args[1:], id)...)
		out = j
		return err
	})
	return out, err
}

func (s *JobStore) list(ctx context.Context, where string, args ...any) ([]*jobs.Job, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs `+where, args...)
	if err != nil {
		return nil, err
	}
	var out []*jobs.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, j := range out {
		if err := fillStats(ctx, s.DB.Reader(), j); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *JobStore) List(ctx context.Context, f jobs.Filter, after string, limit int) ([]*jobs.Job, error) {
	where := []string{"job_id > ?"}
	args := []any{after}
	if f.Type != "" {
		where = append(where, "type = ? COLLATE NOCASE")
		args = append(args, f.Type)
	}
	if f.Status != "" {
		where = append(where, "status = ? COLLATE NOCASE")
		args = append(args, f.Status)
	}
	args = append(args, limit)
	return s.list(ctx, "WHERE "+strings.Join(where, " AND ")+" ORDER BY job_id LIMIT ?", args...)
}

func (s *JobStore) Active(ctx context.Context) ([]*jobs.Job, error) {
	return s.list(ctx, `WHERE status IN ('queued', 'scheduled', 'running') ORDER BY start_time, job_id`)
}

// selectChunk is how many device records one INSERT of Select writes.
const selectChunk = 1000

func (s *JobStore) Select(ctx context.Context, jobID string, devices []jobs.DeviceKey, now time.Time) error {
	ts := formatTime(now)
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		var typ string
		if err := tx.QueryRowContext(ctx, `SELECT type FROM jobs WHERE job_id = ?`, jobID).Scan(&typ); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return jobNotFound(jobID)
			}
			return err
		}
		// Keys go in as JSON arrays of selectChunk: one statement per chunk
		// instead of one per device.
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO device_jobs (job_id, device_id, module_id, job_type, status, created_time, last_updated_time)
			SELECT ?, value ->> 0, value ->> 1, ?, 'pending', ?, ? FROM json_each(?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for start := 0; start < len(devices); start += selectChunk {
			keys := make([][2]string, 0, selectChunk)
			for _, d := range devices[start:min(start+selectChunk, len(devices))] {
				keys = append(keys, [2]string{d.DeviceID, d.ModuleID})
			}
			b, err := json.Marshal(keys)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, jobID, typ, ts, ts, string(b)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET selected = 1, status = CASE WHEN status IN ('queued','scheduled') THEN 'running' ELSE status END WHERE job_id = ?`, jobID)
		return err
	})
}

// pendingSQL reads a batch of pending records. Without INDEXED BY, SQLite
// walks the job's records in primary key order (which needs no sort) and
// skips the finished ones, so every batch read every record finished before
// it: quadratic over a job.
const pendingSQL = `SELECT device_id, module_id, job_type, status, created_time
	FROM device_jobs INDEXED BY device_jobs_pending
	WHERE job_id = ? AND status = 'pending' ORDER BY device_id, module_id LIMIT ?`

func (s *JobStore) Pending(ctx context.Context, jobID string, limit int) ([]*jobs.DeviceJob, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, pendingSQL, jobID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*jobs.DeviceJob
	for rows.Next() {
		dj := &jobs.DeviceJob{JobID: jobID}
		var created string
		if err := rows.Scan(&dj.DeviceID, &dj.ModuleID, &dj.JobType, &dj.Status, &created); err != nil {
			return nil, err
		}
		dj.CreatedTime = parseTime(created)
		out = append(out, dj)
	}
	return out, rows.Err()
}

// outcomeValues are the columns Finish writes, as stored.
type outcomeValues struct {
	jobID, status, start, end, last string
	outcome, errJSON                sql.NullString
}

func finishValues(dj *jobs.DeviceJob) (outcomeValues, error) {
	v := outcomeValues{jobID: dj.JobID, status: dj.Status, start: formatTime(dj.StartTime), end: formatTime(dj.EndTime), last: formatTime(dj.LastUpdated)}
	if dj.MethodStatus != nil {
		payload := dj.MethodPayload
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		b, err := json.Marshal(map[string]any{"deviceMethodResponse": map[string]any{"status": *dj.MethodStatus, "payload": payload}})
		if err != nil {
			return v, err
		}
		v.outcome = sql.NullString{String: string(b), Valid: true}
	}
	if dj.ErrorCode != "" {
		b, _ := json.Marshal(map[string]string{"code": dj.ErrorCode, "description": dj.ErrorMessage})
		v.errJSON = sql.NullString{String: string(b), Valid: true}
	}
	return v, nil
}

// Finish records outcomes. Consecutive results with the same values (a twin
// job's chunk: one status, one set of times) share one UPDATE over their
// keys instead of one statement each.
func (s *JobStore) Finish(ctx context.Context, results []*jobs.DeviceJob) error {
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		one, err := tx.PrepareContext(ctx, `UPDATE device_jobs SET status = ?, start_time = ?, end_time = ?, last_updated_time = ?,
			outcome = ?, error = ? WHERE job_id = ? AND device_id = ? AND module_id = ?`)
		if err != nil {
			return err
		}
		defer one.Close()
		vals := make([]outcomeValues, len(results))
		for i, dj := range results {
			if vals[i], err = finishValues(dj); err != nil {
				return err
			}
		}
		var many *sql.Stmt
		for i := 0; i < len(results); {
			v, j := vals[i], i+1
			for j < len(results) && vals[j] == v {
				j++
			}
			if j == i+1 {
				dj := results[i]
				if _, err := one.ExecContext(ctx, v.status, v.start, v.end, v.last, v.outcome, v.errJSON, v.jobID, dj.DeviceID, dj.ModuleID); err != nil {
					return err
				}
				i = j
				continue
			}
			if many == nil {
				if many, err = tx.PrepareContext(ctx, `UPDATE device_jobs SET status = ?, start_time = ?, end_time = ?, last_updated_time = ?,
					outcome = ?, error = ? WHERE job_id = ? AND (device_id, module_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))`); err != nil {
					return err
				}
				defer many.Close()
			}
			keys := make([][2]string, 0, j-i)
			for _, dj := range results[i:j] {
				keys = append(keys, [2]string{dj.DeviceID, dj.ModuleID})
			}
			b, err := json.Marshal(keys)
			if err != nil {
				return err
			}
			if _, err := many.ExecContext(ctx, v.status, v.start, v.end, v.last, v.outcome, v.errJSON, v.jobID, string(b)); err != nil {
				return err
			}
			i = j
		}
		return nil
	})
}

func (s *JobStore) SettlePending(ctx context.Context, jobID, status, errCode, errMsg string, now time.Time) (int, error) {
	var errJSON sql.NullString
	if errCode != "" {
		b, _ := json.Marshal(map[string]string{"code": errCode, "description": errMsg})
		errJSON = sql.NullString{String: string(b), Valid: true}
	}
	ts := formatTime(now)
	res, err := s.DB.Writer().ExecContext(ctx, `UPDATE device_jobs SET status = ?, start_time = COALESCE(start_time, ?), end_time = ?, last_updated_time = ?, error = ?
		WHERE job_id = ? AND status IN ('pending', 'running')`, status, ts, ts, ts, errJSON, jobID)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *JobStore) DeleteFinishedBefore(ctx context.Context, t time.Time) (int, error) {
	res, err := s.DB.Writer().ExecContext(ctx, `DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND end_time < ?`, formatTime(t))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
