package amqphub

import (
	"context"
	"errors"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// DeviceIdentities is what the device side needs from the registry: the
// identity a device connects as, and its connection state.
type DeviceIdentities interface {
	Get(ctx context.Context, deviceID, moduleID string) (*registry.Identity, error)
	SetConnection(ctx context.Context, deviceID, moduleID, state, modelID string) error
}

// The server implements what the domain needs from a device connection
// (methods.Transport, twins.Notifier, messaging.Link) over AMQP, as the MQTT
// broker does over MQTT; the hub asks each transport in turn. None waits on
// a socket: each queues on the device link's bounded outbox.

// MethodTransport reaches AMQP devices for direct methods: a device is
// online for methods when its method-request link is attached.
func (s *Server) MethodTransport() methods.Transport { return amqpMethods{s} }

// DesiredNotifier sends desired-property changes to AMQP devices that asked
// for them.
func (s *Server) DesiredNotifier() twins.Notifier { return amqpDesired{s} }

// C2DLink delivers C2D messages to devices with an attached C2D link.
func (s *Server) C2DLink() messaging.Link { return amqpC2D{s} }

type amqpMethods struct{ s *Server }

func (m amqpMethods) IsOnline(deviceID, moduleID string) bool {
	sess := m.s.devices.get(devKey{deviceID, moduleID})
	if sess == nil {
		return false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.methods != nil
}

func (m amqpMethods) SendMethod(deviceID, moduleID string, req methods.DeviceRequest) error {
	sess := m.s.devices.get(devKey{deviceID, moduleID})
	if sess == nil {
		return iothub.Errorf(iothub.DeviceNotOnline, "The device %s is not connected over AMQP.", devKey{deviceID, moduleID})
	}
	if err := sess.sendMethod(req); err != nil {
		if errors.Is(err, errNoLink) {
			return iothub.Errorf(iothub.DeviceNotOnline, "The device %s has no method link.", devKey{deviceID, moduleID})
		}
		return iothub.Errorf(iothub.ThrottlingException, "Too many method requests wait for %s.", devKey{deviceID, moduleID})
	}
	return nil
}

type amqpDesired struct{ s *Server }

func (d amqpDesired) DesiredChanged(key twins.Key, patch map[string]any, version int64) {
	if sess := d.s.devices.get(devKey{key.DeviceID, key.ModuleID}); sess != nil {
		sess.desiredChanged(patch, version)
	}
}

type amqpC2D struct{ s *Server }

func (c amqpC2D) Ready(deviceID string) bool {
	sess := c.s.devices.get(devKey{device: deviceID})
	if sess == nil {
		return false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.c2d != nil && !sess.c2d.closed
}

func (c amqpC2D) Deliver(m *messaging.C2DMessage) error {
	sess := c.s.devices.get(devKey{device: m.DeviceID})
	if sess == nil {
		return errNoLink
	}
	return sess.deliverC2D(m)
}
