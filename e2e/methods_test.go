package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

const methodsFilter = "$iothub/methods/POST/#"

// methodTopic is the request topic the hub publishes (digest §1.9): nothing
// may follow the rid, and the rid is alphanumeric (Python quotes it).
var methodTopic = regexp.MustCompile(`^\$iothub/methods/POST/([^/]+)/\?\$rid=([0-9A-Za-z]+)$`)

// methodCall is one request a device received.
type methodCall struct {
	name, rid, payload string
	qos                byte
}

// methodDevice is a device that answers direct methods over raw MQTT.
type methodDevice struct {
	*mqttConn
	calls chan methodCall
}

// answerFunc decides a device's answer; ok=false leaves the call unanswered.
type answerFunc func(c methodCall) (status int, body string, ok bool)

func echo(c methodCall) (int, string, bool) { return 200, c.payload, true }

// serveMethods connects d, subscribes it to methods and answers each
// request with fn, at QoS 0 as the Node SDK does.
func serveMethods(t *testing.T, h *hubtest.Hub, d *hubtest.Device, fn answerFunc) *methodDevice {
	t.Helper()
	md := &methodDevice{mqttConn: mustDial(t, h, d, connOpts{}), calls: make(chan methodCall, 1000)}
	md.subscribeMethods(t, fn)
	return md
}

