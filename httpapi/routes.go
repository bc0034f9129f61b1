package httpapi

import (
	"net/http"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// route is one entry of the route table.
type route struct {
	method  string // anyMethod: every method
	path    string // gorilla/mux pattern, matched on the escaped path
	handler http.Handler
}

const anyMethod = ""

// routes is every route the emulator serves over HTTP, in one table. Each
// entry names who may call it through its wrapper:
//   - s.hub(right, h): the hub's service API: api-version required, a
//     service SAS token whose policy grants right;
//   - s.device(h): the hub's device API: api-version required, a SAS token
//     of the device or module in the path (or a DeviceConnect policy);
//   - s.emulator(right, h): emulator-only endpoints under /_emulator/, not
//     part of the hub's API: a service SAS token, no api-version;
//   - open(h): no authentication (health, the CA certificate, and the
//     WebSocket upgrade, which the broker authenticates over MQTT).
//
// Order matters where two patterns match one path: mux takes the first
// route whose pattern and method match (so /jobs/v2/query comes before
// /jobs/v2/{id}). Adding a route is adding a line.
func (s *Server) routes() []route {
	const (
		regRead  = sasauth.RegistryRead
		regWrite = sasauth.RegistryWrite
		service  = sasauth.ServiceConnect
	)
	return []route{
		// MQTT over WebSockets (the broker's handler).
		{anyMethod, "/$iothub/websocket", s.WebSocket},

		// Emulator-only endpoints without authentication.
		{http.MethodGet, "/_emulator/health", open(s.health)},
		{http.MethodGet, "/_emulator/ca.pem", open(s.caPEM)},

		// Identity registry (devices.go, devices_bulk.go).
		{http.MethodGet, "/devices", s.hub(regRead, s.listDevices)},
		{http.MethodGet, "/devices/", s.hub(regRead, s.listDevices)}, // Node sends the trailing slash
		{http.MethodPost, "/devices", s.hub(regWrite, s.bulkDevices)},
		{http.MethodGet, "/devices/{id}", s.hub(regRead, s.getDevice)},
		{http.MethodPut, "/devices/{id}", s.hub(regWrite, s.putDevice)},
		{http.MethodDelete, "/devices/{id}", s.hub(regWrite, s.deleteDevice)},
		{http.MethodGet, "/devices/{id}/modules", s.hub(regRead, s.listModules)},
		{http.MethodGet, "/devices/{id}/modules/{mid}", s.hub(regRead, s.getModule)},
		{http.MethodPut, "/devices/{id}/modules/{mid}", s.hub(regWrite, s.putModule)},
		{http.MethodDelete, "/devices/{id}/modules/{mid}", s.hub(regWrite, s.deleteModule)},
		{http.MethodGet, "/statistics/devices", s.hub(regRead, s.deviceStats)},
		{http.MethodGet, "/statistics/service", s.hub(service, s.serviceStats)},

		// Device and module twins (twins.go).
		{http.MethodGet, "/twins/{id}", s.hub(service, s.getTwin)},
		{http.MethodPatch, "/twins/{id}", s.hub(service, s.patchTwin)},
		{http.MethodPut, "/twins/{id}", s.hub(service, s.replaceTwin)},
		{http.MethodGet, "/twins/{id}/modules/{mid}", s.hub(service, s.getTwin)},
		{http.MethodPatch, "/twins/{id}/modules/{mid}", s.hub(service, s.patchTwin)},
		{http.MethodPut, "/twins/{id}/modules/{mid}", s.hub(service, s.replaceTwin)},

		// Query (query.go).
		{http.MethodPost, "/devices/query", s.hub(service, s.queryDevices)},

		// Jobs (jobs.go).
		{http.MethodGet, "/jobs/v2/query", s.hub(service, s.queryJobs)},
		{http.MethodPut, "/jobs/v2/{id}", s.hub(service, s.putJob)},
		{http.MethodGet, "/jobs/v2/{id}", s.hub(service, s.getJob)},
		{http.MethodPost, "/jobs/v2/{id}/cancel", s.hub(service, s.cancelJob)},

		// Device messaging API (messages.go, digest §3.13). The SDKs
		// disagree on the case: Node and C write devicebound, the docs
		// deviceBound.
		{http.MethodPost, "/devices/{id}/messages/events", s.device(s.deviceSendEvent)},
		{http.MethodPost, "/devices/{id}/modules/{mid}/messages/events", s.device(s.deviceSendEvent)},
		{http.MethodGet, "/devices/{id}/messages/deviceBound", s.device(s.deviceReceive)},
		{http.MethodDelete, "/devices/{id}/messages/deviceBound/{lockToken}", s.device(s.deviceSettle)},
		{http.MethodPost, "/devices/{id}/messages/deviceBound/{lockToken}/abandon", s.device(s.deviceAbandon)},
		{http.MethodGet, "/devices/{id}/messages/devicebound", s.device(s.deviceReceive)},
		{http.MethodDelete, "/devices/{id}/messages/devicebound/{lockToken}", s.device(s.deviceSettle)},
		{http.MethodPost, "/devices/{id}/messages/devicebound/{lockToken}/abandon", s.device(s.deviceAbandon)},
		// C2D queue purge (messages.go).
		{http.MethodDelete, "/devices/{id}/commands", s.hub(service, s.purgeCommands)},

		// Emulator-only message endpoints (messages.go): stand-ins for the
		// AMQP Event Hub endpoint and the service's C2D send and feedback.
		{http.MethodGet, "/_emulator/messages", s.emulator(service, s.listMessages)},
		{http.MethodGet, "/_emulator/messages/stream", s.emulator(service, s.streamMessages)},
		{http.MethodPost, "/_emulator/devices/{id}/messages/devicebound", s.emulator(service, s.sendC2D)},
		{http.MethodGet, "/_emulator/devices/{id}/messages/devicebound", s.emulator(service, s.listC2D)},
		{http.MethodGet, "/_emulator/feedback", s.emulator(service, s.listFeedback)},

		// The Event Hub-compatible endpoint's settings and consumer groups,
		// emulator-only (eventhub.go).
		{http.MethodGet, "/_emulator/eventhub", s.emulator(service, s.getEventHub)},
		{http.MethodGet, "/_emulator/eventhub/consumergroups", s.emulator(service, s.listConsumerGroups)},
		{http.MethodPut, "/_emulator/eventhub/consumergroups/{name}", s.emulator(service, s.putConsumerGroup)},

		// Emulator-only live streams for the dashboard (live.go) and
		// simulated devices (simulations.go). Starting a simulation creates
		// devices and reads their keys, hence RegistryWrite.
		{http.MethodGet, "/_emulator/connections/stream", s.emulator(regRead, s.streamConnections)},
		{http.MethodGet, "/_emulator/jobs/stream", s.emulator(service, s.streamJobs)},
		{http.MethodGet, "/_emulator/simulations", s.emulator(regRead, s.listSimulations)},
		{http.MethodPost, "/_emulator/simulations", s.emulator(regWrite, s.startSimulation)},
		{http.MethodGet, "/_emulator/simulations/{id}", s.emulator(regRead, s.getSimulation)},
		{http.MethodDelete, "/_emulator/simulations/{id}", s.emulator(regWrite, s.stopSimulation)},

		// Direct methods (methods.go).
		{http.MethodPost, "/twins/{id}/methods", s.hub(service, s.invokeMethod)},
		{http.MethodPost, "/twins/{id}/modules/{mid}/methods", s.hub(service, s.invokeMethod)},

		// Automatic device and module management (configurations.go);
		// testQueries before {id}, which would match it too.
		{http.MethodPost, "/configurations/testQueries", s.hub(regRead, s.testConfigurationQueries)},
		{http.MethodGet, "/configurations", s.hub(regRead, s.listConfigurations)},
		{http.MethodGet, "/configurations/", s.hub(regRead, s.listConfigurations)},
		{http.MethodGet, "/configurations/{id}", s.hub(regRead, s.getConfiguration)},
		{http.MethodPut, "/configurations/{id}", s.hub(regWrite, s.putConfiguration)},
		{http.MethodDelete, "/configurations/{id}", s.hub(regWrite, s.deleteConfiguration)},
		{http.MethodPost, "/devices/{id}/applyConfigurationContent", s.hub(regWrite, s.applyConfigurationContent)},

		// IoT Plug and Play digital twins (digitaltwins.go): commands travel
		// as direct methods named component*command.
		{http.MethodGet, "/digitaltwins/{id}", s.hub(service, s.getDigitalTwin)},
		{http.MethodPatch, "/digitaltwins/{id}", s.hub(service, s.patchDigitalTwin)},
		{http.MethodPost, "/digitaltwins/{id}/commands/{command}", s.hub(service, s.invokeDigitalTwinCommand)},
		{http.MethodPost, "/digitaltwins/{id}/components/{component}/commands/{command}", s.hub(service, s.invokeDigitalTwinCommand)},

		// Device file upload (fileupload.go); the Node SDK puts the
		// correlation id in the notification's path, the others in its body.
		{http.MethodPost, "/devices/{id}/files", s.device(s.startFileUpload)},
		{http.MethodPost, "/devices/{id}/files/notifications", s.device(s.completeFileUpload)},
		{http.MethodPost, "/devices/{id}/files/notifications/{correlationId}", s.device(s.completeFileUpload)},
		// Emulator-only stand-in for the AMQP filenotifications node.
		{http.MethodGet, "/_emulator/filenotifications", s.emulator(service, s.listFileNotifications)},

		// Fault injection and the clock (faults.go).
		{http.MethodGet, "/_emulator/faults", s.emulator(service, s.listFaults)},
		{http.MethodPost, "/_emulator/faults", s.emulator(service, s.createFault)},
		{http.MethodDelete, "/_emulator/faults", s.emulator(service, s.clearFaults)},
		{http.MethodGet, "/_emulator/faults/routes", s.emulator(service, s.faultRoutes)},
		{http.MethodDelete, "/_emulator/faults/{id}", s.emulator(service, s.deleteFault)},
		{http.MethodGet, "/_emulator/clock", s.emulator(service, s.getClock)},
		{http.MethodPost, "/_emulator/clock", s.emulator(service, s.advanceClock)},
		// Device Provisioning Service (provisioning.go): the device API under
		// the ID scope, the service API with the provisioningserviceowner
		// policy, and the emulator's DPS settings (no secret beyond the
		// well-known key the banner prints). Query routes come before {id};
		// the Node SDK writes enrollmentgroups in lower case for one call.
		{http.MethodGet, "/_emulator/dps", s.dpsDevice(s.dpsInfo)},
		{http.MethodPut, "/{idScope}/registrations/{registrationId}/register", s.dpsDevice(s.dpsRegister)},
		{http.MethodGet, "/{idScope}/registrations/{registrationId}/operations/{operationId}", s.dpsDevice(s.dpsOperation)},
		{http.MethodPost, "/enrollments", s.dpsService(s.bulkEnrollments)},
		{http.MethodPost, "/enrollments/", s.dpsService(s.bulkEnrollments)}, // Node sends the trailing slash
		{http.MethodPost, "/enrollments/query", s.dpsService(s.queryEnrollments)},
		{http.MethodPut, "/enrollments/{id}", s.dpsService(s.putEnrollment)},
		{http.MethodGet, "/enrollments/{id}", s.dpsService(s.getEnrollment)},
		{http.MethodDelete, "/enrollments/{id}", s.dpsService(s.deleteEnrollment)},
		{http.MethodPost, "/enrollments/{id}/attestationmechanism", s.dpsService(s.enrollmentAttestation)},
		{http.MethodPost, "/enrollmentGroups/query", s.dpsService(s.queryGroups)},
		{http.MethodPut, "/enrollmentGroups/{id}", s.dpsService(s.putGroup)},
		{http.MethodGet, "/enrollmentGroups/{id}", s.dpsService(s.getGroup)},
		{http.MethodDelete, "/enrollmentGroups/{id}", s.dpsService(s.deleteGroup)},
		{http.MethodPost, "/enrollmentGroups/{id}/attestationmechanism", s.dpsService(s.groupAttestation)},
		{http.MethodPost, "/enrollmentgroups/{id}/attestationmechanism", s.dpsService(s.groupAttestation)},
		{http.MethodPost, "/registrations/{id}/query", s.dpsService(s.queryGroupRegistrations)},
		{http.MethodGet, "/registrations/{id}", s.dpsService(s.getRegistration)},
		{http.MethodDelete, "/registrations/{id}", s.dpsService(s.deleteRegistration)},
	}
}

// open serves a handler without authentication.
func open(h http.HandlerFunc) http.Handler { return h }
