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
