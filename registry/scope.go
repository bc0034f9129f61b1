package registry

import (
	"context"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// edgeScopePrefix starts every IoT Edge device's scope. The hub names an
// edge device's scope after the device and its generation, so a device
// deleted and created again gets a new one.
const edgeScopePrefix = "ms-azure-iot-edge://"

// EdgeScope is the deviceScope the hub assigns to an IoT Edge device.
func EdgeScope(deviceID, generationID string) string {
	return edgeScopePrefix + deviceID + "-" + generationID
}

// resolveScopes applies the hub's gateway rules to a device being created
// (cur nil) or updated (cur its stored form), before it is saved:
//   - an edge device's deviceScope is its own, assigned by the hub; a request
//     may repeat it but not change it;
//   - a leaf device's deviceScope, if set, names an existing edge device's
//     scope, and its parentScopes is that scope;
//   - parentScopes (one entry at most) names an existing edge device: the
//     parent of a nested edge device, or a leaf's deviceScope.
//
// Errors: 400004 ArgumentInvalid for a scope that is not an existing edge
// device's or an attempt to change an edge device's own scope.
func (s *Service) resolveScopes(ctx context.Context, id *Identity, cur *Identity) error {
	if id.IsModule() {
		id.DeviceScope, id.ParentScopes = "", nil
		return nil
	}
	if len(id.ParentScopes) > 1 {
		return iothub.Errorf(iothub.ArgumentInvalid, "parentScopes may hold at most one scope.")
	}
	for _, p := range id.ParentScopes {
		if err := s.checkEdgeScope(ctx, p, id.DeviceID); err != nil {
			return err
		}
	}
	if id.IotEdge {
		own := ""
		if cur != nil && cur.IotEdge && strings.HasPrefix(cur.DeviceScope, edgeScopePrefix+cur.DeviceID+"-") {
			own = cur.DeviceScope
		} else {
			own = EdgeScope(id.DeviceID, id.GenerationID)
		}
		// On create the caller cannot know the generation, so a scope it
		// sends is replaced; afterwards the scope is fixed.
		if cur != nil && id.DeviceScope != "" && id.DeviceScope != own {
			return iothub.Errorf(iothub.ArgumentInvalid, "The deviceScope of IoT Edge device '%s' is assigned by the hub and cannot be changed.", id.DeviceID)
		}
		id.DeviceScope = own
		return nil
	}
	if id.DeviceScope == "" {
		if cur != nil {
			// An update that leaves the scope out keeps the device's.
			id.DeviceScope, id.ParentScopes = cur.DeviceScope, cur.ParentScopes
		}
		return nil
	}
	if err := s.checkEdgeScope(ctx, id.DeviceScope, id.DeviceID); err != nil {
		return err
	}
	if len(id.ParentScopes) == 0 {
		id.ParentScopes = []string{id.DeviceScope}
	} else if id.ParentScopes[0] != id.DeviceScope {
		return iothub.Errorf(iothub.ArgumentInvalid, "A leaf device's parentScopes must be its deviceScope.")
	}
	return nil
}

// checkEdgeScope reports an error unless scope is the scope of an existing
// IoT Edge device other than self.
func (s *Service) checkEdgeScope(ctx context.Context, scope, self string) error {
	bad := iothub.Errorf(iothub.ArgumentInvalid, "The scope '%s' is not the deviceScope of an IoT Edge device in this hub.", scope)
	rest, ok := strings.CutPrefix(scope, edgeScopePrefix)
	if !ok {
		return bad
	}
	dash := strings.LastIndexByte(rest, '-')
	if dash <= 0 || rest[:dash] == self {
		return bad
	}
	parent, err := s.Store.Get(ctx, rest[:dash], "")
	if iothub.Is(err, iothub.DeviceNotFound) {
		return bad
	}
	if err != nil {
		return err
	}
	if !parent.IotEdge || parent.DeviceScope != scope {
		return bad
	}
	return nil
}
