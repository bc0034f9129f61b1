package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

const pnpModel = "dtmi:com:example:TemperatureController;2"

// TestDigitalTwin_GetPatchCommands drives the digital-twin API against a raw
// MQTT PnP device: the model id from its username, its reported properties
// in the digital-twin shape, a JSON Patch reaching it as a desired patch,
// and root and component commands as direct methods.
func TestDigitalTwin_GetPatchCommands(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "pnp1")
	pnp := mustDial(t, h, d, connOpts{username: d.Username(h) + "&model-id=" + pnpModel})
	pnp.subscribe(t, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
	md := &methodDevice{mqttConn: pnp, calls: make(chan methodCall, 10)}
	md.subscribeMethods(t, func(c methodCall) (int, string, bool) {
		if c.name == "thermostat1*getMaxMinReport" {
			return 200, `{"maxTemp":30,"since":` + c.payload + `}`, true
		}
		return 404, `{"error":"unknown command"}`, true
	})
	pnp.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", 1,
		`{"serialNumber":"SN-9","thermostat1":{"__t":"c","maxTempSinceLastReboot":28.5}}`)
	pnp.waitFor(t, "$iothub/twin/res/204/")

	r := h.Do(t, http.MethodGet, "/digitaltwins/pnp1", nil)
	if r.StatusCode != http.StatusOK || r.Header.Get("ETag") == "" {
		t.Fatalf("GET: %d %s", r.StatusCode, r.Body)
	}
	var dt map[string]any
	r.JSON(t, &dt)
	meta, _ := dt["$metadata"].(map[string]any)
	comp, _ := dt["thermostat1"].(map[string]any)
	if dt["$dtId"] != "pnp1" || meta["$model"] != pnpModel || dt["serialNumber"] != "SN-9" || comp["maxTempSinceLastReboot"] != 28.5 {
		t.Fatalf("digital twin = %s", r.Body)
	}
	if _, ok := comp["$metadata"].(map[string]any)["maxTempSinceLastReboot"].(map[string]any)["lastUpdateTime"]; !ok {
		t.Errorf("component property metadata lacks lastUpdateTime: %s", r.Body)
	}

	// A JSON Patch on a component property arrives as a desired patch.
	etag := r.Header.Get("ETag")
	r = h.Do(t, http.MethodPatch, "/digitaltwins/pnp1", `[{"op":"add","path":"/thermostat1/targetTemperature","value":23}]`, "If-Match: "+etag)
	if r.StatusCode != http.StatusAccepted || r.Header.Get("ETag") == etag {
		t.Fatalf("PATCH: %d %s (etag %s)", r.StatusCode, r.Body, r.Header.Get("ETag"))
	}
	m := pnp.waitFor(t, "$iothub/twin/PATCH/properties/desired/")
	var patch map[string]any
	_ = json.Unmarshal(m.Payload(), &patch)
	if c, _ := patch["thermostat1"].(map[string]any); c["__t"] != "c" || c["targetTemperature"] != 23.0 {
		t.Fatalf("desired patch = %s", m.Payload())
	}
	// A stale etag is refused.
	r = h.Do(t, http.MethodPatch, "/digitaltwins/pnp1", `[{"op":"add","path":"/x","value":1}]`, "If-Match: "+etag)
	if r.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PATCH with a stale etag: %d %s", r.StatusCode, r.Body)
	}
	// The device acknowledges; the digital twin shows value and ack.
	pnp.publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=2", 1,
		`{"thermostat1":{"__t":"c","targetTemperature":{"value":23,"ac":200,"av":2,"ad":"ok"}}}`)
	pnp.waitFor(t, "$iothub/twin/res/204/?$rid=2")
	h.Do(t, http.MethodGet, "/digitaltwins/pnp1", nil).JSON(t, &dt)
	comp = dt["thermostat1"].(map[string]any)
	tm := comp["$metadata"].(map[string]any)["targetTemperature"].(map[string]any)
	if comp["targetTemperature"] != 23.0 || tm["desiredValue"] != 23.0 || tm["desiredVersion"] != 2.0 || tm["ackCode"] != 200.0 || tm["ackVersion"] != 2.0 {
		t.Fatalf("after the ack: %v", dt)
	}

	// Commands travel as direct methods named component*command.
	r = h.Do(t, http.MethodPost, "/digitaltwins/pnp1/components/thermostat1/commands/getMaxMinReport?connectTimeoutInSeconds=5&responseTimeoutInSeconds=10", `"2026-01-01T00:00:00Z"`)
	if r.StatusCode != http.StatusOK || r.Header.Get("x-ms-command-statuscode") != "200" || r.Header.Get("x-ms-request-id") == "" ||
		string(r.Body) != `{"maxTemp":30,"since":"2026-01-01T00:00:00Z"}` {
		t.Fatalf("component command: %d %v %s", r.StatusCode, r.Header, r.Body)
	}
	// The device's status passes through in the header, not the HTTP status.
	r = h.Do(t, http.MethodPost, "/digitaltwins/pnp1/commands/reboot", `{"delay":1}`)
	if r.StatusCode != http.StatusOK || r.Header.Get("x-ms-command-statuscode") != "404" || !strings.Contains(string(r.Body), "unknown command") {
		t.Fatalf("root command: %d %v %s", r.StatusCode, r.Header, r.Body)
	}

	// An offline device: 404 DeviceNotOnline, as for direct methods.
	h.CreateDevice(t, "offline")
	r = h.Do(t, http.MethodPost, "/digitaltwins/offline/commands/reboot", nil)
	if r.StatusCode != http.StatusNotFound || r.Header.Get("iothub-errorcode") != "DeviceNotOnline" {
		t.Fatalf("offline device: %d %s", r.StatusCode, r.Body)
	}
	expectError(t, h.Do(t, http.MethodGet, "/digitaltwins/nobody", nil), http.StatusNotFound, "DeviceNotFound")
	expectError(t, h.Do(t, http.MethodPatch, "/digitaltwins/pnp1", `[{"op":"move","path":"/a","from":"/b"}]`), http.StatusBadRequest, "ArgumentInvalid")
}