func (md *methodDevice) subscribeMethods(t *testing.T, fn answerFunc) {
	t.Helper()
	tok := md.Subscribe(methodsFilter, 0, func(cl paho.Client, m paho.Message) {
		c := methodCall{payload: string(m.Payload()), qos: m.Qos()}
		if sm := methodTopic.FindStringSubmatch(m.Topic()); sm != nil {
			c.name, c.rid = sm[1], sm[2]
		} else {
			c.name = "BAD TOPIC " + m.Topic()
		}
		md.calls <- c
		if status, body, ok := fn(c); ok && c.rid != "" {
			cl.Publish(fmt.Sprintf("$iothub/methods/res/%d/?$rid=%s", status, c.rid), 0, false, body)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", methodsFilter, tok.Error())
	}
}

func (md *methodDevice) nextCall(t *testing.T) methodCall {
	t.Helper()
	select {
	case c := <-md.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the device got no method request")
	}
	return methodCall{}
}

func createModule(t *testing.T, h *hubtest.Hub, deviceID, moduleID string) *hubtest.Device {
	t.Helper()
	r := h.Do(t, http.MethodPut, "/devices/"+deviceID+"/modules/"+moduleID, map[string]any{"deviceId": deviceID, "moduleId": moduleID})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}
	var m struct {
		Authentication struct {
			SymmetricKey struct{ PrimaryKey string }
		}
	}
	r.JSON(t, &m)
	return &hubtest.Device{ID: deviceID, ModuleID: moduleID, PrimaryKey: m.Authentication.SymmetricKey.PrimaryKey}
}

func methodsPath(d *hubtest.Device) string {
	if d.ModuleID != "" {
		return "/twins/" + d.ID + "/modules/" + d.ModuleID + "/methods"
	}
	return "/twins/" + d.ID + "/methods"
}

// methodResult is the hub's 200 answer to an invocation.
type methodResult struct {
	Status  int
	Payload json.RawMessage
}

func invokeOK(t *testing.T, h *hubtest.Hub, d *hubtest.Device, body any) methodResult {
	t.Helper()
	r := h.Do(t, http.MethodPost, methodsPath(d), body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %d %s", r.StatusCode, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var res methodResult
	r.JSON(t, &res)
	return res
}

// checkMethodError checks the hub's Format B error (digest §7.1): Message
// holds a JSON document with the numeric errorCode.
func checkMethodError(t *testing.T, r *hubtest.Response, status, code int, name, message string) map[string]any {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", r.StatusCode, status, r.Body)
	}
	if got := r.Header.Get("iothub-errorcode"); got != name {
		t.Errorf("iothub-errorcode = %q, want %q", got, name)
	}
	var outer errorBody
	r.JSON(t, &outer)
	var inner struct {
		ErrorCode    int
		TrackingID   string
		Message      string
		Info         map[string]any
		TimestampUTC string
	}
	if err := json.Unmarshal([]byte(outer.Message), &inner); err != nil {
		t.Fatalf("Message is not a JSON document: %q", outer.Message)
	}
	if inner.ErrorCode != code || inner.Message != message || inner.TrackingID == "" || inner.TimestampUTC == "" || inner.Info == nil {
		t.Errorf("inner error = %+v, want errorCode %d, message %q", inner, code, message)
	}
	return inner.Info
}

func TestMethods_DeviceRoundTrip(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	md := serveMethods(t, h, d, func(c methodCall) (int, string, bool) {
		return 201, `{"rebooted":true,"got":` + c.payload + `}`, true
	})
	res := invokeOK(t, h, d, map[string]any{"methodName": "reboot", "payload": map[string]any{"delay": 5},
		"responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0})
	if res.Status != 201 || string(res.Payload) != `{"rebooted":true,"got":{"delay":5}}` {
		t.Errorf("result = %d %s", res.Status, res.Payload)
	}
	c := md.nextCall(t)
	if c.name != "reboot" || c.payload != `{"delay":5}` || c.qos != 0 {
		t.Errorf("device got %+v", c)
	}
	// Each call gets its own rid.
	invokeOK(t, h, d, map[string]any{"methodName": "reboot"})
	if c2 := md.nextCall(t); c2.rid == c.rid {
		t.Errorf("rid %s reused", c.rid)
	}
}

func TestMethods_ModuleRoundTrip(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	dev := h.CreateDevice(t, "dev1")
	mod := createModule(t, h, "dev1", "mod1")
	// The device itself is online too; the module's call must reach the module.
	devConn := serveMethods(t, h, dev, func(methodCall) (int, string, bool) { return 200, `"device"`, true })
	modConn := serveMethods(t, h, mod, func(methodCall) (int, string, bool) { return 200, `"module"`, true })
	res := invokeOK(t, h, mod, map[string]any{"methodName": "getInfo", "payload": "hi"})
	if res.Status != 200 || string(res.Payload) != `"module"` {
		t.Errorf("result = %d %s", res.Status, res.Payload)
	}
	if c := modConn.nextCall(t); c.name != "getInfo" || c.payload != `"hi"` {
		t.Errorf("module got %+v", c)
	}
	if res := invokeOK(t, h, dev, map[string]any{"methodName": "x"}); string(res.Payload) != `"device"` {
		t.Errorf("device result = %s", res.Payload)
	}
	devConn.nextCall(t)
	select {
	case c := <-devConn.calls:
		t.Errorf("the device also got %+v", c)
	default:
	}
}

func TestMethods_PayloadsAndStatuses(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	// The device answers with the status and body named in the method name.
	answers := map[string]struct {
		status int
		body   string
	}{
		"ok": {200, `{"a":1}`}, "notFound": {404, `{"error":"unknown method"}`}, "fail": {500, `"boom"`},
		"empty": {200, ``}, "nullBody": {200, `null`}, "number": {299, `42`},
		"notJSON": {200, `Successfully invoke device method`},
	}
	md := serveMethods(t, h, d, func(c methodCall) (int, string, bool) {
		a := answers[c.name]
		return a.status, a.body, true
	})
	for _, tc := range []struct {
		name        string
		body        string // the REST request
		sent        string // what the device must receive
		status      int
		wantPayload string
	}{
		{"ok", `{"methodName":"ok","payload":{"x":[1,2]}}`, `{"x":[1,2]}`, 200, `{"a":1}`},
		{"device answers 404", `{"methodName":"notFound","payload":null}`, `null`, 404, `{"error":"unknown method"}`},
		{"device answers 500", `{"methodName":"fail"}`, `null`, 500, `"boom"`},
		{"empty answer is null", `{"methodName":"empty","payload":1}`, `1`, 200, `null`},
		{"null answer", `{"methodName":"nullBody","payload":"s"}`, `"s"`, 200, `null`},
		{"odd status", `{"methodName":"number","payload":true}`, `true`, 299, `42`},
		{"Python's empty payload", `{"methodName":"ok","payload":""}`, `""`, 200, `{"a":1}`},
		{"Go's PascalCase members", `{"MethodName":"ok","Payload":{"k":"v"},"ResponseTimeoutInSeconds":10}`, `{"k":"v"}`, 200, `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := invokeOK(t, h, d, tc.body)
			if res.Status != tc.status || string(res.Payload) != tc.wantPayload {
				t.Errorf("result = %d %s, want %d %s", res.Status, res.Payload, tc.status, tc.wantPayload)
			}
			if c := md.nextCall(t); c.payload != tc.sent {
				t.Errorf("device got payload %q, want %q", c.payload, tc.sent)
			}
		})
	}
	t.Run("device answer not JSON", func(t *testing.T) {
		r := h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"notJSON"}`)
		checkMethodError(t, r, 502, 502101, "InvalidResponseWhileProxying", "Payload is not a valid document of type application/json.")
		md.nextCall(t)
	})
	t.Run("payload of 128 KB", func(t *testing.T) {
		big := `"` + strings.Repeat("x", 128*1024-2) + `"`
		res := invokeOK(t, h, d, `{"methodName":"ok","payload":`+big+`}`)
		if res.Status != 200 {
			t.Errorf("status %d", res.Status)
		}
		if c := md.nextCall(t); len(c.payload) != 128*1024 {
			t.Errorf("device got %d bytes", len(c.payload))
		}
	})
	t.Run("payload over 128 KB", func(t *testing.T) {
		big := `"` + strings.Repeat("x", 128*1024-1) + `"`
		checkHubError(t, h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"ok","payload":`+big+`}`), 413, "MessageTooLarge")
	})
}

func TestMethods_BadRequests(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	md := serveMethods(t, h, d, echo)
	for _, tc := range []struct {
		name   string
		path   string
		body   string
		status int
		code   string
	}{
		{"no method name", "/twins/dev1/methods", `{"payload":{}}`, 400, "ArgumentNull"},
		{"empty body", "/twins/dev1/methods", ``, 400, "ArgumentNull"},
		{"not JSON", "/twins/dev1/methods", `{methodName`, 400, "ArgumentInvalid"},
		{"slash in name", "/twins/dev1/methods", `{"methodName":"a/b"}`, 400, "ArgumentInvalid"},
		{"plus in name", "/twins/dev1/methods", `{"methodName":"a+b"}`, 400, "ArgumentInvalid"},
		{"response timeout 4", "/twins/dev1/methods", `{"methodName":"m","responseTimeoutInSeconds":4}`, 400, "ArgumentInvalid"},
		{"response timeout 301", "/twins/dev1/methods", `{"methodName":"m","responseTimeoutInSeconds":301}`, 400, "ArgumentInvalid"},
		{"connect timeout 301", "/twins/dev1/methods", `{"methodName":"m","connectTimeoutInSeconds":301}`, 400, "ArgumentInvalid"},
		{"connect timeout -1", "/twins/dev1/methods", `{"methodName":"m","connectTimeoutInSeconds":-1}`, 400, "ArgumentInvalid"},
		{"huge timeout", "/twins/dev1/methods", `{"methodName":"m","responseTimeoutInSeconds":99999999999}`, 400, "ArgumentInvalid"},
		{"unknown device", "/twins/nope/methods", `{"methodName":"m"}`, 404, "DeviceNotFound"},
		{"unknown module", "/twins/dev1/modules/nope/methods", `{"methodName":"m"}`, 404, "ModuleNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkHubError(t, h.Do(t, http.MethodPost, tc.path, tc.body), tc.status, tc.code)
		})
	}
	select {
	case c := <-md.calls:
		t.Errorf("a refused call reached the device: %+v", c)
	default:
	}
	t.Run("needs ServiceConnect", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPost, "/twins/dev1/methods", `{"methodName":"m"}`,
			"Authorization: "+h.ServiceToken(t, "registryReadWrite")), 401, "IotHubUnauthorizedAccess")
		res := invokeOK(t, h, d, `{"methodName":"m"}`)
		if res.Status != 200 {
			t.Errorf("status %d", res.Status)
		}
	})
}

func TestMethods_ErrDeviceNotOnline(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	const msg = "Timed out waiting for device to connect."
	t.Run("never connected", func(t *testing.T) {
		info := checkMethodError(t, h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"m"}`), 404, 404103, "DeviceNotOnline", msg)
		if info["timeout"] != "00:00:00" {
			t.Errorf("info = %v", info)
		}
	})
	c := mustDial(t, h, d, connOpts{})
	t.Run("connected, not subscribed", func(t *testing.T) {
		checkMethodError(t, h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"m"}`), 404, 404103, "DeviceNotOnline", msg)
	})
	t.Run("subscribed to twins only", func(t *testing.T) {
		c.subscribe(t, "$iothub/twin/res/#")
		checkMethodError(t, h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"m"}`), 404, 404103, "DeviceNotOnline", msg)
	})
	t.Run("after disconnect", func(t *testing.T) {
		md := &methodDevice{mqttConn: c, calls: make(chan methodCall, 10)}
		md.subscribeMethods(t, echo)
		invokeOK(t, h, d, `{"methodName":"m"}`)
		c.Disconnect(100)
		// The registry shows the disconnection once the broker dropped the
		// connection.
		checkFor(t, 10*time.Second, func() error {
			var dev struct{ ConnectionState string }
			h.Do(t, http.MethodGet, "/devices/dev1", nil).JSON(t, &dev)
			if dev.ConnectionState != "Disconnected" {
				return fmt.Errorf("still %s", dev.ConnectionState)
			}
			return nil
		})
		checkMethodError(t, h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"m"}`), 404, 404103, "DeviceNotOnline", msg)
	})
}

func TestMethods_ConnectTimeout(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	t.Run("device connects in time", func(t *testing.T) {
		done := make(chan *hubtest.Response, 1)
		go func() {
			done <- h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"late","payload":7,"connectTimeoutInSeconds":60}`)
		}()
		// Connecting alone is not enough: the call waits for the subscription.
		c := mustDial(t, h, d, connOpts{})
		select {
		case r := <-done:
			t.Fatalf("answered before the device subscribed: %d %s", r.StatusCode, r.Body)
		case <-time.After(200 * time.Millisecond):
		}
		md := &methodDevice{mqttConn: c, calls: make(chan methodCall, 10)}
		md.subscribeMethods(t, echo)
		r := <-done
		if r.StatusCode != 200 || string(r.Body) != `{"status":200,"payload":7}` {
			t.Fatalf("got %d %s", r.StatusCode, r.Body)
		}
		c.Disconnect(100)
	})
	t.Run("device does not connect", func(t *testing.T) {
		other := h.CreateDevice(t, "dev2")
		r := h.Do(t, http.MethodPost, methodsPath(other), `{"methodName":"m","connectTimeoutInSeconds":1}`)
		info := checkMethodError(t, r, 404, 404103, "DeviceNotOnline", "Timed out waiting for device to connect.")
		if info["timeout"] != "00:00:01" {
			t.Errorf("info = %v", info)
		}
	})
}

