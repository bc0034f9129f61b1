package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// fleet is a fake device side: a selector over a fixed device list, methods
// that answer from online devices, twins that record patches.
type fleet struct {
	devices []jobs.DeviceKey
	online  map[string]bool
	calls   sync.Map // device id → *int32 call count
	gate    chan struct{}
	patched sync.Map
}

func (f *fleet) Select(ctx context.Context, cond string) ([]jobs.DeviceKey, error) {
	if cond == "bad" {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "The query is invalid")
	}
	return f.devices, nil
}

func (f *fleet) InvokeForJob(ctx context.Context, k jobs.DeviceKey, m jobs.Method) (int, json.RawMessage, error) {
	n, _ := f.calls.LoadOrStore(k.DeviceID, new(int32))
	atomic.AddInt32(n.(*int32), 1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
	if !f.online[k.DeviceID] {
		return 0, nil, iothub.Errorf(iothub.DeviceNotOnline, "Timed out waiting for device to connect.")
	}
	return 200, json.RawMessage(`{"locked":true}`), nil
}

func (f *fleet) PatchForJob(ctx context.Context, k jobs.DeviceKey, p jobs.TwinPatch) error {
	f.patched.Store(k.DeviceID, p.Desired)
	return nil
}

func newEngine(t *testing.T, db *sqlite.DB, f *fleet) *jobs.Engine {
	e, err := jobs.NewEngine(jobs.Deps{Store: &sqlite.JobStore{DB: db}, Selector: f, Methods: f, Twins: f}, jobs.Config{Workers: 4, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(context.Background())
	t.Cleanup(e.Close)
	return e
}

func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A cleanup, not a defer in the test: cleanups run after the test's
	// defers and in reverse order, so an engine started later (newEngine)
	// stops before its database closes instead of running a job on it.
	t.Cleanup(func() { db.Close() })
	return db
}

func devices(n int) []jobs.DeviceKey {
	out := make([]jobs.DeviceKey, n)
	for i := range out {
		out[i] = jobs.DeviceKey{DeviceID: fmt.Sprintf("d%03d", i)}
	}
	return out
}

func waitStatus(t *testing.T, e *jobs.Engine, id, status string) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		j, err := e.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == status {
			return j
		}
		time.Sleep(10 * time.Millisecond)
	}
	j, _ := e.Get(context.Background(), id)
	t.Fatalf("job %s: status %q, want %q", id, j.Status, status)
	return nil
}

func methodJob(id string) *jobs.Job {
	return &jobs.Job{ID: id, Type: "scheduleDeviceMethod", QueryCondition: "*", Method: &jobs.Method{MethodName: "lockDoor"}}
}

func TestEngine_MethodJob(t *testing.T) {
	db := openDB(t, "")
	f := &fleet{devices: devices(10), online: map[string]bool{}}
	for i := 0; i < 9; i++ {
		f.online[fmt.Sprintf("d%03d", i)] = true
	}
	e := newEngine(t, db, f)
	if _, err := e.Create(context.Background(), methodJob("j1")); err != nil {
		t.Fatal(err)
	}
	j := waitStatus(t, e, "j1", jobs.StatusCompleted)
	if got, want := j.Stats, (jobs.Stats{DeviceCount: 10, SucceededCount: 9, FailedCount: 1}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	f.calls.Range(func(k, v any) bool {
		if n := atomic.LoadInt32(v.(*int32)); n != 1 {
			t.Errorf("%v called %d times", k, n)
		}
		return true
	})
	if j.EndTime.IsZero() || j.Method.ResponseTimeout != 30*time.Second {
		t.Errorf("endTime %v, responseTimeout %v", j.EndTime, j.Method.ResponseTimeout)
	}
}

func TestEngine_TwinJobAndValidation(t *testing.T) {
	db := openDB(t, "")
	f := &fleet{devices: devices(3)}
	e := newEngine(t, db, f)
	ctx := context.Background()
	tj := &jobs.Job{ID: "t1", Type: "scheduleUpdateTwin", QueryCondition: "tags.building = 43",
		UpdateTwin: &jobs.TwinPatch{ETag: "*", Desired: map[string]any{"building": 43}}}
	if _, err := e.Create(ctx, tj); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e, "t1", jobs.StatusCompleted)
	n := 0
	f.patched.Range(func(any, any) bool { n++; return true })
	if n != 3 {
		t.Errorf("%d twins patched, want 3", n)
	}
	for _, tc := range []struct {
		name string
		job  *jobs.Job
		code iothub.Code
	}{
		{"duplicate id", &jobs.Job{ID: "t1", Type: "scheduleUpdateTwin", QueryCondition: "*", UpdateTwin: &jobs.TwinPatch{Desired: map[string]any{"a": 1}}}, iothub.JobAlreadyExists},
		{"unknown type", &jobs.Job{ID: "x1", Type: "scheduleTwinUpdate", QueryCondition: "*"}, iothub.GenericBadRequest},
		{"no method name", &jobs.Job{ID: "x2", Type: "scheduleDeviceMethod", QueryCondition: "*", Method: &jobs.Method{}}, iothub.ArgumentNull},
		{"timeout too long", &jobs.Job{ID: "x3", Type: "scheduleDeviceMethod", QueryCondition: "*", Method: &jobs.Method{MethodName: "m", ResponseTimeout: time.Hour}}, iothub.ArgumentInvalid},
		{"etag not *", &jobs.Job{ID: "x4", Type: "scheduleUpdateTwin", QueryCondition: "*", UpdateTwin: &jobs.TwinPatch{ETag: "AAAA", Desired: map[string]any{"a": 1}}}, iothub.ArgumentInvalid},
		{"no query", &jobs.Job{ID: "x5", Type: "scheduleDeviceMethod", Method: &jobs.Method{MethodName: "m"}}, iothub.ArgumentNull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Create(ctx, tc.job)
			if iothub.CodeOf(err) != tc.code {
				t.Errorf("err = %v, want %v", err, tc.code)
			}
		})
	}
}

