package twins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/twins/memstore"
)

type obj = map[string]any

var (
	created = time.Date(2024, 5, 28, 11, 4, 38, 442273700, time.UTC)
	dev     = twins.Key{DeviceID: "dev1"}
	mod     = twins.Key{DeviceID: "dev1", ModuleID: "m1"}
)

// clock returns a time that moves one second per call, starting a second
// after created.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// recorder is a Notifier that keeps every call.
type recorder struct {
	mu    sync.Mutex
	calls []notification
}

type notification struct {
	key     twins.Key
	patch   obj
	version int64
}

func (r *recorder) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, notification{key, patch, version})
}

func (r *recorder) all() []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notification(nil), r.calls...)
}

// newService returns a Service over a store holding a fresh device twin and
// a fresh module twin, with a stepping clock.
func newService(t *testing.T) (*twins.Service, *memstore.Store, *recorder) {
	t.Helper()
	st := memstore.New()
	st.Put(twins.NewTwin(dev, created))
	st.Put(twins.NewTwin(mod, created))
	rec := &recorder{}
	s, err := twins.NewService(twins.Deps{Store: st, Notifier: rec}, twins.Config{Now: (&clock{t: created}).Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, rec
}

func mustGet(t *testing.T, s *twins.Service, key twins.Key) *twins.Twin {
	t.Helper()
	tw, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%v): %v", key, err)
	}
	return tw
}

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// counters summarises a twin's counters for compact assertions.
func counters(tw *twins.Twin) string {
	return fmt.Sprintf("version=%d etag=%d desired=%d reported=%d", tw.Version, tw.ETag, tw.Desired.Version, tw.Reported.Version)
}

func TestNewTwin(t *testing.T) {
	tw := twins.NewTwin(mod, created)
	if got, want := counters(tw), "version=2 etag=1 desired=1 reported=1"; got != want {
		t.Errorf("counters %s, want %s", got, want)
	}
	if tw.Key != mod || tw.Tags != nil {
		t.Errorf("key %v tags %v", tw.Key, tw.Tags)
	}
	want := obj{"$lastUpdated": "2024-05-28T11:04:38.4422737Z"}
	if !reflect.DeepEqual(tw.Desired.Metadata, want) || !reflect.DeepEqual(tw.Reported.Metadata, want) {
		t.Errorf("metadata %s / %s", js(tw.Desired.Metadata), js(tw.Reported.Metadata))
	}
	if len(tw.Desired.Data) != 0 || len(tw.Reported.Data) != 0 {
		t.Errorf("data not empty")
	}
	if got := twins.FormatETag(tw.ETag); got != "AAAAAAAAAAE=" {
		t.Errorf("etag %q", got)
	}
}

func TestFormatTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Time{}, "0001-01-01T00:00:00Z"},
		{created, "2024-05-28T11:04:38.4422737Z"},
		{time.Date(2024, 1, 2, 3, 4, 5, 500000000, time.UTC), "2024-01-02T03:04:05.5Z"},
		{time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC), "2024-01-02T03:04:05.1234567Z"},
		{time.Date(2024, 1, 2, 4, 4, 5, 0, time.FixedZone("X", 3600)), "2024-01-02T03:04:05Z"},
	} {
		if got := twins.FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestService_PatchService(t *testing.T) {
	ctx := context.Background()

	t.Run("OKDesired", func(t *testing.T) {
		s, _, rec := newService(t)
		tw, err := s.PatchService(ctx, dev, `"AAAAAAAAAAE="`, twins.ServicePatch{Desired: obj{"interval": 60, "old": nil}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counters(tw), "version=3 etag=2 desired=2 reported=1"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if got, want := js(tw.Desired.Data), `{"interval":60}`; got != want {
			t.Errorf("desired %s, want %s", got, want)
		}
		const ts = "2024-05-28T11:04:39.4422737Z"
		wantMeta := `{"$lastUpdated":"` + ts + `","$lastUpdatedVersion":2,"interval":{"$lastUpdated":"` + ts + `","$lastUpdatedVersion":2}}`
		if got := js(tw.Desired.Metadata); got != wantMeta {
			t.Errorf("metadata %s, want %s", got, wantMeta)
		}
		if got := js(tw.Reported.Metadata); got != `{"$lastUpdated":"2024-05-28T11:04:38.4422737Z"}` {
			t.Errorf("reported metadata moved: %s", got)
		}
		if tw.Tags != nil {
			t.Errorf("tags written: %v", tw.Tags)
		}
		calls := rec.all()
		if len(calls) != 1 || calls[0].key != dev || calls[0].version != 2 || js(calls[0].patch) != `{"interval":60,"old":null}` {
			t.Errorf("notifications %+v", calls)
		}
		if got := mustGet(t, s, dev); !reflect.DeepEqual(got, tw) {
			t.Errorf("stored twin differs from returned one")
		}
	})

	t.Run("OKTagsOnly", func(t *testing.T) {
		s, _, rec := newService(t)
		tw, err := s.PatchService(ctx, dev, "*", twins.ServicePatch{Tags: obj{"building": 43, "floor": obj{"n": 2}}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counters(tw), "version=3 etag=2 desired=1 reported=1"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if got, want := js(tw.Tags), `{"building":43,"floor":{"n":2}}`; got != want {
			t.Errorf("tags %s, want %s", got, want)
		}
		if len(rec.all()) != 0 {
			t.Errorf("tags-only change notified: %+v", rec.all())
		}
		// Nested tag delete.
		tw, err = s.PatchService(ctx, dev, "", twins.ServicePatch{Tags: obj{"floor": obj{"n": nil}}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := js(tw.Tags), `{"building":43,"floor":{}}`; got != want {
			t.Errorf("tags %s, want %s", got, want)
		}
	})

	t.Run("OKEmptyTagsCreateTags", func(t *testing.T) {
		s, _, _ := newService(t)
		tw, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Tags: obj{}})
		if err != nil {
			t.Fatal(err)
		}
		if tw.Tags == nil || len(tw.Tags) != 0 {
			t.Errorf("tags = %#v, want empty non-nil", tw.Tags)
		}
	})

	t.Run("OKTagsAndDesiredCountOnce", func(t *testing.T) {
		s, _, rec := newService(t)
		tw, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Tags: obj{"a": 1}, Desired: obj{"b": 2}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counters(tw), "version=3 etag=2 desired=2 reported=1"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if len(rec.all()) != 1 {
			t.Errorf("notifications %+v", rec.all())
		}
	})

	t.Run("OKNoTagsNoDesiredChangesNothing", func(t *testing.T) {
		s, _, rec := newService(t)
		before := mustGet(t, s, dev)
		tw, err := s.PatchService(ctx, dev, `"AAAAAAAAAAE="`, twins.ServicePatch{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(tw, before) || len(rec.all()) != 0 {
			t.Errorf("empty patch changed the twin: %s", counters(tw))
		}
	})

	t.Run("OKModuleTwin", func(t *testing.T) {
		s, _, rec := newService(t)
		tw, err := s.PatchService(ctx, mod, "", twins.ServicePatch{Desired: obj{"x": "y"}})
		if err != nil {
			t.Fatal(err)
		}
		if tw.Key != mod || js(mustGet(t, s, dev).Desired.Data) != `{}` {
			t.Errorf("patched the wrong twin")
		}
		if calls := rec.all(); len(calls) != 1 || calls[0].key != mod {
			t.Errorf("notifications %+v", calls)
		}
	})

	t.Run("OKVersionSequence", func(t *testing.T) {
		// Digest §4.4: three desired patches and two reported patches on a
		// fresh twin give desired 4, reported 3, version 7, etag 4 (...AQ=).
		s, _, _ := newService(t)
		for i := range 3 {
			if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: obj{"i": i}}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 2 {
			if _, err := s.PatchReported(ctx, dev, obj{"r": i}); err != nil {
				t.Fatal(err)
			}
		}
		tw := mustGet(t, s, dev)
		if got, want := counters(tw), "version=7 etag=4 desired=4 reported=3"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if got := twins.FormatETag(tw.ETag); got != "AAAAAAAAAAQ=" {
			t.Errorf("etag %s", got)
		}
	})

	for _, tc := range []struct {
		name    string
		key     twins.Key
		ifMatch string
		patch   twins.ServicePatch
		code    iothub.Code
	}{
		{"ErrPreconditionFailed", dev, `"AAAAAAAAAAI="`, twins.ServicePatch{Desired: obj{"a": 1}}, iothub.PreconditionFailed},
		{"ErrPreconditionFailedEmptyPatch", dev, `"AAAAAAAAAAI="`, twins.ServicePatch{}, iothub.PreconditionFailed},
		{"ErrReported", dev, "", twins.ServicePatch{Desired: obj{"a": 1}, Reported: obj{"r": 1}}, iothub.ArgumentInvalid},
		{"ErrBadDesiredKey", dev, "", twins.ServicePatch{Tags: obj{"ok": 1}, Desired: obj{"a.b": 1}}, iothub.ArgumentInvalid},
		{"ErrBadTagKey", dev, "", twins.ServicePatch{Tags: obj{"$x": 1}, Desired: obj{"ok": 1}}, iothub.ArgumentInvalid},
		{"ErrIntRange", dev, "", twins.ServicePatch{Desired: obj{"i": int64(1) << 53}}, iothub.ArgumentInvalid},
		{"ErrTagsTooLarge", dev, "", twins.ServicePatch{Tags: obj{"k": strings.Repeat("x", 4000), "l": strings.Repeat("x", 4000), "m": strings.Repeat("x", 200)}}, iothub.ArgumentInvalid},
		{"ErrDeviceNotFound", twins.Key{DeviceID: "nope"}, "", twins.ServicePatch{Desired: obj{"a": 1}}, iothub.DeviceNotFound},
		{"ErrModuleNotFound", twins.Key{DeviceID: "dev1", ModuleID: "nope"}, "", twins.ServicePatch{Desired: obj{"a": 1}}, iothub.ModuleNotFound},
		{"ErrDeviceNotFoundEmptyPatch", twins.Key{DeviceID: "nope"}, "", twins.ServicePatch{}, iothub.DeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, rec := newService(t)
			before := mustGet(t, s, dev)
			_, err := s.PatchService(ctx, tc.key, tc.ifMatch, tc.patch)
			if iothub.CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			if tc.code == iothub.PreconditionFailed && iothub.MessageOf(err) != "PreconditionFailed, ETag may be invalid." {
				t.Errorf("message %q", iothub.MessageOf(err))
			}
			if after := mustGet(t, s, dev); !reflect.DeepEqual(after, before) {
				t.Errorf("twin changed on error: %s", counters(after))
			}
			if len(rec.all()) != 0 {
				t.Errorf("notified on error")
			}
		})
	}
}

func TestService_PatchService_SizeIsCheckedOnTheResult(t *testing.T) {
	ctx := context.Background()
	s, _, rec := newService(t)
	big := strings.Repeat("x", 4000)
	patch := obj{}
	for i := range 8 { // 8 × (2+4000) ≈ 32 KB
		patch[fmt.Sprintf("k%d", i)] = big
	}
	if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: patch}); err != nil {
		t.Fatalf("32016 bytes rejected: %v", err)
	}
	before := mustGet(t, s, dev)
	_, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: obj{"k8": big}})
	if iothub.CodeOf(err) != iothub.ArgumentInvalid || !strings.Contains(iothub.MessageOf(err), "'Properties.Desired' size") {
		t.Fatalf("err = %v, want 400004 desired size", err)
	}
	if after := mustGet(t, s, dev); !reflect.DeepEqual(after, before) {
		t.Errorf("twin changed on error")
	}
	// Deleting makes room again.
	if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: obj{"k0": nil, "k8": big}}); err != nil {
		t.Errorf("replace within limit: %v", err)
	}
	if n := len(rec.all()); n != 2 {
		t.Errorf("%d notifications, want 2", n)
	}
}

