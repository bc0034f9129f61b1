package sqlite_test

import (
	"context"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/twins/twinstest"
)

func TestTwinStore_Conformance(t *testing.T) {
	twinstest.Run(t, func(t *testing.T) (twins.Store, func(twins.Key)) {
		db := openDB(t)
		s := sqlite.NewTwinStore(db)
		t.Cleanup(s.Close)
		reg := &sqlite.RegistryStore{DB: db}
		return s, func(k twins.Key) {
			id := &registry.Identity{DeviceID: k.DeviceID, ModuleID: k.ModuleID, Status: registry.StatusEnabled,
				Auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: registry.NewKey(), SecondaryKey: registry.NewKey()}}
			if _, err := reg.Create(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
	})
}
