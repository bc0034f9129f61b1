package hub

import "github.com/iothub-emulator/iothub-emulator/httpapi"

// wire connects the domain services to the broker's hub topics and the REST
// API's extra routes. Each capability adds its lines here.
func (h *Hub) wire(api *httpapi.Server) {
	_ = api
}
