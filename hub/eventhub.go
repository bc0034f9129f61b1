package hub

import (
	"context"
	"net"
	"strconv"

	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/httpapi"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// newEventHub serves the telemetry log as the Event Hub-compatible endpoint,
// named after the hub; its AMQP nodes live in the AMQP transport.
func (h *Hub) newEventHub(context.Context) (err error) {
	h.EventHub, err = eventhub.New(eventhub.Deps{Telemetry: h.Telemetry, Groups: &sqlite.ConsumerGroupStore{DB: h.db}}, eventhub.Config{
		Name: h.HubName(), Partitions: h.cfg.Partitions, Now: h.now, Logger: h.log.With("component", "eventhub"),
	})
	return err
}

// HubName is the hub's name: the first label of its host name.
func (h *Hub) HubName() string {
	for i, c := range h.cfg.Hostname {
		if c == '.' {
			return h.cfg.Hostname[:i]
		}
	}
	return h.cfg.Hostname
}

// eventHubPort is the AMQPS listener's port, where messages/events redirects.
func (h *Hub) eventHubPort() int { return listenerPort(h.Addr("amqps"), 5671) }

func listenerPort(addr string, fallback int) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fallback
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return fallback
	}
	return n
}

// EventHubConnectionString is the Event Hub-compatible endpoint's connection
// string over TLS, signed by the iothubowner policy as the portal shows it;
// "" when the AMQPS listener is off. The port is named only when it is not
// 5671.
func (h *Hub) EventHubConnectionString() string {
	if h.Addr("amqps") == "" {
		return ""
	}
	return h.eventHubConnectionString(h.Addr("amqps"), 5671)
}

// EventHubDevelopmentConnectionString is the same for the plain listener, with
// UseDevelopmentEmulator=true; "" when that listener is off.
func (h *Hub) EventHubDevelopmentConnectionString() string {
	if h.Addr("amqp") == "" {
		return ""
	}
	return h.eventHubConnectionString(h.Addr("amqp"), 5672) + ";UseDevelopmentEmulator=true"
}

func (h *Hub) eventHubConnectionString(addr string, defaultPort int) string {
	host := h.cfg.Hostname
	if p := listenerPort(addr, defaultPort); p != defaultPort {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	key := ""
	for _, p := range h.policies {
		if p.Name == "iothubowner" {
			key = p.PrimaryKey
		}
	}
	return "Endpoint=sb://" + host + "/;SharedAccessKeyName=iothubowner;SharedAccessKey=" + key + ";EntityPath=" + h.EventHub.Name()
}

// eventHubInfo is the endpoint as GET /_emulator/eventhub shows it.
type eventHubInfo struct{ h *Hub }

func (e eventHubInfo) Info() httpapi.EventHubInfo {
	return httpapi.EventHubInfo{
		Name: e.h.EventHub.Name(), PartitionCount: e.h.EventHub.PartitionCount(),
		ConnectionString:            e.h.EventHubConnectionString(),
		DevelopmentConnectionString: e.h.EventHubDevelopmentConnectionString(),
	}
}

func (e eventHubInfo) ConsumerGroups() []string { return e.h.EventHub.ConsumerGroups() }

func (e eventHubInfo) CreateConsumerGroup(ctx context.Context, name string) (bool, error) {
	return e.h.EventHub.CreateConsumerGroup(ctx, name)
}
