package registry

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// The rules every device transport (MQTT, AMQP) applies when a device or
// module connects; a refusal is 401003 IotHubUnauthorizedAccess, which the
// transports turn into their "not authorized" answer.

// Getter reads an identity.
type Getter interface {
	Get(ctx context.Context, deviceID, moduleID string) (*Identity, error)
}

func refusal(format string, args ...any) error {
	return iothub.Errorf(iothub.IotHubUnauthorizedAccess, format, args...)
}

// Connectable returns the identity a device or module connects as: it must
// exist and be enabled, and a module's device must be enabled too (a
// disabled device takes its modules with it).
func Connectable(ctx context.Context, ids Getter, deviceID, moduleID string) (*Identity, error) {
	id, err := ids.Get(ctx, deviceID, moduleID)
	if err != nil {
		return nil, err
	}
	if id.Status != StatusEnabled {
		path := deviceID
		if moduleID != "" {
			path += "/" + moduleID
		}
		return nil, refusal("%s is disabled", path)
	}
	if moduleID != "" {
		parent, err := ids.Get(ctx, deviceID, "")
		if err != nil {
			return nil, err
		}
		if parent.Status != StatusEnabled {
			return nil, refusal("device %s is disabled", deviceID)
		}
	}
	return id, nil
}
