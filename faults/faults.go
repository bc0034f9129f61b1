// Package faults holds the emulator's injected faults: connections dropped
// and refused, hub errors on REST calls, delayed method responses and twin
// updates, and the faults devices ask for with the AzIoTHub_FaultOperation*
// message properties of Microsoft's SDK test suites. It is emulator-only;
// the transports ask it what to do and apply the answer.
package faults

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Action is what a fault does.
type Action string

const (
	// DropConnection closes the device's connection when the fault is
	// created (after Delay), then refuses its reconnects until the fault
	// expires.
	DropConnection Action = "dropConnection"
	// RefuseConnect refuses the device's new connections until the fault
	// expires; a live connection is left alone.
	RefuseConnect Action = "refuseConnect"
	// Error answers REST calls of Route (all routes when empty) for Device
	// (any device when empty) with ErrorCode, Count times or until expiry.
	Error Action = "error"
	// DelayMethodResponse holds the device's direct-method responses for
	// Delay before the caller gets them (past the call's timeout the caller
	// gets 504101, as from a slow device).
	DelayMethodResponse Action = "delayMethodResponse"
	// DelayTwinUpdate holds the device's twin reads and reported-property
	// updates for Delay before they are answered.
	DelayTwinUpdate Action = "delayTwinUpdate"
)

// RouteTelemetry names device-to-cloud sends in Error faults, over every
// transport (it is the HTTPS route's name).
const RouteTelemetry = "POST /devices/{id}/messages/events"

// DefaultDuration is how long a fault lasts when its Duration is zero and
// no Count ends it sooner.
const DefaultDuration = time.Hour

// DropListedFor is how long a drop stays listed after it happened (longer
// when it refuses reconnects for longer), so a client can see it acted.
const DropListedFor = time.Minute

// MaxFaults bounds the faults held at once.
const MaxFaults = 1000

// Fault is one injected fault.
type Fault struct {
	ID       string
	Action   Action
	DeviceID string
	ModuleID string
	// Route is "METHOD /path/{template}" as the route table names it, for
	// Error faults; empty matches every route of the hub's API.
	Route string
	// Operation is what a DropConnection fault ends, named as the SDK
	// suites' AzIoTHub_FaultOperationType names it (OpKillTcp when empty:
	// every connection of the identity, without a goodbye).
	Operation string
	// Reason is the description an AMQP close, end or detach carries
	// (the suites' AzIoTHub_FaultOperationCloseReason).
	Reason string
	// ErrorCode is the hub error of Error faults.
	ErrorCode iothub.Code
	// Count is how many more calls an Error fault answers (0: all of them
	// until it expires).
	Count int
	// Delay postpones DropConnection, and is the hold of the Delay* faults.
	Delay time.Duration
	// Duration is how long the fault lasts (DefaultDuration when zero).
	Duration  time.Duration
	CreatedAt time.Time
	// StartsAt is CreatedAt plus Delay for the faults Delay postpones
	// (drops, refusals, errors), CreatedAt for the Delay* faults.
	StartsAt  time.Time
	ExpiresAt time.Time
	// Source is "api" or "message" (a device's fault properties).
	Source string
	// Hits counts the calls, connections and responses the fault acted on.
	Hits int

	seq uint64 // creation order
}

// Connections drops device connections; the hub implements it over every
// transport a device may be connected on.
type Connections interface {
	// Drop ends what op names (one of the Op… fault operations) of the
	// device's (or module's) live connections, on every transport: the
	// connection (OpKillTcp without a goodbye, OpShutDown… gracefully,
	// OpKillAmqpConnection with an error), an AMQP session or one AMQP
	// link. A transport without the finer part (MQTT has no sessions or
	// links) closes the connection instead. Persistent sessions are kept.
	// reason is the description an AMQP error carries.
	Drop(deviceID, moduleID, op, reason string)
}

// dropOperations are the Operation values a DropConnection fault takes.
var dropOperations = map[string]bool{
	OpKillTcp: true, OpShutDownMqtt: true, OpShutDownAmqp: true, OpKillAmqpConnection: true, OpKillAmqpSession: true,
	OpKillAmqpCBSLinkReq: true, OpKillAmqpCBSLinkResp: true, OpKillAmqpD2CLink: true, OpKillAmqpC2DLink: true,
	OpKillAmqpTwinLinkReq: true, OpKillAmqpTwinLinkResp: true, OpKillAmqpMethodReq: true, OpKillAmqpMethodResp: true,
}

// Deps are what the fault service acts through.
type Deps struct {
	Connections Connections
}

// Config tunes the fault service.
type Config struct {
	// Clock expires faults and schedules delayed drops; nil means the wall
	// clock.
	Clock clock.Clock
}

