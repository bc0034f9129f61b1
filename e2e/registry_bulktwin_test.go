package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// The twin parts of a bulk request are written together (one transaction
// for the request), and each twin comes out exactly as when its identity
// is created and its twin patched one request at a time: same tags,
// desired properties and $metadata, versions and etag. Entries whose twin
// part fails report their own error and leave the others written.
func TestRegistry_BulkTwinPartsMatchSingleWrites(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)))
	tags := map[string]any{"site": "lab", "floor": 3, "loc": map[string]any{"x": 1, "gone": nil}}
	desired := map[string]any{"fw": "1.0", "cfg": map[string]any{"a": 1}}

	if r := h.Do(t, http.MethodPut, "/devices/single", map[string]any{"deviceId": "single"}); r.StatusCode != 200 {
		t.Fatalf("create single: %d %s", r.StatusCode, r.Body)
	}
	if r := h.Do(t, http.MethodPatch, "/twins/single", map[string]any{"tags": tags, "properties": map[string]any{"desired": desired}}); r.StatusCode != 200 {
		t.Fatalf("patch single: %d %s", r.StatusCode, r.Body)
	}
	r, res := bulk(t, h,
		map[string]any{"id": "bulk1", "importMode": "create", "tags": tags, "properties": map[string]any{"desired": desired}},
		map[string]any{"id": "bulk2", "importMode": "createOrUpdate", "tags": tags, "properties": map[string]any{"desired": desired}},
		map[string]any{"id": "badtags", "importMode": "create", "tags": map[string]any{"a$b": 1}},
		map[string]any{"id": "plain", "importMode": "create"},
	)
	if r.StatusCode != 400 || len(res.Errors) != 1 || res.Errors[0].DeviceID != "badtags" || res.Errors[0].ErrorCode != 400004 {
		t.Fatalf("bulk: %d %s", r.StatusCode, r.Body)
	}
	// The identity of an entry whose twin part failed stays (as before).
	if r := h.Do(t, http.MethodGet, "/devices/badtags", nil); r.StatusCode != 200 {
		t.Errorf("badtags identity: %d", r.StatusCode)
	}

	twin := func(id string) map[string]any {
		var m map[string]any
		h.Do(t, http.MethodGet, "/twins/"+id, nil).JSON(t, &m)
		delete(m, "deviceId")
		delete(m, "deviceEtag") // identity etags count every identity write
		delete(m, "generationId")
		return m
	}
	want := twin("single")
	for _, id := range []string{"bulk1", "bulk2"} {
		if got := twin(id); !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("twin of %s from bulk:\n%s\nwant (single writes):\n%s", id, g, w)
		}
	}

	// A second bulk touching the same twins: updateTwin entries with and
	// without a matching twin etag, against the single path again.
	if r := h.Do(t, http.MethodPatch, "/twins/single", map[string]any{"tags": map[string]any{"floor": 4}}); r.StatusCode != 200 {
		t.Fatalf("patch single: %d %s", r.StatusCode, r.Body)
	}
	etag := want["etag"].(string)
	r, res = bulk(t, h,
		map[string]any{"id": "bulk1", "importMode": "updateTwinIfMatchETag", "twinETag": etag, "tags": map[string]any{"floor": 4}},
		map[string]any{"id": "bulk2", "importMode": "updateTwin", "tags": map[string]any{"floor": 4}},
		map[string]any{"id": "plain", "importMode": "updateTwinIfMatchETag", "twinETag": "AAAAAAAAAAk=", "tags": map[string]any{"floor": 4}},
	)
	if r.StatusCode != 400 || len(res.Errors) != 1 || res.Errors[0].DeviceID != "plain" || res.Errors[0].ErrorCode != 412001 {
		t.Fatalf("bulk updateTwin: %d %s", r.StatusCode, r.Body)
	}
	want = twin("single")
	for _, id := range []string{"bulk1", "bulk2"} {
		if got := twin(id); !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("twin of %s after bulk updateTwin:\n%s\nwant:\n%s", id, g, w)
		}
	}
	if got := twin("plain"); got["tags"] != nil {
		t.Errorf("plain got tags despite a stale twin etag: %v", got["tags"])
	}
}
