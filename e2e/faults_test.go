package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Tests of the emulator-only fault API (/_emulator/faults) and of the
// faults devices ask for with the SDK suites' message properties.

type faultDoc struct {
	ID, Action, DeviceID, Route, ErrorName, Source string
	ErrorCode, Count, Hits                         int
	DelayInSeconds, DurationInSeconds              float64
	ExpiryTimeUtc                                  string
}

func createFault(t *testing.T, h *hubtest.Hub, body map[string]any) faultDoc {
	t.Helper()
	r := h.Do(t, http.MethodPost, "/_emulator/faults", body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create fault: %d %s", r.StatusCode, r.Body)
	}
	var f faultDoc
	r.JSON(t, &f)
	return f
}

func listFaults(t *testing.T, h *hubtest.Hub) []faultDoc {
	t.Helper()
	var out []faultDoc
	h.Do(t, http.MethodGet, "/_emulator/faults", nil).JSON(t, &out)
	return out
}

// waitHits waits until the fault has acted n times (it is then on the
// clock, and a test may advance past it).
func waitHits(t *testing.T, h *hubtest.Hub, id string, n int) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		for _, f := range listFaults(t, h) {
			if f.ID == id && f.Hits >= n {
				return nil
			}
		}
		return fmt.Errorf("fault %s has not acted %d times: %+v", id, n, listFaults(t, h))
	})
}

func TestFaults_ListCreateDeleteClear(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	a := createFault(t, h, map[string]any{"action": "error", "route": "GET /devices/{id}", "errorCode": 503001, "durationInSeconds": 60})
	b := createFault(t, h, map[string]any{"action": "refuseConnect", "deviceId": "dev1", "durationInSeconds": 30})
	if a.ErrorName != "ServiceUnavailable" || a.ExpiryTimeUtc != "2030-01-01T12:01:00.0000000Z" || b.Action != "refuseConnect" || a.Source != "api" {
		t.Errorf("created %+v and %+v", a, b)
	}
	if l := listFaults(t, h); len(l) != 2 || l[0].ID != a.ID || l[1].ID != b.ID {
		t.Fatalf("list %+v", l)
	}
	if r := h.Do(t, http.MethodDelete, "/_emulator/faults/"+a.ID, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	checkHubError(t, h.Do(t, http.MethodDelete, "/_emulator/faults/"+a.ID, nil), 404, "GenericNotFound")
	// Faults expire by themselves on the hub's clock.
	h.Advance(t, 30*time.Second)
	if l := listFaults(t, h); len(l) != 0 {
		t.Errorf("after its duration the fault is still listed: %+v", l)
	}
	createFault(t, h, map[string]any{"action": "error"})
	if r := h.Do(t, http.MethodDelete, "/_emulator/faults", nil); r.StatusCode != http.StatusNoContent || len(listFaults(t, h)) != 0 {
		t.Errorf("clear: %d, left %+v", r.StatusCode, listFaults(t, h))
	}
	for _, bad := range []map[string]any{
		{"action": "explode"},
		{"action": "dropConnection"},                       // no device
		{"action": "delayMethodResponse", "deviceId": "d"}, // no delay
		{"action": "error", "errorCode": 200},
		{"action": "error", "route": "GET /nowhere"},
		{"action": "error", "durationInSeconds": -1},
	} {
		checkHubError(t, h.Do(t, http.MethodPost, "/_emulator/faults", bad), 400, "ArgumentInvalid")
	}
	var routes []string
	h.Do(t, http.MethodGet, "/_emulator/faults/routes", nil).JSON(t, &routes)
	found := false
	for _, r := range routes {
		found = found || r == "PUT /devices/{id}"
	}
	if !found {
		t.Errorf("routes %v lack PUT /devices/{id}", routes)
	}
}

func TestFaults_NextCallsOfARouteGetTheHubError(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	createFault(t, h, map[string]any{"action": "error", "route": "GET /devices/{id}", "errorCode": 429001, "count": 2})
	for i := 0; i < 2; i++ {
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil), 429, "ThrottlingException")
	}
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
		t.Fatalf("third call: %d %s", r.StatusCode, r.Body)
	}
	if l := listFaults(t, h); len(l) != 0 {
		t.Errorf("a used-up fault is still listed: %+v", l)
	}
	// Other routes and other devices are untouched.
	h.InjectFault(t, faults.Fault{Action: faults.Error, Route: "GET /twins/{id}", DeviceID: "dev1", ErrorCode: iothub.ServerError})
	checkHubError(t, h.Do(t, http.MethodGet, "/twins/dev1", nil), 500, "ServerError")
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
		t.Errorf("another route: %d", r.StatusCode)
	}
	h.CreateDevice(t, "dev2")
	if r := h.Do(t, http.MethodGet, "/twins/dev2", nil); r.StatusCode != 200 {
		t.Errorf("another device: %d", r.StatusCode)
	}
}

