package jobs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// batchSize is how many device records a job loads at a time; memory stays
// flat whatever the fleet size.
const batchSize = 512

// Start runs the scheduler until ctx ends or Close is called. Jobs left
// active by a previous process (a crash included) resume: devices already
// finished keep their outcome and are not called again.
func (e *Engine) Start(ctx context.Context) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.loop(ctx)
	}()
}

// Close stops the scheduler and waits for running jobs to stop dispatching.
// Device operations aborted by it are not recorded and run again next start.
func (e *Engine) Close() {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
	e.wg.Wait()
}

func (e *Engine) loop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := e.Clock.NewTicker(e.PollInterval)
	defer tick.Stop()
	var lastSweep time.Time
	for {
		e.schedule(ctx)
		if now := e.now(); now.Sub(lastSweep) > time.Hour {
			lastSweep = now
			if n, err := e.Store.DeleteFinishedBefore(ctx, now.Add(-e.Retention)); err == nil && n > 0 {
				e.log.Info("finished jobs past retention deleted", "count", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		case <-e.wake:
		}
	}
}

// schedule starts every due job that is not already running.
func (e *Engine) schedule(ctx context.Context) {
	active, err := e.Store.Active(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("list active jobs", "error", err)
		}
		return
	}
	now := e.now()
	for _, j := range active {
		if j.StartTime.After(now) {
			continue
		}
		e.mu.Lock()
		_, busy := e.running[j.ID]
		r := &run{stop: make(chan struct{})}
		if !busy {
			e.running[j.ID] = r
		}
		e.mu.Unlock()
		if busy {
			continue
		}
		e.wg.Add(1)
		go func(j *Job) {
			defer e.wg.Done()
			defer func() {
				e.mu.Lock()
				delete(e.running, j.ID)
				e.mu.Unlock()
			}()
			if err := e.runJob(ctx, j, r); err != nil && ctx.Err() == nil {
				e.log.Error("job interrupted; it resumes on the next pass", "job", j.ID, "error", err)
			}
		}(j)
	}
}

func (e *Engine) runJob(ctx context.Context, j *Job, r *run) error {
	if !j.Selected {
		devices, err := e.Selector.Select(ctx, j.QueryCondition)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			now := e.now()
			_, uerr := e.Store.Update(ctx, j.ID, func(cur *Job) error {
				cur.Status, cur.FailureReason, cur.EndTime = StatusFailed, "The query condition could not be evaluated: "+iothub.MessageOf(err), now
				return nil
			})
			e.changes.Publish(j.ID)
			return uerr
		}
		if err := e.Store.Select(ctx, j.ID, devices, e.now()); err != nil {
			return err
		}
		e.log.Info("job started", "job", j.ID, "type", j.Type, "devices", len(devices))
		e.changes.Publish(j.ID)
	} else {
		e.log.Info("job resumed", "job", j.ID, "type", j.Type)
	}
	deadline := j.StartTime.Add(j.MaxExecutionTime)
	p := &progress{e: e, job: j.ID}
	for {
		select {
		case <-r.stop:
			return nil // cancelled: Cancel already settled the records
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if e.now().After(deadline) {
			return e.expire(ctx, j)
		}
		batch, err := e.Store.Pending(ctx, j.ID, batchSize)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return e.complete(ctx, j)
		}
		if err := e.runBatch(ctx, j, r, batch, deadline, p); err != nil {
			return err
		}
	}
}

func (e *Engine) complete(ctx context.Context, j *Job) error {
	now := e.now()
	out, err := e.Store.Update(ctx, j.ID, func(cur *Job) error {
		if cur.Active() {
			cur.Status, cur.EndTime = StatusCompleted, now
		}
		return nil
	})
	e.changes.Publish(j.ID)
	if err == nil {
		e.log.Info("job finished", "job", j.ID, "status", out.Status, "devices", out.Stats.DeviceCount,
			"succeeded", out.Stats.SucceededCount, "failed", out.Stats.FailedCount)
	}
	return err
}

// expire ends a job whose maxExecutionTimeInSeconds passed: devices not
// reached fail, and so does the job (digest §3.7).
func (e *Engine) expire(ctx context.Context, j *Job) error {
	now := e.now()
	n, err := e.Store.SettlePending(ctx, j.ID, DeviceFailed, "JobTimedOut",
		"The job's maxExecutionTimeInSeconds elapsed before the device was reached.", now)
	if err != nil {
		return err
	}
	_, err = e.Store.Update(ctx, j.ID, func(cur *Job) error {
		if cur.Active() {
			cur.Status, cur.EndTime = StatusFailed, now
			cur.FailureReason = "The job did not finish within maxExecutionTimeInSeconds."
		}
		return nil
	})
	e.changes.Publish(j.ID)
	e.log.Info("job timed out", "job", j.ID, "devices not reached", n)
	return err
}

