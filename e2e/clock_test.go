package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Tests on the hub's fake clock: nothing here waits for the time it checks;
// the test moves the clock and then waits (with a generous real-time bound)
// for the hub to react.

var clockStart = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// advanceUntil moves the clock by step until fn holds, for what the hub
// does asynchronously after a deadline (a sweep, a job pass).
func advanceUntil(t *testing.T, h *hubtest.Hub, step time.Duration, fn func() error) {
	t.Helper()
	checkFor(t, 20*time.Second, func() error {
		err := fn()
		if err != nil {
			h.Advance(t, step)
		}
		return err
	})
}

// The hub closes a connection when its SAS token expires; the SDKs renew
// the token by reconnecting before then.
func TestClock_MQTTTokenExpiryClosesTheConnection(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{password: d.Token(t, h, time.Hour)})
	h.Advance(t, time.Hour-time.Second)
	select {
	case err := <-c.lost:
		t.Fatalf("closed a second before the token expired: %v", err)
	default:
	}
	h.Advance(t, time.Second)
	c.waitLost(t)
	// A token that expired on the hub's clock is refused; a fresh one
	// connects again.
	stale := d.Token(t, h, time.Minute)
	h.Advance(t, 2*time.Minute)
	if _, err := dial(t, h, d, connOpts{password: stale}); err == nil {
		t.Fatal("a token expired on the hub's clock was accepted")
	}
	mustDial(t, h, d, connOpts{})
}

func TestClock_C2DExpiresWithExpiredFeedback(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	sendC2D(t, h, "dev1", map[string]any{"body": "late", "messageId": "m-exp", "ack": "full",
		"expiryTimeUtc": clockStart.Add(time.Hour).Format(time.RFC3339)})
	sendC2D(t, h, "dev1", map[string]any{"body": "kept", "messageId": "m-kept", "ack": "full",
		"expiryTimeUtc": clockStart.Add(3 * time.Hour).Format(time.RFC3339)})
	if n := c2dCount(t, h, "dev1"); n != 2 {
		t.Fatalf("%d queued, want 2", n)
	}
	h.Advance(t, time.Hour+time.Second)
	fb := waitFeedback(t, h, "dev1", 1)
	if len(fb) != 1 || fb[0].OriginalMessageID != "m-exp" || fb[0].StatusCode != "Expired" {
		t.Fatalf("feedback %+v, want one Expired for m-exp", fb)
	}
	if n := c2dCount(t, h, "dev1"); n != 1 {
		t.Errorf("%d queued after the first expired, want 1", n)
	}
	// The device gets only the message still alive.
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	if m := c.waitFor(t, "devices/dev1/messages/devicebound/"); string(m.Payload()) != "kept" {
		t.Errorf("delivered %q, want the unexpired message", m.Payload())
	}
}

func TestClock_JobScheduledAnHourAheadStartsWhenTheClockGetsThere(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	fleetForQueries(t, h)
	start := clockStart.Add(time.Hour).Format(time.RFC3339)
	body := fmt.Sprintf(`{"jobId":"later","type":"scheduleUpdateTwin","queryCondition":"*","startTime":"%s",
		"updateTwin":{"etag":"*","properties":{"desired":{"x":1}}},"maxExecutionTimeInSeconds":60}`, start)
	if r := h.Do(t, http.MethodPut, "/jobs/v2/later", body); r.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", r.StatusCode, r.Body)
	}
	h.Advance(t, time.Hour-time.Minute)
	var j jobDoc
	h.Do(t, http.MethodGet, "/jobs/v2/later", nil).JSON(t, &j)
	if j.Status != "scheduled" {
		t.Fatalf("a minute before its start the job is %q", j.Status)
	}
	h.Advance(t, time.Minute)
	j = waitJob(t, h, "later", func(j jobDoc) bool { return j.Status == "completed" })
	if j.Stats.DeviceCount == 0 || j.Stats.SucceededCount != j.Stats.DeviceCount {
		t.Errorf("job stats %+v", j.Stats)
	}
	if st, err := time.Parse(time.RFC3339Nano, j.StartTime); err != nil || !st.Equal(clockStart.Add(time.Hour)) {
		t.Errorf("startTime %q, want the scheduled time %v", j.StartTime, clockStart.Add(time.Hour))
	}
}

