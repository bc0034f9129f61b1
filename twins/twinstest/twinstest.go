// Package twinstest is the conformance suite of twins.Store: every
// implementation (twins/memstore, the SQLite store) runs it, so the Service
// can rely on the interface's contract whatever stores it.
package twinstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Factory returns an empty store and a function that creates a twin (with
// its identity, as the registry does) for a device or module key. A module's
// device is created first by the suite.
type Factory func(t *testing.T) (store twins.Store, create func(key twins.Key))

// Run runs the suite over the stores newStore makes.
func Run(t *testing.T, newStore Factory) {
	ctx := context.Background()
	dev := twins.Key{DeviceID: "dev1"}
	mod := twins.Key{DeviceID: "dev1", ModuleID: "m1"}
	fresh := func(t *testing.T) twins.Store {
		t.Helper()
		s, create := newStore(t)
		create(dev)
		create(mod)
		return s
	}

	t.Run("a created twin is the hub's fresh twin", func(t *testing.T) {
		s := fresh(t)
		for _, k := range []twins.Key{dev, mod} {
			tw, err := s.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if tw.Key != k || tw.Tags != nil || tw.Desired.Version != 1 || tw.Reported.Version != 1 ||
				len(tw.Desired.Data) != 0 || len(tw.Reported.Data) != 0 {
				t.Errorf("fresh twin %v: %+v", k, tw)
			}
		}
	})

	t.Run("not found", func(t *testing.T) {
		s := fresh(t)
		for _, tc := range []struct {
			key  twins.Key
			want []iothub.Code
		}{
			{twins.Key{DeviceID: "ghost"}, []iothub.Code{iothub.DeviceNotFound}},
			{twins.Key{DeviceID: "dev1", ModuleID: "ghost"}, []iothub.Code{iothub.ModuleNotFound}},
			// A store that cannot tell may answer 404010 for any module key.
			{twins.Key{DeviceID: "ghost", ModuleID: "m1"}, []iothub.Code{iothub.DeviceNotFound, iothub.ModuleNotFound}},
		} {
			_, gerr := s.Get(ctx, tc.key)
			called := false
			_, uerr := s.Update(ctx, tc.key, func(*twins.Twin) error { called = true; return nil })
			for name, err := range map[string]error{"Get": gerr, "Update": uerr} {
				if !oneOf(iothub.CodeOf(err), tc.want) {
					t.Errorf("%s %v = %v, want one of %v", name, tc.key, err, tc.want)
				}
			}
			if called {
				t.Errorf("Update %v called fn for a missing twin", tc.key)
			}
		}
	})

	t.Run("Update saves the twin's own parts and returns them", func(t *testing.T) {
		s := fresh(t)
		big := int64(1)<<53 + 1 // beyond float64: must come back exact
		saved, err := s.Update(ctx, mod, func(tw *twins.Twin) error {
			tw.Tags = map[string]any{"site": "b1", "deep": map[string]any{"n": int64(3)}}
			tw.Desired.Data["interval"] = big
			tw.Desired.Metadata["interval"] = map[string]any{"$lastUpdated": "2024-05-28T11:04:39.4422737Z", "$lastUpdatedVersion": int64(2)}
			tw.Desired.Version = 2
			tw.Reported.Data["fw"] = "1.0"
			tw.Reported.Data["ratio"] = 0.5
			tw.Reported.Version = 2
			tw.Version, tw.ETag = tw.Version+2, tw.ETag+1
			tw.Status = "disabled" // identity: not the store's to save
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, mod)
		if err != nil {
			t.Fatal(err)
		}
		for name, tw := range map[string]*twins.Twin{"returned": saved, "read back": got} {
			if tw.Tags["site"] != "b1" || tw.Tags["deep"].(map[string]any)["n"] != int64(3) ||
				tw.Desired.Data["interval"] != big || tw.Desired.Version != 2 ||
				tw.Reported.Data["fw"] != "1.0" || tw.Reported.Data["ratio"] != 0.5 || tw.Reported.Version != 2 {
				t.Errorf("%s: %+v", name, tw)
			}
			meta, _ := tw.Desired.Metadata["interval"].(map[string]any)
			if meta["$lastUpdatedVersion"] != int64(2) {
				t.Errorf("%s: desired $metadata %v", name, tw.Desired.Metadata)
			}
		}
		if got.Version != saved.Version || got.ETag != saved.ETag || got.ETag == 0 {
			t.Errorf("counters: returned %d/%d, read back %d/%d", saved.Version, saved.ETag, got.Version, got.ETag)
		}
		if got.Status == "disabled" {
			t.Errorf("Update saved an identity field")
		}
		if other, _ := s.Get(ctx, dev); other.Tags != nil || len(other.Reported.Data) != 0 {
			t.Errorf("the device twin changed with its module's: %+v", other)
		}
	})

	t.Run("written empty tags stay present", func(t *testing.T) {
		s := fresh(t)
		if _, err := s.Update(ctx, dev, func(tw *twins.Twin) error { tw.Tags = map[string]any{}; return nil }); err != nil {
			t.Fatal(err)
		}
		if tw, _ := s.Get(ctx, dev); tw.Tags == nil {
			t.Errorf("tags written empty came back absent")
		}
	})

	t.Run("a refusing fn saves nothing and its error comes back unchanged", func(t *testing.T) {
		s := fresh(t)
		before, _ := s.Get(ctx, dev)
		refused := errors.New("refused")
		_, err := s.Update(ctx, dev, func(tw *twins.Twin) error {
			tw.Reported.Data["x"] = "y"
			tw.Version++
			return refused
		})
		if !errors.Is(err, refused) {
			t.Fatalf("Update = %v, want fn's error", err)
		}
		after, _ := s.Get(ctx, dev)
		if after.Version != before.Version || len(after.Reported.Data) != 0 {
			t.Errorf("a refused update was saved: %+v", after)
		}
	})

	t.Run("results do not alias the store", func(t *testing.T) {
		s := fresh(t)
		tw, _ := s.Get(ctx, dev)
		tw.Desired.Data["leak"] = true
		kept := map[string]any{}
		saved, _ := s.Update(ctx, dev, func(tw *twins.Twin) error { tw.Tags = kept; return nil })
		kept["late"] = 1 // fn's map, changed after Update returned
		saved.Reported.Data["leak"] = true
		again, _ := s.Get(ctx, dev)
		if _, ok := again.Desired.Data["leak"]; ok {
			t.Errorf("changing a Get result changed the store")
		}
		if _, ok := again.Reported.Data["leak"]; ok {
			t.Errorf("changing an Update result changed the store")
		}
		if _, ok := again.Tags["late"]; ok {
			t.Errorf("the store kept fn's map")
		}
	})

	t.Run("concurrent updates of one twin are serialized", func(t *testing.T) {
		s := fresh(t)
		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Update(ctx, dev, func(tw *twins.Twin) error {
					tw.Reported.Data[fmt.Sprintf("k%d", i)] = int64(i)
					tw.Version++
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		tw, _ := s.Get(ctx, dev)
		if len(tw.Reported.Data) != n {
			t.Errorf("%d of %d concurrent updates kept", len(tw.Reported.Data), n)
		}
	})

	t.Run("UpdateReported sees and saves only the device side", func(t *testing.T) {
		s := fresh(t)
		rs, ok := s.(twins.ReportedStore)
		if !ok {
			t.Skip("the store has no UpdateReported; the Service falls back to Update")
		}
		before, err := s.Update(ctx, mod, func(tw *twins.Twin) error {
			tw.Tags = map[string]any{"site": "b1"}
			tw.Desired.Data["interval"] = int64(5)
			tw.Reported.Data["old"] = "x"
			tw.Reported.Metadata["old"] = map[string]any{"$lastUpdated": "2024-05-28T11:04:39.4422737Z"}
			tw.Version, tw.ETag = tw.Version+1, tw.ETag+1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		big := int64(1)<<53 + 1
		saved, err := rs.UpdateReported(ctx, mod, func(tw *twins.Twin) error {
			if tw.Key != mod || tw.Tags != nil || len(tw.Desired.Data) != 0 || tw.ETag != 0 {
				t.Errorf("fn saw more than the device side: %+v", tw)
			}
			if tw.Reported.Data["old"] != "x" || tw.Reported.Version != before.Reported.Version || tw.Version != before.Version {
				t.Errorf("fn saw reported %+v, version %d; want %+v, %d", tw.Reported, tw.Version, before.Reported, before.Version)
			}
			tw.Reported.Data["fw"] = big
			tw.Reported.Metadata["fw"] = map[string]any{"$lastUpdated": "2024-05-28T11:04:40Z"}
			tw.Reported.Version++
			tw.Version++
			tw.Tags, tw.ETag = map[string]any{"lost": true}, 99 // not the device's to save
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, mod)
		for name, tw := range map[string]*twins.Twin{"returned": saved, "read back": got} {
			if tw.Reported.Data["fw"] != big || tw.Reported.Data["old"] != "x" || tw.Reported.Version != before.Reported.Version+1 ||
				tw.Version != before.Version+1 || tw.Reported.Metadata["fw"] == nil {
				t.Errorf("%s: %+v", name, tw)
			}
		}
		if got.Tags["site"] != "b1" || got.Tags["lost"] != nil || got.Desired.Data["interval"] != int64(5) || got.ETag != before.ETag {
			t.Errorf("UpdateReported changed the service side: %+v", got)
		}
		refused := errors.New("refused")
		if _, err := rs.UpdateReported(ctx, mod, func(tw *twins.Twin) error { tw.Version++; return refused }); !errors.Is(err, refused) {
			t.Errorf("refusing fn: %v", err)
		}
		called := false
		_, err = rs.UpdateReported(ctx, twins.Key{DeviceID: "ghost"}, func(*twins.Twin) error { called = true; return nil })
		if iothub.CodeOf(err) != iothub.DeviceNotFound || called {
			t.Errorf("missing twin: %v, fn called %v", err, called)
		}
		if again, _ := s.Get(ctx, mod); again.Version != got.Version {
			t.Errorf("a refused UpdateReported was saved")
		}
	})

	t.Run("an ended context", func(t *testing.T) {
		s := fresh(t)
		ended, cancel := context.WithCancel(ctx)
		cancel()
		before, _ := s.Get(ctx, dev)
		_, err := s.Update(ended, dev, func(tw *twins.Twin) error { tw.Version += 100; return nil })
		after, _ := s.Get(ctx, dev)
		// A store may run an update it accepted before noticing; if it says
		// the context ended, nothing may be saved.
		if err != nil && after.Version != before.Version {
			t.Errorf("Update = %v but saved version %d", err, after.Version)
		}
		if err == nil && after.Version != before.Version+100 {
			t.Errorf("Update succeeded but saved version %d", after.Version)
		}
	})
}

func oneOf(c iothub.Code, codes []iothub.Code) bool {
	for _, x := range codes {
		if c == x {
			return true
		}
	}
	return false
}

// Created is the time a Factory may stamp on fresh twins.
var Created = time.Date(2024, 5, 28, 11, 0, 0, 0, time.UTC)
