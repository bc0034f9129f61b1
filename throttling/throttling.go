// Package throttling applies IoT Hub's per-tier operation throttles
// (--sku, --units; "IoT Hub quotas and throttling"): each operation class
// has a budget per window, refilled continuously on the hub's clock. Beyond
// it device-to-cloud sends are shaped (held until the budget allows, for a
// bounded time), a job's device operations are paced (the job slows down,
// it never fails for it), and every other operation gets 429 with error
// code 429001 ThrottlingException, as the hub answers. Off (a nil *Limiter)
// unless a tier is chosen.
//
// One call per operation, made by every transport that carries it:
//
//	Allow(op)                       registry, queries, twins, jobs, configurations,
//	                                C2D sends, C2D receives (HTTPS), file upload initiations
//	AllowDirectMethod(payloadBytes) direct methods, metered in 4 KB blocks
//	Shape(ctx, DeviceToCloud)       device-to-cloud sends
//	Pace(ctx, JobDeviceOps, n)      the device operations of a running job
package throttling

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Operation is one throttled class of operations.
type Operation string

const (
	RegistryOps    Operation = "identity registry operations"
	NewConnections Operation = "new device connections"
	DeviceToCloud  Operation = "device-to-cloud sends"
	CloudToDevice  Operation = "cloud-to-device sends"
	// C2DReceives counts HTTPS receives only (the hub throttles no other
	// transport's receives).
	C2DReceives Operation = "cloud-to-device receives"
	FileUploads Operation = "file upload initiations"
	// DirectMethods is a budget of bytes, metered in MethodMeter blocks:
	// a call costs its payload rounded up to whole blocks (at least one).
	DirectMethods Operation = "direct methods"
	// JobDeviceOps are the twin updates and method calls a running job
	// makes, one per device; they do not count as twin updates or direct
	// methods.
	JobDeviceOps   Operation = "jobs device operations"
	Queries        Operation = "queries"
	TwinReads      Operation = "twin reads"
	TwinUpdates    Operation = "twin updates"
	JobsOps        Operation = "jobs operations"
	Configurations Operation = "configurations and edge deployments"
)

// Quota is a budget of Count operations (or, for direct methods, Count
// MethodMeter blocks) per Per.
type Quota struct {
	Count float64
	Per   time.Duration
	// Bytes: Count counts MethodMeter-byte blocks, not operations.
	Bytes bool
}

func (q Quota) String() string {
	if q.Bytes {
		return fmt.Sprintf("%gKB/sec", q.Count*MethodMeter/1024/q.Per.Seconds())
	}
	if q.Per == time.Minute {
		return fmt.Sprintf("%g/min", q.Count)
	}
	return fmt.Sprintf("%g/sec", q.Count)
}

// MethodMeter is the direct-method throttle's meter: a call whose payload
// is 0 to 4 KB uses 4 KB of the budget, 4 to 8 KB uses 8 KB, and so on.
const MethodMeter = 4096

// MethodBlocks is how many meters a direct method with a payload of
// payloadBytes uses.
func MethodBlocks(payloadBytes int) int {
	return max(1, (payloadBytes+MethodMeter-1)/MethodMeter)
}

// SKUs lists the tiers --sku takes.
var SKUs = []string{"F1", "S1", "S2", "S3"}

