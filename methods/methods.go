// Package methods invokes direct methods on devices and modules (protocol
// digest §1.9, §3.5): it publishes the request to the device through a
// Transport, correlates the device's answer by $rid, and enforces the hub's
// connect and response timeouts. The REST API and the jobs engine
// (scheduleDeviceMethod) both call Invoker.Invoke. The package knows nothing
// of HTTP, MQTT or AMQP; the hub wires a device transport in as the
// Transport.
package methods

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// The hub's limits for direct methods (digest §3.5; D-DM).
const (
	DefaultResponseTimeout = 30 * time.Second
	MinResponseTimeout     = 5 * time.Second
	MaxResponseTimeout     = 300 * time.Second
	MaxConnectTimeout      = 300 * time.Second
	// MaxPayload bounds the request and the response payload, each way.
	MaxPayload = 128 * 1024
)

// Transport reaches devices over their live connections; a device
// transport (MQTT, later AMQP) implements it.
type Transport interface {
	// IsOnline reports whether the device or module has a live connection
	// that takes method requests (on MQTT: subscribed to the methods topic).
	IsOnline(deviceID, moduleID string) bool
	// SendMethod hands a request to that device's live connection only. It
	// should not wait on the device's socket; Invoke stops waiting at its
	// timeout even when it does.
	SendMethod(deviceID, moduleID string, req DeviceRequest) error
}

// DeviceRequest is what the device receives: the transport encodes it.
type DeviceRequest struct {
	MethodName string
	// RID correlates the device's answer (Invoker.Deliver).
	RID     string
	Payload json.RawMessage
}

// Identities tells whether a device or module is registered.
type Identities interface {
	// Exists returns nil, or 404001 DeviceNotFound / 404010 ModuleNotFound.
	Exists(ctx context.Context, deviceID, moduleID string) error
}

// Request is one method invocation.
type Request struct {
	DeviceID, ModuleID string
	MethodName         string
	// Payload is the JSON sent to the device; nil or empty means null.
	Payload json.RawMessage
	// ResponseTimeout is how long the device has to answer once the request
	// is published; zero means DefaultResponseTimeout. 5 s to 300 s.
	ResponseTimeout time.Duration
	// ConnectTimeout is how long to wait for the device to come online
	// (connected and subscribed); zero means it must be online already.
	// 0 to 300 s.
	ConnectTimeout time.Duration
}

// Response is the device's answer.
type Response struct {
	// Status is the status the device chose, passed through unchanged.
	Status int
	// Payload is the device's JSON; "null" when it sent an empty body.
	Payload json.RawMessage
}

// Messages the hub uses (digest §3.5, §7.1 Format B).
const (
	msgNotOnline      = "Timed out waiting for device to connect."
	msgTimeout        = "Timed out waiting for the response from device."
	msgDisconnected   = "The device disconnected before it responded."
	msgInvalidPayload = "Payload is not a valid document of type application/json."
)

// NonBlockingTransport is a Transport whose SendMethod never waits on a
// device: it only queues the request (both of the hub's device transports
// do, with bounded outboxes). Invoke then sends on the caller's goroutine
// instead of starting one per call.
type NonBlockingTransport interface {
	Transport
	SendMethodNeverBlocks()
}

// Invoker runs direct methods. Its zero value is not usable: set Transport.
// One Invoker serves the whole hub, so $rid values are unique per hub.
//
// Calls in flight are spread over shards by rid, so concurrent callers and
// device answers rarely meet on one lock. Lock order: a shard's mu and
// waitMu are leaf locks, never held together; Transport is never called
// with either held.
type Invoker struct {
	// Transport reaches the devices. Required.
	Transport Transport
	// Identities, if not nil, turns calls to unknown devices into 404001 /
	// 404010 instead of 404103. It is only asked when the device is not
	// online: a connected device is registered.
	Identities Identities
	// After is the clock for timeouts (a fake clock's, in tests); nil means
	// the wall clock, with one timer per call reused from call to call.
	After func(time.Duration) <-chan time.Time
	// Logger records dropped responses; nil means slog.Default().
	Logger *slog.Logger

	nextRID atomic.Uint64
	shards  [shardCount]shard

	waitMu sync.Mutex
	// online is closed and removed whenever a device's session changes; a
	// caller waiting for the device to connect waits on it. An entry lives
	// only while someone waits.
	online map[key]*wakeup
}

// shardCount spreads the pending-call table; a power of two.
const shardCount = 32

type shard struct {
	mu    sync.Mutex
	calls map[uint64]*call // in flight, by rid
	// byDevice heads, per device, the list of its calls in this shard, so
	// a disconnect fails them at once.
	byDevice map[key]*call
	_        [64]byte // keeps neighbouring shards' locks off one cache line
}

type wakeup struct {
	ch      chan struct{}
	waiters int
}

