package memqueue_test

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/messaging/memqueue"
	"github.com/iothub-emulator/iothub-emulator/messaging/messagingtest"
)

func TestConformance(t *testing.T) {
	messagingtest.RunQueue(t, func(t *testing.T) (messaging.Queue, func(string) string) {
		q := memqueue.New()
		return q, func(id string) string {
			gen := "gen-" + id
			q.AddDevice(id, gen)
			return gen
		}
	})
}
