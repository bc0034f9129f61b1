package memstore_test

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/messaging/memstore"
	"github.com/iothub-emulator/iothub-emulator/messaging/messagingtest"
)

func TestConformance(t *testing.T) {
	messagingtest.RunQueue(t, func(t *testing.T) (messaging.Queue, func(string) string) {
		q := memstore.New()
		return q, func(id string) string {
			gen := "gen-" + id
			q.AddDevice(id, gen)
			return gen
		}
	})
}

func TestLogConformance(t *testing.T) {
	messagingtest.RunLog(t, func(*testing.T) messaging.Log { return memstore.NewLog() })
}
