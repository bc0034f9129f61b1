package e2e

// Fidelity fixes found by running the Java, Go and Microsoft's own SDK
// suites against the emulator (issue 23): each test here failed before its
// fix.

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Java's HTTP stack has no PATCH: its TwinClient.patch sends POST with
// X-HTTP-Method-Override: PATCH, which the hub honours.
func TestFidelity_MethodOverridePatch(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	if r := h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"}); r.StatusCode != 200 {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}
	for _, path := range []string{"/twins/dev1", "/twins/dev1/modules/m1"} {
		r := h.Do(t, http.MethodPost, path, `{"properties":{"desired":{"java":1}}}`, "X-HTTP-Method-Override: PATCH", `If-Match: "*"`)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("POST %s with override PATCH: %d %s", path, r.StatusCode, r.Body)
		}
		if tw := getTwin(t, h, path); tw.Properties.Desired["java"] != float64(1) || tw.Properties.Desired["$version"] != float64(2) {
			t.Errorf("%s desired after the overridden PATCH = %v", path, tw.Properties.Desired)
		}
	}
	// Only PATCH is honoured: a POST that asks to become a DELETE stays a POST.
	checkHubError(t, h.Do(t, http.MethodPost, "/twins/dev1", `{}`, "X-HTTP-Method-Override: DELETE"), 405, "GenericMethodNotAllowed")
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != http.StatusOK {
		t.Errorf("device gone after a POST with override DELETE: %d", r.StatusCode)
	}
}

// "properties":{"desired":null} removes every desired property, bumps
// $version and tells the device (Microsoft's Node e2e suite, "can null out
// all desired properties").
func TestFidelity_NullDesiredClearsAll(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	if r := h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":{"a":1,"b":{"c":2}}}}`); r.StatusCode != 200 {
		t.Fatalf("PATCH: %d %s", r.StatusCode, r.Body)
	}
	c.waitFor(t, "$iothub/twin/PATCH/properties/desired/?$version=2")
	before := getTwin(t, h, "/twins/dev1")

	r := h.Do(t, http.MethodPatch, "/twins/dev1", `{"properties":{"desired":null}}`, `If-Match: "*"`)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("PATCH desired null: %d %s", r.StatusCode, r.Body)
	}
	after := getTwin(t, h, "/twins/dev1")
	if len(after.Properties.Desired) != 2 || after.Properties.Desired["$version"] != float64(3) {
		// $version and $metadata remain, nothing else.
		t.Errorf("desired after null = %v, want only $version 3 and $metadata", after.Properties.Desired)
	}
	if after.ETag == before.ETag || after.Version != before.Version+1 {
		t.Errorf("etag %s→%s, version %d→%d: a clearing patch is a write", before.ETag, after.ETag, before.Version, after.Version)
	}
	m := c.waitFor(t, "$iothub/twin/PATCH/properties/desired/?$version=3")
	var patch map[string]any
	if err := json.Unmarshal(m.Payload(), &patch); err != nil {
		t.Fatal(err)
	}
	if v, ok := patch["a"]; !ok || v != nil {
		t.Errorf("notification %s: want a:null", m.Payload())
	}
	if v, ok := patch["b"]; !ok || v != nil {
		t.Errorf("notification %s: want b:null", m.Payload())
	}
}

// The hub refuses jobs past its active-job limit with 429004
// ThrottlingMaxActiveJobCountExceeded (the C# SDK's e2e tests retry on a
// ThrottlingException; it marks 403003 JobQuotaExceeded as never returned).
func TestFidelity_ActiveJobLimitThrottles(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.MaxActiveJobs = 1 }))
	h.CreateDevice(t, "dev1")
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	job := func(id string) string {
		return `{"type":"scheduleUpdateTwin","queryCondition":"deviceId = 'dev1'","startTime":"` + later + `",
			"updateTwin":{"etag":"*","properties":{"desired":{"x":1}}}}`
	}
	if r := h.Do(t, http.MethodPut, "/jobs/v2/j1", job("j1")); r.StatusCode != 200 {
		t.Fatalf("first job: %d %s", r.StatusCode, r.Body)
	}
	checkHubError(t, h.Do(t, http.MethodPut, "/jobs/v2/j2", job("j2")), 429, "ThrottlingMaxActiveJobCountExceeded")
}

