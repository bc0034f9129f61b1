package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// fleetForQueries registers devices with tags and reported properties.
func fleetForQueries(t *testing.T, h *hubtest.Hub) {
	t.Helper()
	for i := 0; i < 7; i++ {
		id := fmt.Sprintf("q%02d", i)
		h.CreateDevice(t, id)
		building := 43
		if i%2 == 1 {
			building = 44
		}
		patch := fmt.Sprintf(`{"tags":{"building":%d,"name":"dev-%d"},"properties":{"desired":{"fw":"1.%d"}}}`, building, i, i%3)
		if r := h.Do(t, http.MethodPatch, "/twins/"+id, patch); r.StatusCode != 200 {
			t.Fatalf("patch %s: %d %s", id, r.StatusCode, r.Body)
		}
	}
}

func runQuery(t *testing.T, h *hubtest.Hub, q string, headers ...string) (*hubtest.Response, []map[string]any) {
	t.Helper()
	r := h.Do(t, http.MethodPost, "/devices/query", map[string]string{"query": q}, headers...)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", q, r.StatusCode, r.Body)
	}
	var items []map[string]any
	r.JSON(t, &items)
	return r, items
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		out = append(out, fmt.Sprint(it["deviceId"]))
	}
	sort.Strings(out)
	return out
}

func TestQuery_OperatorsAndFunctions(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	fleetForQueries(t, h)
	for _, tc := range []struct {
		q    string
		want string
	}{
		{"SELECT * FROM devices WHERE tags.building = 43", "[q00 q02 q04 q06]"},
		{"select * from devices where tags.building != 43", "[q01 q03 q05]"},
		{"SELECT * FROM devices WHERE tags.building <> 43 AND properties.desired.fw = '1.0'", "[q03]"},
		{"SELECT * FROM devices WHERE deviceId IN ['q01', 'q02', 'zz']", "[q01 q02]"},
		{"SELECT * FROM devices WHERE DeviceId NIN ['q01', 'q02'] AND tags.building = 44", "[q03 q05]"},
		{"SELECT * FROM devices WHERE NOT (tags.building = 43) OR deviceId = 'q00'", "[q00 q01 q03 q05]"},
		{"SELECT * FROM devices WHERE STARTSWITH(tags.name, 'dev-1') OR ENDSWITH(deviceId, '6')", "[q01 q06]"},
		{"SELECT * FROM devices WHERE IS_DEFINED(tags.nothere)", "[]"},
		{"SELECT * FROM devices WHERE IS_NUMBER(tags.building) AND tags.building >= 44", "[q01 q03 q05]"},
		{"SELECT * FROM devices WHERE IS_STRING(properties.desired.fw) AND properties.desired.fw < '1.1'", "[q00 q03 q06]"},
		{"SELECT * FROM devices WHERE tags.building = '43'", "[]"}, // no type coercion
		{"SELECT * FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected' AND capabilities.iotEdge = false AND tags.building = 44", "[q01 q03 q05]"},
	} {
		t.Run(tc.q, func(t *testing.T) {
			r, items := runQuery(t, h, tc.q)
			if got := fmt.Sprint(ids(items)); got != tc.want && !(tc.want == "[]" && len(items) == 0) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if r.Header.Get("x-ms-item-type") != "Twin" {
				t.Errorf("x-ms-item-type = %q", r.Header.Get("x-ms-item-type"))
			}
		})
	}
}

func TestQuery_PagingHeaders(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	fleetForQueries(t, h)
	var all []string
	cont := ""
	pages := 0
	for {
		hdr := []string{"x-ms-max-item-count: 3"}
		if cont != "" {
			hdr = append(hdr, "x-ms-continuation: "+cont)
		}
		r, items := runQuery(t, h, "SELECT * FROM devices", hdr...)
		pages++
		if len(items) > 3 {
			t.Fatalf("page of %d items with max 3", len(items))
		}
		for _, it := range items {
			all = append(all, it["deviceId"].(string))
			if _, ok := it["properties"]; !ok {
				t.Errorf("SELECT * item is not a twin: %v", it)
			}
		}
		vals := r.Header.Values("x-ms-continuation")
		if len(vals) == 0 {
			break
		}
		if vals[0] == "" {
			t.Fatal("empty x-ms-continuation: the Node SDK would loop forever")
		}
		cont = vals[0]
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || fmt.Sprint(all) != "[q00 q01 q02 q03 q04 q05 q06]" {
		t.Errorf("%d pages, devices %v", pages, all)
	}
	// TOP caps the total across pages.
	_, items := runQuery(t, h, "SELECT TOP 2 * FROM devices")
	if len(items) != 2 {
		t.Errorf("TOP 2 returned %d", len(items))
	}
}

func TestQuery_ProjectionsAndGroupBy(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	fleetForQueries(t, h)
	r, items := runQuery(t, h, "SELECT deviceId, tags.building AS b FROM devices WHERE tags.building = 44")
	if r.Header.Get("x-ms-item-type") != "Raw" {
		t.Errorf("projection item type %q, want Raw", r.Header.Get("x-ms-item-type"))
	}
	b, _ := json.Marshal(items)
	if string(b) != `[{"b":44,"deviceId":"q01"},{"b":44,"deviceId":"q03"},{"b":44,"deviceId":"q05"}]` {
		t.Errorf("projection = %s", b)
	}
	_, items = runQuery(t, h, "SELECT COUNT() AS total FROM devices")
	if len(items) != 1 || items[0]["total"] != float64(7) {
		t.Errorf("COUNT = %v", items)
	}
	_, items = runQuery(t, h, "SELECT tags.building AS building, COUNT() AS n FROM devices GROUP BY tags.building")
	got := map[float64]float64{}
	for _, it := range items {
		got[it["building"].(float64)] = it["n"].(float64)
	}
	if got[43] != 4 || got[44] != 3 || len(got) != 2 {
		t.Errorf("GROUP BY = %v", items)
	}
}

func TestQuery_Errors(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for _, q := range []string{"SELECT * FORM devices", "SELECT * FROM cars", "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')", ""} {
		r := h.Do(t, http.MethodPost, "/devices/query", map[string]string{"query": q})
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", q, r.StatusCode)
		}
	}
	checkHubError(t, h.Do(t, http.MethodPost, "/devices/query", map[string]string{"query": "SELECT * FORM devices"}), 400, "ArgumentInvalid")
	// The Go SDK spells the member "Query".
	if r := h.Do(t, http.MethodPost, "/devices/query", `{"Query":"SELECT * FROM devices"}`); r.StatusCode != 200 {
		t.Errorf(`{"Query":…}: %d %s`, r.StatusCode, r.Body)
	}
}
