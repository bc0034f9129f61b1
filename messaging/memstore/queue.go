// Package memstore holds in-memory implementations of messaging's store
// interfaces (Queue, Log), for tests of the messaging rules and of code that
// uses them. They keep copies, so callers never alias their state. The
// SQLite stores are the ones the hub runs.
package memstore

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// Queue is an in-memory messaging.Queue. Devices must be added with
// AddDevice before messages can be queued for them.
type Queue struct {
	mu       sync.Mutex
	devices  map[string]string // device id → generation id
	msgs     []*messaging.C2DMessage
	feedback []*feedbackRecord
	seq      int64
	fbSeq    int64
	tokens   int64
}

var _ messaging.Queue = (*Queue)(nil)

// New returns an empty Queue.
func New() *Queue { return &Queue{devices: map[string]string{}} }

// AddDevice registers a device, as the registry would.
func (q *Queue) AddDevice(deviceID, generationID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.devices[deviceID] = generationID
}

// RemoveDevice deletes a device and its queue, as deleting the identity does.
func (q *Queue) RemoveDevice(deviceID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.devices, deviceID)
	q.msgs = q.filter(func(m *messaging.C2DMessage) bool { return m.DeviceID != deviceID })
}

func notFound(deviceID string) error {
	return iothub.Errorf(iothub.DeviceNotFound, "Device %s not registered", deviceID)
}

func lockLost(token string) error {
	return iothub.Errorf(iothub.DeviceMessageLockLost, "Message lock %s is lost or expired.", token)
}

func clone(m *messaging.C2DMessage) *messaging.C2DMessage {
	c := *m
	if m.Properties != nil {
		c.Properties = make(map[string]string, len(m.Properties))
		for k, v := range m.Properties {
			c.Properties[k] = v
		}
	}
	c.Body = append([]byte{}, m.Body...)
	return &c
}

// ms truncates to the millisecond, as the SQLite store keeps times.
func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

func (q *Queue) filter(keep func(*messaging.C2DMessage) bool) []*messaging.C2DMessage {
	var out []*messaging.C2DMessage
	for _, m := range q.msgs {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func (q *Queue) EnqueueMany(_ context.Context, msgs []*messaging.C2DMessage, limit int) ([]error, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = q.enqueue(m, limit)
	}
	return errs, nil
}

// enqueue stores one message; q.mu is held.
func (q *Queue) enqueue(m *messaging.C2DMessage, limit int) error {
	gen, ok := q.devices[m.DeviceID]
	if !ok {
		return notFound(m.DeviceID)
	}
	n := 0
	for _, x := range q.msgs {
		if x.DeviceID == m.DeviceID {
			n++
		}
	}
	if n >= limit {
		return iothub.Errorf(iothub.DeviceMaximumQueueDepthExceeded, "Maximum queue depth of %d exceeded for device %s.", limit, m.DeviceID)
	}
	q.seq++
	m.SequenceNumber, m.GenerationID = q.seq, gen
	c := clone(m)
	c.EnqueuedTime, c.ExpiryTime = ms(m.EnqueuedTime), ms(m.ExpiryTime)
	q.msgs = append(q.msgs, c)
	return nil
}

func (q *Queue) Lock(_ context.Context, deviceID string, now, until time.Time, n int) ([]*messaging.C2DMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lock(deviceID, now, until, n), nil
}

func (q *Queue) LockMany(_ context.Context, deviceIDs []string, now, until time.Time, n int) (map[string][]*messaging.C2DMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string][]*messaging.C2DMessage{}
	for _, d := range deviceIDs {
		if l := q.lock(d, now, until, n); len(l) > 0 {
			out[d] = l
		}
	}
	return out, nil
}

// lock locks up to n deliverable messages of a device; q.mu is held.
func (q *Queue) lock(deviceID string, now, until time.Time, n int) []*messaging.C2DMessage {
	out := []*messaging.C2DMessage{}
	for _, m := range q.msgs {
		if len(out) == n {
			break
		}
		if m.DeviceID == deviceID && m.LockToken == "" && m.ExpiryTime.After(now) {
			q.tokens++
			m.LockToken, m.LockedUntil = "lock-"+strconv.FormatInt(q.tokens, 10), ms(until)
			out = append(out, clone(m))
		}
	}
	return out
}

// locked returns the message token locks, if the lock is live.
func (q *Queue) locked(deviceID, token string, now time.Time) (*messaging.C2DMessage, error) {
	for _, m := range q.msgs {
		if m.LockToken == token && token != "" && m.DeviceID == deviceID && m.LockedUntil.After(now) {
			return m, nil
		}
	}
	return nil, lockLost(token)
}

func (q *Queue) remove(m *messaging.C2DMessage) {
	q.msgs = q.filter(func(x *messaging.C2DMessage) bool { return x != m })
}

func (q *Queue) Remove(_ context.Context, deviceID, token string, now time.Time) (*messaging.C2DMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.locked(deviceID, token, now)
	if err != nil {
		return nil, err
	}
	q.remove(m)
	return clone(m), nil
}