// Service holds the faults in force.
type Service struct {
	deps   Deps
	clock  clock.Clock
	mu     sync.Mutex
	faults map[string]*Fault
	timers map[string]clock.Timer // delayed drops
	seq    uint64
	closed bool
}

// NewService returns an empty fault service.
func NewService(deps Deps, cfg Config) (*Service, error) {
	if err := iothub.CheckDeps("faults", deps); err != nil {
		return nil, err
	}
	return &Service{deps: deps, clock: clock.OrReal(cfg.Clock), faults: map[string]*Fault{}, timers: map[string]clock.Timer{}}, nil
}

// Close stops pending delayed drops; later calls return iothub.ErrClosed.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, t := range s.timers {
		t.Stop()
		delete(s.timers, id)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return iothub.Errorf(iothub.ArgumentInvalid, format, args...)
}

// Create validates f, fills its ID and times and puts it in force.
func (s *Service) Create(f Fault) (Fault, error) {
	switch f.Action {
	case DropConnection, RefuseConnect:
		if f.DeviceID == "" {
			return Fault{}, invalid("A %s fault needs a deviceId.", f.Action)
		}
		if f.Action == DropConnection && f.Operation == "" {
			f.Operation = OpKillTcp
		}
		if f.Operation != "" && (f.Action != DropConnection || !dropOperations[f.Operation]) {
			return Fault{}, invalid("operation %q is not one a %s fault takes (KillTcp, ShutDownMqtt, ShutDownAmqp, KillAmqpConnection, KillAmqpSession, KillAmqpCBSLinkReq, …).", f.Operation, f.Action)
		}
	case DelayMethodResponse, DelayTwinUpdate:
		if f.DeviceID == "" {
			return Fault{}, invalid("A %s fault needs a deviceId.", f.Action)
		}
		if f.Delay <= 0 {
			return Fault{}, invalid("A %s fault needs a positive delay.", f.Action)
		}
	case Error:
		if f.ErrorCode == 0 {
			f.ErrorCode = iothub.ThrottlingException
		}
		if st := f.ErrorCode.Status(); st < 400 || st > 599 || len(strconv.Itoa(int(f.ErrorCode))) != 6 {
			return Fault{}, invalid("errorCode %d is not one of the hub's error codes.", f.ErrorCode)
		}
		if f.Count < 0 {
			return Fault{}, invalid("count must not be negative.")
		}
	default:
		return Fault{}, invalid("Unknown fault action %q: use dropConnection, refuseConnect, error, delayMethodResponse or delayTwinUpdate.", f.Action)
	}
	if f.Duration < 0 || f.Delay < 0 {
		return Fault{}, invalid("durations must not be negative.")
	}
	if f.Duration == 0 && f.Action != DropConnection { // a plain drop refuses nothing afterwards
		f.Duration = DefaultDuration
	}
	if f.Source == "" {
		f.Source = "api"
	}
	now := s.clock.Now().UTC()
	f.ID = uuid.NewString()
	f.CreatedAt, f.StartsAt = now, now
	if f.Action != DelayMethodResponse && f.Action != DelayTwinUpdate {
		f.StartsAt = now.Add(f.Delay)
	}
	f.ExpiresAt = f.StartsAt.Add(f.Duration)
	if f.Action == DropConnection {
		f.ExpiresAt = f.StartsAt.Add(max(f.Duration, DropListedFor))
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Fault{}, iothub.ErrClosed
	}
	s.pruneLocked(now)
	if len(s.faults) >= MaxFaults {
		s.mu.Unlock()
		return Fault{}, iothub.Errorf(iothub.ThrottlingException, "At most %d faults can be in force at once.", MaxFaults)
	}
	s.seq++
	f.seq = s.seq
	stored := f
	s.faults[f.ID] = &stored
	s.mu.Unlock()

	if f.Action == DropConnection {
		if f.Delay <= 0 {
			s.dropped(f.ID)
			s.deps.Connections.Drop(f.DeviceID, f.ModuleID, f.Operation, f.reason())
		} else {
			s.mu.Lock()
			s.timers[f.ID] = s.clock.AfterFunc(f.Delay, func() {
				s.mu.Lock()
				delete(s.timers, f.ID)
				closed := s.closed
				s.mu.Unlock()
				if !closed {
					s.dropped(f.ID)
					s.deps.Connections.Drop(f.DeviceID, f.ModuleID, f.Operation, f.reason())
				}
			})
			s.mu.Unlock()
		}
	}
	return f, nil
}

// reason is the fault's close reason, or one that names the fault.
func (f Fault) reason() string {
	if f.Reason != "" {
		return f.Reason
	}
	return "Injected fault " + f.ID + ": " + f.Operation + "."
}

