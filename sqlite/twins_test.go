package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Many concurrent updates share transactions; each still gets its own
// outcome, and no update is lost.
func TestTwinStore_GroupCommit(t *testing.T) {
	db := openTestDB(t, t.TempDir()+"/hub.db")
	seedTwins(t, db, 20)
	s := NewTwinStore(db)
	defer s.Close()
	ctx := context.Background()

	refused := errors.New("refused")
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := twins.Key{DeviceID: fmt.Sprintf("dev%06d", i)}
				_, err := s.Update(ctx, key, func(tw *twins.Twin) error {
					if w == 7 {
						return refused // one writer's updates are refused by their fn
					}
					tw.Reported.Data[fmt.Sprintf("w%d", w)] = int64(w)
					tw.Version++
					return nil
				})
				if w == 7 && !errors.Is(err, refused) {
					t.Errorf("refused update: err = %v", err)
				} else if w != 7 && err != nil {
					t.Errorf("update: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	for i := 0; i < 20; i++ {
		tw, err := s.Get(ctx, twins.Key{DeviceID: fmt.Sprintf("dev%06d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if tw.Version != 3+7 {
			t.Errorf("dev%06d: version %d, want 10 (7 applied updates)", i, tw.Version)
		}
		for w := 0; w < 7; w++ {
			if _, ok := tw.Reported.Data[fmt.Sprintf("w%d", w)]; !ok {
				t.Errorf("dev%06d lost w%d", i, w)
			}
		}
		if _, ok := tw.Reported.Data["w7"]; ok {
			t.Errorf("dev%06d: a refused update was saved", i)
		}
	}
	if _, err := s.Update(ctx, twins.Key{DeviceID: "ghost"}, func(*twins.Twin) error { return nil }); iothub.CodeOf(err) != iothub.DeviceNotFound {
		t.Errorf("missing twin: %v", err)
	}
	s.Close()
	if _, err := s.Update(ctx, twins.Key{DeviceID: "dev000001"}, func(*twins.Twin) error { return nil }); !errors.Is(err, errStoreClosed) {
		t.Errorf("update after Close: %v", err)
	}
}

// UpdateMany reads the batch's twins with one query: every existing key gets
// its own twin, a missing one 404, and a key listed twice sees its first
// update.
func TestTwinStore_UpdateMany(t *testing.T) {
	db := openTestDB(t, t.TempDir()+"/hub.db")
	seedTwins(t, db, 5)
	s := NewTwinStore(db)
	defer s.Close()
	ctx := context.Background()
	keys := []twins.Key{{DeviceID: "dev000003"}, {DeviceID: "ghost"}, {DeviceID: "dev000001"}, {DeviceID: "dev000003"}, {DeviceID: "dev000001", ModuleID: "m"}}
	before := map[string]*twins.Twin{}
	for _, id := range []string{"dev000001", "dev000003"} {
		tw, err := s.Get(ctx, twins.Key{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		before[id] = tw
	}
	updated, errs, err := s.UpdateMany(ctx, keys, func(tw *twins.Twin) error {
		if tw.Desired.Data == nil || tw.Tags["building"] == nil {
			return fmt.Errorf("%v: service side not loaded: %+v", tw.Key, tw)
		}
		tw.Desired.Data["n"] = tw.Desired.Version
		tw.Desired.Version++
		tw.Version++
		tw.ETag++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []iothub.Code{0, iothub.DeviceNotFound, 0, 0, iothub.ModuleNotFound} {
		if got := iothub.CodeOf(errs[i]); (errs[i] == nil) != (want == 0) || errs[i] != nil && got != want {
			t.Errorf("key %v: %v, want %v", keys[i], errs[i], want)
		}
	}
	if len(updated) != 3 {
		t.Fatalf("%d updated, want 3", len(updated))
	}
	for id, times := range map[string]int64{"dev000001": 1, "dev000003": 2} {
		got, err := s.Get(ctx, twins.Key{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		b := before[id]
		if got.Desired.Version != b.Desired.Version+times || got.Version != b.Version+times || got.ETag != b.ETag+times ||
			got.Desired.Data["n"] != b.Desired.Version+times-1 || got.Tags["building"] != b.Tags["building"] || got.Reported.Data["fw"] != b.Reported.Data["fw"] {
			t.Errorf("%s after %d updates: %+v (before %+v)", id, times, got, b)
		}
	}
}

// The batch read looks each key up by primary key, not a scan of identities.
func TestTwinStore_BatchReadPlan(t *testing.T) {
	db := openTestDB(t, "")
	rows, err := db.Reader().Query(`EXPLAIN QUERY PLAN `+selectServiceSidesSQL, `[["a",""]]`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if len(plan) == 0 || plan[0] != "SEARCH identities USING PRIMARY KEY (device_id=? AND module_id=?)" {
		t.Errorf("plan %q", plan)
	}
}