func (q *Queue) RemoveMany(_ context.Context, keys []messaging.LockKey, now time.Time) ([]*messaging.C2DMessage, []error, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs, errs := make([]*messaging.C2DMessage, len(keys)), make([]error, len(keys))
	for i, k := range keys {
		m, err := q.locked(k.DeviceID, k.Token, now)
		if err != nil {
			errs[i] = err
			continue
		}
		q.remove(m)
		msgs[i] = clone(m)
	}
	return msgs, errs, nil
}

func (q *Queue) Unlock(_ context.Context, deviceID, token string, now time.Time, count bool, maxDelivery int) (*messaging.C2DMessage, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.locked(deviceID, token, now)
	if err != nil {
		return nil, false, err
	}
	if count {
		m.DeliveryCount++
	}
	m.LockToken, m.LockedUntil = "", time.Time{}
	if count && m.DeliveryCount >= maxDelivery {
		q.remove(m)
		return clone(m), true, nil
	}
	return clone(m), false, nil
}

func (q *Queue) Purge(_ context.Context, deviceID string) ([]*messaging.C2DMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.devices[deviceID]; !ok {
		return nil, notFound(deviceID)
	}
	out := []*messaging.C2DMessage{}
	for _, m := range q.msgs {
		if m.DeviceID == deviceID {
			out = append(out, clone(m))
		}
	}
	q.msgs = q.filter(func(m *messaging.C2DMessage) bool { return m.DeviceID != deviceID })
	return out, nil
}

func (q *Queue) Pending(_ context.Context, deviceID string) ([]*messaging.C2DMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := []*messaging.C2DMessage{}
	for _, m := range q.msgs {
		if m.DeviceID == deviceID {
			out = append(out, clone(m))
		}
	}
	return out, nil
}

func (q *Queue) Sweep(_ context.Context, now time.Time, maxDelivery int) (expired, dead []*messaging.C2DMessage, devices []string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	seen := map[string]bool{}
	var keep []*messaging.C2DMessage
	for _, m := range q.msgs {
		switch {
		case !m.ExpiryTime.After(now):
			expired = append(expired, clone(m))
		case m.LockToken != "" && !m.LockedUntil.After(now) && m.DeliveryCount+1 >= maxDelivery:
			dead = append(dead, clone(m))
		case m.LockToken != "" && !m.LockedUntil.After(now):
			m.LockToken, m.LockedUntil = "", time.Time{}
			m.DeliveryCount++
			if !seen[m.DeviceID] {
				seen[m.DeviceID] = true
				devices = append(devices, m.DeviceID)
			}
			keep = append(keep, m)
		default:
			keep = append(keep, m)
		}
	}
	q.msgs = keep
	return expired, dead, devices, nil
}

func (q *Queue) ReleaseAll(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs {
		m.LockToken, m.LockedUntil = "", time.Time{}
	}
	return nil
}

func (q *Queue) AddFeedback(_ context.Context, fb []*messaging.Feedback) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, f := range fb {
		q.fbSeq++
		f.Sequence = q.fbSeq
		c := *f
		c.EnqueuedTime = ms(f.EnqueuedTime)
		q.feedback = append(q.feedback, &feedbackRecord{Feedback: c})
	}
	return nil
}

func (q *Queue) Feedback(_ context.Context, f messaging.FeedbackFilter) ([]*messaging.Feedback, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := []*messaging.Feedback{}
	for _, fb := range q.feedback {
		if fb.Sequence >= f.From && (f.DeviceID == "" || fb.DeviceID == f.DeviceID) && len(out) < f.Limit {
			c := fb.Feedback
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Sequence < out[j].Sequence })
	return out, nil
}

// feedbackRecord is a stored feedback record with its queue state.
type feedbackRecord struct {
	messaging.Feedback
	settled     bool
	lockToken   string
	lockedUntil time.Time
}

func (q *Queue) LockFeedback(_ context.Context, now, until time.Time, n int) (string, []*messaging.Feedback, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tokens++
	token := "feedback-" + strconv.FormatInt(q.tokens, 10)
	var out []*messaging.Feedback
	for _, r := range q.feedback {
		if len(out) == n {
			break
		}
		if !r.settled && (r.lockToken == "" || !r.lockedUntil.After(now)) {
			r.lockToken, r.lockedUntil = token, ms(until)
			c := r.Feedback
			out = append(out, &c)
		}
	}
	if len(out) == 0 {
		return "", nil, nil
	}
	return token, out, nil
}

func (q *Queue) SettleFeedback(_ context.Context, token string, now time.Time, remove bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	found := false
	for _, r := range q.feedback {
		if token != "" && r.lockToken == token && r.lockedUntil.After(now) {
			found = true
			r.lockToken, r.lockedUntil = "", time.Time{}
			if remove {
				r.settled = true
			}
		}
	}
	if !found {
		return iothub.Errorf(iothub.DeviceMessageLockLost, "Feedback lock %s is lost or expired.", token)
	}
	return nil
}