// A twin job reads back the updateTwin.deviceId it was given, and every
// devices.jobs row carries startTimeUtc and endTimeUtc (C# reads both as a
// non-nullable DateTime), also for devices the job never reached.
func TestFidelity_TwinJobShapes(t *testing.T) {
	t.Parallel()
	// One worker, so a job over three offline devices never reaches the
	// last: the worker is busy past the job's execution time.
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.JobWorkers = 1 }))
	for _, id := range []string{"dev1", "dev2", "dev3", "dev4"} {
		h.CreateDevice(t, id)
	}
	body := `{"type":"scheduleUpdateTwin","queryCondition":"deviceId IN ['dev1','dev2']",
		"updateTwin":{"deviceId":"dev1","etag":"*","properties":{"desired":{"x":1}}}}`
	if r := h.Do(t, http.MethodPut, "/jobs/v2/tj", body); r.StatusCode != 200 {
		t.Fatalf("PUT job: %d %s", r.StatusCode, r.Body)
	}
	waitJob(t, h, "tj", func(j jobDoc) bool { return j.Status == "completed" })
	var got struct {
		UpdateTwin struct {
			DeviceID *string `json:"deviceId"`
		} `json:"updateTwin"`
	}
	h.Do(t, http.MethodGet, "/jobs/v2/tj", nil).JSON(t, &got)
	if got.UpdateTwin.DeviceID == nil || *got.UpdateTwin.DeviceID != "dev1" {
		t.Errorf("updateTwin.deviceId = %v, want dev1", got.UpdateTwin.DeviceID)
	}

	// A method job whose devices are offline past its execution time: the
	// devices it never reached still get start and end times.
	body = `{"type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['dev2','dev3','dev4']","maxExecutionTimeInSeconds":1,
		"cloudToDeviceMethod":{"methodName":"m","payload":{},"responseTimeoutInSeconds":5,"connectTimeoutInSeconds":2}}`
	if r := h.Do(t, http.MethodPut, "/jobs/v2/mj", body); r.StatusCode != 200 {
		t.Fatalf("PUT method job: %d %s", r.StatusCode, r.Body)
	}
	if j := waitJob(t, h, "mj", func(j jobDoc) bool { return j.Status == "failed" }); j.Stats.FailedCount != 3 {
		t.Fatalf("method job = %+v, want all three devices failed", j)
	}
	for _, id := range []string{"tj", "mj"} {
		_, items := runQuery(t, h, "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '"+id+"'")
		if len(items) == 0 {
			t.Fatalf("no devices.jobs rows for %s", id)
		}
		for _, it := range items {
			for _, f := range []string{"startTimeUtc", "endTimeUtc"} {
				if s, ok := it[f].(string); !ok || s == "" {
					t.Errorf("job %s row %v: %s missing or not a time", id, it, f)
				}
			}
		}
	}
}

