// Package httpapi is the hub's service REST API (and the device HTTPS API):
// a thin gorilla/mux layer that authorizes each call by policy permission,
// decodes the hub's JSON, calls the domain services and writes the hub's
// responses. writeError is the only place that turns an error into a status.
package httpapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/throttling"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/iothub-emulator/iothub-emulator/changefeed"
	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Deps are the services the REST API serves. All are required.
type Deps struct {
	Auth     *sasauth.Authenticator
	Registry *registry.Service
	Twins    *twins.Service
	Jobs     *jobs.Engine
	// Telemetry and C2D serve the device messaging API and the emulator's
	// message endpoints (messages.go).
	Telemetry *messaging.Telemetry
	C2D       *messaging.CloudToDevice
	Query     query.Runner
	// Methods runs direct methods for POST /twins/{id}/methods.
	Methods MethodInvoker
	// WebSocket serves MQTT over WebSockets at /$iothub/websocket.
	WebSocket http.Handler
	// EventHub describes the Event Hub-compatible endpoint (eventhub.go);
	// nil answers its routes with 404.
	EventHub EventHubEndpoint
	// Configurations, DigitalTwins and FileUpload serve automatic device
	// management, IoT Plug and Play and file upload (configurations.go,
	// digitaltwins.go, fileupload.go).
	Configurations *configurations.Service
	DigitalTwins   *digitaltwins.Service
	FileUpload     *fileupload.Service
	// Simulations runs simulated devices (/_emulator/simulations).
	Simulations Simulations
	// Connections is the feed of connection-state changes
	// (/_emulator/connections/stream): the directory the device transports
	// record them in.
	Connections interface {
		ConnectionChanges() *changefeed.Feed[registry.ConnectionChange]
	}
	// Faults holds injected faults (/_emulator/faults); nil turns them off.
	Faults *faults.Service
	// Provisioning serves the Device Provisioning Service's device and
	// service APIs (provisioning.go), authorized by ProvisioningAuth.
	Provisioning     *provisioning.Service
	ProvisioningAuth *sasauth.Authenticator
}

// Config holds the REST API's settings.
type Config struct {
	// CACert is served at /_emulator/ca.pem (404 when empty).
	CACert []byte
	// Ready is reported by /_emulator/health; nil means always ready, false
	// (a listener stopped accepting) answers 503.
	Ready func() bool
	// Unavailable tells storage failures that make the hub unavailable (a
	// full disk: 503 ServiceUnavailable, which clients retry) from other
	// internal errors (500); nil means none are.
	Unavailable func(error) bool
	// Clock is the hub's clock (/_emulator/clock); FakeClock, set under
	// --fake-clock, lets POST /_emulator/clock move it.
	Clock     clock.Clock
	FakeClock *clock.Fake
	// Throttle applies the tier's throttles (--sku); nil: none.
	Throttle *throttling.Limiter
	// Logger logs requests; nil means slog.Default().
	Logger *slog.Logger
	// DeviceCAs verify certificateAuthority devices' client certificates
	// on the device API; nil when none is registered (--device-ca).
	DeviceCAs *x509.CertPool
	// DPSServiceConnectionString and DPSGlobalEndpoint are reported by
	// GET /_emulator/dps.
	DPSServiceConnectionString, DPSGlobalEndpoint string
}

// Server is the REST API: every route of routes.go over Deps.
type Server struct {
	Deps
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	live    liveStreams // ends the live streams (live.go) on shutdown
}

// maxBody bounds request bodies; the hub's largest (bulk import of 100
// devices with twins, direct-method payloads of 128 KB) fit well within it.
const maxBody = 4 << 20

// New builds the REST API and its router.
func New(deps Deps, cfg Config) (*Server, error) {
	if err := iothub.CheckDeps("httpapi", deps, "EventHub"); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{Deps: deps, cfg: cfg, log: cfg.Logger}
	s.handler = s.router()
	return s, nil
}

// now is the hub's time (its clock: fake under --fake-clock).
func (s *Server) now() time.Time { return clock.OrReal(s.cfg.Clock).Now() }

// Handler is the router with request logging.
func (s *Server) Handler() http.Handler { return s.handler }

// router registers the route table (routes.go) and the hub's answers for
// unknown paths and methods.
func (s *Server) router() http.Handler {
	newRouter := func() *mux.Router {
		r := mux.NewRouter().UseEncodedPath()
		r.SkipClean(true)
		r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			s.writeError(w, req, iothub.Errorf(iothub.GenericNotFound, "The requested resource %s does not exist.", req.URL.Path))
		})
		r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			s.writeError(w, req, iothub.Errorf(iothub.GenericMethodNotAllowed, "The method %s is not allowed on %s.", req.Method, req.URL.Path))
		})
		return r
	}
	wrap := func(rt route) http.Handler { return s.withFaults(rt, s.withThrottling(rt, rt.handler)) }
	return s.logRequests(methodOverride(bySegment(s.routes(), newRouter, wrap)))
}