func TestMethods_ErrGatewayTimeout(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	// The device answers "slow" only after the hub gave up, and "fast" at once.
	var mu sync.Mutex
	var slowRID string
	md := serveMethods(t, h, d, func(c methodCall) (int, string, bool) {
		if c.name == "slow" {
			mu.Lock()
			slowRID = c.rid
			mu.Unlock()
			return 0, "", false
		}
		return 200, `"fast"`, true
	})
	r := h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"slow","responseTimeoutInSeconds":5}`)
	checkMethodError(t, r, 504, 504101, "GatewayTimeout", "Timed out waiting for the response from device.")
	md.nextCall(t)
	// The late answer is dropped; the next call gets its own.
	mu.Lock()
	md.publish(t, "$iothub/methods/res/200/?$rid="+slowRID, 1, `"late"`)
	mu.Unlock()
	if res := invokeOK(t, h, d, `{"methodName":"fast"}`); string(res.Payload) != `"fast"` {
		t.Errorf("result = %s", res.Payload)
	}
	if !md.IsConnectionOpen() {
		t.Error("the late answer closed the connection")
	}
}

func TestMethods_DisconnectFailsCall(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	md := serveMethods(t, h, d, func(methodCall) (int, string, bool) { return 0, "", false })
	done := make(chan *hubtest.Response, 1)
	go func() {
		// 300 s: only the disconnect can end this call within the test.
		done <- h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"m","responseTimeoutInSeconds":300}`)
	}()
	md.nextCall(t)
	md.Disconnect(0)
	checkMethodError(t, <-done, 404, 404103, "DeviceNotOnline", "The device disconnected before it responded.")
}

