package httpapi

import (
	"testing"

	"github.com/iothub-emulator/iothub-emulator/throttling"
)

// Every route of the table gets its class from throttledAs; these are the
// ones a tier throttles per call, and some it must leave alone.
func TestThrottledAs(t *testing.T) {
	want := map[string]throttling.Operation{
		"GET /devices/{id}":                                     throttling.RegistryOps,
		"POST /devices/{id}/messages/events":                    throttling.DeviceToCloud,
		"POST /_emulator/devices/{id}/messages/devicebound":     throttling.CloudToDevice,
		"GET /devices/{id}/messages/deviceBound":                throttling.C2DReceives,
		"GET /devices/{id}/messages/devicebound":                throttling.C2DReceives,
		"POST /devices/{id}/files":                              throttling.FileUploads,
		"POST /devices/query":                                   throttling.Queries,
		"GET /twins/{id}":                                       throttling.TwinReads,
		"PATCH /twins/{id}/modules/{mid}":                       throttling.TwinUpdates,
		"PUT /jobs/v2/{id}":                                     throttling.JobsOps,
		"PUT /configurations/{id}":                              throttling.Configurations,
		"GET /digitaltwins/{id}":                                throttling.TwinReads,
		"DELETE /devices/{id}/messages/deviceBound/{lockToken}": "",
		"POST /devices/{id}/files/notifications":                "",
		"POST /twins/{id}/methods":                              "", // metered by payload in invokeMethod
		"POST /digitaltwins/{id}/commands/{command}":            "", // likewise
		"GET /_emulator/devices/{id}/messages/devicebound":      "",
		"GET /_emulator/faults":                                 "",
	}
	s := testServer()
	seen := map[string]bool{}
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.path
		w, listed := want[key]
		if !listed {
			continue
		}
		seen[key] = true
		op, shaped, ok := throttledAs(rt)
		if op != w || ok != (w != "") {
			t.Errorf("%s: %q (ok %v), want %q", key, op, ok, w)
		}
		if shaped != (w == throttling.DeviceToCloud) {
			t.Errorf("%s: shaped = %v", key, shaped)
		}
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("%s is not in the route table", key)
		}
	}
}
