package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

type configurationDoc struct {
	ID              string            `json:"id"`
	SchemaVersion   string            `json:"schemaVersion"`
	Labels          map[string]string `json:"labels"`
	Content         map[string]any    `json:"content"`
	TargetCondition string            `json:"targetCondition"`
	CreatedTimeUtc  string            `json:"createdTimeUtc"`
	Priority        int               `json:"priority"`
	ETag            string            `json:"etag"`
	SystemMetrics   struct {
		Results map[string]int64  `json:"results"`
		Queries map[string]string `json:"queries"`
	} `json:"systemMetrics"`
	Metrics struct {
		Results map[string]int64  `json:"results"`
		Queries map[string]string `json:"queries"`
	} `json:"metrics"`
}

func getConfiguration(t *testing.T, h *hubtest.Hub, id string) configurationDoc {
	t.Helper()
	r := h.Do(t, http.MethodGet, "/configurations/"+id, nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET /configurations/%s: %d %s", id, r.StatusCode, r.Body)
	}
	var c configurationDoc
	r.JSON(t, &c)
	return c
}

// waitForMetric polls a configuration until metric reaches want: the hub
// applies configurations in the background, and so does the emulator.
func waitForMetric(t *testing.T, h *hubtest.Hub, id, metric string, want int64) configurationDoc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := getConfiguration(t, h, id)
		got, ok := c.SystemMetrics.Results[metric]
		if !ok {
			got, ok = c.Metrics.Results[metric]
		}
		if ok && got == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("configuration %s: %s = %d, still not %d (system %v, custom %v)", id, metric, got, want, c.SystemMetrics.Results, c.Metrics.Results)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expectError(t *testing.T, r *hubtest.Response, status int, code string) {
	t.Helper()
	if r.StatusCode != status || r.Header.Get("iothub-errorcode") != code || !strings.Contains(string(r.Body), "ErrorCode:"+code+";") {
		t.Fatalf("%s %s: %d %s %s, want %d %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.Header.Get("iothub-errorcode"), r.Body, status, code)
	}
}

func TestConfiguration_AppliesRemovesAndCounts(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.Configurations.Interval = 50 * time.Millisecond }))
	d1 := h.CreateDevice(t, "d1")
	h.CreateDevice(t, "d2")
	h.CreateDevice(t, "d3")
	for id, env := range map[string]string{"d1": "prod", "d2": "prod", "d3": "test"} {
		if r := h.Do(t, http.MethodPatch, "/twins/"+id, map[string]any{"tags": map[string]any{"env": env}}); r.StatusCode != http.StatusOK {
			t.Fatalf("tag %s: %d %s", id, r.StatusCode, r.Body)
		}
	}
	// d1 listens for desired-property changes over MQTT.
	conn := mustDial(t, h, d1, connOpts{})
	conn.subscribe(t, "$iothub/twin/PATCH/properties/desired/#")
	cfg := map[string]any{
		"id":              "fw-rollout",
		"labels":          map[string]string{"team": "ops"},
		"content":         map[string]any{"deviceContent": map[string]any{"properties.desired.firmware": map[string]any{"version": "2.0"}}},
		"targetCondition": "tags.env='prod'",
		"priority":        10,
		"metrics":         map[string]any{"queries": map[string]string{"onV2": "SELECT deviceId FROM devices WHERE properties.desired.firmware.version = '2.0'"}},
	}
	r := h.Do(t, http.MethodPut, "/configurations/fw-rollout", cfg)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create: %d %s", r.StatusCode, r.Body)
	}
	var created configurationDoc
	r.JSON(t, &created)
	if created.ETag != "MQ==" || created.SchemaVersion != "1.0" || created.CreatedTimeUtc == "" || created.Priority != 10 ||
		created.SystemMetrics.Queries["targetedCount"] != "select deviceId from devices where tags.env='prod'" {
		t.Fatalf("created = %+v", created)
	}
	if _, ok := created.Content["moduleContent"]; ok {
		t.Errorf("absent content sections must stay absent: %v", created.Content)
	}

	waitForMetric(t, h, "fw-rollout", "appliedCount", 2)
	c := waitForMetric(t, h, "fw-rollout", "onV2", 2)
	if c.SystemMetrics.Results["targetedCount"] != 2 {
		t.Errorf("targetedCount = %d, want 2", c.SystemMetrics.Results["targetedCount"])
	}
	if fw, _ := getTwin(t, h, "/twins/d1").Properties.Desired["firmware"].(map[string]any); fw["version"] != "2.0" {
		t.Errorf("d1 desired = %v", getTwin(t, h, "/twins/d1").Properties.Desired)
	}
	if _, ok := getTwin(t, h, "/twins/d3").Properties.Desired["firmware"]; ok {
		t.Error("d3 is not targeted but got the content")
	}
	if m := conn.waitFor(t, "$iothub/twin/PATCH/properties/desired/"); !strings.Contains(string(m.Payload()), `"version":"2.0"`) {
		t.Errorf("desired notification = %s", m.Payload())
	}

	// Updates need the etag (or *), and the content cannot change.
	expectError(t, h.Do(t, http.MethodPut, "/configurations/fw-rollout", cfg), http.StatusConflict, "ConfigurationAlreadyExists")
	expectError(t, h.Do(t, http.MethodPut, "/configurations/fw-rollout", cfg, `If-Match: "Mg=="`), http.StatusPreconditionFailed, "PreconditionFailed")
	changed := map[string]any{}
	for k, v := range cfg {
		changed[k] = v
	}
	changed["content"] = map[string]any{"deviceContent": map[string]any{"properties.desired.other": 1}}
	expectError(t, h.Do(t, http.MethodPut, "/configurations/fw-rollout", changed, `If-Match: "MQ=="`), http.StatusBadRequest, "CannotModifyImmutableConfigurationContent")
	cfg["priority"] = 20
	r = h.Do(t, http.MethodPut, "/configurations/fw-rollout", cfg, `If-Match: "MQ=="`)
	var updated configurationDoc
	r.JSON(t, &updated)
	if r.StatusCode != http.StatusOK || updated.Priority != 20 || updated.ETag != "Mg==" || updated.CreatedTimeUtc != created.CreatedTimeUtc {
		t.Fatalf("update: %d %s", r.StatusCode, r.Body)
	}

	// d2 leaves prod: the content comes off its twin.
	h.Do(t, http.MethodPatch, "/twins/d2", map[string]any{"tags": map[string]any{"env": "lab"}})
	waitForMetric(t, h, "fw-rollout", "appliedCount", 1)
	if _, ok := getTwin(t, h, "/twins/d2").Properties.Desired["firmware"]; ok {
		t.Error("d2 left the target but kept the content")
	}

	var list []configurationDoc
	h.Do(t, http.MethodGet, "/configurations?top=10", nil).JSON(t, &list)
	if len(list) != 1 || list[0].ID != "fw-rollout" {
		t.Fatalf("list = %+v", list)
	}

	// Deleting takes the content off the remaining twin.
	if r := h.Do(t, http.MethodDelete, "/configurations/fw-rollout", nil, `If-Match: "Mg=="`); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	if _, ok := getTwin(t, h, "/twins/d1").Properties.Desired["firmware"]; ok {
		t.Error("d1 kept the content of a deleted configuration")
	}
	expectError(t, h.Do(t, http.MethodGet, "/configurations/fw-rollout", nil), http.StatusNotFound, "ConfigurationNotFound")
	expectError(t, h.Do(t, http.MethodDelete, "/configurations/fw-rollout", nil), http.StatusNotFound, "ConfigurationNotFound")
}