// Quotas returns the hub's documented throttles for sku with units units
// ("IoT Hub quotas and throttling": the whole hub's budget, not a device's).
// F1 has the limits of one S1 unit (the page's "Free, B1, and S1" column).
func Quotas(sku string, units int) (map[Operation]Quota, error) {
	if units < 1 {
		return nil, fmt.Errorf("units must be at least 1, not %d", units)
	}
	u := float64(units)
	perSec := func(n float64) Quota { return Quota{Count: n, Per: time.Second} }
	perMin := func(n float64) Quota { return Quota{Count: n, Per: time.Minute} }
	// methodKB: a direct-method budget of kb KB per second, in meters.
	methodKB := func(kb float64) Quota { return Quota{Count: kb * 1024 / MethodMeter, Per: time.Second, Bytes: true} }
	switch strings.ToUpper(sku) {
	case "F1":
		if units != 1 {
			return nil, fmt.Errorf("the free tier has exactly one unit")
		}
		return Quotas("S1", 1)
	case "S1":
		return map[Operation]Quota{
			RegistryOps: perMin(100 * u), NewConnections: perSec(max(100, 12*u)), DeviceToCloud: perSec(max(100, 12*u)),
			CloudToDevice: perMin(100 * u), C2DReceives: perMin(1000 * u), FileUploads: perMin(100 * u),
			DirectMethods: methodKB(160 * u), Queries: perMin(20 * u), TwinReads: perSec(100), TwinUpdates: perSec(50),
			JobsOps: perMin(100 * u), JobDeviceOps: perSec(10), Configurations: perMin(20 * u),
		}, nil
	case "S2":
		return map[Operation]Quota{
			RegistryOps: perMin(100 * u), NewConnections: perSec(120 * u), DeviceToCloud: perSec(120 * u),
			CloudToDevice: perMin(100 * u), C2DReceives: perMin(1000 * u), FileUploads: perMin(100 * u),
			DirectMethods: methodKB(480 * u), Queries: perMin(20 * u), TwinReads: perSec(max(100, 10*u)), TwinUpdates: perSec(max(50, 5*u)),
			JobsOps: perMin(100 * u), JobDeviceOps: perSec(max(10, u)), Configurations: perMin(20 * u),
		}, nil
	case "S3":
		return map[Operation]Quota{
			RegistryOps: perMin(5000 * u), NewConnections: perSec(6000 * u), DeviceToCloud: perSec(6000 * u),
			CloudToDevice: perMin(5000 * u), C2DReceives: perMin(50000 * u), FileUploads: perMin(5000 * u),
			DirectMethods: methodKB(24 * 1024 * u), Queries: perMin(1000 * u), TwinReads: perSec(500 * u), TwinUpdates: perSec(250 * u),
			JobsOps: perMin(5000 * u), JobDeviceOps: perSec(50 * u), Configurations: perMin(20 * u),
		}, nil
	}
	return nil, fmt.Errorf("unknown SKU %q (one of %s)", sku, strings.Join(SKUs, ", "))
}

// MaxActiveJobs is the tier's limit of concurrent jobs (the quotas page's
// "Other limits": 1 for Free and S1, 5 for S2, 10 for S3); beyond it the
// hub answers 429004 ThrottlingMaxActiveJobCountExceeded. ok false for an
// unknown tier.
func MaxActiveJobs(sku string) (n int, ok bool) {
	switch strings.ToUpper(sku) {
	case "F1", "S1":
		return 1, true
	case "S2":
		return 5, true
	case "S3":
		return 10, true
	}
	return 0, false
}

// DefaultMaxShaping bounds how long a shaped device-to-cloud send is held
// before it gets 429 instead (the hub queues "for a minute or two" of
// sustained excess; a held send also holds its device's connection).
const DefaultMaxShaping = 10 * time.Second

// Config chooses the tier.
type Config struct {
	SKU   string
	Units int
	// MaxShaping bounds the hold of a shaped send (DefaultMaxShaping when 0).
	MaxShaping time.Duration
	Clock      clock.Clock
}

