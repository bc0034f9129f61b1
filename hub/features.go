package hub

import (
	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/httpapi"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
)

// openConfigurations builds automatic device management over the twins
// service and serves its routes; Open starts its loop with the listeners.
func (h *Hub) openConfigurations(api *httpapi.Server) {
	h.Configurations = configurations.NewService(configurations.Deps{
		Store: &sqlite.ConfigurationStore{DB: h.db}, Targets: sqlite.ConfigurationTargets{DB: h.db},
		Twins: h.Twins, Log: h.log.With("component", "configurations"),
	}, h.cfg.Configurations)
	api.AddConfigurationRoutes(h.Configurations)
}

// openDigitalTwins serves IoT Plug and Play over the twins service and the
// direct-method invoker (h.wire builds the invoker first).
func (h *Hub) openDigitalTwins(api *httpapi.Server) {
	h.DigitalTwins = digitaltwins.NewService(digitaltwins.Deps{Twins: h.Twins, Methods: h.Methods}, digitaltwins.Config{})
	api.AddDigitalTwinRoutes(h.DigitalTwins)
}