func TestEngine_ScheduledAndCancel(t *testing.T) {
	db := openDB(t, "")
	f := &fleet{devices: devices(20), online: map[string]bool{}, gate: make(chan struct{})}
	e := newEngine(t, db, f)
	ctx := context.Background()
	later := methodJob("later")
	later.StartTime = time.Now().Add(time.Hour)
	j, err := e.Create(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != jobs.StatusScheduled {
		t.Errorf("future job status %q, want scheduled", j.Status)
	}
	if _, err := e.Create(ctx, methodJob("now")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e, "now", jobs.StatusRunning)
	j, err = e.Cancel(ctx, "now")
	if err != nil {
		t.Fatal(err)
	}
	close(f.gate)
	if j.Status != jobs.StatusCancelled {
		t.Errorf("status after cancel %q", j.Status)
	}
	// In-flight calls finish; the rest never run. The engine's Close waits
	// for the job's workers, so every call that was going to happen has.
	e.Close()
	calls := 0
	f.calls.Range(func(any, any) bool { calls++; return true })
	if calls > 4 {
		t.Errorf("%d devices called after a cancel with 4 workers", calls)
	}
	if got, _ := e.Get(ctx, "later"); got.Status != jobs.StatusScheduled || got.Stats.DeviceCount != 0 {
		t.Errorf("future job ran: %+v", got)
	}
	e = newEngine(t, db, f) // the hub restarted
	if _, err := e.Create(ctx, &jobs.Job{ID: "badq", Type: "scheduleDeviceMethod", QueryCondition: "bad", Method: &jobs.Method{MethodName: "m"}}); err != nil {
		t.Fatal(err)
	}
	if j := waitStatus(t, e, "badq", jobs.StatusFailed); j.FailureReason == "" {
		t.Error("failed job without failureReason")
	}
}

// A job interrupted by a shutdown resumes on the next start: finished
// devices keep their outcome and are not called again.
func TestEngine_ResumesAfterRestart(t *testing.T) {
	path := t.TempDir() + "/hub.db"
	db := openDB(t, path)
	f := &fleet{devices: devices(50), online: map[string]bool{}}
	for _, d := range f.devices {
		f.online[d.DeviceID] = true
	}
	f.gate = make(chan struct{})
	e, err := jobs.NewEngine(jobs.Deps{Store: &sqlite.JobStore{DB: db}, Selector: f, Methods: f, Twins: f}, jobs.Config{Workers: 2, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(context.Background())
	if _, err := e.Create(context.Background(), methodJob("r1")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		f.gate <- struct{}{}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := e.Get(context.Background(), "r1")
		if j.Stats.SucceededCount >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.Close()
	db.Close()

	db = openDB(t, path)
	finished := map[string]bool{}
	rows, err := db.Reader().Query(`SELECT device_id FROM device_jobs WHERE job_id = 'r1' AND status = 'completed'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		finished[id] = true
	}
	rows.Close()
	if len(finished) == 0 || len(finished) == 50 {
		t.Fatalf("%d devices finished before the restart; the test needs a job cut in the middle", len(finished))
	}
	f.gate = nil
	e2 := newEngine(t, db, f)
	j := waitStatus(t, e2, "r1", jobs.StatusCompleted)
	if j.Stats.SucceededCount != 50 || j.Stats.DeviceCount != 50 {
		t.Errorf("stats after resume %+v", j.Stats)
	}
	called := 0
	f.calls.Range(func(k, v any) bool {
		n := atomic.LoadInt32(v.(*int32))
		if finished[k.(string)] && n != 1 {
			t.Errorf("%v finished before the restart but was called %d times", k, n)
		}
		if n >= 1 {
			called++
		}
		return true
	})
	if called != 50 {
		t.Errorf("%d devices called, want 50", called)
	}
}
