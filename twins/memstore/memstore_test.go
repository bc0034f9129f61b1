package memstore_test

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/twins/memstore"
	"github.com/iothub-emulator/iothub-emulator/twins/twinstest"
)

func TestConformance(t *testing.T) {
	twinstest.Run(t, func(t *testing.T) (twins.Store, func(twins.Key)) {
		s := memstore.New()
		return s, func(k twins.Key) { s.Put(twins.NewTwin(k, twinstest.Created)) }
	})
}
