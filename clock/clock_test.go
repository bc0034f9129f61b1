package clock_test

import (
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(ch <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-ch:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestFakeAfter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wait    time.Duration
		advance []time.Duration
		want    bool
	}{
		{"not yet", time.Minute, []time.Duration{59 * time.Second}, false},
		{"exactly due", time.Minute, []time.Duration{time.Minute}, true},
		{"in steps", time.Minute, []time.Duration{30 * time.Second, 30 * time.Second}, true},
		{"long past", time.Minute, []time.Duration{time.Hour}, true},
		{"zero fires at once", 0, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := clock.NewFake(epoch)
			ch := f.After(tc.wait)
			for _, d := range tc.advance {
				f.Advance(d)
			}
			at, ok := fired(ch)
			if ok != tc.want {
				t.Fatalf("fired = %v, want %v", ok, tc.want)
			}
			if ok && !at.Equal(epoch.Add(tc.wait)) {
				t.Errorf("fired at %v, want the deadline %v", at, epoch.Add(tc.wait))
			}
		})
	}
}

func TestFakeAfterFuncOrderAndStop(t *testing.T) {
	f := clock.NewFake(epoch)
	var order []string
	var seen []time.Time
	f.AfterFunc(2*time.Second, func() { order = append(order, "b"); seen = append(seen, f.Now()) })
	f.AfterFunc(time.Second, func() { order = append(order, "a"); seen = append(seen, f.Now()) })
	stopped := f.AfterFunc(time.Second, func() { order = append(order, "never") })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	f.Advance(time.Hour)
	if got := len(order); got != 2 || order[0] != "a" || order[1] != "b" {
		t.Fatalf("order = %v, want [a b]", order)
	}
	if !seen[0].Equal(epoch.Add(time.Second)) || !seen[1].Equal(epoch.Add(2*time.Second)) {
		t.Errorf("functions saw %v, want each its own deadline", seen)
	}
	if !f.Now().Equal(epoch.Add(time.Hour)) {
		t.Errorf("Now = %v after the advance", f.Now())
	}
	if f.Waiters() != 0 {
		t.Errorf("%d waiters left", f.Waiters())
	}
}

func TestFakeTickerDropsMissedTicks(t *testing.T) {
	f := clock.NewFake(epoch)
	tk := f.NewTicker(time.Second)
	f.Advance(10 * time.Second)
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("no tick after 10 s")
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("a second tick was buffered; missed ticks must be dropped")
	}
	f.Advance(time.Second)
	if _, ok := fired(tk.C()); !ok {
		t.Fatal("no tick one period later")
	}
	tk.Stop()
	f.Advance(time.Minute)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("a stopped ticker ticked")
	}
}

func TestRealClockMoves(t *testing.T) {
	c := clock.OrReal(nil)
	a := c.Now()
	<-c.After(time.Millisecond)
	if !c.Now().After(a) {
		t.Fatal("the real clock did not move")
	}
}