// runBatch runs one batch with Workers goroutines and records outcomes in
// small transactions as they come, so progress shows while the job runs.
func (e *Engine) runBatch(ctx context.Context, j *Job, r *run, batch []*DeviceJob, deadline time.Time, p *progress) error {
	if bt, ok := e.Twins.(BatchTwins); ok && j.Type == TypeUpdateTwin {
		return e.runTwinBatch(ctx, j, r, batch, deadline, p, bt)
	}
	// Outcomes are recorded as they come, group-committed, so progress
	// shows while the job runs; after a failed commit the rest is dropped
	// (the devices stay pending and run again on the next pass).
	var ferr error
	finish := groupcommit.New(func(done []*DeviceJob) {
		if ferr != nil {
			return
		}
		if ferr = e.Store.Finish(ctx, done); ferr == nil {
			p.done(len(done))
		}
	}, groupcommit.Config{MaxBatch: finishBatch, QueueLen: len(batch)})
	work := make(chan *DeviceJob)
	var wg sync.WaitGroup
	workers := min(e.Workers, len(batch))
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dj := range work {
				p.add(1)
				if e.execute(ctx, j, dj) {
					// The queue holds the whole batch: this never waits.
					_ = finish.Add(context.Background(), dj)
				}
				p.add(-1)
			}
		}()
	}
dispatch:
	for _, dj := range batch {
		if e.now().After(deadline) {
			break
		}
		select {
		case work <- dj:
		case <-r.stop:
			break dispatch
		case <-ctx.Done():
			break dispatch
		}
	}
	close(work)
	wg.Wait()
	finish.Close() // commits what is queued; ferr is final after it
	return ferr
}

// finishBatch bounds the device outcomes one transaction records.
const finishBatch = 128

// twinChunk is how many twins one transaction of a twin job updates.
const twinChunk = 128

// runTwinBatch patches twins a chunk per transaction: twin writes share one
// SQLite writer, so parallel workers would only queue for it.
func (e *Engine) runTwinBatch(ctx context.Context, j *Job, r *run, batch []*DeviceJob, deadline time.Time, p *progress, bt BatchTwins) error {
	for start := 0; start < len(batch); start += twinChunk {
		select {
		case <-r.stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if e.now().After(deadline) {
			return nil // runJob expires the job
		}
		chunk := batch[start:min(start+twinChunk, len(batch))]
		keys := make([]DeviceKey, len(chunk))
		for i, dj := range chunk {
			keys[i] = dj.DeviceKey
		}
		p.add(len(chunk))
		began := e.now()
		errs, err := bt.PatchManyForJob(ctx, keys, *j.UpdateTwin)
		p.add(-len(chunk))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The patch itself is bad (e.g. too large once merged): every
			// device fails the same way.
			errs = make([]error, len(chunk))
			for i := range errs {
				errs[i] = err
			}
		}
		now := e.now()
		for i, dj := range chunk {
			dj.StartTime, dj.EndTime, dj.LastUpdated = began, now, now
			if errs[i] != nil {
				dj.Status, dj.ErrorCode, dj.ErrorMessage = DeviceFailed, iothub.CodeOf(errs[i]).Name(), iothub.MessageOf(errs[i])
			} else {
				dj.Status = DeviceCompleted
			}
		}
		if err := e.Store.Finish(ctx, chunk); err != nil {
			return err
		}
		p.done(len(chunk))
	}
	return nil
}

// execute runs one device operation and fills its outcome. It returns false
// when the hub is shutting down: the outcome is unknown and the device runs
// again after the restart.
func (e *Engine) execute(ctx context.Context, j *Job, dj *DeviceJob) bool {
	dj.StartTime = e.now()
	var err error
	switch j.Type {
	case TypeDeviceMethod:
		var status int
		var payload []byte
		status, payload, err = e.Methods.InvokeForJob(ctx, dj.DeviceKey, *j.Method)
		if err == nil {
			dj.MethodStatus, dj.MethodPayload = &status, payload
		}
	case TypeUpdateTwin:
		err = e.Twins.PatchForJob(ctx, dj.DeviceKey, *j.UpdateTwin)
	}
	if ctx.Err() != nil {
		return false
	}
	dj.EndTime = e.now()
	dj.LastUpdated = dj.EndTime
	if err != nil {
		var he *iothub.Error
		dj.Status, dj.ErrorCode, dj.ErrorMessage = DeviceFailed, iothub.CodeOf(err).Name(), iothub.MessageOf(err)
		if !errors.As(err, &he) {
			e.log.Error("job device operation failed", "job", j.ID, "device", dj.DeviceID, "error", err)
		}
	} else {
		dj.Status = DeviceCompleted
	}
	return true
}

// progress counts a job's in-flight device operations (reported as
// runningCount) and logs every tenth of the way.
type progress struct {
	e        *Engine
	job      string
	mu       sync.Mutex
	finished int
	lastLog  time.Time
}

func (p *progress) add(n int) {
	p.e.mu.Lock()
	p.e.inflight[p.job] += n
	if p.e.inflight[p.job] == 0 {
		delete(p.e.inflight, p.job)
	}
	p.e.mu.Unlock()
}

func (p *progress) done(n int) {
	p.e.changes.Publish(p.job)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished += n
	if time.Since(p.lastLog) < time.Second {
		return
	}
	p.lastLog = time.Now()
	if j, err := p.e.Store.Get(context.Background(), p.job); err == nil && j.Stats.DeviceCount > 0 {
		s := j.Stats
		p.e.log.Info("job progress", "job", p.job, "percent", 100*(s.SucceededCount+s.FailedCount)/s.DeviceCount,
			"succeeded", s.SucceededCount, "failed", s.FailedCount, "pending", s.PendingCount)
	}
}