// dropped counts a drop as a hit of its fault.
func (s *Service) dropped(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.faults[id]; ok {
		f.Hits++
	}
}

// pruneLocked drops faults past their expiry.
func (s *Service) pruneLocked(now time.Time) {
	for id, f := range s.faults {
		if !now.Before(f.ExpiresAt) {
			if _, pending := s.timers[id]; !pending {
				delete(s.faults, id)
			}
		}
	}
}

// List returns the faults in force, oldest first.
func (s *Service) List() []Fault {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// Delete ends one fault (a pending delayed drop is cancelled); 404 when it
// is not in force.
func (s *Service) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.timers[id]; ok {
		t.Stop()
		delete(s.timers, id)
	}
	if _, ok := s.faults[id]; !ok {
		return iothub.Errorf(iothub.GenericNotFound, "No fault %s is in force.", id)
	}
	delete(s.faults, id)
	return nil
}

// Clear ends every fault.
func (s *Service) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.timers {
		t.Stop()
		delete(s.timers, id)
	}
	clear(s.faults)
}

// active calls fn for each fault in force, under the lock.
func (s *Service) active(fn func(f *Fault) bool) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if !now.Before(f.ExpiresAt) || now.Before(f.StartsAt) {
			continue
		}
		if !fn(f) {
			return
		}
	}
}

func matchDevice(f *Fault, deviceID, moduleID string) bool {
	return f.DeviceID == "" || (f.DeviceID == deviceID && (f.ModuleID == "" || f.ModuleID == moduleID))
}

// CallError returns the hub error a REST call of route (for deviceID, ""
// when the route names none) must answer with, or nil. It uses up one of a
// counted fault's calls.
func (s *Service) CallError(route, deviceID string) error {
	var hit *Fault
	s.active(func(f *Fault) bool {
		if f.Action != Error || (f.Route != "" && f.Route != route) || (f.DeviceID != "" && f.DeviceID != deviceID) {
			return true
		}
		if hit == nil || f.seq < hit.seq {
			hit = f
		}
		return true
	})
	if hit == nil {
		return nil
	}
	s.mu.Lock()
	code := hit.ErrorCode
	hit.Hits++
	if hit.Count > 0 {
		hit.Count--
		if hit.Count == 0 {
			delete(s.faults, hit.ID)
		}
	}
	s.mu.Unlock()
	return iothub.Errorf(code, "Injected fault: %s.", code.Name())
}

// ConnectError returns why the device's new connection must be refused
// (503001: the SDKs retry), or nil.
func (s *Service) ConnectError(deviceID, moduleID string) error {
	var refused *Fault
	s.active(func(f *Fault) bool {
		if f.Action != RefuseConnect && f.Action != DropConnection {
			return true
		}
		if !matchDevice(f, deviceID, moduleID) {
			return true
		}
		if f.Action == DropConnection && !s.clock.Now().Before(f.StartsAt.Add(f.Duration)) {
			return true // the drop happened; its refusal is over
		}
		refused = f
		f.Hits++
		return false
	})
	if refused == nil {
		return nil
	}
	return iothub.Errorf(iothub.ServiceUnavailable, "Injected fault %s refuses connections of %s until %s.", refused.ID, deviceID, refused.ExpiresAt.Format(time.RFC3339))
}

// HoldMethodResponse holds a device's direct-method response when a
// DelayMethodResponse fault is in force: deliver runs once the delay has
// passed on the clock, and HoldMethodResponse returns true. Otherwise it
// returns false and the caller delivers at once.
func (s *Service) HoldMethodResponse(deviceID, moduleID string, deliver func()) bool {
	f := s.delayFault(DelayMethodResponse, deviceID, moduleID)
	if f == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock.AfterFunc(f.Delay, deliver)
	f.Hits++ // counted once the hold is on the clock, so a test may advance
	return true
}

// HoldTwin waits while a DelayTwinUpdate fault holds the device's twin
// reads and reported-property updates, or until ctx ends.
func (s *Service) HoldTwin(ctx context.Context, deviceID, moduleID string) error {
	f := s.delayFault(DelayTwinUpdate, deviceID, moduleID)
	if f == nil {
		return nil
	}
	s.mu.Lock()
	done := s.clock.After(f.Delay)
	f.Hits++
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// delayFault is the longest fault of action a in force for the device.
func (s *Service) delayFault(a Action, deviceID, moduleID string) *Fault {
	var hit *Fault
	s.active(func(f *Fault) bool {
		if f.Action == a && matchDevice(f, deviceID, moduleID) && (hit == nil || f.Delay > hit.Delay) {
			hit = f
		}
		return true
	})
	return hit
}

// Clock is the service's clock, for transports that hold a response.
func (s *Service) Clock() clock.Clock { return s.clock }
