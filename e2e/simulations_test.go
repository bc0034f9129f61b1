package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Simulated devices (/_emulator/simulations) and the dashboard's live
// streams (/_emulator/connections/stream, /_emulator/jobs/stream).

// sseEvents opens an emulator SSE stream and returns its events as
// "name data" strings on a channel.
func sseEvents(t *testing.T, h *hubtest.Hub, path string) <-chan string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.HTTPURL()+path, nil)
	req.Header.Set("Authorization", h.ServiceToken(t, ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				out <- name + " " + v
			}
		}
		close(out)
	}()
	return out
}

func waitEvent(t *testing.T, ch <-chan string, what string, match func(string) bool) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %s", what)
			}
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s", what)
		}
	}
}

func TestSimulations_DeviceBehaviour(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	conns := sseEvents(t, h, "/_emulator/connections/stream")

	spec := map[string]any{
		"id": "door", "echoDesired": true,
		"telemetry": map[string]any{"interval": "200ms",
			"fields":     map[string]any{"temperature": map[string]any{"min": 20, "max": 22, "walk": 0.5}, "mode": map[string]any{"values": []any{"eco"}}},
			"properties": map[string]any{"source": "sim"}},
		"methods": []any{map[string]any{"name": "lockDoor"}, map[string]any{"name": "slow", "status": 202, "payload": map[string]any{"ok": 1}, "delay": "300ms"}},
	}
	r := h.Do(t, http.MethodPost, "/_emulator/simulations", spec)
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("start: %d %s", r.StatusCode, r.Body)
	}
	// The device was created by the simulator and connects over MQTT.
	waitEvent(t, conns, "door connected", func(e string) bool {
		return strings.HasPrefix(e, "connection ") && strings.Contains(e, `"deviceId":"door"`) && strings.Contains(e, `"Connected"`)
	})

	// Telemetry from the template, with its application property.
	checkFor(t, 20*time.Second, func() error {
		var msgs []map[string]any
		h.Do(t, http.MethodGet, "/_emulator/messages?deviceId=door", nil).JSON(t, &msgs)
		if len(msgs) == 0 {
			return fmt.Errorf("no telemetry yet")
		}
		m := msgs[0]
		var body map[string]any
		if err := json.Unmarshal([]byte(m["body"].(string)), &body); err != nil {
			return fmt.Errorf("body %v: %v", m["body"], err)
		}
		if v, _ := body["temperature"].(float64); v < 20 || v > 22 || body["mode"] != "eco" {
			return fmt.Errorf("body %v", body)
		}
		if !strings.Contains(fmt.Sprint(m["properties"]), "source:sim") {
			return fmt.Errorf("properties %v", m["properties"])
		}
		return nil
	})

	// The ready-made lockDoor, a delayed custom method, an unknown one.
	for _, c := range []struct {
		method string
		status int
		want   string
	}{
		{"lockDoor", 200, `"lockDoor called successfully"`},
		{"slow", 202, `{"ok":1}`},
		{"nothing", 501, "no handler"},
	} {
		r := h.Do(t, http.MethodPost, "/twins/door/methods", map[string]any{"methodName": c.method, "payload": map[string]any{"lockTime": "10m"}, "responseTimeoutInSeconds": 10})
		if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), fmt.Sprintf(`"status":%d`, c.status)) || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("%s: %d %s", c.method, r.StatusCode, r.Body)
		}
	}

	// Desired properties come back as reported ones.
	if r := h.Do(t, http.MethodPatch, "/twins/door", map[string]any{"properties": map[string]any{"desired": map[string]any{"building": 43}}}); r.StatusCode != http.StatusOK {
		t.Fatalf("patch: %d %s", r.StatusCode, r.Body)
	}
	checkFor(t, 20*time.Second, func() error {
		var tw struct {
			Properties struct{ Reported map[string]any } `json:"properties"`
		}
		h.Do(t, http.MethodGet, "/twins/door", nil).JSON(t, &tw)
		if tw.Properties.Reported["building"] != float64(43) {
			return fmt.Errorf("reported %v", tw.Properties.Reported)
		}
		return nil
	})

	var st map[string]any
	h.Do(t, http.MethodGet, "/_emulator/simulations/door", nil).JSON(t, &st)
	if st["connectedCount"] != float64(1) || st["methodCalls"].(float64) < 3 || len(st["devices"].([]any)) != 1 {
		t.Errorf("status %v", st)
	}

	// Stopping disconnects the device.
	if r := h.Do(t, http.MethodDelete, "/_emulator/simulations/door", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("stop: %d %s", r.StatusCode, r.Body)
	}
	waitEvent(t, conns, "door disconnected", func(e string) bool {
		return strings.Contains(e, `"deviceId":"door"`) && strings.Contains(e, `"Disconnected"`)
	})
	if r := h.Do(t, http.MethodGet, "/_emulator/simulations/door", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("after stop: %d %s", r.StatusCode, r.Body)
	}
}

