package jobs

import (
	"context"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/changefeed"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/methods"
)

// Default settings of an Engine (the hub's values where it has them).
const (
	DefaultWorkers      = 64
	DefaultMaxActive    = 10 // the hub's S3 tier
	DefaultRetention    = 30 * 24 * time.Hour
	DefaultPollInterval = time.Second
)

// Deps are the Engine's collaborators, all required.
type Deps struct {
	Store    Store
	Selector Selector
	Methods  Methods
	Twins    Twins
}

// Config configures an Engine; zero values take the defaults above, except
// MaxActive, where 0 means no limit.
type Config struct {
	// Clock schedules the polls; nil means the wall clock. Now, when nil,
	// reads it.
	Clock clock.Clock
	Now   func() time.Time
	// Workers bounds the device operations a job runs at once.
	Workers int
	// MaxActive bounds jobs that are queued, scheduled or running at once
	// (the hub allows 10 on S3); 0 means no limit.
	MaxActive int
	// Retention is how long finished jobs are kept (the hub keeps 30 days).
	Retention time.Duration
	// PollInterval is how often the engine looks for due jobs besides being
	// woken by a new one; it bounds how late a scheduled job starts.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Engine accepts, runs, cancels and reports jobs.
type Engine struct {
	Deps
	Config
	log *slog.Logger

	mu       sync.Mutex
	running  map[string]*run
	inflight map[string]int // device operations in flight per job
	wake     chan struct{}
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
	changes  *changefeed.Feed[string] // ids of jobs whose state or progress changed
}

type run struct {
	stop chan struct{} // closed on cancel
}

// NewEngine returns an Engine; Start runs its scheduler, Close stops it.
func NewEngine(deps Deps, cfg Config) (*Engine, error) {
	if err := iothub.CheckDeps("jobs", deps); err != nil {
		return nil, err
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Engine{Deps: deps, Config: cfg, log: log, running: map[string]*run{}, inflight: map[string]int{},
		wake: make(chan struct{}, 1), done: make(chan struct{}), changes: changefeed.New[string](jobChangesKept)}, nil
}

// closed returns iothub.ErrClosed once Close was called.
func (e *Engine) closed() error {
	select {
	case <-e.done:
		return iothub.ErrClosed
	default:
		return nil
	}
}

func (e *Engine) now() time.Time { return e.Now().UTC() }

func badRequest(format string, args ...any) error {
	return iothub.Errorf(iothub.ArgumentInvalid, format, args...)
}

// Create validates and stores a new job and wakes the scheduler. Returns
// 400 for an invalid request, 409104 JobAlreadyExists, 429004
// ThrottlingMaxActiveJobCountExceeded when too many jobs are active (what
// the hub returns: the C# SDK calls 403003 JobQuotaExceeded unused and its
// e2e tests retry job creation on a ThrottlingException).
func (e *Engine) Create(ctx context.Context, j *Job) (*Job, error) {
	if err := e.closed(); err != nil {
		return nil, err
	}
	if j.ID == "" {
		return nil, iothub.Errorf(iothub.ArgumentNull, "jobId cannot be null or empty.")
	}
	if len(j.ID) > 128 {
		return nil, badRequest("jobId is longer than 128 characters.")
	}
	switch strings.ToLower(j.Type) {
	case strings.ToLower(TypeDeviceMethod):
		j.Type = TypeDeviceMethod
		if j.Method == nil {
			return nil, iothub.Errorf(iothub.ArgumentNull, "cloudToDeviceMethod is required for a scheduleDeviceMethod job.")
		}
		// A job's method obeys the rules of POST /twins/{id}/methods.
		req := methods.Request{MethodName: j.Method.MethodName, Payload: j.Method.Payload,
			ResponseTimeout: j.Method.ResponseTimeout, ConnectTimeout: j.Method.ConnectTimeout}
		if err := methods.Validate(&req); err != nil {
			return nil, err
		}
		j.Method.Payload, j.Method.ResponseTimeout = req.Payload, req.ResponseTimeout
		j.UpdateTwin = nil
	case strings.ToLower(TypeUpdateTwin):
		j.Type = TypeUpdateTwin
		if j.UpdateTwin == nil || (j.UpdateTwin.Tags == nil && j.UpdateTwin.Desired == nil) {
			return nil, iothub.Errorf(iothub.ArgumentNull, "updateTwin with tags or properties.desired is required for a scheduleUpdateTwin job.")
		}
		// The hub requires "*": a job patches many twins, no single etag fits.
		if e := strings.Trim(j.UpdateTwin.ETag, `"`); e != "" && e != "*" {
			return nil, badRequest("updateTwin.etag must be '*'.")
		}
		j.UpdateTwin.ETag = "*"
		j.Method = nil
	default:
		return nil, iothub.Errorf(iothub.GenericBadRequest, "BadRequest: the job type '%s' is not supported; use scheduleDeviceMethod or scheduleUpdateTwin.", j.Type)
	}
	if strings.TrimSpace(j.QueryCondition) == "" {
		return nil, iothub.Errorf(iothub.ArgumentNull, "queryCondition cannot be null or empty.")
	}
	if err := e.validateCondition(j.QueryCondition); err != nil {
		return nil, err
	}
	now := e.now()
	if j.StartTime.IsZero() || j.StartTime.Year() <= 1 {
		j.StartTime = now
	}
	if j.MaxExecutionTime <= 0 {
		j.MaxExecutionTime = time.Hour
	}
	j.CreatedTime = now
	j.Status = StatusQueued
	if j.StartTime.After(now) {
		j.Status = StatusScheduled
	}
	if e.MaxActive > 0 {
		active, err := e.Store.Active(ctx)
		if err != nil {
			return nil, err
		}
		if len(active) >= e.MaxActive {
			return nil, iothub.Errorf(iothub.ThrottlingMaxActiveJobCountExceeded, "Too many active jobs: at most %d jobs may be queued, scheduled or running at once.", e.MaxActive)
		}
	}
	if err := e.Store.Create(ctx, j); err != nil {
		return nil, err
	}
	e.log.Info("job created", "job", j.ID, "type", j.Type, "query", j.QueryCondition, "start", j.StartTime.Format(time.RFC3339))
	e.changes.Publish(j.ID)
	e.poke()
	return j, nil
}

// validateCondition parses the condition now, so a bad one fails the PUT
// rather than the job.
func (e *Engine) validateCondition(cond string) error {
	if v, ok := e.Selector.(interface{ Validate(string) error }); ok {
		return v.Validate(cond)
	}
	return nil
}

// Get returns a job with its statistics.
func (e *Engine) Get(ctx context.Context, id string) (*Job, error) {
	j, err := e.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	e.withRunning(j)
	return j, nil
}

// List returns jobs matching f, a page at a time.
func (e *Engine) List(ctx context.Context, f Filter, after string, limit int) ([]*Job, error) {
	js, err := e.Store.List(ctx, f, after, limit)
	for _, j := range js {
		e.withRunning(j)
	}
	return js, err
}

// withRunning moves device operations in flight from pending to running:
// the store only knows finished and unfinished records.
func (e *Engine) withRunning(j *Job) {
	e.mu.Lock()
	n := e.inflight[j.ID]
	e.mu.Unlock()
	n = min(n, j.Stats.PendingCount)
	j.Stats.RunningCount += n
	j.Stats.PendingCount -= n
}

// Cancel stops a job: it becomes cancelled, its pending devices canceled;
// device operations in flight finish. Cancelling a finished job returns it
// unchanged.
func (e *Engine) Cancel(ctx context.Context, id string) (*Job, error) {
	if err := e.closed(); err != nil {
		return nil, err
	}
	now := e.now()
	j, err := e.Store.Update(ctx, id, func(j *Job) error {
		if !j.Active() {
			return nil
		}
		j.Status = StatusCancelled
		j.EndTime = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	if j.Status == StatusCancelled {
		if _, err := e.Store.SettlePending(ctx, id, DeviceCanceled, "", "", now); err != nil {
			return nil, err
		}
		e.mu.Lock()
		if r, ok := e.running[id]; ok {
			select {
			case <-r.stop:
			default:
				close(r.stop)
			}
		}
		e.mu.Unlock()
		e.log.Info("job cancelled", "job", id)
		e.changes.Publish(id)
	}
	return e.Store.Get(ctx, id)
}

// jobChangesKept bounds the change feed: a reader further behind reloads.
const jobChangesKept = 1024

// Changes is the feed of ids of jobs that were created, started, made
// progress, or finished, for live views. Readers never slow jobs down.
func (e *Engine) Changes() *changefeed.Feed[string] { return e.changes }

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}