// bySegment is the route table as one gorilla/mux router per first path
// segment ("devices", "twins", "_emulator", ...), so a request is matched
// against the dozen routes that can match it rather than tried against
// every pattern in turn (each is a regular expression). Each router holds
// its segment's routes and those whose first segment is a variable
// ("/{idScope}/registrations/..."), in table order: a path meets the same
// candidates in the same order as in one router of the whole table, so the
// same route (or 404, or 405) wins.
func bySegment(table []route, newRouter func() *mux.Router, wrap func(route) http.Handler) http.Handler {
	routers := map[string]*mux.Router{}
	for _, rt := range table {
		if seg := firstSegment(rt.path); !strings.HasPrefix(seg, "{") && routers[seg] == nil {
			routers[seg] = newRouter()
		}
	}
	other := newRouter() // for paths whose first segment starts no literal pattern
	for _, rt := range table {
		h := wrap(rt)
		add := func(r *mux.Router) {
			m := r.Handle(rt.path, h)
			if rt.method != anyMethod {
				m.Methods(rt.method)
			}
		}
		if seg := firstSegment(rt.path); !strings.HasPrefix(seg, "{") {
			add(routers[seg])
			continue
		}
		add(other)
		for _, r := range routers {
			add(r)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r := routers[firstSegment(req.URL.EscapedPath())]; r != nil {
			r.ServeHTTP(w, req)
			return
		}
		other.ServeHTTP(w, req)
	})
}

// firstSegment is "twins" for "/twins/{id}/methods".
func firstSegment(path string) string {
	path = strings.TrimPrefix(path, "/")
	seg, _, _ := strings.Cut(path, "/")
	return seg
}

type handlerFunc = func(w http.ResponseWriter, r *http.Request) error

// hub wraps a handler with the hub's request rules: an api-version is
// required (any value the SDKs send is accepted), and the SAS token must
// grant need.
func (s *Server) hub(need sasauth.Rights, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasAPIVersion(r) {
			s.writeError(w, r, iothub.Errorf(iothub.InvalidProtocolVersion, "BadRequest"))
			return
		}
		if _, err := s.Auth.Service(r.Header.Get("Authorization"), need); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := s.admitThrottled(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// statusRecorder captures the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController and the WebSocket upgrader reach the
// underlying connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs each request at debug level (--log-level debug). At
// info and above it costs nothing per request: tens of thousands of
// direct-method calls a second must not each format a log line.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/$iothub/websocket" || !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r) // a WebSocket is a long-lived MQTT session, logged by the broker
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Debug("http request", "method", r.Method, "path", r.URL.EscapedPath(), "status", rec.status,
			"duration", time.Since(start).Round(time.Microsecond))
	})
}

// writeJSON writes v with the content type the SDKs require to parse a body
// at all (sdk-behavior.md §0.3).
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// bodyBuffers holds request-body buffers for readJSON: encoding/json copies
// what it keeps (strings, RawMessage), so a buffer is free again once the
// body is decoded. Buffers that grew past maxPooledBody are left to the GC.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBody = 64 << 10

// readJSON decodes a request body; encoding/json matches member names
// case-insensitively, as the hub does (Go's SDK sends "Query").
func readJSON(r *http.Request, v any) error {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBody {
			bodyBuffers.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return iothub.Errorf(iothub.MessageTooLarge, "The request body is larger than %d bytes.", mbe.Limit)
		}
		return iothub.Wrap(iothub.ArgumentInvalid, err, "The request body could not be read.")
	}
	body := buf.Bytes()
	if len(bytes.TrimSpace(body)) == 0 {
		return iothub.Errorf(iothub.ArgumentNull, "The request body is empty.")
	}
	if f, ok := v.(fastDecoder); ok && f.decodeFast(body) {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return iothub.Errorf(iothub.ArgumentInvalid, "The request body is not valid JSON: %v", err)
	}
	return nil
}

// fastDecoder is a request body type with a decoder for its usual form
// that gives what json.Unmarshal gives, faster; it reports false to leave
// the rest (and every error) to json.Unmarshal.
type fastDecoder interface {
	decodeFast(body []byte) bool
}

// hasAPIVersion reports whether the query names a non-empty api-version,
// as r.URL.Query().Get("api-version") != "" does, without building the
// query's map for the usual query that needs no unescaping.
func hasAPIVersion(r *http.Request) bool {
	q := r.URL.RawQuery
	if strings.ContainsAny(q, "%+;") {
		return r.URL.Query().Get("api-version") != ""
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(pair, "="); k == "api-version" {
			return v != "" // Get returns the first value
		}
	}
	return false
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ok := s.cfg.Ready == nil || s.cfg.Ready()
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	_ = writeJSON(w, status, map[string]any{"status": map[bool]string{true: "ok", false: "unavailable"}[ok]})
}

func (s *Server) caPEM(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.CACert) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.cfg.CACert)
}

// ctx bounds a handler's work by the request's life.
func ctx(r *http.Request) context.Context { return r.Context() }
