package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/jobs"
)

// countedStats is what fillStats used to compute: the job's device records
// counted by status.
func countedStats(t *testing.T, db *DB, jobID string) jobs.Stats {
	t.Helper()
	j := &jobs.Job{ID: jobID}
	rows, err := db.Reader().Query(`SELECT status, COUNT(*) FROM device_jobs WHERE job_id = ? GROUP BY status`, jobID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			t.Fatal(err)
		}
		j.Stats.DeviceCount += n
		switch status {
		case jobs.DeviceCompleted:
			j.Stats.SucceededCount += n
		case jobs.DeviceFailed:
			j.Stats.FailedCount += n
		case jobs.DevicePending:
			j.Stats.PendingCount += n
		}
	}
	return j.Stats
}

func jobStats(t *testing.T, s *JobStore, id string) jobs.Stats {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j.Stats
}

// The counts kept by triggers (migration 0025) follow every change of the
// device records: selection (duplicates ignored), outcomes, settling, and
// deletion with the job.
func TestJobStore_StatsFollowDeviceRecords(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t, "")
	s := &JobStore{DB: db}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, id := range []string{"j1", "j2"} {
		if err := s.Create(ctx, &jobs.Job{ID: id, Type: jobs.TypeDeviceMethod, QueryCondition: "*", CreatedTime: now, StartTime: now,
			Status: jobs.StatusRunning, Method: &jobs.Method{MethodName: "m"}}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(from, to int) []jobs.DeviceKey {
		var out []jobs.DeviceKey
		for i := from; i < to; i++ {
			out = append(out, jobs.DeviceKey{DeviceID: fmt.Sprintf("d%02d", i)})
		}
		return out
	}
	finish := func(id string, status string, from, to int) {
		var out []*jobs.DeviceJob
		for _, k := range keys(from, to) {
			dj := &jobs.DeviceJob{JobID: id, DeviceKey: k, Status: status, StartTime: now, EndTime: now, LastUpdated: now}
			if status == jobs.DeviceFailed {
				dj.ErrorCode, dj.ErrorMessage = "DeviceNotOnline", "offline"
			}
			out = append(out, dj)
		}
		if err := s.Finish(ctx, out); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, id string, want jobs.Stats) {
		t.Helper()
		if got, counted := jobStats(t, s, id), countedStats(t, db, id); got != want || counted != want {
			t.Errorf("%s, job %s: stats %+v, counted from the records %+v, want %+v", step, id, got, counted, want)
		}
	}
	check("before selection", "j1", jobs.Stats{})
	if err := s.Select(ctx, "j1", keys(0, 10), now); err != nil {
		t.Fatal(err)
	}
	if err := s.Select(ctx, "j1", keys(5, 12), now); err != nil { // 5..9 again: ignored
		t.Fatal(err)
	}
	if err := s.Select(ctx, "j2", keys(0, 3), now); err != nil {
		t.Fatal(err)
	}
	check("selected", "j1", jobs.Stats{DeviceCount: 12, PendingCount: 12})
	finish("j1", jobs.DeviceCompleted, 0, 4)
	finish("j1", jobs.DeviceFailed, 4, 6)
	finish("j1", jobs.DeviceCompleted, 0, 2) // the same outcome again changes nothing
	check("finished some", "j1", jobs.Stats{DeviceCount: 12, SucceededCount: 4, FailedCount: 2, PendingCount: 6})
	// Runs of equal outcomes share a statement, single ones get their own:
	// every record must still get its own outcome.
	later := now.Add(time.Second)
	status := 200
	mixed := []*jobs.DeviceJob{
		{JobID: "j1", DeviceKey: jobs.DeviceKey{DeviceID: "d06"}, Status: jobs.DeviceCompleted, StartTime: later, EndTime: later, LastUpdated: later},
		{JobID: "j1", DeviceKey: jobs.DeviceKey{DeviceID: "d07"}, Status: jobs.DeviceCompleted, StartTime: later, EndTime: later, LastUpdated: later,
			MethodStatus: &status, MethodPayload: []byte(`{"ok":true}`)},
		{JobID: "j1", DeviceKey: jobs.DeviceKey{DeviceID: "d08"}, Status: jobs.DeviceFailed, StartTime: later, EndTime: later, LastUpdated: later,
			ErrorCode: "DeviceNotOnline", ErrorMessage: "offline"},
		{JobID: "j1", DeviceKey: jobs.DeviceKey{DeviceID: "d09"}, Status: jobs.DeviceFailed, StartTime: later, EndTime: later, LastUpdated: later,
			ErrorCode: "DeviceNotOnline", ErrorMessage: "offline"},
	}
	if err := s.Finish(ctx, mixed); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ device, status, outcome, errJSON string }{
		{"d05", jobs.DeviceFailed, "", `{"code":"DeviceNotOnline","description":"offline"}`},
		{"d06", jobs.DeviceCompleted, "", ""},
		{"d07", jobs.DeviceCompleted, `{"deviceMethodResponse":{"payload":{"ok":true},"status":200}}`, ""},
		{"d08", jobs.DeviceFailed, "", `{"code":"DeviceNotOnline","description":"offline"}`},
		{"d09", jobs.DeviceFailed, "", `{"code":"DeviceNotOnline","description":"offline"}`},
		{"d10", jobs.DevicePending, "", ""},
	} {
		var st, end string
		var outcome, errJSON sql.NullString
		if err := db.Reader().QueryRow(`SELECT status, COALESCE(end_time, ''), outcome, error FROM device_jobs WHERE job_id = 'j1' AND device_id = ?`,
			want.device).Scan(&st, &end, &outcome, &errJSON); err != nil {
			t.Fatal(err)
		}
		if st != want.status || outcome.String != want.outcome || errJSON.String != want.errJSON ||
			(want.device >= "d06" && want.device <= "d09") != (end == formatTime(later)) {
			t.Errorf("%s: %s %s %q %q", want.device, st, end, outcome.String, errJSON.String)
		}
	}
	check("finished a mixed batch", "j1", jobs.Stats{DeviceCount: 12, SucceededCount: 6, FailedCount: 4, PendingCount: 2})
	if n, err := s.SettlePending(ctx, "j1", jobs.DeviceCanceled, "", "", now); err != nil || n != 2 {
		t.Fatalf("SettlePending = %d, %v", n, err)
	}
	check("cancelled", "j1", jobs.Stats{DeviceCount: 12, SucceededCount: 6, FailedCount: 4})
	check("the other job", "j2", jobs.Stats{DeviceCount: 3, PendingCount: 3})

	if _, err := s.Update(ctx, "j1", func(j *jobs.Job) error { j.Status, j.EndTime = jobs.StatusCancelled, now; return nil }); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteFinishedBefore(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("DeleteFinishedBefore = %d, %v", n, err)
	}
	var left int
	if err := db.Reader().QueryRow(`SELECT COUNT(*) FROM job_device_counts WHERE job_id = 'j1'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("counts of a deleted job: %d rows, %v", left, err)
	}
	check("after deleting j1", "j2", jobs.Stats{DeviceCount: 3, PendingCount: 3})
}

// A database from before migration 0025 gets its jobs' counts from their
// records.
func TestJobStore_CountsMigrateFromRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := &JobStore{DB: db}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	if err := s.Create(ctx, &jobs.Job{ID: "old", Type: jobs.TypeDeviceMethod, QueryCondition: "*", CreatedTime: now, StartTime: now,
		Status: jobs.StatusRunning, Method: &jobs.Method{MethodName: "m"}}); err != nil {
		t.Fatal(err)
	}
	// Back to the schema before 0025, then records written by that version.
	err = db.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DROP TRIGGER device_jobs_count_insert; DROP TRIGGER device_jobs_count_update; DROP TRIGGER device_jobs_count_delete;
			DROP TABLE job_device_counts; DELETE FROM migrations WHERE name = 'migration/0025_job_device_counts.sql';
			INSERT INTO device_jobs (job_id, device_id, job_type, status, created_time, last_updated_time) VALUES
			  ('old', 'a', 'scheduleDeviceMethod', 'completed', 'x', 'x'), ('old', 'b', 'scheduleDeviceMethod', 'pending', 'x', 'x'),
			  ('old', 'c', 'scheduleDeviceMethod', 'pending', 'x', 'x'), ('old', 'd', 'scheduleDeviceMethod', 'failed', 'x', 'x')`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := jobs.Stats{DeviceCount: 4, SucceededCount: 1, FailedCount: 1, PendingCount: 2}
	if got := jobStats(t, &JobStore{DB: db}, "old"); got != want {
		t.Errorf("stats after the migration %+v, want %+v", got, want)
	}
}

// A batch of pending records is a range of device_jobs_pending, not a walk
// over the job's finished records.
func TestJobStore_PendingReadsItsIndexRange(t *testing.T) {
	db := openTestDB(t, "")
	rows, err := db.Reader().Query(`EXPLAIN QUERY PLAN `+pendingSQL, "j", 512)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if len(plan) != 1 || plan[0] != "SEARCH device_jobs USING INDEX device_jobs_pending (job_id=? AND status=?)" {
		t.Errorf("plan %q", plan)
	}
}