func TestConfiguration_PriorityAndModules(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.Configurations.Interval = 50 * time.Millisecond }))
	h.CreateDevice(t, "d1")
	if r := h.Do(t, http.MethodPut, "/devices/d1/modules/m1", map[string]any{"deviceId": "d1", "moduleId": "m1"}); r.StatusCode != http.StatusOK {
		t.Fatalf("module: %d %s", r.StatusCode, r.Body)
	}
	put := func(id string, priority int, cond string, content map[string]any) {
		t.Helper()
		r := h.Do(t, http.MethodPut, "/configurations/"+id, map[string]any{"id": id, "priority": priority, "targetCondition": cond, "content": content})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("create %s: %d %s", id, r.StatusCode, r.Body)
		}
	}
	put("low", 1, "deviceId='d1'", map[string]any{"deviceContent": map[string]any{"properties.desired": map[string]any{"level": "low"}}})
	put("high", 5, "deviceId='d1'", map[string]any{"deviceContent": map[string]any{"properties.desired": map[string]any{"level": "high"}}})
	put("mod", 1, "FROM devices.modules WHERE moduleId='m1'", map[string]any{"moduleContent": map[string]any{"properties.desired.speed": 3}})
	waitForMetric(t, h, "high", "appliedCount", 1)
	waitForMetric(t, h, "mod", "appliedCount", 1)
	if c := getConfiguration(t, h, "low"); c.SystemMetrics.Results["targetedCount"] != 1 || c.SystemMetrics.Results["appliedCount"] != 0 {
		t.Errorf("low metrics = %v, want targeted 1, applied 0", c.SystemMetrics.Results)
	}
	if got := getTwin(t, h, "/twins/d1").Properties.Desired["level"]; got != "high" {
		t.Errorf("level = %v, want high", got)
	}
	if got := getTwin(t, h, "/twins/d1/modules/m1").Properties.Desired["speed"]; got != 3.0 {
		t.Errorf("module speed = %v, want 3", got)
	}
	if r := h.Do(t, http.MethodDelete, "/configurations/high", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	waitForMetric(t, h, "low", "appliedCount", 1)
	if got := getTwin(t, h, "/twins/d1").Properties.Desired["level"]; got != "low" {
		t.Errorf("level after deleting high = %v, want low", got)
	}
}

