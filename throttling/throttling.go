// Package throttling applies IoT Hub's per-tier operation throttles
// (--sku, --units): each operation class has a budget per window, refilled
// continuously on the hub's clock. Beyond it device-to-cloud sends are
// shaped (held until the budget allows, for a bounded time) and every other
// operation gets 429 with error code 429001 ThrottlingException, as the hub
// answers. Off (a nil *Limiter) unless a tier is chosen.
package throttling

import (
	"context"
	"fmt"
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
	Queries        Operation = "queries"
	TwinReads      Operation = "twin reads"
	TwinUpdates    Operation = "twin updates"
	JobsOps        Operation = "jobs operations"
	Configurations Operation = "configurations and edge deployments"
)

// Quota is a budget of Count operations per Per.
type Quota struct {
	Count float64
	Per   time.Duration
}

func (q Quota) String() string {
	if q.Per == time.Minute {
		return fmt.Sprintf("%g/min", q.Count)
	}
	return fmt.Sprintf("%g/sec", q.Count)
}

// SKUs lists the tiers --sku takes.
var SKUs = []string{"F1", "S1", "S2", "S3"}

// Quotas returns the hub's documented throttles for sku with units units
// ("IoT Hub quotas and throttling": the whole hub's budget, not a device's).
func Quotas(sku string, units int) (map[Operation]Quota, error) {
	if units < 1 {
		return nil, fmt.Errorf("units must be at least 1, not %d", units)
	}
	u := float64(units)
	perSec := func(n float64) Quota { return Quota{n, time.Second} }
	perMin := func(n float64) Quota { return Quota{n, time.Minute} }
	switch strings.ToUpper(sku) {
	case "F1":
		if units != 1 {
			return nil, fmt.Errorf("the free tier has exactly one unit")
		}
		return map[Operation]Quota{
			RegistryOps: perMin(100), NewConnections: perSec(100), DeviceToCloud: perSec(100),
			CloudToDevice: perMin(100), Queries: perMin(20), TwinReads: perSec(100), TwinUpdates: perSec(50),
			JobsOps: perMin(100), Configurations: perMin(20),
		}, nil
	case "S1":
		return map[Operation]Quota{
			RegistryOps: perMin(100 * u), NewConnections: perSec(max(100, 12*u)), DeviceToCloud: perSec(max(100, 12*u)),
			CloudToDevice: perMin(100 * u), Queries: perMin(20 * u), TwinReads: perSec(max(100, 10*u)), TwinUpdates: perSec(max(50, 5*u)),
			JobsOps: perMin(100 * u), Configurations: perMin(20 * u),
		}, nil
	case "S2":
		return map[Operation]Quota{
			RegistryOps: perMin(100 * u), NewConnections: perSec(120 * u), DeviceToCloud: perSec(120 * u),
			CloudToDevice: perMin(100 * u), Queries: perMin(20 * u), TwinReads: perSec(20 * u), TwinUpdates: perSec(10 * u),
			JobsOps: perMin(100 * u), Configurations: perMin(20 * u),
		}, nil
	case "S3":
		return map[Operation]Quota{
			RegistryOps: perMin(5000 * u), NewConnections: perSec(6000 * u), DeviceToCloud: perSec(6000 * u),
			CloudToDevice: perMin(5000 * u), Queries: perMin(1000 * u), TwinReads: perSec(1000 * u), TwinUpdates: perSec(500 * u),
			JobsOps: perMin(5000 * u), Configurations: perMin(20 * u),
		}, nil
	}
	return nil, fmt.Errorf("unknown SKU %q (one of %s)", sku, strings.Join(SKUs, ", "))
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

// reserve takes one token of op and returns how long the caller must wait
// for it (0: at once); when that is longer than limit it takes nothing and
// returns ok false.
func (l *Limiter) reserve(op Operation, limit time.Duration) (wait time.Duration, ok bool) {
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
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	wait = time.Duration((1 - b.tokens) / rate * float64(time.Second))
	if wait > limit {
		return 0, false
	}
	b.tokens-- // owed: later callers wait behind this one
	return wait, true
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
	if _, ok := l.reserve(op, 0); !ok {
		return l.throttled(op)
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
	wait, ok := l.reserve(op, l.maxShaping)
	if !ok {
		return l.throttled(op)
	}
	if wait <= 0 {
		return nil
	}
	select {
	case <-l.clock.After(wait):
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		l.buckets[op].tokens++ // the send never happened: give its share back
		l.mu.Unlock()
		return l.throttled(op)
	}
}

// SKU is the tier in force ("" when off).
func (l *Limiter) SKU() string {
	if l == nil {
		return ""
	}
	return l.sku
}