func TestService_ReplaceService(t *testing.T) {
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		s, _, rec := newService(t)
		if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Tags: obj{"old": 1}, Desired: obj{"a": obj{"b": 1}, "c": 2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PatchReported(ctx, dev, obj{"r": 1}); err != nil {
			t.Fatal(err)
		}
		tw, err := s.ReplaceService(ctx, dev, `"AAAAAAAAAAI="`, obj{"new": "t"}, obj{"a": obj{"z": 9}, "gone": nil})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counters(tw), "version=5 etag=3 desired=3 reported=2"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if got, want := js(tw.Tags), `{"new":"t"}`; got != want {
			t.Errorf("tags %s, want %s", got, want)
		}
		if got, want := js(tw.Desired.Data), `{"a":{"z":9}}`; got != want {
			t.Errorf("desired %s, want %s", got, want)
		}
		const ts = "2024-05-28T11:04:41.4422737Z"
		n := `{"$lastUpdated":"` + ts + `","$lastUpdatedVersion":3`
		if got, want := js(tw.Desired.Metadata), n+`,"a":`+n+`,"z":`+n+`}}}`; got != want {
			t.Errorf("metadata\n got %s\nwant %s", got, want)
		}
		if got, want := js(tw.Reported.Data), `{"r":1}`; got != want {
			t.Errorf("reported touched: %s", got)
		}
		calls := rec.all()
		if len(calls) != 2 || calls[1].version != 3 || js(calls[1].patch) != `{"a":{"z":9}}` {
			t.Errorf("notifications %+v", calls)
		}
	})

	t.Run("OKNilTagsOnNeverTaggedTwin", func(t *testing.T) {
		s, _, rec := newService(t)
		tw, err := s.ReplaceService(ctx, dev, "*", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tw.Tags != nil {
			t.Errorf("tags = %#v, want nil", tw.Tags)
		}
		if got, want := counters(tw), "version=3 etag=2 desired=2 reported=1"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if calls := rec.all(); len(calls) != 1 || js(calls[0].patch) != `{}` {
			t.Errorf("notifications %+v", calls)
		}
	})

	t.Run("OKNilTagsClearTags", func(t *testing.T) {
		s, _, _ := newService(t)
		if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Tags: obj{"a": 1}}); err != nil {
			t.Fatal(err)
		}
		tw, err := s.ReplaceService(ctx, dev, "", nil, obj{"d": 1})
		if err != nil {
			t.Fatal(err)
		}
		if tw.Tags == nil || len(tw.Tags) != 0 {
			t.Errorf("tags = %#v, want {}", tw.Tags)
		}
	})

	for _, tc := range []struct {
		name          string
		ifMatch       string
		tags, desired obj
		code          iothub.Code
	}{
		{"ErrPreconditionFailed", `"AAAAAAAAAAA="`, nil, obj{"a": 1}, iothub.PreconditionFailed},
		{"ErrBadKey", "", obj{"a b": 1}, nil, iothub.ArgumentInvalid},
		{"ErrDepth", "", nil, obj{"1": obj{"2": obj{"3": obj{"4": obj{"5": obj{"6": obj{"7": obj{"8": obj{"9": obj{"10": obj{"11": obj{}}}}}}}}}}}}, iothub.ArgumentInvalid},
		{"ErrDesiredTooLarge", "", nil, obj{"a": strings.Repeat("x", 4096), "b": strings.Repeat("x", 4096), "c": strings.Repeat("x", 4096), "d": strings.Repeat("x", 4096), "e": strings.Repeat("x", 4096), "f": strings.Repeat("x", 4096), "g": strings.Repeat("x", 4096), "h": strings.Repeat("x", 4096)}, iothub.ArgumentInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, rec := newService(t)
			before := mustGet(t, s, dev)
			_, err := s.ReplaceService(ctx, dev, tc.ifMatch, tc.tags, tc.desired)
			if iothub.CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			if after := mustGet(t, s, dev); !reflect.DeepEqual(after, before) || len(rec.all()) != 0 {
				t.Errorf("changed or notified on error")
			}
		})
	}
}

