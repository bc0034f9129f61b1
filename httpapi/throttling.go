package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/throttling"
)

// throttledAs names the throttle class of a hub route (--sku); ok false
// for routes the tiers do not count per call here: direct methods are
// metered by payload size in their handlers (invokeMethod,
// invokeDigitalTwinCommand), settling a C2D message and file upload
// notifications are not throttled by the hub.
func throttledAs(rt route) (op throttling.Operation, shaped, ok bool) {
	p := rt.path
	switch {
	case rt.method == anyMethod:
		return "", false, false
	// The emulator's REST stand-in for the service's C2D send (AMQP on
	// the hub) counts as a C2D send; the emulator's other endpoints are
	// never throttled.
	case p == "/_emulator/devices/{id}/messages/devicebound" && rt.method == http.MethodPost:
		return throttling.CloudToDevice, false, true
	case strings.HasPrefix(p, "/_emulator/"):
		return "", false, false
	case strings.HasSuffix(p, "/messages/events"):
		return throttling.DeviceToCloud, true, true
	case strings.HasSuffix(strings.ToLower(p), "/messages/devicebound") && rt.method == http.MethodGet:
		return throttling.C2DReceives, false, true // HTTPS receives: the only ones the hub throttles
	case strings.HasSuffix(p, "/files") && rt.method == http.MethodPost:
		return throttling.FileUploads, false, true
	case strings.Contains(p, "/messages/"), strings.HasSuffix(p, "/methods"), strings.Contains(p, "/files"),
		strings.Contains(p, "/commands/"):
		return "", false, false
	case p == "/devices/query":
		return throttling.Queries, false, true
	case strings.HasPrefix(p, "/jobs/"):
		return throttling.JobsOps, false, true
	case strings.HasPrefix(p, "/configurations"):
		return throttling.Configurations, false, true
	case strings.HasPrefix(p, "/twins/"), strings.HasPrefix(p, "/digitaltwins/"):
		if rt.method == http.MethodGet {
			return throttling.TwinReads, false, true
		}
		return throttling.TwinUpdates, false, true
	case strings.HasPrefix(p, "/devices"), strings.HasPrefix(p, "/statistics/"):
		return throttling.RegistryOps, false, true
	}
	return "", false, false
}

// throttleClass is the throttle of a route, carried in the request's
// context from withThrottling to the route's authentication wrapper.
type throttleClass struct {
	op     throttling.Operation
	shaped bool
}

type throttleKey struct{}

// withThrottling marks each call of a throttled route with its class
// (--sku); the route's wrapper (hub, device, emulator) takes the call from
// the tier's budget once the caller has authenticated (admitThrottled), so
// calls the hub refuses anyway spend nothing of it.
func (s *Server) withThrottling(rt route, next http.Handler) http.Handler {
	if s.cfg.Throttle == nil {
		return next
	}
	op, shaped, ok := throttledAs(rt)
	if !ok {
		return next
	}
	c := throttleClass{op: op, shaped: shaped}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), throttleKey{}, c)))
	})
}

// admitThrottled takes an authenticated call of a throttled route from its
// tier's budget: 429001 beyond it, or a shaped wait for device-to-cloud
// sends. Calls of other routes, and every call without --sku, pass.
func (s *Server) admitThrottled(r *http.Request) error {
	c, ok := r.Context().Value(throttleKey{}).(throttleClass)
	if !ok {
		return nil
	}
	if c.shaped {
		return s.cfg.Throttle.Shape(r.Context(), c.op)
	}
	return s.cfg.Throttle.Allow(c.op)
}
