package configurations

import (
	"context"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// memStore is an in-memory Store.
type memStore struct {
	mu      sync.Mutex
	cfgs    map[string]*Configuration
	applied map[twins.Key]string
}

func newMemStore() *memStore {
	return &memStore{cfgs: map[string]*Configuration{}, applied: map[twins.Key]string{}}
}

func clone(c *Configuration) *Configuration { cc := *c; return &cc }

func (m *memStore) Get(_ context.Context, id string) (*Configuration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cfgs[id]
	if !ok {
		return nil, iothub.Errorf(iothub.ConfigurationNotFound, "not found")
	}
	return clone(c), nil
}

func (m *memStore) List(context.Context) ([]*Configuration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Configuration
	for _, c := range m.cfgs {
		out = append(out, clone(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memStore) Create(_ context.Context, c *Configuration, max int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cfgs[c.ID]; ok {
		return iothub.Errorf(iothub.ConfigurationAlreadyExists, "exists")
	}
	if len(m.cfgs) >= max {
		return iothub.Errorf(iothub.IotHubQuotaExceeded, "full")
	}
	m.cfgs[c.ID] = clone(c)
	return nil
}

func (m *memStore) Update(_ context.Context, id string, fn func(*Configuration) error) (*Configuration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cfgs[id]
	if !ok {
		return nil, iothub.Errorf(iothub.ConfigurationNotFound, "not found")
	}
	c = clone(c)
	if err := fn(c); err != nil {
		return nil, err
	}
	m.cfgs[id] = c
	return clone(c), nil
}

func (m *memStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cfgs, id)
	for k, v := range m.applied {
		if v == id {
			delete(m.applied, k)
		}
	}
	return nil
}

func (m *memStore) SetMetrics(_ context.Context, id string, system, custom map[string]int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cfgs[id]; ok {
		c.SystemResults, c.MetricResults = system, custom
	}
	return nil
}

func (m *memStore) Applied(context.Context) (map[twins.Key]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[twins.Key]string{}
	for k, v := range m.applied {
		out[k] = v
	}
	return out, nil
}

func (m *memStore) SetApplied(_ context.Context, keys []twins.Key, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if id == "" {
			delete(m.applied, k)
		} else {
			m.applied[k] = id
		}
	}
	return nil
}

// fakeFleet is a set of twins with tags and desired properties; it answers
// target conditions of the form tags.<name> = '<value>' by evaluating them
// with the query package's reference evaluator.
type fakeFleet struct {
	mu    sync.Mutex
	twins map[twins.Key]*twins.Twin
}

func newFleet(tags map[string]map[string]any) *fakeFleet {
	f := &fakeFleet{twins: map[twins.Key]*twins.Twin{}}
	for id, tg := range tags {
		k := twins.Key{DeviceID: id}
		f.twins[k] = &twins.Twin{Key: k, Tags: tg, Desired: twins.Properties{Data: map[string]any{}, Metadata: map[string]any{}}}
	}
	return f
}

func (f *fakeFleet) Select(_ context.Context, q *query.Query) ([]twins.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []twins.Key
	for k, t := range f.twins {
		doc := map[string]any{"deviceId": k.DeviceID, "tags": t.Tags, "properties": map[string]any{"desired": t.Desired.Data}}
		if q.Match(doc) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeFleet) Count(ctx context.Context, q *query.Query) (int64, error) {
	keys, err := f.Select(ctx, q)
	return int64(len(keys)), err
}

func mergeDesired(dst, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(dst, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			dm, ok := dst[k].(map[string]any)
			if !ok {
				dm = map[string]any{}
				dst[k] = dm
			}
			mergeDesired(dm, pm)
			continue
		}
		dst[k] = v
	}
}

func (f *fakeFleet) PatchMany(_ context.Context, keys []twins.Key, p twins.ServicePatch) ([]error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(keys))
	for i, k := range keys {
		t, ok := f.twins[k]
		if !ok {
			errs[i] = iothub.Errorf(iothub.DeviceNotFound, "gone")
			continue
		}
		mergeDesired(t.Desired.Data, p.Desired)
	}
	return errs, nil
}

func (f *fakeFleet) PatchService(ctx context.Context, key twins.Key, _ string, p twins.ServicePatch) (*twins.Twin, error) {
	errs, _ := f.PatchMany(ctx, []twins.Key{key}, p)
	return nil, errs[0]
}

func (f *fakeFleet) desired(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.twins[twins.Key{DeviceID: id}].Desired.Data
}

func (f *fakeFleet) setTags(id string, tags map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.twins[twins.Key{DeviceID: id}].Tags = tags
}

func newTestService(t *testing.T, fleet *fakeFleet) (*Service, *memStore) {
	t.Helper()
	store := newMemStore()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	s, err := NewService(Deps{Store: store, Targets: fleet, Twins: fleet}, Config{MaxConfigurations: 3, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, store
}

func deviceConfig(id, cond string, priority int, desired map[string]any) *Configuration {
	return &Configuration{ID: id, TargetCondition: cond, Priority: priority,
		Content: Content{DeviceContent: map[string]any{"properties.desired": desired}}}
}

func TestEvaluateAppliesByPriorityAndTakesBack(t *testing.T) {
	ctx := context.Background()
	fleet := newFleet(map[string]map[string]any{
		"d1": {"env": "prod"}, "d2": {"env": "prod", "ring": "canary"}, "d3": {"env": "test"},
	})
	s, store := newTestService(t, fleet)
	put := func(c *Configuration) {
		t.Helper()
		if _, _, err := s.Put(ctx, c, ""); err != nil {
			t.Fatal(err)
		}
	}
	put(deviceConfig("base", "tags.env = 'prod'", 10, map[string]any{"fw": "1.0", "mode": "normal"}))
	put(deviceConfig("canary", "tags.ring = 'canary'", 20, map[string]any{"fw": "2.0"}))
	if err := s.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]map[string]any{
		"d1": {"fw": "1.0", "mode": "normal"},
		"d2": {"fw": "2.0"}, // the higher priority wins the twin; base's content is not applied
		"d3": {},
	} {
		if got := fleet.desired(id); !reflect.DeepEqual(got, want) {
			t.Errorf("%s desired = %v, want %v", id, got, want)
		}
	}
	base, _ := store.Get(ctx, "base")
	if want := map[string]int64{MetricTargeted: 2, MetricApplied: 1}; !reflect.DeepEqual(base.SystemResults, want) {
		t.Errorf("base metrics = %v, want %v", base.SystemResults, want)
	}

	// d2 leaves the canary ring: canary's content goes, base takes the twin.
	fleet.setTags("d2", map[string]any{"env": "prod"})
	if err := s.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := fleet.desired("d2"), map[string]any{"fw": "1.0", "mode": "normal"}; !reflect.DeepEqual(got, want) {
		t.Errorf("d2 after leaving canary = %v, want %v", got, want)
	}

	// d1 leaves prod: base's content is taken back.
	fleet.setTags("d1", map[string]any{"env": "lab"})
	if err := s.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fleet.desired("d1"); len(got) != 0 {
		t.Errorf("d1 after leaving prod = %v, want nothing", got)
	}

	// Deleting base takes its content off d2 at once.
	if err := s.Delete(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if got := fleet.desired("d2"); len(got) != 0 {
		t.Errorf("d2 after delete = %v, want nothing", got)
	}
	if a, _ := store.Applied(ctx); len(a) != 0 {
		t.Errorf("applied after delete = %v", a)
	}
}

func TestEvaluateCustomMetrics(t *testing.T) {
	ctx := context.Background()
	fleet := newFleet(map[string]map[string]any{"d1": {"env": "prod"}, "d2": {"env": "prod"}})
	s, store := newTestService(t, fleet)
	c := deviceConfig("c", "tags.env = 'prod'", 1, map[string]any{"x": 1.0})
	c.MetricQueries = map[string]string{"hasX": "SELECT deviceId FROM devices WHERE properties.desired.x = 1", "none": "SELECT deviceId FROM devices WHERE tags.env = 'x'"}
	if _, _, err := s.Put(ctx, c, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := store.Get(ctx, "c")
	if want := map[string]int64{"hasX": 2, "none": 0}; !reflect.DeepEqual(got.MetricResults, want) {
		t.Fatalf("custom metrics = %v, want %v", got.MetricResults, want)
	}
}

func TestPutRules(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, newFleet(nil))
	c := deviceConfig("c1", "", 1, map[string]any{"x": 1.0})
	out, created, err := s.Put(ctx, c, "")
	if err != nil || !created || out.ETag != 1 || out.SchemaVersion != "1.0" {
		t.Fatalf("create = %+v, %v, %v", out, created, err)
	}
	tests := []struct {
		name    string
		ifMatch string
		edit    func(*Configuration)
		code    iothub.Code
	}{
		{"create again", "", func(*Configuration) {}, iothub.ConfigurationAlreadyExists},
		{"stale etag", `"` + FormatETag(7) + `"`, func(*Configuration) {}, iothub.PreconditionFailed},
		{"content is immutable", "*", func(c *Configuration) {
			c.Content.DeviceContent = map[string]any{"properties.desired.y": 1.0}
		}, iothub.CannotModifyImmutableConfigurationContent},
		{"bad id", "", func(c *Configuration) { c.ID = "Bad" }, iothub.ArgumentInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := deviceConfig("c1", "", 1, map[string]any{"x": 1.0})
			tt.edit(c)
			if _, _, err := s.Put(ctx, c, tt.ifMatch); iothub.CodeOf(err) != tt.code {
				t.Fatalf("err = %v, want %d", err, tt.code)
			}
		})
	}
	upd := deviceConfig("c1", "tags.a = 1", 9, map[string]any{"x": 1.0})
	out, created, err = s.Put(ctx, upd, FormatETag(1))
	if err != nil || created || out.ETag != 2 || out.Priority != 9 || out.TargetCondition != "tags.a = 1" {
		t.Fatalf("update = %+v, %v, %v", out, created, err)
	}
	if err := s.Delete(ctx, "c1", FormatETag(1)); iothub.CodeOf(err) != iothub.PreconditionFailed {
		t.Fatalf("delete with a stale etag = %v", err)
	}
	for _, id := range []string{"c2", "c3"} {
		if _, _, err := s.Put(ctx, deviceConfig(id, "", 1, map[string]any{"x": 1.0}), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Put(ctx, deviceConfig("c4", "", 1, map[string]any{"x": 1.0}), ""); iothub.CodeOf(err) != iothub.IotHubQuotaExceeded {
		t.Fatalf("over the limit = %v", err)
	}
}
