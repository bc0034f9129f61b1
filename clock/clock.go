// Package clock is the hub's one source of time: every Now, timer and
// ticker of the emulator reads a Clock, so tests (and --fake-clock) can move
// time forward by hand and see tokens expire, messages lapse and jobs start
// without waiting for them.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and schedules wake-ups.
type Clock interface {
	Now() time.Time
	// After is time.After on this clock.
	After(d time.Duration) <-chan time.Time
	// NewTicker is time.NewTicker on this clock; d must be positive.
	NewTicker(d time.Duration) Ticker
	// AfterFunc is time.AfterFunc on this clock.
	AfterFunc(d time.Duration, f func()) Timer
}

// Ticker is a time.Ticker of some Clock.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Timer is the stoppable part of a time.Timer.
type Timer interface {
	// Stop prevents the timer from firing; false if it already fired or
	// was stopped.
	Stop() bool
}

// Real is the wall clock.
func Real() Clock { return realClock{} }

// OrReal returns c, or the wall clock when c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }
func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a clock that moves only when told to. Advance fires the timers
// and tickers that fall due, in deadline order, so a test sees the same
// sequence of events every run.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	seq     uint64
}

type waiter struct {
	at     time.Time
	seq    uint64 // ties fire in the order they were scheduled
	period time.Duration
	ch     chan time.Time // After and tickers: capacity 1, like time's
	fn     func()         // AfterFunc
	fake   *Fake
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once it reaches now+d.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	w := &waiter{ch: make(chan time.Time, 1)}
	f.add(w, d)
	return w.ch
}

// NewTicker returns a ticker that ticks each time the fake time passes
// another d; like time's, it drops ticks a slow reader misses.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker interval")
	}
	w := &waiter{ch: make(chan time.Time, 1), period: d}
	f.add(w, d)
	return fakeTicker{w}
}

type fakeTicker struct{ w *waiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t fakeTicker) Stop()               { t.w.Stop() }

// AfterFunc runs fn, in the goroutine that advances the clock, once the fake
// time reaches now+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	w := &waiter{fn: fn}
	f.add(w, d)
	return w
}

func (f *Fake) add(w *waiter, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.fake = f
	w.at = f.now.Add(max(d, 0))
	f.seq++
	w.seq = f.seq
	f.waiters = append(f.waiters, w)
	if d <= 0 {
		f.fireDueLocked()
	}
}

// fireDueLocked fires channel waiters that are due; AfterFunc waiters due
// now are left for Advance (or run at once from add through fireAt).
func (f *Fake) fireDueLocked() {
	for _, fn := range f.popDueLocked(f.now) {
		go fn() // only reached for AfterFunc(0) from add; as time.AfterFunc does
	}
}

// popDueLocked removes (or reschedules) every waiter due at t, sends to
// channel waiters and returns the functions to run.
func (f *Fake) popDueLocked(t time.Time) []func() {
	var fns []func()
	for {
		i := f.nextDueLocked(t)
		if i < 0 {
			return fns
		}
		w := f.waiters[i]
		if w.period > 0 {
			w.at = w.at.Add(w.period)
			for !w.at.After(t) {
				w.at = w.at.Add(w.period) // missed ticks are dropped
			}
			f.seq++
			w.seq = f.seq
		} else {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
		}
		if w.fn != nil {
			fns = append(fns, w.fn)
			continue
		}
		select {
		case w.ch <- t:
		default:
		}
	}
}

func (f *Fake) nextDueLocked(t time.Time) int {
	best := -1
	for i, w := range f.waiters {
		if w.at.After(t) {
			continue
		}
		if best < 0 || w.at.Before(f.waiters[best].at) || (w.at.Equal(f.waiters[best].at) && w.seq < f.waiters[best].seq) {
			best = i
		}
	}
	return best
}

// Advance moves the clock forward by d, stopping at each deadline on the
// way to fire what is due then (AfterFunc functions run before Advance
// returns).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	f.advanceTo(end)
}

// Set moves the clock to t when t is later than now; it never goes back.
func (f *Fake) Set(t time.Time) {
	f.advanceTo(t)
}

func (f *Fake) advanceTo(end time.Time) {
	for {
		f.mu.Lock()
		next, ok := f.nextDeadlineLocked(end)
		if !ok {
			if end.After(f.now) {
				f.now = end
			}
			f.mu.Unlock()
			return
		}
		if next.After(f.now) {
			f.now = next
		}
		fns := f.popDueLocked(f.now)
		f.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}
}

func (f *Fake) nextDeadlineLocked(end time.Time) (time.Time, bool) {
	var next time.Time
	found := false
	for _, w := range f.waiters {
		if !w.at.After(end) && (!found || w.at.Before(next)) {
			next, found = w.at, true
		}
	}
	return next, found
}

// Waiters counts the timers, tickers and After channels pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

func (w *waiter) Stop() bool {
	f := w.fake
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			return true
		}
	}
	return false
}