// IoT Edge devices get the hub's deviceScope; leaf devices and nested edge
// devices name a parent by it; arbitrary scopes are refused (Microsoft's
// Node e2e suite, registry.js).
func TestFidelity_EdgeDeviceScopes(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	type device struct {
		DeviceID     string   `json:"deviceId"`
		GenerationID string   `json:"generationId"`
		ETag         string   `json:"etag"`
		DeviceScope  *string  `json:"deviceScope"`
		ParentScopes []string `json:"parentScopes"`
	}
	put := func(id string, body map[string]any, headers ...string) (*hubtest.Response, device) {
		t.Helper()
		body["deviceId"] = id
		r := h.Do(t, http.MethodPut, "/devices/"+id, body, headers...)
		var d device
		if r.StatusCode == 200 {
			r.JSON(t, &d)
		}
		return r, d
	}
	edge := map[string]any{"capabilities": map[string]any{"iotEdge": true}}

	r, root := put("root", edge)
	if r.StatusCode != 200 {
		t.Fatalf("create edge device: %d %s", r.StatusCode, r.Body)
	}
	want := "ms-azure-iot-edge://root-" + root.GenerationID
	if root.DeviceScope == nil || *root.DeviceScope != want {
		t.Fatalf("edge deviceScope = %v, want %s", root.DeviceScope, want)
	}

	// A nested edge device names its parent in parentScopes and has a scope of its own.
	child := map[string]any{"capabilities": map[string]any{"iotEdge": true}, "parentScopes": []string{want}}
	r, c := put("child", child)
	if r.StatusCode != 200 {
		t.Fatalf("create child edge: %d %s", r.StatusCode, r.Body)
	}
	if c.DeviceScope == nil || *c.DeviceScope != "ms-azure-iot-edge://child-"+c.GenerationID || len(c.ParentScopes) != 1 || c.ParentScopes[0] != want {
		t.Errorf("child edge: deviceScope %v parentScopes %v", c.DeviceScope, c.ParentScopes)
	}

	// A leaf takes the edge device's scope; its parentScopes follow.
	r, leaf := put("leaf", map[string]any{"deviceScope": *c.DeviceScope})
	if r.StatusCode != 200 {
		t.Fatalf("create leaf: %d %s", r.StatusCode, r.Body)
	}
	if leaf.DeviceScope == nil || *leaf.DeviceScope != *c.DeviceScope || len(leaf.ParentScopes) != 1 || leaf.ParentScopes[0] != *c.DeviceScope {
		t.Errorf("leaf: deviceScope %v parentScopes %v", leaf.DeviceScope, leaf.ParentScopes)
	}

	// Arbitrary scopes are refused, on the leaf and on the edge device itself.
	checkHubError(t, h.Do(t, http.MethodPut, "/devices/leaf", map[string]any{"deviceId": "leaf", "deviceScope": "c7a3f4c2-0000"}, `If-Match: "*"`), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodPut, "/devices/root", map[string]any{"deviceId": "root", "capabilities": map[string]any{"iotEdge": true},
		"deviceScope": "ms-azure-iot-edge://root-1"}, `If-Match: "*"`), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodPut, "/devices/orphan", map[string]any{"deviceId": "orphan", "deviceScope": "ms-azure-iot-edge://ghost-1"}), 400, "ArgumentInvalid")
	var after device
	h.Do(t, http.MethodGet, "/devices/leaf", nil).JSON(t, &after)
	if after.DeviceScope == nil || *after.DeviceScope != *c.DeviceScope {
		t.Errorf("a refused update changed the leaf's scope to %v", after.DeviceScope)
	}
	// An update that repeats the edge device's scope is fine.
	if r, _ := put("root", map[string]any{"capabilities": map[string]any{"iotEdge": true}, "deviceScope": want, "status": "disabled"}, `If-Match: "*"`); r.StatusCode != 200 {
		t.Errorf("update repeating the edge scope: %d %s", r.StatusCode, r.Body)
	}
}

// X.509 devices authenticate with their client certificate on MQTT over
// WebSockets and on the device HTTPS API too, as on the hub: the 443
// listener asks for a certificate and passes it on.
func TestFidelity_X509OverWebSocketsAndHTTPS(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	cert := certificate(t, "xw", false, nil)
	other := certificate(t, "xw", false, nil)
	_, tp := thumbprints(cert)
	if r := h.Do(t, http.MethodPut, "/devices/xw", map[string]any{"deviceId": "xw", "authentication": map[string]any{
		"type": "selfSigned", "x509Thumbprint": map[string]any{"primaryThumbprint": tp}}}); r.StatusCode != 200 {
		t.Fatalf("create: %d %s", r.StatusCode, r.Body)
	}

	dialWS := func(c *tls.Certificate) error {
		cfg := h.TLSConfig()
		if c != nil {
			cfg.Certificates = []tls.Certificate{*c}
		}
		opts := paho.NewClientOptions().AddBroker("wss://" + h.Addr("https") + "/$iothub/websocket").SetTLSConfig(cfg).
			SetProtocolVersion(4).SetClientID("xw").SetUsername(h.Hostname() + "/xw/?api-version=2021-04-12").
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second)
		cl := paho.NewClient(opts)
		tok := cl.Connect()
		if !tok.WaitTimeout(15 * time.Second) {
			return errors.New("connect timed out")
		}
		if err := tok.Error(); err != nil {
			return err
		}
		cl.Disconnect(0)
		return nil
	}
	if err := dialWS(&cert); err != nil {
		t.Errorf("MQTT over WebSockets with the device's certificate: %v", err)
	}
	wantRefused(t, dialWS(&other))
	wantRefused(t, dialWS(nil))

	send := func(c *tls.Certificate) *http.Response {
		cfg := h.TLSConfig()
		if c != nil {
			cfg.Certificates = []tls.Certificate{*c}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		resp, err := client.Post(h.HTTPSURL()+"/devices/xw/messages/events?api-version=2021-04-12", "application/json", strings.NewReader(`{"t":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := send(&cert); r.StatusCode != http.StatusNoContent {
		t.Errorf("HTTPS telemetry with the device's certificate: %d, want 204", r.StatusCode)
	}
	for name, c := range map[string]*tls.Certificate{"another certificate": &other, "no certificate": nil} {
		if r := send(c); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("HTTPS telemetry with %s: %d, want 401", name, r.StatusCode)
		}
	}
}
