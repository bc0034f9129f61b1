package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

type twinDoc struct {
	DeviceID   string         `json:"deviceId"`
	ModuleID   string         `json:"moduleId"`
	ETag       string         `json:"etag"`
	Version    int64          `json:"version"`
	Tags       map[string]any `json:"tags"`
	Properties struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
}

func getTwin(t *testing.T, h *hubtest.Hub, path string) twinDoc {
	t.Helper()
	r := h.Do(t, http.MethodGet, path, nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.StatusCode, r.Body)
	}
	var d twinDoc
	r.JSON(t, &d)
	return d
}

func TestTwin_MQTTGetAndReportedPatch(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/res/#")

	c.publish(t, "$iothub/twin/GET/?$rid=b33dadcb-4565-487e", 0, " ")
	m := c.waitFor(t, "$iothub/twin/res/")
	if m.Topic() != "$iothub/twin/res/200/?$rid=b33dadcb-4565-487e" {
		t.Fatalf("GET answered on %q", m.Topic())
	}
	if got, want := string(m.Payload()), `{"desired":{"$version":1},"reported":{"$version":1}}`; got != want {
		t.Errorf("GET body = %s, want %s", got, want)
	}

	c.received = nil
	c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=7", 1, `{"battery":55,"fw":{"v":"1.0"}}`)
	m = c.waitFor(t, "$iothub/twin/res/")
	if m.Topic() != "$iothub/twin/res/204/?$rid=7&$version=2" {
		t.Errorf("reported PATCH answered on %q, want 204 with $version=2", m.Topic())
	}
	if len(m.Payload()) != 0 {
		t.Errorf("reported PATCH body = %q, want empty", m.Payload())
	}
	tw := getTwin(t, h, "/twins/dev1")
	if tw.Properties.Reported["battery"] != float64(55) || tw.Properties.Reported["$version"] != float64(2) {
		t.Errorf("reported = %v", tw.Properties.Reported)
	}
	meta, _ := tw.Properties.Reported["$metadata"].(map[string]any)
	if _, ok := meta["battery"].(map[string]any)["$lastUpdated"]; !ok {
		t.Errorf("reported $metadata lacks battery.$lastUpdated: %v", meta)
	}

	// An invalid patch gets an error status and a JSON body with errorCode.
	c.received = nil
	c.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=8", 1, `{"bad.key":1}`)
	m = c.waitFor(t, "$iothub/twin/res/")
	if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/400/?$rid=8") {
		t.Errorf("invalid patch answered on %q, want status 400", m.Topic())
	}
	var e struct {
		ErrorCode int    `json:"errorCode"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(m.Payload(), &e); err != nil || e.ErrorCode != 400004 {
		t.Errorf("error body = %s, want errorCode 400004", m.Payload())
	}
	if tw2 := getTwin(t, h, "/twins/dev1"); tw2.Version != tw.Version {
		t.Errorf("a refused patch changed the twin: version %d → %d", tw.Version, tw2.Version)
	}
}

func TestTwin_DesiredNotificationFromREST(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	other := h.CreateDevice(t, "dev2")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	c2 := mustDial(t, h, other, connOpts{})
	c2.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")

	tw := getTwin(t, h, "/twins/dev1")
	r := h.Do(t, http.MethodPatch, "/twins/dev1", `{"tags":{"building":43},"properties":{"desired":{"interval":60,"old":null}}}`, `If-Match: "`+tw.ETag+`"`)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("PATCH: %d %s", r.StatusCode, r.Body)
	}
	var after twinDoc
	r.JSON(t, &after)
	if after.ETag == tw.ETag || after.Properties.Desired["$version"] != float64(2) || after.Tags["building"] != float64(43) {
		t.Errorf("after PATCH: etag %s→%s, desired %v, tags %v", tw.ETag, after.ETag, after.Properties.Desired, after.Tags)
	}
	m := c.waitFor(t, "$iothub/twin/PATCH/properties/desired/")
	if m.Topic() != "$iothub/twin/PATCH/properties/desired/?$version=2" {
		t.Errorf("notification topic %q", m.Topic())
	}
	var patch map[string]any
	if err := json.Unmarshal(m.Payload(), &patch); err != nil || patch["interval"] != float64(60) || patch["$version"] != float64(2) {
		t.Errorf("notification body %s", m.Payload())
	}
	// A tags-only change notifies nobody, and dev2 never hears of dev1.
	h.Do(t, http.MethodPatch, "/twins/dev1", `{"tags":{"floor":3}}`)
	// Sentinels instead of a sleep: each device's own next notification
	// arrives after anything sent to its connection before it, so once it
	// is in, a wrong notification would be in too.
	h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"sentinel":1}}}`)
	h.Do(t, http.MethodPatch, "/twins/dev2", `{"properties":{"desired":{"sentinel":1}}}`)
	c.waitFor(t, "$iothub/twin/PATCH/properties/desired/?$version=3")
	c2.waitFor(t, "$iothub/twin/PATCH/properties/desired/?$version=2")
	c2.mu.Lock()
	n2 := len(c2.received) - 1 // less its own sentinel
	c2.mu.Unlock()
	if n2 != 0 {
		t.Errorf("dev2 received %d messages meant for dev1", n2)
	}
	c.mu.Lock()
	n := len(c.received) - 1 // less the sentinel
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("dev1 received %d notifications, want 1 (tags changes do not notify)", n)
	}
}