func TestMethods_DevicesAreIsolated(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d1, d2 := h.CreateDevice(t, "dev1"), h.CreateDevice(t, "dev2")
	// dev1 answers by hand below, after dev2 tried to answer for it.
	md1 := serveMethods(t, h, d1, func(methodCall) (int, string, bool) { return 0, "", false })
	md2 := serveMethods(t, h, d2, echo)
	done := make(chan *hubtest.Response, 1)
	go func() {
		done <- h.Do(t, http.MethodPost, methodsPath(d1), `{"methodName":"secret","payload":"for dev1"}`)
	}()
	c := md1.nextCall(t)
	// dev2 never sees dev1's call, and cannot answer it with dev1's rid.
	md2.publish(t, "$iothub/methods/res/200/?$rid="+c.rid, 1, `"forged by dev2"`)
	md1.publish(t, "$iothub/methods/res/200/?$rid="+c.rid, 1, `"from dev1"`)
	r := <-done
	if r.StatusCode != 200 || string(r.Body) != `{"status":200,"payload":"from dev1"}` {
		t.Fatalf("got %d %s", r.StatusCode, r.Body)
	}
	// dev2's own calls still work and it saw nothing else.
	if res := invokeOK(t, h, d2, `{"methodName":"mine","payload":2}`); string(res.Payload) != `2` {
		t.Errorf("dev2 result %s", res.Payload)
	}
	if c := md2.nextCall(t); c.name != "mine" {
		t.Errorf("dev2 got %+v", c)
	}
	select {
	case c := <-md2.calls:
		t.Errorf("dev2 got another call: %+v", c)
	default:
	}
}