func TestSimulations_Errors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for _, c := range []struct {
		name   string
		spec   any
		policy string
		status int
		code   string
	}{
		{"no id", map[string]any{"count": 2}, "", 400, "ArgumentInvalid"},
		{"interval too short", map[string]any{"id": "a", "telemetry": map[string]any{"interval": "1ms"}}, "", 400, "ArgumentInvalid"},
		{"count too large", map[string]any{"id": "a", "count": 1000000}, "", 400, "ArgumentInvalid"},
		{"bad device id", map[string]any{"id": "a b/c"}, "", 400, "ArgumentInvalid"},
		{"unknown member", `{"id":"a","colour":"red"}`, "", 201, ""}, // the hub's JSON rules: unknown members are ignored
		{"read-only policy", map[string]any{"id": "b"}, "registryRead", 401, "IotHubUnauthorizedAccess"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.Do(t, http.MethodPost, "/_emulator/simulations", c.spec, "Authorization: "+h.ServiceToken(t, cmpOr(c.policy, "iothubowner")))
			if r.StatusCode != c.status || !strings.Contains(string(r.Body), c.code) {
				t.Errorf("%d %s", r.StatusCode, r.Body)
			}
		})
	}
	if r := h.Do(t, http.MethodPost, "/_emulator/simulations", map[string]any{"id": "a"}); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.Body), "already running") {
		t.Errorf("twice: %d %s", r.StatusCode, r.Body)
	}
	if r := h.Do(t, http.MethodPost, "/_emulator/simulations", map[string]any{"id": "x", "count": 3}); r.StatusCode != http.StatusCreated {
		t.Errorf("x: %d %s", r.StatusCode, r.Body)
	}
	if r := h.Do(t, http.MethodPost, "/_emulator/simulations", map[string]any{"id": "x-2"}); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.Body), "already simulated") {
		t.Errorf("overlap: %d %s", r.StatusCode, r.Body)
	}
	var list []map[string]any
	h.Do(t, http.MethodGet, "/_emulator/simulations", nil, "Authorization: "+h.ServiceToken(t, "registryRead")).JSON(t, &list)
	if len(list) != 2 || list[1]["id"] != "x" || list[1]["deviceCount"] != float64(3) {
		t.Errorf("list %v", list)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Seed-declared simulations start with the hub, also after a restart.
func TestSimulations_SeedSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seed, []byte(`
devices:
  - id: plain1
simulations:
  - id: sensor
    count: 2
    telemetry:
      interval: 300ms
      fields:
        t: {min: 1, max: 2}
    methods:
      - name: lockDoor
`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t, hubtest.WithDataDir(filepath.Join(dir, "data")), hubtest.WithConfig(func(c *hub.Config) { c.SeedFile = seed }))
	connected := func() error {
		for _, id := range []string{"sensor-1", "sensor-2"} {
			var d map[string]any
			h.Do(t, http.MethodGet, "/devices/"+id, nil).JSON(t, &d)
			if d["connectionState"] != "Connected" {
				return fmt.Errorf("%s: %v", id, d["connectionState"])
			}
		}
		return nil
	}
	checkFor(t, 20*time.Second, connected)
	h.Restart(t)
	checkFor(t, 20*time.Second, connected)
	// Connected is recorded before the methods SUBSCRIBE: let the call wait for it.
	r := h.Do(t, http.MethodPost, "/twins/sensor-2/methods", map[string]any{"methodName": "lockDoor", "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 10})
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `"status":200`) {
		t.Errorf("lockDoor after restart: %d %s", r.StatusCode, r.Body)
	}
}

// The job stream follows a job from creation to completion.
func TestLiveStreams_JobProgress(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for i := range 3 {
		h.CreateDevice(t, fmt.Sprintf("jobdev%d", i))
	}
	events := sseEvents(t, h, "/_emulator/jobs/stream")
	r := h.Do(t, http.MethodPut, "/jobs/v2/j1", map[string]any{"jobId": "j1", "type": "scheduleUpdateTwin", "queryCondition": "deviceId IN ['jobdev0','jobdev1','jobdev2']",
		"updateTwin": map[string]any{"etag": "*", "tags": map[string]any{"x": 1}}, "maxExecutionTimeInSeconds": 60})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("job: %d %s", r.StatusCode, r.Body)
	}
	waitEvent(t, events, "job completed", func(e string) bool {
		return strings.HasPrefix(e, "job ") && strings.Contains(e, `"jobId":"j1"`) && strings.Contains(e, `"status":"completed"`) && strings.Contains(e, `"succeededCount":3`)
	})
	// Without a token: the hub's 401.
	req, _ := http.NewRequest(http.MethodGet, h.HTTPURL()+"/_emulator/jobs/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d", resp.StatusCode)
	}
}

func TestDashboard_Served(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(h.HTTPURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("/: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/vendor/htm-preact-standalone.module.js", "/ui/vendor/pico.min.css"} {
		resp, err := http.Get(h.HTTPURL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	// The hub's routes are unchanged behind the dashboard.
	if r := h.Do(t, http.MethodGet, "/devices/nobody", nil); r.StatusCode != http.StatusNotFound || !strings.Contains(string(r.Body), "DeviceNotFound") {
		t.Errorf("hub route: %d %s", r.StatusCode, r.Body)
	}
}

// Simulated devices sign their tokens with the hub's clock: on a hub whose
// clock is years ahead of the machine's they still connect.
func TestSimulations_SignTokensOnTheHubsClock(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	if r := h.Do(t, http.MethodPost, "/_emulator/simulations", map[string]any{"id": "future", "count": 1}); r.StatusCode != http.StatusCreated {
		t.Fatalf("start: %d %s", r.StatusCode, r.Body)
	}
	checkFor(t, 20*time.Second, func() error {
		var d map[string]any
		h.Do(t, http.MethodGet, "/devices/future", nil).JSON(t, &d)
		if d["connectionState"] != "Connected" {
			return fmt.Errorf("future: %v", d["connectionState"])
		}
		return nil
	})
}
