package hub

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/twins"
)

// twinWriter lets the registry write the twin part of bulk and seed
// entries through the twins service, so its rules (limits, $metadata,
// versions, desired notifications) apply unchanged.
type twinWriter struct{ t *twins.Service }

func (w twinWriter) MergeTwin(ctx context.Context, deviceID, moduleID, ifMatch string, tags, desired map[string]any) error {
	_, err := w.t.PatchService(ctx, twins.Key{DeviceID: deviceID, ModuleID: moduleID}, ifMatch, twins.ServicePatch{Tags: tags, Desired: desired})
	return err
}
