package sqlite_test

import (
	"context"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/provisioning/storetest"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

func TestProvisioningStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) provisioning.Store {
		db, err := sqlite.Open(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return &sqlite.ProvisioningStore{DB: db}
	})
}