func TestFaults_AllCallsForAWhile(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	h.CreateDevice(t, "dev1")
	createFault(t, h, map[string]any{"action": "error", "errorCode": 503001, "durationInSeconds": 60})
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil), 503, "ServiceUnavailable")
	checkHubError(t, h.Do(t, http.MethodPost, "/devices/query", map[string]any{"query": "SELECT * FROM devices"}), 503, "ServiceUnavailable")
	// The emulator's own endpoints are never faulted.
	if r := h.Do(t, http.MethodGet, "/_emulator/faults", nil); r.StatusCode != 200 {
		t.Errorf("fault list under a fault: %d", r.StatusCode)
	}
	h.Advance(t, time.Minute)
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
		t.Errorf("after the fault expired: %d %s", r.StatusCode, r.Body)
	}
}

func TestFaults_DropConnectionNow(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{tls: true})
	createFault(t, h, map[string]any{"action": "dropConnection", "deviceId": "dev1"})
	c.waitLost(t)
	// Nothing refuses the reconnect, and the session is kept.
	mustDial(t, h, d, connOpts{tls: true})
}

func TestFaults_RefuseReconnectsForAWhile(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	other := h.CreateDevice(t, "dev2")
	c := mustDial(t, h, d, connOpts{})
	f := createFault(t, h, map[string]any{"action": "dropConnection", "deviceId": "dev1", "durationInSeconds": 30})
	c.waitLost(t)
	_, err := dial(t, h, d, connOpts{})
	if err == nil || err.Error() != "server Unavailable" {
		t.Fatalf("reconnect during the fault: %v, want CONNACK 3 server unavailable", err)
	}
	mustDial(t, h, other, connOpts{}) // other devices connect
	waitHits(t, h, f.ID, 1)
	h.Advance(t, 30*time.Second)
	mustDial(t, h, d, connOpts{})

	// refuseConnect leaves a live connection alone.
	h.InjectFault(t, faults.Fault{Action: faults.RefuseConnect, DeviceID: "dev2", Duration: time.Minute})
	if _, err := dial(t, h, other, connOpts{}); err == nil {
		t.Fatal("refuseConnect let a new connection in")
	}
}

func TestFaults_DelayedMethodResponse(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	serveMethods(t, h, d, echo)
	f := createFault(t, h, map[string]any{"action": "delayMethodResponse", "deviceId": "dev1", "delayInSeconds": 3, "durationInSeconds": 600})

	invoke := func(timeout int) chan *hubtest.Response {
		ch := make(chan *hubtest.Response, 1)
		go func() {
			ch <- h.Do(t, http.MethodPost, methodsPath(d), map[string]any{"methodName": "m", "payload": 1, "responseTimeoutInSeconds": timeout})
		}()
		return ch
	}
	// Held 3 s of a 5 s timeout: the caller gets the answer once the clock
	// passes the delay.
	ch := invoke(5)
	waitHits(t, h, f.ID, 1)
	select {
	case r := <-ch:
		t.Fatalf("answered while held: %d %s", r.StatusCode, r.Body)
	default:
	}
	h.Advance(t, 3*time.Second)
	if r := <-ch; r.StatusCode != 200 {
		t.Fatalf("held response: %d %s", r.StatusCode, r.Body)
	}
	// Held past the call's timeout: 504 as from a slow device.
	long := h.InjectFault(t, faults.Fault{Action: faults.DelayMethodResponse, DeviceID: "dev1", Delay: time.Minute})
	ch = invoke(5)
	waitHits(t, h, long.ID, 1)  // the longest delay in force applies
	h.Advance(t, 5*time.Second) // the call's timeout, before the held answer
	if r := <-ch; r.StatusCode != 504 || !strings.Contains(string(r.Body), `\"errorCode\":504101`) {
		t.Fatalf("held past the timeout: %d %s", r.StatusCode, r.Body)
	}
	h.Advance(t, time.Minute) // the late answer is dropped
}

