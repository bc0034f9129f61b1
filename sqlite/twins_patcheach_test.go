package sqlite_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// desiredLog records desired notifications in order.
type desiredLog struct {
	mu  sync.Mutex
	got []string
}

func (l *desiredLog) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	b, _ := json.Marshal(patch)
	l.mu.Lock()
	l.got = append(l.got, key.DeviceID+" "+string(b)+" v"+json.Number(itoa(version)).String())
	l.mu.Unlock()
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

// PatchEach (the bulk API's batched twin writes) leaves every twin as the
// same patches through PatchService, one at a time and in order, do: a
// batch of "a" devices and a one-by-one oracle of "b" devices get the same
// patches, including two for one twin, a clear of desired, a stale etag,
// an invalid patch and a missing twin, and must end equal, with the same
// errors and notifications.
func TestTwinService_PatchEachEqualsPatchService(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, err := sqlite.Open(ctx, "", sqlite.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := sqlite.NewTwinStore(db)
	t.Cleanup(store.Close)
	reg := &sqlite.RegistryStore{DB: db}
	var notes desiredLog
	svc, err := twins.NewService(twins.Deps{Store: store, Notifier: &notes}, twins.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2", "a3", "b1", "b2", "b3"} {
		if _, err := reg.Create(ctx, &registry.Identity{DeviceID: id, Status: registry.StatusEnabled,
			Auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: registry.NewKey(), SecondaryKey: registry.NewKey()}}); err != nil {
			t.Fatal(err)
		}
	}
	patches := func(prefix string) []twins.KeyedPatch {
		k := func(n string) twins.Key { return twins.Key{DeviceID: prefix + n} }
		return []twins.KeyedPatch{
			{Key: k("1"), Patch: twins.ServicePatch{Tags: map[string]any{"site": "lab"}, Desired: map[string]any{"fw": "1.0"}}},
			{Key: k("2"), Patch: twins.ServicePatch{Desired: map[string]any{"x": 1, "y": 2}}},
			{Key: k("1"), Patch: twins.ServicePatch{Tags: map[string]any{"site": nil, "floor": 2}}}, // second patch of one twin
			{Key: k("2"), Patch: twins.ServicePatch{ClearDesired: true}},
			{Key: k("2"), Patch: twins.ServicePatch{Desired: map[string]any{"z": 3}}}, // after the clear
			{Key: k("3"), IfMatch: `"AAAAAAAAAAk="`, Patch: twins.ServicePatch{Tags: map[string]any{"t": 1}}},
			{Key: k("3"), Patch: twins.ServicePatch{Tags: map[string]any{"a$b": 1}}}, // invalid name
			{Key: k("3"), Patch: twins.ServicePatch{Tags: map[string]any{"ok": true}}},
			{Key: k("9"), Patch: twins.ServicePatch{Tags: map[string]any{"t": 1}}}, // no such twin
		}
	}

	got := svc.PatchEach(ctx, patches("a"))
	notesA := notes.got
	notes.got = nil
	var want []error
	for _, p := range patches("b") {
		_, err := svc.PatchService(ctx, p.Key, p.IfMatch, p.Patch)
		want = append(want, err)
	}
	for i := range want {
		if iothub.CodeOf(got[i]) != iothub.CodeOf(want[i]) || (got[i] == nil) != (want[i] == nil) {
			t.Errorf("patch %d: PatchEach error %v, PatchService error %v", i, got[i], want[i])
		}
	}
	for _, n := range []string{"1", "2", "3"} {
		a, err := svc.Get(ctx, twins.Key{DeviceID: "a" + n})
		if err != nil {
			t.Fatal(err)
		}
		b, err := svc.Get(ctx, twins.Key{DeviceID: "b" + n})
		if err != nil {
			t.Fatal(err)
		}
		a.Key, a.Identity = b.Key, b.Identity
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("twin %s after PatchEach:\n%s\nafter PatchService one by one:\n%s", n, ja, jb)
		}
	}
	if len(notesA) != len(notes.got) {
		t.Fatalf("notifications: PatchEach %v, PatchService %v", notesA, notes.got)
	}
	for i := range notesA {
		if notesA[i][1:] != notes.got[i][1:] {
			t.Errorf("notification %d: PatchEach %s, PatchService %s", i, notesA[i], notes.got[i])
		}
	}
}
