// Package jobs is the hub's jobs engine (jobs v2): scheduled direct-method
// and twin-update jobs over the devices a query condition selects, run with
// bounded concurrency, durable across restarts. It knows nothing of HTTP,
// MQTT or SQL: devices come from a Selector, calls go through a Methods
// invoker and a Twins updater, and state lives behind a Store.
package jobs

import (
	"context"
	"encoding/json"
	"time"
)

// Job types, as the hub spells them.
const (
	TypeDeviceMethod = "scheduleDeviceMethod"
	TypeUpdateTwin   = "scheduleUpdateTwin"
)

// Job statuses (digest §3.7). A cancelled job is "cancelled"; a cancelled
// device record is "canceled" (one l), as the hub writes them.
const (
	StatusQueued    = "queued"
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Device job statuses (digest §3.8).
const (
	DevicePending   = "pending"
	DeviceRunning   = "running"
	DeviceCompleted = "completed"
	DeviceFailed    = "failed"
	DeviceCanceled  = "canceled"
)

// Method is a job's cloudToDeviceMethod.
type Method struct {
	MethodName      string
	Payload         json.RawMessage
	ResponseTimeout time.Duration
	ConnectTimeout  time.Duration
}

// TwinPatch is a job's updateTwin: tags and desired properties to merge.
type TwinPatch struct {
	// DeviceID is the request's updateTwin.deviceId, kept only to be read
	// back in the job (the SDKs send the twin they were given); the patch
	// goes to every device the query selects.
	DeviceID string
	ETag     string
	Tags     map[string]any
	Desired  map[string]any
}

// Stats are a job's deviceJobStatistics. A store keeps them with the device
// records, changed in the same transaction, so they never drift from them.
type Stats struct {
	DeviceCount, FailedCount, SucceededCount, RunningCount, PendingCount int
}

// Job is a scheduled job.
type Job struct {
	ID               string
	Type             string
	QueryCondition   string
	CreatedTime      time.Time
	StartTime        time.Time
	EndTime          time.Time
	MaxExecutionTime time.Duration
	Method           *Method
	UpdateTwin       *TwinPatch
	Status           string
	StatusMessage    string
	FailureReason    string
	// Selected is set once the query ran and the device records exist:
	// the device set is the query's result when the job starts.
	Selected bool
	Stats    Stats
}

// Active reports whether the job has not reached a final status.
func (j *Job) Active() bool {
	switch j.Status {
	case StatusCompleted, StatusFailed, StatusCancelled:
		return false
	}
	return true
}

// DeviceKey names a device or module targeted by a job.
type DeviceKey struct{ DeviceID, ModuleID string }

// DeviceJob is one device's record in a job.
type DeviceJob struct {
	JobID string
	DeviceKey
	JobType     string
	Status      string
	StartTime   time.Time
	EndTime     time.Time
	CreatedTime time.Time
	LastUpdated time.Time
	// MethodStatus and MethodPayload are the device's answer (method jobs).
	MethodStatus  *int
	MethodPayload json.RawMessage
	ErrorCode     string
	ErrorMessage  string
}

// Filter selects jobs for a listing.
type Filter struct {
	Type, Status string
}

// Store persists jobs and their device records. Implementations return
// *iothub.Error: 404002 JobNotFound, 409104 JobAlreadyExists.
type Store interface {
	Create(ctx context.Context, j *Job) error
	// Get returns the job with its statistics.
	Get(ctx context.Context, id string) (*Job, error)
	// Update loads the job, calls fn and saves it if fn returns nil.
	Update(ctx context.Context, id string, fn func(*Job) error) (*Job, error)
	// List returns jobs matching f whose id is after `after`, in id order.
	List(ctx context.Context, f Filter, after string, limit int) ([]*Job, error)
	// Active returns every job that has not finished.
	Active(ctx context.Context) ([]*Job, error)
	// Select records the job's device set (pending records) and marks the
	// job selected and running, in one transaction.
	Select(ctx context.Context, jobID string, devices []DeviceKey, now time.Time) error
	// Pending returns up to limit device records still pending, in key
	// order. Records are only ever pending or finished in the store (running
	// is reported from memory), so one left by a crash runs again.
	Pending(ctx context.Context, jobID string, limit int) ([]*DeviceJob, error)
	// Finish saves the outcomes of finished device records in one transaction.
	Finish(ctx context.Context, results []*DeviceJob) error
	// SettlePending gives every pending device record of the job the status
	// (canceled or failed) and error, and returns how many changed.
	SettlePending(ctx context.Context, jobID, status, errCode, errMsg string, now time.Time) (int, error)
	// DeleteFinishedBefore removes finished jobs that ended before t.
	DeleteFinishedBefore(ctx context.Context, t time.Time) (int, error)
}

// Selector resolves a job's query condition to the devices it targets.
type Selector interface {
	Select(ctx context.Context, condition string) ([]DeviceKey, error)
}

// Methods invokes a direct method on one device; status and payload are the
// device's answer. Errors are *iothub.Error (DeviceNotOnline, GatewayTimeout).
type Methods interface {
	InvokeForJob(ctx context.Context, key DeviceKey, m Method) (status int, payload json.RawMessage, err error)
}

// Twins applies a job's twin patch to one device, notifying it as any
// service-side update does.
type Twins interface {
	PatchForJob(ctx context.Context, key DeviceKey, p TwinPatch) error
}

// BatchTwins is a Twins that can patch many devices at once (one store
// transaction instead of one per device). errs[i] is keys[i]'s outcome; err
// fails the whole batch.
type BatchTwins interface {
	PatchManyForJob(ctx context.Context, keys []DeviceKey, p TwinPatch) (errs []error, err error)
}