func TestConfiguration_LimitsAndQueries(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.Configurations.MaxConfigurations = 2 }))
	content := map[string]any{"deviceContent": map[string]any{"properties.desired.x": 1}}
	for _, id := range []string{"a", "b"} {
		if r := h.Do(t, http.MethodPut, "/configurations/"+id, map[string]any{"id": id, "content": content}); r.StatusCode != http.StatusOK {
			t.Fatalf("create %s: %d %s", id, r.StatusCode, r.Body)
		}
	}
	expectError(t, h.Do(t, http.MethodPut, "/configurations/c", map[string]any{"id": "c", "content": content}), http.StatusForbidden, "IotHubQuotaExceeded")
	expectError(t, h.Do(t, http.MethodPut, "/configurations/Upper", map[string]any{"content": content}), http.StatusBadRequest, "ArgumentInvalid")
	expectError(t, h.Do(t, http.MethodPut, "/configurations/d", map[string]any{"content": content, "targetCondition": "tags.x ="}), http.StatusBadRequest, "InvalidConfigurationTargetCondition")
	expectError(t, h.Do(t, http.MethodPut, "/configurations/d", map[string]any{"content": map[string]any{"deviceContent": map[string]any{"tags.x": 1}}}), http.StatusBadRequest, "InvalidConfigurationContent")
	// A registry-read policy can read but not write.
	expectError(t, h.Do(t, http.MethodPut, "/configurations/e", map[string]any{"content": content}, "Authorization: "+h.ServiceToken(t, "registryRead")), http.StatusUnauthorized, "IotHubUnauthorizedAccess")
	if r := h.Do(t, http.MethodGet, "/configurations/a", nil, "Authorization: "+h.ServiceToken(t, "registryRead")); r.StatusCode != http.StatusOK {
		t.Fatalf("read with registryRead: %d", r.StatusCode)
	}

	var res struct {
		TargetConditionError    string            `json:"targetConditionError"`
		CustomMetricQueryErrors map[string]string `json:"customMetricQueryErrors"`
	}
	r := h.Do(t, http.MethodPost, "/configurations/testQueries", map[string]any{
		"targetCondition":     "tags.x = ",
		"customMetricQueries": map[string]string{"good": "SELECT deviceId FROM devices", "bad": "SELECT FROM"},
	})
	r.JSON(t, &res)
	if r.StatusCode != http.StatusOK || res.TargetConditionError == "" || res.CustomMetricQueryErrors["bad"] == "" || res.CustomMetricQueryErrors["good"] != "" {
		t.Fatalf("testQueries: %d %s", r.StatusCode, r.Body)
	}

	// applyConfigurationContent writes at once, device and module twins.
	h.CreateDevice(t, "edge1")
	h.Do(t, http.MethodPut, "/devices/edge1/modules/$edgeAgent", map[string]any{"deviceId": "edge1", "moduleId": "$edgeAgent"})
	r = h.Do(t, http.MethodPost, "/devices/edge1/applyConfigurationContent", map[string]any{
		"modulesContent": map[string]any{"$edgeAgent": map[string]any{"properties.desired": map[string]any{"schemaVersion": "1.1"}}},
	})
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("applyConfigurationContent: %d %s", r.StatusCode, r.Body)
	}
	if got := getTwin(t, h, "/twins/edge1/modules/$edgeAgent").Properties.Desired["schemaVersion"]; got != "1.1" {
		t.Errorf("$edgeAgent desired schemaVersion = %v", got)
	}
	expectError(t, h.Do(t, http.MethodPost, "/devices/nope/applyConfigurationContent", map[string]any{
		"deviceContent": map[string]any{"properties.desired.x": 1},
	}), http.StatusNotFound, "DeviceNotFound")
}

func TestConfiguration_SurvivesRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()), hubtest.WithConfig(func(c *hub.Config) { c.Configurations.Interval = 50 * time.Millisecond }))
	h.CreateDevice(t, "d1")
	h.Do(t, http.MethodPut, "/configurations/keep", map[string]any{"targetCondition": "deviceId='d1'",
		"content": map[string]any{"deviceContent": map[string]any{"properties.desired.x": 1}}})
	waitForMetric(t, h, "keep", "appliedCount", 1)
	h.Restart(t)
	c := getConfiguration(t, h, "keep")
	if c.ETag != "MQ==" || c.TargetCondition != "deviceId='d1'" {
		t.Fatalf("after restart: %+v", c)
	}
	// The record of what d1 carries survived too: deleting takes it back.
	if r := h.Do(t, http.MethodDelete, "/configurations/keep", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.StatusCode, r.Body)
	}
	if _, ok := getTwin(t, h, "/twins/d1").Properties.Desired["x"]; ok {
		t.Error("content stayed after delete across a restart")
	}
}