func TestMethods_Concurrent(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	var devs []*hubtest.Device
	for i := range 3 {
		d := h.CreateDevice(t, fmt.Sprintf("dev%d", i))
		serveMethods(t, h, d, echo)
		devs = append(devs, d)
	}
	var wg sync.WaitGroup
	for _, d := range devs {
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf(`{"device":%q,"n":%d}`, d.ID, i)
				r := h.Do(t, http.MethodPost, methodsPath(d), `{"methodName":"echo","payload":`+want+`}`)
				if got := `{"status":200,"payload":` + want + `}`; r.StatusCode != 200 || string(r.Body) != got {
					t.Errorf("%s/%d: %d %s", d.ID, i, r.StatusCode, r.Body)
				}
			}()
		}
	}
	wg.Wait()
}

// TestMethods_ScheduleDeviceMethodJob checks that method jobs go through the
// same Invoker: an online device answers, an offline one fails with
// DeviceNotOnline in its device-job record.
func TestMethods_ScheduleDeviceMethodJob(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	on, _ := h.CreateDevice(t, "jm1"), h.CreateDevice(t, "jm2")
	md := serveMethods(t, h, on, func(c methodCall) (int, string, bool) { return 202, `{"echo":` + c.payload + `}`, true })
	body := `{"jobId":"mjob1","type":"scheduleDeviceMethod","queryCondition":"deviceId = 'jm1' OR deviceId = 'jm2'",
		"cloudToDeviceMethod":{"methodName":"firmware","payload":{"v":2},"responseTimeoutInSeconds":30},"startTime":null}`
	if r := h.Do(t, http.MethodPut, "/jobs/v2/mjob1", body); r.StatusCode != 200 {
		t.Fatalf("PUT job: %d %s", r.StatusCode, r.Body)
	}
	j := waitJob(t, h, "mjob1", func(j jobDoc) bool { return j.Status == "completed" })
	if j.Stats.DeviceCount != 2 || j.Stats.SucceededCount != 1 || j.Stats.FailedCount != 1 {
		t.Errorf("job stats = %+v", j.Stats)
	}
	if c := md.nextCall(t); c.name != "firmware" || c.payload != `{"v":2}` {
		t.Errorf("device got %+v", c)
	}
	_, items := runQuery(t, h, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'mjob1'")
	if len(items) != 2 {
		t.Fatalf("%d device jobs", len(items))
	}
	for _, it := range items {
		switch it["deviceId"] {
		case "jm1":
			out, _ := json.Marshal(it["outcome"])
			if it["status"] != "completed" || string(out) != `{"deviceMethodResponse":{"payload":{"echo":{"v":2}},"status":202}}` {
				t.Errorf("jm1 record: status %v, outcome %s", it["status"], out)
			}
		case "jm2":
			e, _ := it["error"].(map[string]any)
			if it["status"] != "failed" || e["code"] != "DeviceNotOnline" {
				t.Errorf("jm2 record: %v", it)
			}
		}
	}
}