type key struct{ deviceID, moduleID string }

type call struct {
	key        key
	rid        uint64
	prev, next *call       // the device's other calls in the same shard
	done       chan result // buffered 1; written once, by whoever removed the call
	timer      *time.Timer // the response timeout, reused with the call (After nil)
}

type result struct {
	resp Response
	err  error
}

// callPool recycles calls and their channels. Only calls no other
// goroutine can still reach go back (see Invoke).
var callPool = sync.Pool{New: func() any { return &call{done: make(chan result, 1)} }}

func (inv *Invoker) shardOf(rid uint64) *shard { return &inv.shards[rid&(shardCount-1)] }

func (inv *Invoker) after(d time.Duration) <-chan time.Time {
	if inv.After != nil {
		return inv.After(d)
	}
	return time.After(d)
}

// responseTimer starts c's response timeout. A call that goes back to the
// pool keeps its timer (reused is non-nil): Reset and Stop (Go 1.23
// semantics) leave no stale tick in its channel, so the next call cannot
// see this one's.
func (inv *Invoker) responseTimer(c *call, d time.Duration, pooled bool) (timeout <-chan time.Time, reused *time.Timer) {
	if inv.After != nil || !pooled {
		return inv.after(d), nil
	}
	if c.timer == nil {
		// wall clock: After is nil only when the hub's clock is the wall
		// clock (hub.newMethods passes any other clock's After).
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	return c.timer.C, c.timer
}

func (inv *Invoker) log() *slog.Logger {
	if inv.Logger != nil {
		return inv.Logger
	}
	return slog.Default()
}

// Validate checks a request against the hub's rules and fills in defaults.
// Errors: 400005 ArgumentNull (no method name), 400004 ArgumentInvalid
// (a bad name, a timeout out of bounds, a payload that is not JSON),
// 413001 MessageTooLarge (payload over 128 KB).
func Validate(req *Request) error {
	if req.MethodName == "" {
		return iothub.Errorf(iothub.ArgumentNull, "The method name is required.")
	}
	// The hub reportedly does not check names, but '/' breaks the C and C#
	// topic parsers and '?', '#', '+' are not valid in an MQTT topic name or
	// end the method segment (digest §1.9).
	if strings.ContainsAny(req.MethodName, "/?#+\x00") {
		return iothub.Errorf(iothub.ArgumentInvalid, "The method name %q must not contain '/', '?', '#' or '+'.", req.MethodName)
	}
	if req.ResponseTimeout == 0 {
		req.ResponseTimeout = DefaultResponseTimeout
	}
	if req.ResponseTimeout < MinResponseTimeout || req.ResponseTimeout > MaxResponseTimeout {
		return iothub.Errorf(iothub.ArgumentInvalid, "The response timeout must be between %d and %d seconds.",
			int(MinResponseTimeout/time.Second), int(MaxResponseTimeout/time.Second))
	}
	if req.ConnectTimeout < 0 || req.ConnectTimeout > MaxConnectTimeout {
		return iothub.Errorf(iothub.ArgumentInvalid, "The connect timeout must be between 0 and %d seconds.",
			int(MaxConnectTimeout/time.Second))
	}
	if len(bytes.TrimSpace(req.Payload)) == 0 {
		// The device always gets JSON text: the Node device SDK answers 400
		// to an empty body (sdk-behavior §3.6).
		req.Payload = json.RawMessage("null")
	} else if !json.Valid(req.Payload) {
		return iothub.Errorf(iothub.ArgumentInvalid, "The method payload is not valid JSON.")
	}
	if len(req.Payload) > MaxPayload {
		return iothub.Errorf(iothub.MessageTooLarge, "The method payload is larger than %d bytes.", MaxPayload)
	}
	return nil
}

// Invoke publishes the method to the device and waits for its answer.
//
// Errors: those of Validate; 404001 DeviceNotFound / 404010 ModuleNotFound;
// 404103 DeviceNotOnline when the device is not connected and subscribed
// within ConnectTimeout, or disconnects before answering; 504101
// GatewayTimeout when it does not answer within ResponseTimeout; 502101
// InvalidResponseWhileProxying when its answer is not JSON or too large;
// ctx's error when ctx ends first.
func (inv *Invoker) Invoke(ctx context.Context, req Request) (Response, error) {
	if err := Validate(&req); err != nil {
		return Response{}, err
	}
	k := key{req.DeviceID, req.ModuleID}
	c, err := inv.start(ctx, k, req.ConnectTimeout)
	if err != nil {
		return Response{}, err
	}
	dr := DeviceRequest{MethodName: req.MethodName, RID: strconv.FormatUint(c.rid, 10), Payload: req.Payload}
	_, direct := inv.Transport.(NonBlockingTransport)
	if direct {
		if err := inv.Transport.SendMethod(k.deviceID, k.moduleID, dr); err != nil {
			// The connection went away between the check and the send.
			inv.fail(c, notOnline(msgDisconnected, req.ConnectTimeout))
		}
	} else {
		// Sent on its own goroutine: the timeout below runs even while a
		// transport is stuck on a device that does not read.
		go func() {
			if err := inv.Transport.SendMethod(k.deviceID, k.moduleID, dr); err != nil {
				inv.fail(c, notOnline(msgDisconnected, req.ConnectTimeout))
			}
		}()
	}
	var r result
	select {
	case r = <-c.done:
	default:
		timeout, reused := inv.responseTimer(c, req.ResponseTimeout, direct)
		select {
		case r = <-c.done:
		case <-timeout:
			inv.fail(c, iothub.Errorf(iothub.GatewayTimeout, msgTimeout))
			r = <-c.done
		case <-ctx.Done():
			inv.fail(c, ctx.Err())
			// fail wrote the result unless a response or a disconnect won
			// the race; either way exactly one result is in done.
			r = <-c.done
		}
		if reused != nil {
			reused.Stop()
		}
	}
	if direct {
		// Removed from the tables and its one result read: nothing else
		// holds c. (The goroutine above may still, so those are not reused.)
		*c = call{done: c.done, timer: c.timer}
		callPool.Put(c)
	}
	return r.resp, r.err
}

// start waits up to connectTimeout for the device to be online, then
// registers a call for it with a fresh rid.
func (inv *Invoker) start(ctx context.Context, k key, connectTimeout time.Duration) (*call, error) {
	var deadline <-chan time.Time
	checkedExists := false
	for {
		if inv.Transport.IsOnline(k.deviceID, k.moduleID) {
			c := inv.register(k)
			// A disconnect that SessionChanged saw before the call was
			// registered could not fail it; look again now that it is.
			if inv.Transport.IsOnline(k.deviceID, k.moduleID) {
				return c, nil
			}
			if inv.remove(c) {
				*c = call{done: c.done, timer: c.timer}
				callPool.Put(c)
			} else {
				// SessionChanged failed it meanwhile; take its result.
				<-c.done
			}
			continue
		}
		if !checkedExists && inv.Identities != nil {
			if err := inv.Identities.Exists(ctx, k.deviceID, k.moduleID); err != nil {
				return nil, err
			}
			checkedExists = true
		}
		if connectTimeout <= 0 {
			return nil, notOnline(msgNotOnline, connectTimeout)
		}
		if deadline == nil {
			deadline = inv.after(connectTimeout)
		}
		// Take the wake-up channel before looking again, so a change between
		// the look and the wait is not missed.
		wake := inv.waitFor(k)
		online := inv.Transport.IsOnline(k.deviceID, k.moduleID)
		var err error
		if !online {
			select {
			case <-wake:
			case <-deadline:
				err = notOnline(msgNotOnline, connectTimeout)
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		inv.doneWaiting(k, wake)
		if err != nil {
			return nil, err
		}
	}
}

// notOnline is the hub's 404103, with the connect timeout as "hh:mm:ss" in
// info (digest §3.5).
func notOnline(msg string, connectTimeout time.Duration) *iothub.Error {
	s := int(connectTimeout / time.Second)
	return &iothub.Error{Code: iothub.DeviceNotOnline, Message: msg, Info: map[string]any{
		"timeout": twoDigits(s/3600) + ":" + twoDigits(s/60%60) + ":" + twoDigits(s%60),
	}}
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// waitFor returns the channel that closes at k's next session change and
// counts the caller as waiting on it.
func (inv *Invoker) waitFor(k key) chan struct{} {
	inv.waitMu.Lock()
	defer inv.waitMu.Unlock()
	if inv.online == nil {
		inv.online = map[key]*wakeup{}
	}
	w, ok := inv.online[k]
	if !ok {
		w = &wakeup{ch: make(chan struct{})}
		inv.online[k] = w
	}
	w.waiters++
	return w.ch
}

// doneWaiting forgets k's channel when its last waiter leaves, so devices
// that were called while offline leave nothing behind.
func (inv *Invoker) doneWaiting(k key, ch chan struct{}) {
	inv.waitMu.Lock()
	defer inv.waitMu.Unlock()
	if w, ok := inv.online[k]; ok && w.ch == ch {
		w.waiters--
		if w.waiters == 0 {
			delete(inv.online, k)
		}
	}
}

func (inv *Invoker) register(k key) *call {
	// A hub-wide decimal counter: alphanumeric, so Python's quote() leaves
	// it alone (sdk-behavior §3.6), and never reused while the hub runs.
	rid := inv.nextRID.Add(1)
	c := callPool.Get().(*call)
	c.key, c.rid = k, rid
	s := inv.shardOf(rid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[uint64]*call{}
		s.byDevice = map[key]*call{}
	}
	s.calls[rid] = c
	if head := s.byDevice[k]; head != nil {
		c.next = head
		head.prev = c
	}
	s.byDevice[k] = c
	return c
}

// remove takes c out of the tables and reports whether it was still there;
// only the remover may write c.done.
func (inv *Invoker) remove(c *call) bool {
	s := inv.shardOf(c.rid)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeLocked(c)
}

func (s *shard) removeLocked(c *call) bool {
	if s.calls[c.rid] != c {
		return false
	}
	delete(s.calls, c.rid)
	if c.prev != nil {
		c.prev.next = c.next
	} else if c.next != nil {
		s.byDevice[c.key] = c.next
	} else {
		delete(s.byDevice, c.key)
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	return true
}

func (inv *Invoker) fail(c *call, err error) {
	if inv.remove(c) {
		c.done <- result{err: err}
	}
}

// Deliver hands a device's answer ($iothub/methods/res/{status}/?$rid={rid})
// to the waiting caller. An answer to a call that already ended (a late or
// duplicate response after a timeout), to an unknown rid, or from a device
// other than the one called is dropped and logged: it never reaches another
// caller.
func (inv *Invoker) Deliver(deviceID, moduleID, rid string, status int, body []byte) {
	k := key{deviceID, moduleID}
	var c *call
	// Only the rids Invoke hands out ("1", "2", ...): no sign, no leading
	// zero, so one call has one spelling.
	if n, err := strconv.ParseUint(rid, 10, 64); err == nil && rid[0] != '0' {
		s := inv.shardOf(n)
		s.mu.Lock()
		if cc, ok := s.calls[n]; ok && cc.key == k {
			s.removeLocked(cc)
			c = cc
		}
		s.mu.Unlock()
	}
	if c == nil {
		inv.log().Info("method response dropped: no call waits for it", "device", deviceID, "module", moduleID, "rid", rid, "status", status)
		return
	}
	c.done <- responseOf(status, body)
}

// responseOf turns the device's body into the REST payload. An empty body is
// null (digest §1.9). A body that is not JSON, or is larger than 128 KB,
// fails the call with 502101 InvalidResponseWhileProxying, the error the hub
// reported for it ("Payload is not a valid document of type
// application/json", azure-iot-sdk-c#417 and #6); the hub's REST answer must
// itself stay valid JSON.
func responseOf(status int, body []byte) result {
	if len(body) > MaxPayload {
		return result{err: iothub.Errorf(iothub.InvalidResponseWhileProxying, "The device's response payload is larger than %d bytes.", MaxPayload)}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return result{resp: Response{Status: status, Payload: json.RawMessage("null")}}
	}
	if !json.Valid(trimmed) {
		return result{err: iothub.Errorf(iothub.InvalidResponseWhileProxying, msgInvalidPayload)}
	}
	// Copy: the transport may reuse its buffer.
	return result{resp: Response{Status: status, Payload: append(json.RawMessage(nil), trimmed...)}}
}

// SessionChanged is told whenever a device connects, subscribes or
// disconnects. It wakes callers waiting for the device to come online, and
// fails at once the calls in flight to a device that is no longer online
// (404103; the device cannot answer them any more).
func (inv *Invoker) SessionChanged(deviceID, moduleID string) {
	k := key{deviceID, moduleID}
	inv.waitMu.Lock()
	if w, ok := inv.online[k]; ok {
		close(w.ch)
		delete(inv.online, k)
	}
	inv.waitMu.Unlock()
	if !inv.hasCalls(k) || inv.Transport.IsOnline(deviceID, moduleID) {
		return
	}
	var failed []*call
	for i := range inv.shards {
		s := &inv.shards[i]
		s.mu.Lock()
		for c := s.byDevice[k]; c != nil; {
			next := c.next
			s.removeLocked(c)
			failed = append(failed, c)
			c = next
		}
		s.mu.Unlock()
	}
	for _, c := range failed {
		c.done <- result{err: notOnline(msgDisconnected, 0)}
	}
}

func (inv *Invoker) hasCalls(k key) bool {
	for i := range inv.shards {
		s := &inv.shards[i]
		s.mu.Lock()
		found := s.byDevice[k] != nil
		s.mu.Unlock()
		if found {
			return true
		}
	}
	return false
}

// Waiting is the number of devices some caller waits to come online.
func (inv *Invoker) Waiting() int {
	inv.waitMu.Lock()
	defer inv.waitMu.Unlock()
	return len(inv.online)
}

// InFlight is the number of calls waiting for an answer.
func (inv *Invoker) InFlight() int {
	n := 0
	for i := range inv.shards {
		s := &inv.shards[i]
		s.mu.Lock()
		n += len(s.calls)
		s.mu.Unlock()
	}
	return n
}
