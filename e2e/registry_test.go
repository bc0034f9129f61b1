package e2e

import (
	"encoding/base64"

	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// The registry over raw REST: the hub's JSON shapes (digest §3.1-§3.3, §5,
// §11.6), status codes, error codes and the bulk API.

// identityTime is the identity time format: no zone suffix (digest §3.0).
var identityTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{7})?$`)

func decodeMap(t *testing.T, r *hubtest.Response) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func wantKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: member %q missing (have %v)", what, k, keysOf(m))
		}
	}
	if len(m) != len(keys) {
		t.Errorf("%s: members %v, want exactly %v", what, keysOf(m), keys)
	}
}

func checkAuthShape(t *testing.T, what string, a map[string]any, typ string) {
	t.Helper()
	wantKeys(t, what+".authentication", a, "symmetricKey", "x509Thumbprint", "type")
	if a["type"] != typ {
		t.Errorf("%s: authentication.type = %v, want %s", what, a["type"], typ)
	}
	sk, _ := a["symmetricKey"].(map[string]any)
	wantKeys(t, what+".symmetricKey", sk, "primaryKey", "secondaryKey")
	xt, _ := a["x509Thumbprint"].(map[string]any)
	wantKeys(t, what+".x509Thumbprint", xt, "primaryThumbprint", "secondaryThumbprint")
	if typ == "sas" {
		for _, k := range []string{"primaryKey", "secondaryKey"} {
			s, _ := sk[k].(string)
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw) != 32 {
				t.Errorf("%s: generated %s %q is not 32 bytes of base64", what, k, s)
			}
		}
		if xt["primaryThumbprint"] != nil || xt["secondaryThumbprint"] != nil {
			t.Errorf("%s: thumbprints %v, want null", what, xt)
		}
	}
}

func TestRegistry_DeviceShape(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	r := h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1"})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create: %d %s", r.StatusCode, r.Body)
	}
	m := decodeMap(t, r)
	wantKeys(t, "device", m, "deviceId", "generationId", "etag", "connectionState", "status", "statusReason",
		"connectionStateUpdatedTime", "statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount",
		"authentication", "capabilities", "deviceScope", "parentScopes")
	if got := r.Header.Get("ETag"); got != `"`+m["etag"].(string)+`"` {
		t.Errorf("ETag header %q, body etag %v", got, m["etag"])
	}
	if m["deviceId"] != "dev1" || m["status"] != "enabled" || m["connectionState"] != "Disconnected" || m["statusReason"] != nil {
		t.Errorf("device = %v", m)
	}
	if g, _ := m["generationId"].(string); !regexp.MustCompile(`^\d{18}$`).MatchString(g) {
		t.Errorf("generationId = %q, want 18 digits", g)
	}
	if e, _ := m["etag"].(string); e == "" {
		t.Error("empty etag")
	} else if _, err := base64.StdEncoding.DecodeString(e); err != nil {
		t.Errorf("etag %q is not base64", e)
	}
	for _, k := range []string{"connectionStateUpdatedTime", "statusUpdatedTime", "lastActivityTime"} {
		if s, _ := m[k].(string); !identityTime.MatchString(s) {
			t.Errorf("%s = %v, want a time without zone suffix", k, m[k])
		}
	}
	if m["statusUpdatedTime"] != "0001-01-01T00:00:00" {
		t.Errorf("statusUpdatedTime = %v on a new device", m["statusUpdatedTime"])
	}
	if m["cloudToDeviceMessageCount"] != float64(0) {
		t.Errorf("cloudToDeviceMessageCount = %v", m["cloudToDeviceMessageCount"])
	}
	checkAuthShape(t, "device", m["authentication"].(map[string]any), "sas")
	if c, _ := m["capabilities"].(map[string]any); c == nil || c["iotEdge"] != false {
		t.Errorf("capabilities = %v", m["capabilities"])
	}
	if m["deviceScope"] != nil {
		t.Errorf("deviceScope = %v, want null", m["deviceScope"])
	}
	if ps, ok := m["parentScopes"].([]any); !ok || len(ps) != 0 {
		t.Errorf("parentScopes = %v, want []", m["parentScopes"])
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}

	// GET answers the same document with the same ETag.
	g := h.Do(t, http.MethodGet, "/devices/dev1", nil)
	if g.StatusCode != http.StatusOK || g.Header.Get("ETag") != r.Header.Get("ETag") {
		t.Errorf("GET: %d ETag %q", g.StatusCode, g.Header.Get("ETag"))
	}
}

func TestRegistry_ModuleShape(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	r := h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1", "deviceId": "dev1"})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}
	m := decodeMap(t, r)
	wantKeys(t, "module", m, "moduleId", "managedBy", "deviceId", "generationId", "etag", "connectionState",
		"connectionStateUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount", "authentication")
	if m["moduleId"] != "m1" || m["deviceId"] != "dev1" || m["managedBy"] != nil || m["connectionState"] != "Disconnected" {
		t.Errorf("module = %v", m)
	}
	if r.Header.Get("ETag") != `"`+m["etag"].(string)+`"` {
		t.Errorf("ETag header %q, body %v", r.Header.Get("ETag"), m["etag"])
	}
	checkAuthShape(t, "module", m["authentication"].(map[string]any), "sas")

	// managedBy round-trips.
	r = h.Do(t, http.MethodPut, "/devices/dev1/modules/m2", map[string]any{"moduleId": "m2", "managedBy": "IotEdge"})
	if m := decodeMap(t, r); m["managedBy"] != "IotEdge" {
		t.Errorf("managedBy = %v", m["managedBy"])
	}
	r = h.Do(t, http.MethodGet, "/devices/dev1/modules", nil)
	var list []map[string]any
	r.JSON(t, &list)
	if len(list) != 2 || list[0]["moduleId"] != "m1" || list[1]["moduleId"] != "m2" {
		t.Errorf("modules = %v", list)
	}
}

func TestRegistry_Errors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"})

	t.Run("duplicate device", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1"}), 409, "DeviceAlreadyExists")
	})
	t.Run("duplicate module", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"}), 409, "ModuleAlreadyExistsOnDevice")
	})
	t.Run("stale If-Match on update", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1"}, `If-Match: "MTIzNDU2"`), 412, "PreconditionFailed")
	})
	t.Run("stale If-Match on delete", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodDelete, "/devices/dev1", nil, `If-Match: "MTIzNDU2"`), 412, "PreconditionFailed")
	})
	t.Run("stale If-Match on module update", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"moduleId": "m1"}, `If-Match: "MTIzNDU2"`), 412, "PreconditionFailed")
	})
	t.Run("delete unknown device", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodDelete, "/devices/ghost", nil, `If-Match: "*"`), 404, "DeviceNotFound")
	})
	t.Run("update unknown device", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/ghost", map[string]any{"deviceId": "ghost"}, `If-Match: "*"`), 404, "DeviceNotFound")
	})
	t.Run("module of unknown device", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/ghost/modules/m1", map[string]any{"moduleId": "m1"}), 404, "DeviceNotFound")
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/ghost/modules", nil), 404, "DeviceNotFound")
	})
	t.Run("get unknown module", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1/modules/nope", nil), 404, "ModuleNotFound")
		checkHubError(t, h.Do(t, http.MethodDelete, "/devices/dev1/modules/nope", nil), 404, "ModuleNotFound")
	})
	t.Run("body id differs from path", func(t *testing.T) {
		checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev2", map[string]any{"deviceId": "other"}), 400, "ArgumentInvalid")
	})
	t.Run("not JSON", func(t *testing.T) {
		r := h.Do(t, http.MethodPut, "/devices/dev2", "{nope")
		if r.StatusCode != 400 {
			t.Errorf("status %d", r.StatusCode)
		}
	})

	for _, tc := range []struct{ name, path string }{
		{"invalid characters", "/devices/" + urlEscape("!@#$%^&")},
		{"space", "/devices/" + urlEscape("a b")},
		{"non-ASCII", "/devices/" + urlEscape("dév")},
		{"129 characters", "/devices/" + strings.Repeat("a", 129)},
		{"invalid module id", "/devices/dev1/modules/" + urlEscape("m/1")},
		{"129-character module id", "/devices/dev1/modules/" + strings.Repeat("m", 129)},
	} {
		t.Run("id "+tc.name, func(t *testing.T) {
			r := h.Do(t, http.MethodPut, tc.path, map[string]any{})
			checkBadRequest(t, r)
		})
	}
	t.Run("128 characters is fine", func(t *testing.T) {
		id := strings.Repeat("a", 128)
		if r := h.Do(t, http.MethodPut, "/devices/"+id, map[string]any{}); r.StatusCode != 200 {
			t.Errorf("status %d %s", r.StatusCode, r.Body)
		}
	})
	t.Run("every allowed punctuation", func(t *testing.T) {
		id := "a-.+%_#*?!(),=@$'z"
		r := h.Do(t, http.MethodPut, "/devices/"+urlEscape(id), map[string]any{})
		if r.StatusCode != 200 {
			t.Fatalf("status %d %s", r.StatusCode, r.Body)
		}
		if m := decodeMap(t, r); m["deviceId"] != id {
			t.Errorf("deviceId = %v", m["deviceId"])
		}
		if r := h.Do(t, http.MethodGet, "/devices/"+urlEscape(id), nil); r.StatusCode != 200 {
			t.Errorf("GET: %d", r.StatusCode)
		}
	})

	short := base64.StdEncoding.EncodeToString([]byte("short"))
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"key not base64", sasBody("not base64!!", d.PrimaryKey)},
		{"secondary key not base64", sasBody(d.PrimaryKey, "@@@")},
		{"key too short", sasBody(short, d.PrimaryKey)},
		{"key too long", sasBody(base64.StdEncoding.EncodeToString(make([]byte, 65)), d.PrimaryKey)},
		{"bad status", map[string]any{"status": "paused"}},
		{"long statusReason", map[string]any{"statusReason": strings.Repeat("r", 129)}},
		{"bad auth type", map[string]any{"authentication": map[string]any{"type": "password"}}},
		{"selfSigned without thumbprint", map[string]any{"authentication": map[string]any{"type": "selfSigned"}}},
		{"selfSigned bad thumbprint", map[string]any{"authentication": map[string]any{"type": "selfSigned",
			"x509Thumbprint": map[string]any{"primaryThumbprint": "XYZ"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkBadRequest(t, h.Do(t, http.MethodPut, "/devices/bad-"+strings.ReplaceAll(tc.name, " ", "-"), tc.body))
		})
	}
}

func sasBody(primary, secondary string) map[string]any {
	return map[string]any{"authentication": map[string]any{"type": "sas",
		"symmetricKey": map[string]any{"primaryKey": primary, "secondaryKey": secondary}}}
}

// checkBadRequest wants a 400 whose body Go's SDK turns into a
// BadRequestError: non-empty Message and ExceptionMessage.
func checkBadRequest(t *testing.T, r *hubtest.Response) {
	t.Helper()
	if r.StatusCode != http.StatusBadRequest {
		t.Fatalf("%s %s: status %d, want 400: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.Body)
	}
	var e errorBody
	r.JSON(t, &e)
	if !strings.HasPrefix(e.Message, "ErrorCode:") || len(e.Message) < len("ErrorCode:X;x") || e.ExceptionMessage == "" {
		t.Errorf("error body %s", r.Body)
	}
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func TestRegistry_UpdateDeleteAndEtags(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	create := h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1"})
	first := decodeMap(t, create)
	etag := first["etag"].(string)

	// Key rotation via update, with the current etag, quoted.
	newPrimary := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	newSecondary := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	body := sasBody(newPrimary, newSecondary)
	body["deviceId"] = "dev1"
	body["status"] = "enabled"
	r := h.Do(t, http.MethodPut, "/devices/dev1", body, `If-Match: "`+etag+`"`)
	if r.StatusCode != 200 {
		t.Fatalf("update: %d %s", r.StatusCode, r.Body)
	}
	upd := decodeMap(t, r)
	sk := upd["authentication"].(map[string]any)["symmetricKey"].(map[string]any)
	if sk["primaryKey"] != newPrimary || sk["secondaryKey"] != newSecondary {
		t.Errorf("keys not rotated: %v", sk)
	}
	if upd["etag"] == etag {
		t.Error("etag unchanged by an update")
	}
	if upd["generationId"] != first["generationId"] {
		t.Error("generationId changed by an update")
	}
	// The old etag is now stale.
	checkHubError(t, h.Do(t, http.MethodPut, "/devices/dev1", body, `If-Match: "`+etag+`"`), 412, "PreconditionFailed")

	// Disabling records the status change time and reason.
	body["status"], body["statusReason"] = "disabled", "maintenance"
	r = h.Do(t, http.MethodPut, "/devices/dev1", body, `If-Match: *`)
	dis := decodeMap(t, r)
	if dis["status"] != "disabled" || dis["statusReason"] != "maintenance" || dis["statusUpdatedTime"] == "0001-01-01T00:00:00" {
		t.Errorf("after disable: %v", dis)
	}

	// Delete with each If-Match form.
	for _, tc := range []struct{ id, ifMatch string }{{"a", "*"}, {"b", `"*"`}, {"c", ""}, {"d", "etag"}} {
		r := h.Do(t, http.MethodPut, "/devices/"+tc.id, map[string]any{})
		im := tc.ifMatch
		if im == "etag" {
			im = r.Header.Get("ETag")
		}
		del := h.Do(t, http.MethodDelete, "/devices/"+tc.id, nil, "If-Match: "+im)
		if del.StatusCode != http.StatusNoContent || len(del.Body) != 0 {
			t.Errorf("delete with If-Match %q: %d %s", im, del.StatusCode, del.Body)
		}
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/"+tc.id, nil), 404, "DeviceNotFound")
	}

	// generationId changes when a device is deleted and created again.
	if r := h.Do(t, http.MethodDelete, "/devices/dev1", nil, `If-Match: "*"`); r.StatusCode != 204 {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	again := decodeMap(t, h.Do(t, http.MethodPut, "/devices/dev1", map[string]any{"deviceId": "dev1"}))
	if again["generationId"] == first["generationId"] {
		t.Errorf("generationId %v survived delete and create", again["generationId"])
	}
	// Module delete answers 204 and the module is gone.
	h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{})
	if r := h.Do(t, http.MethodDelete, "/devices/dev1/modules/m1", nil, `If-Match: "*"`); r.StatusCode != 204 {
		t.Errorf("module delete: %d", r.StatusCode)
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1/modules/m1", nil), 404, "ModuleNotFound")
}

func TestRegistry_ListAndStatistics(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for i := 0; i < 5; i++ {
		h.CreateDevice(t, fmt.Sprintf("dev%d", i))
	}
	h.Do(t, http.MethodPut, "/devices/dev0/modules/m1", map[string]any{}) // modules are not devices
	h.Do(t, http.MethodPut, "/devices/dev4", map[string]any{"deviceId": "dev4", "status": "disabled"}, `If-Match: "*"`)

	var list []map[string]any
	h.Do(t, http.MethodGet, "/devices", nil).JSON(t, &list)
	if len(list) != 5 {
		t.Errorf("list: %d devices, want 5", len(list))
	}
	h.Do(t, http.MethodGet, "/devices?top=2", nil).JSON(t, &list)
	if len(list) != 2 || list[0]["deviceId"] != "dev0" || list[1]["deviceId"] != "dev1" {
		t.Errorf("top=2: %v", list)
	}
	h.Do(t, http.MethodGet, "/devices/?top=0", nil).JSON(t, &list)
	if len(list) != 5 {
		t.Errorf("top=0 (means 1000): %d devices", len(list))
	}

	var st map[string]int
	h.Do(t, http.MethodGet, "/statistics/devices", nil).JSON(t, &st)
	if st["totalDeviceCount"] != 5 || st["enabledDeviceCount"] != 4 || st["disabledDeviceCount"] != 1 || len(st) != 3 {
		t.Errorf("statistics = %v", st)
	}
	var svc map[string]int
	h.Do(t, http.MethodGet, "/statistics/service", nil).JSON(t, &svc)
	if _, ok := svc["connectedDeviceCount"]; !ok || len(svc) != 1 {
		t.Errorf("service statistics = %v", svc)
	}
}

// bulkResult is the bulk response (digest §3.2).
type bulkResult struct {
	IsSuccessful bool `json:"isSuccessful"`
	Errors       []struct {
		DeviceID    string `json:"deviceId"`
		ModuleID    string `json:"moduleId"`
		ErrorCode   int    `json:"errorCode"`
		ErrorStatus string `json:"errorStatus"`
	} `json:"errors"`
	Warnings []any `json:"warnings"`
}

func bulk(t *testing.T, h *hubtest.Hub, entries ...map[string]any) (*hubtest.Response, bulkResult) {
	t.Helper()
	r := h.Do(t, http.MethodPost, "/devices", entries)
	var res bulkResult
	if r.StatusCode == 200 || r.Header.Get("iothub-errorcode") == "" {
		r.JSON(t, &res)
		if res.Errors == nil || res.Warnings == nil {
			t.Errorf("errors and warnings must be arrays: %s", r.Body)
		}
	}
	return r, res
}

func TestRegistry_BulkCreateUpdateDelete(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	r, res := bulk(t, h,
		map[string]any{"id": "b1", "importMode": "create", "status": "enabled"},
		map[string]any{"id": "b2", "importMode": "Create", "status": "disabled", "statusReason": "later",
			"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": key, "secondaryKey": key}}},
		map[string]any{"id": "b3", "importMode": "CREATEORUPDATE", "tags": map[string]any{"site": "a", "n": 12345678901234},
			"properties": map[string]any{"desired": map[string]any{"fw": "1.0"}}},
		map[string]any{"id": "b1", "moduleId": "m1", "importMode": "create"},
	)
	if r.StatusCode != 200 || !res.IsSuccessful || len(res.Errors) != 0 {
		t.Fatalf("bulk create: %d %s", r.StatusCode, r.Body)
	}
	b2 := decodeMap(t, h.Do(t, http.MethodGet, "/devices/b2", nil))
	if b2["status"] != "disabled" || b2["statusReason"] != "later" ||
		b2["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] != key {
		t.Errorf("b2 = %v", b2)
	}
	b1 := decodeMap(t, h.Do(t, http.MethodGet, "/devices/b1", nil))
	checkAuthShape(t, "b1", b1["authentication"].(map[string]any), "sas")
	if r := h.Do(t, http.MethodGet, "/devices/b1/modules/m1", nil); r.StatusCode != 200 {
		t.Errorf("module from bulk: %d", r.StatusCode)
	}
	tw := h.Do(t, http.MethodGet, "/twins/b3", nil)
	if !strings.Contains(string(tw.Body), `"n":12345678901234`) || !strings.Contains(string(tw.Body), `"fw":"1.0"`) ||
		!strings.Contains(string(tw.Body), `"site":"a"`) {
		t.Errorf("twin of b3 lacks the imported tags/desired: %s", tw.Body)
	}

	// One conflict: 400, the others applied (digest §11.4).
	r, res = bulk(t, h,
		map[string]any{"id": "b1", "importMode": "create"},
		map[string]any{"id": "b4", "importMode": "create"},
	)
	if r.StatusCode != 400 || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].DeviceID != "b1" ||
		res.Errors[0].ErrorCode != 409001 || res.Errors[0].ErrorStatus == "" {
		t.Errorf("bulk with a conflict: %d %s", r.StatusCode, r.Body)
	}
	if !strings.Contains(string(r.Body), `"errorCode":409001`) {
		t.Errorf("errorCode must be numeric on the wire: %s", r.Body)
	}
	if r := h.Do(t, http.MethodGet, "/devices/b4", nil); r.StatusCode != 200 {
		t.Errorf("b4 not created beside the failing entry: %d", r.StatusCode)
	}

	// Updates: plain, with a matching etag (either member spelling), with a
	// stale one, of a missing device.
	etag := decodeMap(t, h.Do(t, http.MethodGet, "/devices/b4", nil))["etag"].(string)
	r, res = bulk(t, h,
		map[string]any{"id": "b1", "importMode": "update", "status": "disabled"},
		map[string]any{"id": "b4", "importMode": "updateIfMatchETag", "eTag": etag, "status": "disabled"},
		map[string]any{"id": "b2", "importMode": "UpdateIfMatchETag", "etag": "c3RhbGU=", "status": "enabled"},
		map[string]any{"id": "ghost", "importMode": "update"},
		map[string]any{"id": "b5", "importMode": "createOrUpdateIfMatchETag"},
	)
	if r.StatusCode != 400 || len(res.Errors) != 2 {
		t.Fatalf("bulk update: %d %s", r.StatusCode, r.Body)
	}
	codes := map[string]int{}
	for _, e := range res.Errors {
		codes[e.DeviceID] = e.ErrorCode
	}
	if codes["b2"] != 412001 || codes["ghost"] != 404001 {
		t.Errorf("errors = %v", codes)
	}
	after := decodeMap(t, h.Do(t, http.MethodGet, "/devices/b1", nil))
	if after["status"] != "disabled" {
		t.Errorf("b1 status %v after bulk update", after["status"])
	}
	if after["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] !=
		b1["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] {
		t.Error("an update without authentication changed the keys")
	}
	if s := decodeMap(t, h.Do(t, http.MethodGet, "/devices/b2", nil))["status"]; s != "disabled" {
		t.Errorf("b2 changed despite the stale etag: %v", s)
	}

	// Twin-only updates.
	twinEtag := func(id string) string {
		var tw struct{ Etag string }
		h.Do(t, http.MethodGet, "/twins/"+id, nil).JSON(t, &tw)
		return tw.Etag
	}
	r, res = bulk(t, h,
		map[string]any{"id": "b1", "importMode": "updateTwin", "tags": map[string]any{"x": 1}},
		map[string]any{"id": "b4", "importMode": "updateTwinIfMatchETag", "twinETag": twinEtag("b4"), "properties": map[string]any{"desired": map[string]any{"y": 2}}},
		map[string]any{"id": "b5", "importMode": "updateTwinIfMatchETag", "twinETag": "AAAAAAAAAAk=", "tags": map[string]any{"z": 3}},
		map[string]any{"id": "ghost", "importMode": "updateTwin", "tags": map[string]any{"z": 3}},
	)
	codes = map[string]int{}
	for _, e := range res.Errors {
		codes[e.DeviceID] = e.ErrorCode
	}
	if r.StatusCode != 400 || len(res.Errors) != 2 || codes["b5"] != 412001 || codes["ghost"] != 404001 {
		t.Errorf("bulk updateTwin: %d %s", r.StatusCode, r.Body)
	}
	if tw := h.Do(t, http.MethodGet, "/twins/b1", nil); !strings.Contains(string(tw.Body), `"x":1`) {
		t.Errorf("b1 twin: %s", tw.Body)
	}
	if tw := h.Do(t, http.MethodGet, "/twins/b4", nil); !strings.Contains(string(tw.Body), `"y":2`) {
		t.Errorf("b4 twin: %s", tw.Body)
	}

	// Deletes.
	etag = decodeMap(t, h.Do(t, http.MethodGet, "/devices/b4", nil))["etag"].(string)
	r, res = bulk(t, h,
		map[string]any{"id": "b1", "importMode": "delete"},
		map[string]any{"id": "b4", "importMode": "deleteIfMatchETag", "eTag": etag},
		map[string]any{"id": "b2", "importMode": "deleteIfMatchETag", "eTag": "c3RhbGU="},
		map[string]any{"id": "ghost", "importMode": "Delete"},
	)
	codes = map[string]int{}
	for _, e := range res.Errors {
		codes[e.DeviceID] = e.ErrorCode
	}
	if r.StatusCode != 400 || len(res.Errors) != 2 || codes["b2"] != 412001 || codes["ghost"] != 404001 {
		t.Errorf("bulk delete: %d %s", r.StatusCode, r.Body)
	}
	for _, id := range []string{"b1", "b4"} {
		checkHubError(t, h.Do(t, http.MethodGet, "/devices/"+id, nil), 404, "DeviceNotFound")
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/b1/modules/m1", nil), 404, "ModuleNotFound")
	if r := h.Do(t, http.MethodGet, "/devices/b2", nil); r.StatusCode != 200 {
		t.Errorf("b2 deleted despite a stale etag")
	}
}

func TestRegistry_BulkRequestErrors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = map[string]any{"id": fmt.Sprintf("d%d", i), "importMode": "create"}
	}
	r := h.Do(t, http.MethodPost, "/devices", many)
	checkHubError(t, r, 413, "TooManyDevices")

	r = h.Do(t, http.MethodPost, "/devices", []map[string]any{{"id": "a", "importMode": "create"}, {"id": "a", "importMode": "delete"}})
	checkHubError(t, r, 400, "DeviceDefinedMultipleTimes")
	if h.Do(t, http.MethodGet, "/devices/a", nil).StatusCode != 404 {
		t.Error("a request with a duplicate must change nothing")
	}
	checkHubError(t, h.Do(t, http.MethodPost, "/devices", []map[string]any{}), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodPost, "/devices", []map[string]any{{"id": "a", "importMode": "explode"}}), 400, "ArgumentInvalid")
	checkHubError(t, h.Do(t, http.MethodPost, "/devices", `{"id":"a"}`), 400, "IotHubFormatError")
	checkHubError(t, h.Do(t, http.MethodPost, "/devices", []map[string]any{{"id": "a"}},
		"Authorization: "+h.ServiceToken(t, "registryRead")), 401, "IotHubUnauthorizedAccess")

	// Invalid entries fail alone.
	_, res := bulk(t, h,
		map[string]any{"id": "!bad id", "importMode": "create"},
		map[string]any{"id": "ok", "importMode": "create"},
		map[string]any{"id": "badkey", "importMode": "create", "authentication": map[string]any{"symmetricKey": map[string]any{"primaryKey": "xx"}}},
		map[string]any{"id": "rep", "importMode": "create", "properties": map[string]any{"reported": map[string]any{"a": 1}}},
	)
	if res.IsSuccessful || len(res.Errors) != 3 {
		t.Fatalf("invalid entries: %+v", res)
	}
	for _, e := range res.Errors {
		if e.ErrorCode != 400004 && e.ErrorCode != 400005 {
			t.Errorf("entry %s: code %d", e.DeviceID, e.ErrorCode)
		}
	}
	if h.Do(t, http.MethodGet, "/devices/ok", nil).StatusCode != 200 {
		t.Error("the valid entry was not created")
	}
	// And 100 entries is fine.
	r = h.Do(t, http.MethodPost, "/devices", many[:100])
	if r.StatusCode != 200 {
		t.Errorf("100 entries: %d %s", r.StatusCode, r.Body)
	}
	var st map[string]int
	h.Do(t, http.MethodGet, "/statistics/devices", nil).JSON(t, &st)
	if st["totalDeviceCount"] != 101 {
		t.Errorf("totalDeviceCount = %d, want 101", st["totalDeviceCount"])
	}

}