func TestTwin_RESTErrors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	tw := getTwin(t, h, "/twins/dev1")
	h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"a":1}}}`)
	checkHubError(t, h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"a":2}}}`, `If-Match: "`+tw.ETag+`"`), 412, "PreconditionFailed")
	checkHubError(t, h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"a b":2}}}`), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"big":"`+strings.Repeat("x", 5000)+`"}}}`), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodGet, "/twins/ghost", nil), 404, "DeviceNotFound")
	checkHubError(t, h.Do(t, http.MethodGet, "/twins/dev1/modules/ghost", nil), 404, "ModuleNotFound")
	if got := getTwin(t, h, "/twins/dev1").Properties.Desired["a"]; got != float64(1) {
		t.Errorf("refused writes changed desired.a to %v", got)
	}
}

func TestTwin_ReplaceAndModule(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	if r := h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"}); r.StatusCode != 200 {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}
	h.Do(t, http.MethodPatch, "/twins/dev1/modules/m1", `{"tags":{"a":1,"b":2},"properties":{"desired":{"x":1,"y":2}}}`)
	r := h.Do(t, http.MethodPut, "/twins/dev1/modules/m1", `{"tags":{"c":3},"properties":{"desired":{"z":3}}}`, `If-Match: "*"`)
	if r.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", r.StatusCode, r.Body)
	}
	tw := getTwin(t, h, "/twins/dev1/modules/m1")
	if tw.ModuleID != "m1" || tw.DeviceID != "dev1" {
		t.Errorf("module twin ids %q/%q", tw.DeviceID, tw.ModuleID)
	}
	if _, ok := tw.Tags["a"]; ok || tw.Tags["c"] != float64(3) {
		t.Errorf("tags after replace = %v", tw.Tags)
	}
	if _, ok := tw.Properties.Desired["x"]; ok || tw.Properties.Desired["z"] != float64(3) {
		t.Errorf("desired after replace = %v", tw.Properties.Desired)
	}
}

// Many writers on one twin, from REST and MQTT at once: no update is lost and
// desired versions reach the device strictly increasing.
func TestTwin_ConcurrentWriters(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/res/#")

	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"properties":{"desired":{"w%d_%d":%d}}}`, w, i, i)
				if r := h.Do(t, http.MethodPatch, "/twins/dev1", body); r.StatusCode != 200 {
					t.Errorf("PATCH: %d %s", r.StatusCode, r.Body)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c.publish(t, fmt.Sprintf("$iothub/twin/PATCH/properties/reported/?$rid=%d%d", w, i), 1, fmt.Sprintf(`{"r%d_%d":%d}`, w, i, i))
			}
		}()
	}
	wg.Wait()
	tw := getTwin(t, h, "/twins/dev1")
	for w := 0; w < writers; w++ {
		for i := 0; i < each; i++ {
			if _, ok := tw.Properties.Desired[fmt.Sprintf("w%d_%d", w, i)]; !ok {
				t.Errorf("desired w%d_%d lost", w, i)
			}
			if _, ok := tw.Properties.Reported[fmt.Sprintf("r%d_%d", w, i)]; !ok {
				t.Errorf("reported r%d_%d lost", w, i)
			}
		}
	}
	if got, want := tw.Properties.Desired["$version"], float64(1+writers*each); got != want {
		t.Errorf("desired $version = %v, want %v", got, want)
	}
	if got, want := tw.Properties.Reported["$version"], float64(1+writers*each); got != want {
		t.Errorf("reported $version = %v, want %v", got, want)
	}
	var versions []int
	checkFor(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		versions = versions[:0]
		for _, m := range c.received {
			if v, ok := strings.CutPrefix(m.Topic(), "$iothub/twin/PATCH/properties/desired/?$version="); ok {
				n, _ := strconv.Atoi(v)
				versions = append(versions, n)
			}
		}
		if len(versions) < writers*each {
			return fmt.Errorf("%d of %d notifications", len(versions), writers*each)
		}
		return nil
	})
	for i := 1; i < len(versions); i++ {
		if versions[i] != versions[i-1]+1 {
			t.Fatalf("notification versions not consecutive: %v", versions)
		}
	}
	// Versions stay monotonic across a restart.
	h.Restart(t)
	h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"after":1}}}`)
	if got := getTwin(t, h, "/twins/dev1").Properties.Desired["$version"]; got != float64(2+writers*each) {
		t.Errorf("after restart desired $version = %v", got)
	}
}