// Limiter holds one budget per operation class.
type Limiter struct {
	sku        string
	quotas     map[Operation]Quota
	clock      clock.Clock
	maxShaping time.Duration
	mu         sync.Mutex
	buckets    map[Operation]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns the limiter of cfg's tier, or nil (no throttling) when
// cfg.SKU is empty.
func New(cfg Config) (*Limiter, error) {
	if cfg.SKU == "" {
		return nil, nil
	}
	if cfg.Units == 0 {
		cfg.Units = 1
	}
	q, err := Quotas(cfg.SKU, cfg.Units)
	if err != nil {
		return nil, err
	}
	if cfg.MaxShaping <= 0 {
		cfg.MaxShaping = DefaultMaxShaping
	}
	return &Limiter{sku: strings.ToUpper(cfg.SKU), quotas: q, clock: clock.OrReal(cfg.Clock), maxShaping: cfg.MaxShaping,
		buckets: map[Operation]*bucket{}}, nil
}

// reserve takes n tokens of op and returns how long the caller must wait
// for them (0: at once); when that is longer than limit it takes nothing
// and returns ok false.
func (l *Limiter) reserve(op Operation, n float64, limit time.Duration) (wait time.Duration, ok bool) {
	q, found := l.quotas[op]
	if !found {
		return 0, true
	}
	rate := q.Count / q.Per.Seconds() // tokens per second
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[op]
	if b == nil {
		b = &bucket{tokens: q.Count, last: now}
		l.buckets[op] = b
	}
	if now.After(b.last) {
		b.tokens = min(q.Count, b.tokens+now.Sub(b.last).Seconds()*rate)
		b.last = now
	}
	if b.tokens >= n {
		b.tokens -= n
		return 0, true
	}
	wait = time.Duration((n - b.tokens) / rate * float64(time.Second))
	if wait > limit {
		return 0, false
	}
	b.tokens -= n // owed: later callers wait behind this one
	return wait, true
}

// giveBack returns n tokens of op that were reserved for an operation
// that never happened.
func (l *Limiter) giveBack(op Operation, n float64) {
	l.mu.Lock()
	if b := l.buckets[op]; b != nil {
		b.tokens += n
	}
	l.mu.Unlock()
}

// waitFor waits on the hub's clock for a reservation of n tokens of op;
// when ctx ends first the tokens go back and ctx's error is returned.
func (l *Limiter) waitFor(ctx context.Context, op Operation, n float64, wait time.Duration) error {
	if wait <= 0 {
		return nil
	}
	if fn, ok := ctx.Value(beforeHoldKey{}).(func()); ok {
		fn()
	}
	select {
	case <-l.clock.After(wait):
		return nil
	case <-ctx.Done():
		l.giveBack(op, n)
		return ctx.Err()
	}
}

func (l *Limiter) throttled(op Operation) error {
	return iothub.Errorf(iothub.ThrottlingException,
		"Request throttled: the %s quota of this %s hub (%s) is used up; back off and retry.", op, l.sku, l.quotas[op])
}

// Allow takes one operation of op from its budget, or returns 429001.
func (l *Limiter) Allow(op Operation) error {
	if l == nil {
		return nil
	}
	if _, ok := l.reserve(op, 1, 0); !ok {
		return l.throttled(op)
	}
	return nil
}

// AllowDirectMethod takes a direct method call with a payload of
// payloadBytes from the direct-methods budget (MethodBlocks meters), or
// returns 429001. Method calls a job makes are paced as JobDeviceOps
// instead.
func (l *Limiter) AllowDirectMethod(payloadBytes int) error {
	if l == nil {
		return nil
	}
	// A tier's budget always holds the largest payload (128 KB = 32
	// meters; S1 has 40 a second); the cap only keeps odd input finite.
	n := min(float64(MethodBlocks(payloadBytes)), l.quotas[DirectMethods].Count)
	if _, ok := l.reserve(DirectMethods, n, 0); !ok {
		return l.throttled(DirectMethods)
	}
	return nil
}

// Shape takes one operation of op from its budget, waiting on the hub's
// clock while the budget refills (traffic shaping); past the shaping bound,
// or when ctx ends, it returns 429001.
func (l *Limiter) Shape(ctx context.Context, op Operation) error {
	if l == nil {
		return nil
	}
	wait, ok := l.reserve(op, 1, l.maxShaping)
	if !ok {
		return l.throttled(op)
	}
	if err := l.waitFor(ctx, op, 1, wait); err != nil {
		return l.throttled(op) // the send never happened
	}
	return nil
}

type beforeHoldKey struct{}

// WithBeforeHold returns ctx carrying fn, which Shape and Pace call once
// before they hold the caller: a transport that batches its answers (the
// MQTT read loop's PUBACKs) sends what it owes for earlier operations
// first, so only the held one waits, as on the hub.
func WithBeforeHold(ctx context.Context, fn func()) context.Context {
	return context.WithValue(ctx, beforeHoldKey{}, fn)
}

// Pace takes n operations of op from its budget, waiting on the hub's
// clock for as long as the budget needs to refill: a job's device
// operations slow down to the tier's rate and never fail for it. Only ctx
// ends the wait (its error is returned); the caller bounds the time, as a
// job does with maxExecutionTimeInSeconds.
func (l *Limiter) Pace(ctx context.Context, op Operation, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	wait, _ := l.reserve(op, float64(n), time.Duration(math.MaxInt64))
	return l.waitFor(ctx, op, float64(n), wait)
}

// Burst is how many operations of op the budget holds when full (0 when
// off or when op is not throttled): what may pass at once.
func (l *Limiter) Burst(op Operation) int {
	if l == nil {
		return 0
	}
	return int(l.quotas[op].Count)
}

// SKU is the tier in force ("" when off).
func (l *Limiter) SKU() string {
	if l == nil {
		return ""
	}
	return l.sku
}
