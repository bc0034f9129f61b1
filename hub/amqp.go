package hub

import (
	"context"
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/amqphub"
)

// newAMQP builds the AMQP endpoint: the service side (C2D send, feedback,
// file notifications) and the device side (telemetry, C2D, methods, twins),
// over the same services as MQTT and REST, under the same rules
// (devicerules.go).
func (h *Hub) newAMQP(context.Context) (err error) {
	h.amqp, err = amqphub.New(amqphub.Deps{
		Auth: h.auth, C2D: h.C2D, FileNotifications: h.FileUpload, EventHub: h.EventHub,
		Identities: h.directory, Telemetry: deviceRules{h}, Twins: deviceRules{h}, Methods: deviceRules{h}, Admission: deviceRules{h},
	}, amqphub.Config{Hostname: h.cfg.Hostname, DeviceCAs: h.deviceCAs, EventHubPort: h.eventHubPort, Clock: h.clock, Now: h.now, Logger: h.log})
	return err
}

// webSocketHandler serves /$iothub/websocket: upgrades asking for the
// AMQPWSB10 subprotocol go to AMQP, every other one to the MQTT broker,
// before the broker sees them.
func (h *Hub) webSocketHandler() http.Handler {
	mqtt, amqp := h.broker.WebSocketHandler(), h.amqp.WebSocketHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if amqphub.IsAMQP(r) {
			amqp.ServeHTTP(w, r)
			return
		}
		mqtt.ServeHTTP(w, r)
	})
}
