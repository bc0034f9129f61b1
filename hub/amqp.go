package hub

import (
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/amqphub"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// openAMQP builds the service-side AMQP endpoint on the C2D service and
// returns the handler of /$iothub/websocket: WebSocket upgrades asking for
// AMQPWSB10 go to AMQP, every other one to the MQTT broker, before the
// broker sees them.
func (h *Hub) openAMQP(auth *sasauth.Authenticator) http.Handler {
	h.amqp = amqphub.New(amqphub.Deps{Auth: auth, C2D: h.C2D}, amqphub.Config{Hostname: h.cfg.Hostname, Logger: h.log})
	mqtt, amqp := h.broker.WebSocketHandler(), h.amqp.WebSocketHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if amqphub.IsAMQP(r) {
			amqp.ServeHTTP(w, r)
			return
		}
		mqtt.ServeHTTP(w, r)
	})
}