func TestService_PatchReported(t *testing.T) {
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		s, _, rec := newService(t)
		v, err := s.PatchReported(ctx, dev, obj{"battery": 55, "fw": obj{"v": "1.0", "old": "x"}})
		if err != nil || v != 2 {
			t.Fatalf("PatchReported = %d, %v; want 2", v, err)
		}
		v, err = s.PatchReported(ctx, dev, obj{"fw": obj{"old": nil}, "gone": nil})
		if err != nil || v != 3 {
			t.Fatalf("PatchReported = %d, %v; want 3", v, err)
		}
		tw := mustGet(t, s, dev)
		if got, want := counters(tw), "version=4 etag=1 desired=1 reported=3"; got != want {
			t.Errorf("counters %s, want %s", got, want)
		}
		if got, want := js(tw.Reported.Data), `{"battery":55,"fw":{"v":"1.0"}}`; got != want {
			t.Errorf("reported %s, want %s", got, want)
		}
		const t1, t2 = "2024-05-28T11:04:39.4422737Z", "2024-05-28T11:04:40.4422737Z"
		want := `{"$lastUpdated":"` + t2 + `","battery":{"$lastUpdated":"` + t1 + `"},"fw":{"$lastUpdated":"` + t2 + `","v":{"$lastUpdated":"` + t1 + `"}}}`
		if got := js(tw.Reported.Metadata); got != want {
			t.Errorf("metadata\n got %s\nwant %s", got, want)
		}
		if len(rec.all()) != 0 {
			t.Errorf("reported change notified")
		}
	})

	for _, tc := range []struct {
		name  string
		key   twins.Key
		patch obj
		code  iothub.Code
	}{
		{"ErrNil", dev, nil, iothub.ArgumentInvalid},
		{"ErrDollarKey", dev, obj{"$version": 3}, iothub.ArgumentInvalid},
		{"ErrNullInArray", dev, obj{"a": []any{nil}}, iothub.ArgumentInvalid},
		{"ErrLongString", dev, obj{"a": strings.Repeat("x", 4097)}, iothub.ArgumentInvalid},
		{"ErrTooLarge", dev, obj{"a": strings.Repeat("x", 4096), "b": strings.Repeat("x", 4096), "c": strings.Repeat("x", 4096), "d": strings.Repeat("x", 4096), "e": strings.Repeat("x", 4096), "f": strings.Repeat("x", 4096), "g": strings.Repeat("x", 4096), "h": strings.Repeat("x", 4096)}, iothub.ArgumentInvalid},
		{"ErrDeviceNotFound", twins.Key{DeviceID: "nope"}, obj{"a": 1}, iothub.DeviceNotFound},
		{"ErrModuleNotFound", twins.Key{DeviceID: "dev1", ModuleID: "nope"}, obj{"a": 1}, iothub.ModuleNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newService(t)
			before := mustGet(t, s, dev)
			if _, err := s.PatchReported(ctx, tc.key, tc.patch); iothub.CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
			if after := mustGet(t, s, dev); !reflect.DeepEqual(after, before) {
				t.Errorf("twin changed on error")
			}
		})
	}
}

