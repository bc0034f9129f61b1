package sqlite_test

import (
	"context"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/messaging/messagingtest"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

func TestC2DQueue_Conformance(t *testing.T) {
	messagingtest.RunQueue(t, func(t *testing.T) (messaging.Queue, func(string) string) {
		db := openDB(t)
		reg := &sqlite.RegistryStore{DB: db}
		return &sqlite.C2DQueue{DB: db}, func(id string) string {
			created, err := reg.Create(context.Background(), &registry.Identity{DeviceID: id, Status: registry.StatusEnabled,
				GenerationID: "gen-" + id, Auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: registry.NewKey(), SecondaryKey: registry.NewKey()}})
			if err != nil {
				t.Fatal(err)
			}
			return created.GenerationID
		}
	})
}

func TestMessageLog_Conformance(t *testing.T) {
	messagingtest.RunLog(t, func(t *testing.T) messaging.Log { return newMessageLog(t, openDB(t)) })
}