func TestFaults_DelayedTwinUpdate(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/res/#")
	f := h.InjectFault(t, faults.Fault{Action: faults.DelayTwinUpdate, DeviceID: "dev1", Delay: 10 * time.Second})
	c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", 0, `{"battery":55}`)
	waitHits(t, h, f.ID, 1)
	if tw := getTwin(t, h, "/twins/dev1"); tw.Properties.Reported["battery"] != nil {
		t.Fatalf("the held update is already applied: %v", tw.Properties.Reported)
	}
	h.Advance(t, 10*time.Second)
	if m := c.waitFor(t, "$iothub/twin/res/"); m.Topic()[:len("$iothub/twin/res/204/")] != "$iothub/twin/res/204/" {
		t.Errorf("response %s", m.Topic())
	}
	if tw := getTwin(t, h, "/twins/dev1"); tw.Properties.Reported["battery"] != float64(55) {
		t.Errorf("reported after the delay: %v", tw.Properties.Reported)
	}
}

// The SDK suites' fault properties: KillTcp and ShutDownMqtt close the
// connection after DelayInSecs and refuse reconnects for DurationInSecs.
func TestFaults_MessagePropertiesKillTheConnection(t *testing.T) {
	for _, op := range []string{"KillTcp", "ShutDownMqtt"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			h := hubtest.Start(t, hubtest.WithClock(clockStart))
			d := h.CreateDevice(t, "dev1")
			c := mustDial(t, h, d, connOpts{tls: true})
			c.publish(t, "devices/dev1/messages/events/AzIoTHub_FaultOperationType="+op+
				"&AzIoTHub_FaultOperationCloseReason=boom&AzIoTHub_FaultOperationDelayInSecs=2&AzIoTHub_FaultOperationDurationInSecs=5", 1, "")
			var f faultDoc
			checkFor(t, 10*time.Second, func() error {
				if l := listFaults(t, h); len(l) == 1 {
					f = l[0]
					return nil
				}
				return fmt.Errorf("faults %+v", listFaults(t, h))
			})
			if f.Action != "dropConnection" || f.Source != "message" || f.DelayInSeconds != 2 || f.DurationInSeconds != 5 {
				t.Errorf("fault from the message %+v", f)
			}
			select {
			case err := <-c.lost:
				t.Fatalf("closed before the delay: %v", err)
			default:
			}
			h.Advance(t, 2*time.Second)
			c.waitLost(t)
			if _, err := dial(t, h, d, connOpts{tls: true}); err == nil {
				t.Fatal("reconnect accepted during DurationInSecs")
			}
			h.Advance(t, 5*time.Second)
			mustDial(t, h, d, connOpts{tls: true})
			// The fault message itself was stored like any other.
			if n := len(listMessages(t, h, "deviceId=dev1")); n != 1 {
				t.Errorf("%d messages stored, want the fault message", n)
			}
		})
	}
}

func TestFaults_MessagePropertiesThrottle(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.publish(t, "devices/dev1/messages/events/AzIoTHub_FaultOperationType=InvokeThrottling&AzIoTHub_FaultOperationDelayInSecs=0&AzIoTHub_FaultOperationDurationInSecs=10", 1, "")
	// Over HTTPS the device's sends get 429 for the duration.
	checkHubError(t, deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/events", "x"), 429, "ThrottlingException")
	h.Advance(t, 10*time.Second)
	if r := deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/events", "x"); r.StatusCode != http.StatusNoContent {
		t.Errorf("after the duration: %d %s", r.StatusCode, r.Body)
	}
}