func TestClock_JobExceedingMaxExecutionTimeFails(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	for _, id := range []string{"off1", "off2"} {
		h.CreateDevice(t, id)
	}
	// Nobody is connected: each device call waits its connect timeout, so
	// the job outlives its 60 s.
	job := map[string]any{"jobId": "slow", "type": "scheduleDeviceMethod", "queryCondition": "STARTSWITH(deviceId, 'off')",
		"maxExecutionTimeInSeconds": 60,
		"cloudToDeviceMethod":       map[string]any{"methodName": "m", "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 300}}
	if r := h.Do(t, http.MethodPut, "/jobs/v2/slow", job); r.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", r.StatusCode, r.Body)
	}
	waitJob(t, h, "slow", func(j jobDoc) bool { return j.Status == "running" })
	var j jobDoc
	advanceUntil(t, h, 30*time.Second, func() error {
		h.Do(t, http.MethodGet, "/jobs/v2/slow", nil).JSON(t, &j)
		if j.Status != "failed" {
			return fmt.Errorf("job is %s", j.Status)
		}
		return nil
	})
	if j.FailureReason == "" || j.Stats.SucceededCount != 0 {
		t.Errorf("timed-out job %+v", j)
	}
}

func TestClock_EmulatorEndpoint(t *testing.T) {
	t.Parallel()
	real := hubtest.Start(t)
	var c struct {
		Now  string
		Fake bool
	}
	real.Do(t, http.MethodGet, "/_emulator/clock", nil).JSON(t, &c)
	if c.Fake || c.Now == "" {
		t.Errorf("real clock %+v", c)
	}
	checkHubError(t, real.Do(t, http.MethodPost, "/_emulator/clock", map[string]any{"advanceSeconds": 60}), 405, "GenericMethodNotAllowed")

	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	conn := mustDial(t, h, d, connOpts{password: d.Token(t, h, time.Hour)})
	r := h.Do(t, http.MethodPost, "/_emulator/clock", map[string]any{"advanceSeconds": 1800})
	r.JSON(t, &c)
	if r.StatusCode != 200 || !c.Fake || c.Now != "2030-01-01T12:30:00.0000000Z" {
		t.Fatalf("advance: %d %s", r.StatusCode, r.Body)
	}
	r = h.Do(t, http.MethodPost, "/_emulator/clock", map[string]any{"to": "2030-01-01T13:00:00Z"})
	if r.StatusCode != 200 {
		t.Fatalf("set: %d %s", r.StatusCode, r.Body)
	}
	conn.waitLost(t) // its token expired on the way
	checkHubError(t, h.Do(t, http.MethodPost, "/_emulator/clock", map[string]any{"to": "2030-01-01T12:00:00Z"}), 400, "ArgumentInvalid")
}

// The emulator's C2D queue listing tells a locked message (Invisible) by
// the hub's clock: once the lock has run out there, it is Enqueued again.
func TestClock_C2DListingShowsLocksOnTheHubsClock(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "poller")
	sendC2D(t, h, "poller", map[string]any{"body": "x"})
	state := func() string {
		var msgs []struct{ State string }
		h.Do(t, http.MethodGet, "/_emulator/devices/poller/messages/devicebound", nil).JSON(t, &msgs)
		if len(msgs) != 1 {
			t.Fatalf("%d messages queued, want 1", len(msgs))
		}
		return msgs[0].State
	}
	if s := state(); s != "Enqueued" {
		t.Fatalf("before the receive: %s", s)
	}
	if r := h.Do(t, http.MethodGet, "/devices/poller/messages/deviceBound", nil, "Authorization: "+d.Token(t, h, time.Hour)); r.StatusCode != 200 {
		t.Fatalf("receive: %d %s", r.StatusCode, r.Body)
	}
	if s := state(); s != "Invisible" {
		t.Fatalf("while locked: %s", s)
	}
	h.Advance(t, 2*time.Minute) // the lock is a minute
	if s := state(); s != "Enqueued" {
		t.Fatalf("after the lock ran out on the hub's clock: %s", s)
	}
}