// TestService_Concurrent patches desired from many goroutines, mixed with
// reported patches and patches to another twin. Every change must be there
// at the end, and the notifications for a twin must arrive in strictly
// increasing version order with none missing.
func TestService_Concurrent(t *testing.T) {
	ctx := context.Background()
	s, _, rec := newService(t)
	const writers, reporters = 64, 16
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if _, err := s.PatchService(ctx, dev, "*", twins.ServicePatch{Desired: obj{fmt.Sprintf("k%d", i): i}}); err != nil {
				t.Error(err)
			}
			if _, err := s.PatchService(ctx, mod, "", twins.ServicePatch{Desired: obj{"n": i}}); err != nil {
				t.Error(err)
			}
		})
	}
	for i := range reporters {
		wg.Go(func() {
			if _, err := s.PatchReported(ctx, dev, obj{fmt.Sprintf("r%d", i): i}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	tw := mustGet(t, s, dev)
	want := fmt.Sprintf("version=%d etag=%d desired=%d reported=%d", 2+writers+reporters, 1+writers, 1+writers, 1+reporters)
	if got := counters(tw); got != want {
		t.Errorf("counters %s, want %s", got, want)
	}
	for i := range writers {
		if got := tw.Desired.Data[fmt.Sprintf("k%d", i)]; got != int64(i) {
			t.Errorf("k%d = %v, want %d", i, got, i)
		}
	}
	if len(tw.Reported.Data) != reporters {
		t.Errorf("%d reported keys, want %d", len(tw.Reported.Data), reporters)
	}

	next := map[twins.Key]int64{dev: 2, mod: 2}
	for _, n := range rec.all() {
		if n.version != next[n.key] {
			t.Fatalf("%v: notification version %d, want %d", n.key, n.version, next[n.key])
		}
		next[n.key]++
		if n.key == dev {
			// The patch notified with version v is the one that wrote it.
			for k, v := range n.patch {
				if meta := tw.Desired.Metadata[k].(obj); meta["$lastUpdatedVersion"] != n.version {
					t.Errorf("%s: notified as version %d, metadata says %v (value %v)", k, n.version, meta["$lastUpdatedVersion"], v)
				}
			}
		}
	}
	if next[dev] != 2+writers || next[mod] != 2+writers {
		t.Errorf("notifications: dev up to %d, mod up to %d, want %d each", next[dev]-1, next[mod]-1, 1+writers)
	}
}

func TestService_NotifierGetsItsOwnCopy(t *testing.T) {
	ctx := context.Background()
	s, _, rec := newService(t)
	patch := obj{"a": obj{"b": 1}}
	if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: patch}); err != nil {
		t.Fatal(err)
	}
	rec.all()[0].patch["a"].(obj)["b"] = "mutated"
	patch["a"].(obj)["b"] = "mutated too"
	if got := js(mustGet(t, s, dev).Desired.Data); got != `{"a":{"b":1}}` {
		t.Errorf("stored desired aliased: %s", got)
	}
}

// "properties":{"desired":null} removes every desired property as a write:
// $version goes up and the device hears each removal as a null.
func TestPatchService_ClearDesired(t *testing.T) {
	s, _, rec := newService(t)
	ctx := context.Background()
	if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{Desired: obj{"a": 1, "b": obj{"c": "x"}}}); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, s, dev)
	tw, err := s.PatchService(ctx, dev, "*", twins.ServicePatch{ClearDesired: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tw.Desired.Data) != 0 {
		t.Errorf("desired after clearing = %v, want empty", tw.Desired.Data)
	}
	if tw.Desired.Version != before.Desired.Version+1 || tw.ETag != before.ETag+1 {
		t.Errorf("desired $version %d→%d, etag %d→%d: want both +1", before.Desired.Version, tw.Desired.Version, before.ETag, tw.ETag)
	}
	calls := rec.all()
	last := calls[len(calls)-1]
	if want := (obj{"a": nil, "b": nil}); !reflect.DeepEqual(last.patch, want) || last.version != tw.Desired.Version {
		t.Errorf("notification = %v v%d, want %v v%d", last.patch, last.version, want, tw.Desired.Version)
	}
	if _, err := s.PatchService(ctx, dev, "", twins.ServicePatch{ClearDesired: true, Desired: obj{"a": 1}}); !iothub.Is(err, iothub.ArgumentInvalid) {
		t.Errorf("null and object at once: err = %v, want ArgumentInvalid", err)
	}
}
