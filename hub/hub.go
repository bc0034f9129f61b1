// Package hub wires the emulator together: storage, domain services, the
// MQTT broker and the REST API, on listeners it binds itself. It is what the
// command and the test helper start, and the only package that knows every
// other one.
package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/throttling"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqphub"
	"github.com/iothub-emulator/iothub-emulator/broker"
	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/digitaltwins"
	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/httpapi"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/simdevices"
	"github.com/iothub-emulator/iothub-emulator/sqlite"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Config configures a hub. The zero value of an address disables that
// listener; DefaultConfig gives the ports the SDKs hard-code.
type Config struct {
	// Hostname is the hub's host name: in certificates, SAS resource URIs
	// and printed connection strings.
	Hostname string
	// MQTTSAddr serves MQTT over TLS (8883), HTTPSAddr the REST API and MQTT
	// over WebSockets over TLS (443), MQTTAddr and HTTPAddr the same
	// without TLS (1883, 8080).
	MQTTSAddr, HTTPSAddr, MQTTAddr, HTTPAddr string
	// AMQPSAddr serves the service-side AMQP endpoint over TLS (5671): C2D
	// send, feedback and file notifications. AMQP over WebSockets shares
	// HTTPSAddr.
	AMQPSAddr string
	// AMQPAddr serves the same AMQP endpoint without TLS (5672, loopback),
	// for Event Hubs clients with UseDevelopmentEmulator=true.
	AMQPAddr string
	// Partitions is the partition count of the Event Hub-compatible
	// endpoint (eventhub.go).
	Partitions int
	// FallbackPorts moves a listener whose privileged port cannot be bound
	// (a non-root user) to 8443 for 443, port+8000 otherwise, and says so in
	// Warnings.
	FallbackPorts bool
	// DataDir holds the database and the generated certificates; InMemory
	// keeps nothing on disk but a temporary copy of the CA for clients.
	DataDir  string
	InMemory bool
	// TLSCertFile and TLSKeyFile replace the generated certificate.
	TLSCertFile, TLSKeyFile string
	// TLSSANs are extra names for the generated server certificate.
	TLSSANs []string
	// OwnerKey replaces the well-known iothubowner key.
	OwnerKey string
	// DeviceCAFiles are CA certificates that sign certificateAuthority devices.
	DeviceCAFiles []string
	// MessageRetentionCount and MessageRetentionAge bound the telemetry log
	// (0: no bound of that kind).
	MessageRetentionCount int
	MessageRetentionAge   time.Duration
	// JobWorkers bounds the device operations one job runs at once.
	JobWorkers int
	// MaxActiveJobs bounds jobs queued, scheduled or running at once (the
	// hub's S3 tier allows 10); 0 means no limit.
	MaxActiveJobs int
	// JobRetention is how long finished jobs are kept (the hub: 30 days).
	JobRetention time.Duration
	// HandshakeTimeout and ConnectTimeout bound a new MQTT connection's TLS
	// handshake and its wait for CONNECT (0: the broker's defaults, 10 s and
	// 30 s).
	HandshakeTimeout, ConnectTimeout time.Duration
	// MaxConnections bounds the connections open at once over all
	// listeners; more are closed as soon as they are accepted. 0 derives it
	// from the open-file limit (less a reserve for the process itself).
	MaxConnections int
	// SeedFile names a JSON or YAML file of devices (and modules) to create
	// at start when they do not exist yet; see examples/seed.json.
	SeedFile string
	// Configurations tunes automatic device management (zero: defaults).
	Configurations configurations.Config
	// StorageConnectionString names the storage account (Azurite) for
	// device file upload; empty leaves file upload off. FileUpload tunes it.
	StorageConnectionString string
	FileUpload              fileupload.Config
	// MaxSimulatedDevices bounds the simulated devices running at once
	// (simdevices.DefaultMaxDevices when 0).
	MaxSimulatedDevices int
	// Clock is the hub's one clock: timestamps, token expiry, C2D TTLs and
	// locks, job schedules, method timeouts, retention. nil means the wall
	// clock; tests pass a *clock.Fake and move it with Advance.
	Clock clock.Clock
	// SKU and Units apply the hub's throttles of that tier (F1, S1, S2,
	// S3); an empty SKU throttles nothing.
	SKU   string
	Units int
	// DPSIDScope is the Device Provisioning Service's ID scope
	// (provisioning.DefaultIDScope when empty).
	DPSIDScope string
	Logger     *slog.Logger
}

// DefaultConfig is what `iothub-emulator` runs with no flags; the
// command's flag defaults come from it. Each value that a package also
// defaults comes from that package's constant.
func DefaultConfig() Config {
	return Config{
		Hostname:      "localhost",
		MQTTSAddr:     "127.0.0.1:8883",
		HTTPSAddr:     "127.0.0.1:443",
		MQTTAddr:      "127.0.0.1:1883",
		HTTPAddr:      "127.0.0.1:8080",
		AMQPSAddr:     "127.0.0.1:5671",
		AMQPAddr:      "127.0.0.1:5672",
		Partitions:    eventhub.DefaultPartitions,
		FallbackPorts: true,
		DataDir:       "./data",

		JobWorkers:    jobs.DefaultWorkers,
		MaxActiveJobs: jobs.DefaultMaxActive,
		JobRetention:  jobs.DefaultRetention,

		DPSIDScope: provisioning.DefaultIDScope,

		MessageRetentionCount: 100000,
		MessageRetentionAge:   24 * time.Hour,
	}
}

// Hub is a running emulator.
type Hub struct {
	cfg       Config
	log       *slog.Logger
	clock     clock.Clock
	throttle  *throttling.Limiter // nil unless --sku
	now       func() time.Time    // the one clock every service gets, in UTC
	db        *sqlite.DB
	stores    stores
	certs     *certSet
	deviceCAs *x509.CertPool
	auth      *sasauth.Authenticator
	broker    *broker.Broker
	amqp      *amqphub.Server
	directory *registry.Directory // the broker's view of the registry; connection changes
	api       *httpapi.Server
	servers   []*http.Server
	listener  map[string]net.Listener
	tlsOf     map[string]*tls.Config // by listener name
	caPEM     []byte
	caFile    string
	tmpDir    string
	policies  []sasauth.Policy
	dpsAuth   *sasauth.Authenticator
	served    []*servedListener
	lock      *os.File // held on the data directory

	closeOnce sync.Once
	closeErr  error

	// Registry is the identity registry service.
	Registry *registry.Service
	// Twins is the device and module twin service.
	Twins *twins.Service
	// Telemetry is the device-to-cloud message log.
	Telemetry *messaging.Telemetry
	// EventHub is the log seen as the Event Hub-compatible endpoint.
	EventHub *eventhub.Hub
	// C2D is the cloud-to-device queue.
	C2D *messaging.CloudToDevice
	// Jobs is the jobs engine.
	Jobs *jobs.Engine
	// Methods invokes direct methods (REST and the jobs engine).
	Methods *methods.Invoker
	// Configurations is automatic device and module management.
	Configurations *configurations.Service
	// DigitalTwins is IoT Plug and Play's view of devices.
	DigitalTwins *digitaltwins.Service
	// FileUpload is device file upload and its notifications.
	FileUpload *fileupload.Service
	// Provisioning is the Device Provisioning Service (provisioning.go).
	Provisioning *provisioning.Service
	// Warnings are start-up notes for the banner (e.g. a fallback port).
	Warnings []string
	// Seeded lists the identities named by Config.SeedFile, in file order.
	Seeded []SeedIdentity
	// Faults holds the emulator's injected faults (/_emulator/faults).
	Faults *faults.Service
	// Simulator runs simulated devices (the seed file's and the API's).
	Simulator *simdevices.Simulator

	seedSimulations []simdevices.Spec
}

// stores are the SQLite implementations of the domain's store interfaces.
type stores struct {
	registry *sqlite.RegistryStore
	twins    *sqlite.TwinStore
	sessions *sqlite.SessionStore
	messages *sqlite.MessageLog
	c2d      *sqlite.C2DQueue
	jobs     *sqlite.JobStore
	selector sqlite.Selector
	query    *sqlite.QueryStore
}

// Open binds every listener, opens the database and starts serving. It
// returns only when the hub is ready; bind errors come back here. The steps
// run in dependency order: each builds its part from what the earlier ones
// built, and Close undoes them in reverse.
func Open(ctx context.Context, cfg Config) (h *Hub, err error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	clk := clock.OrReal(cfg.Clock)
	h = &Hub{cfg: cfg, log: cfg.Logger, clock: clk, now: func() time.Time { return clk.Now().UTC() }, listener: map[string]net.Listener{}}
	// The error returns set h to nil; close what was opened through self.
	self := h
	defer func() {
		if err != nil {
			self.Close()
		}
	}()
	for _, step := range []func(context.Context) error{
		h.openDatabase,      // SQLite and the stores over it
		h.loadCertificates,  // CA, server certificate, device CAs; SAS policies
		h.newBroker,         // MQTT: authenticates devices against the registry's directory
		h.newFaults,         // injected faults, dropping connections through the broker (faults.go)
		h.newThrottling,     // --sku: the tier's throttles (faults.go)
		h.newTwins,          // twins, notifying devices through the broker
		h.newRegistry,       // registry, closing sessions in the broker and writing twins
		h.newMessaging,      // telemetry log and C2D queue, delivering through the broker
		h.newEventHub,       // the Event Hub-compatible endpoint over the log (eventhub.go)
		h.newMethods,        // direct methods, through the broker
		h.newJobs,           // jobs over twins and methods
		h.newProvisioning,   // DPS over the registry and twins (provisioning.go)
		h.wireDevices,       // device topics to the services (wire.go)
		h.seedDevices,       // --seed
		h.seedEnrollments,   // --seed: DPS enrollments (provisioning.go)
		h.newConfigurations, // automatic device management over twins and queries (features.go)
		h.newDigitalTwins,   // IoT Plug and Play over twins and methods (features.go)
		h.newFileUpload,     // file upload over the storage account (features.go)
		h.newAMQP,           // AMQP: service and device nodes over the same services (amqp.go)
		h.newSimulator,      // simulated devices, clients of the MQTT listener (dashboard.go)
		h.newAPI,            // the REST API over every service
		h.bindListeners,     // 8883, 1883, 443, 8080, 5671
		h.serve,             // broker, jobs and HTTP servers start
		h.startSimulations,  // the seed file's simulated devices connect
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *Hub) openDatabase(ctx context.Context) error {
	dbPath := ""
	if !h.cfg.InMemory {
		if h.cfg.DataDir == "" {
			return errors.New("a data directory is required unless running in memory")
		}
		var err error
		if h.lock, err = lockDataDir(h.cfg.DataDir); err != nil {
			return err
		}
		dbPath = filepath.Join(h.cfg.DataDir, "iothub.db")
	}
	var err error
	if h.db, err = sqlite.Open(ctx, dbPath, sqlite.WithClock(h.now)); err != nil {
		return fmt.Errorf("open the database: %w", err)
	}
	h.stores = stores{
		registry: &sqlite.RegistryStore{DB: h.db},
		twins:    sqlite.NewTwinStore(h.db),
		sessions: &sqlite.SessionStore{DB: h.db},
		c2d:      &sqlite.C2DQueue{DB: h.db},
		jobs:     &sqlite.JobStore{DB: h.db},
		selector: sqlite.Selector{DB: h.db},
		query:    &sqlite.QueryStore{DB: h.db},
	}
	if h.stores.messages, err = sqlite.NewMessageLog(ctx, h.db); err != nil {
		return err
	}
	// No connection survives a restart: nobody is connected, and locks
	// held on C2D messages are released.
	if err := h.stores.registry.SetAllDisconnected(ctx); err != nil {
		return err
	}
	return h.stores.c2d.ReleaseAll(ctx)
}

func (h *Hub) loadCertificates(context.Context) error {
	var err error
	if h.certs, err = h.loadCerts(); err != nil {
		return err
	}
	h.caPEM = h.certs.caPEM
	if err := h.writeCAFile(); err != nil {
		return err
	}
	if h.deviceCAs, err = loadDeviceCAs(h.cfg.DeviceCAFiles); err != nil {
		return err
	}
	h.policies = sasauth.DefaultPolicies(h.cfg.OwnerKey)
	h.auth = &sasauth.Authenticator{Policies: h.policies, Now: h.now}
	return nil
}

func (h *Hub) newBroker(context.Context) error {
	dir, err := registry.NewDirectory(h.stores.registry, registry.Config{Now: h.now})
	if err != nil {
		return err
	}
	h.directory = dir
	h.broker = broker.New(broker.Config{
		Auth: h.auth, Identities: dir, Sessions: h.stores.sessions,
		DeviceCAs: h.deviceCAs, Provisioning: provisioningLink{h}, Logger: h.log, Clock: h.clock,
		HandshakeTimeout: h.cfg.HandshakeTimeout, ConnectTimeout: h.cfg.ConnectTimeout,
	})
	return nil
}

func (h *Hub) newTwins(context.Context) (err error) {
	h.Twins, err = twins.NewService(twins.Deps{Store: h.stores.twins, Notifier: deviceDesired{h}}, twins.Config{Now: h.now})
	return err
}

func (h *Hub) newRegistry(context.Context) (err error) {
	h.Registry, err = registry.NewService(registry.Deps{
		Store: h.stores.registry, Sessions: sessionCloser{h.broker}, Twins: twinWriter{h.Twins},
	}, registry.Config{Now: h.now})
	return err
}

func (h *Hub) newMessaging(context.Context) (err error) {
	h.Telemetry, err = messaging.NewTelemetry(messaging.TelemetryDeps{Log: h.stores.messages}, messaging.TelemetryConfig{
		RetentionCount: h.cfg.MessageRetentionCount, RetentionAge: h.cfg.MessageRetentionAge, Clock: h.clock, Now: h.now, Logger: h.log,
	})
	if err != nil {
		return err
	}
	h.C2D, err = messaging.NewCloudToDevice(messaging.C2DDeps{Queue: h.stores.c2d, Link: deviceC2D{h}},
		messaging.C2DConfig{Clock: h.clock, Now: h.now, Logger: h.log})
	return err
}

func (h *Hub) newMethods(context.Context) error {
	h.Methods = &methods.Invoker{
		Transport:  deviceMethods{h},
		Identities: identityChecker{h},
		Logger:     h.log.With("component", "methods"),
	}
	// On the wall clock the invoker's own timers are the hub's clock, and
	// it reuses them from call to call; any other clock (a fake one, in
	// tests and under --fake-clock) times the calls itself.
	if h.clock != clock.Real() {
		h.Methods.After = h.clock.After
	}
	return nil
}

func (h *Hub) newJobs(context.Context) (err error) {
	h.Jobs, err = jobs.NewEngine(jobs.Deps{
		Store: h.stores.jobs, Selector: h.stores.selector, Twins: jobTwins{h.Twins, h.throttle}, Methods: jobMethods{h},
	}, jobs.Config{
		Clock: h.clock, Now: h.now, Workers: h.cfg.JobWorkers, MaxActive: h.cfg.MaxActiveJobs, Retention: h.cfg.JobRetention,
		Logger: h.log.With("component", "jobs"),
	})
	return err
}

func (h *Hub) wireDevices(context.Context) error {
	h.wire()
	return nil
}

func (h *Hub) seedDevices(ctx context.Context) error {
	if h.cfg.SeedFile == "" {
		return nil
	}
	return h.seed(ctx, h.cfg.SeedFile)
}

func (h *Hub) newAPI(context.Context) (err error) {
	h.api, err = httpapi.New(httpapi.Deps{
		Auth: h.auth, Registry: h.Registry, Twins: h.Twins, Jobs: h.Jobs, Telemetry: h.Telemetry, C2D: h.C2D,
		Query: h.stores.query, Methods: h.Methods, WebSocket: h.webSocketHandler(),
		Configurations: h.Configurations, DigitalTwins: h.DigitalTwins, FileUpload: h.FileUpload,
		Provisioning: h.Provisioning, ProvisioningAuth: h.dpsAuth,
		Simulations: h.Simulator, Connections: h.directory, EventHub: eventHubInfo{h}, Faults: h.Faults,
	}, httpapi.Config{Clock: h.clock, Throttle: h.throttle, FakeClock: fakeClock(h.clock), CACert: h.caPEM, DeviceCAs: h.deviceCAs,
		Ready: h.listenersAlive, Unavailable: sqlite.IsUnavailable,
		Logger:                     h.log.With("component", "http"),
		DPSServiceConnectionString: h.DPSServiceConnectionString(), DPSGlobalEndpoint: h.cfg.Hostname})
	return err
}

func (h *Hub) bindListeners(context.Context) error {
	serverTLS := &tls.Config{
		MinVersion:   tls.VersionTLS12, // the Python device SDK speaks exactly TLS 1.2
		Certificates: []tls.Certificate{h.certs.server},
		NextProtos:   []string{"http/1.1"},
		// Client certificates are requested, never required, on every TLS
		// listener: X.509 devices use them on MQTT, MQTT over WebSockets
		// and the device HTTPS API, checked by identity (registry.VerifyCertificate).
		ClientAuth: tls.RequestClientCert,
	}
	mqttTLS := serverTLS.Clone()
	mqttTLS.NextProtos = nil
	amqpTLS := serverTLS.Clone()
	amqpTLS.NextProtos = nil
	amqpTLS.ClientAuth = tls.RequestClientCert // X.509 devices, checked when they attach

	h.tlsOf = map[string]*tls.Config{"mqtts": mqttTLS, "https": serverTLS, "amqps": amqpTLS}
	openFiles, err := raiseOpenFileLimit()
	if err != nil {
		h.log.Warn("could not raise the open-file limit to the hard limit", "limit", openFiles, "error", err)
	}
	maxConns := h.cfg.MaxConnections
	if maxConns <= 0 {
		maxConns = defaultMaxConnections(openFiles)
	}
	h.log.Info("connection limit", "connections", maxConns, "open_files", openFiles)
	limit := &connLimit{max: int64(maxConns), log: h.log}
	for _, l := range []struct{ name, addr string }{
		{"mqtts", h.cfg.MQTTSAddr}, {"mqtt", h.cfg.MQTTAddr}, {"https", h.cfg.HTTPSAddr}, {"http", h.cfg.HTTPAddr},
		{"amqps", h.cfg.AMQPSAddr}, {"amqp", h.cfg.AMQPAddr},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := h.bind(l.name, l.addr)
		if err != nil {
			return err
		}
		h.listener[l.name] = &limitListener{Listener: ln, limit: limit}
	}
	return nil
}

func (h *Hub) serve(context.Context) error {
	// The broker does TLS itself, with a handshake deadline.
	for _, name := range []string{"mqtts", "mqtt"} {
		if ln, ok := h.listener[name]; ok {
			if err := h.broker.AddListener(name, ln, h.tlsOf[name]); err != nil {
				return err
			}
		}
	}
	if err := h.broker.Start(); err != nil {
		return fmt.Errorf("start the MQTT broker: %w", err)
	}
	h.Jobs.Start(context.Background())
	h.Configurations.Start()
	// The AMQP engine's handshake deadline covers the TLS handshake.
	if ln, ok := h.listener["amqps"]; ok {
		go func() { _ = h.amqp.Serve(tls.NewListener(ln, h.tlsOf["amqps"])) }()
	}
	if ln, ok := h.listener["amqp"]; ok {
		go func() { _ = h.amqp.Serve(ln) }()
	}
	handler := withDashboard(h.api.Handler())
	for _, name := range []string{"https", "http"} {
		ln, ok := h.listener[name]
		if !ok {
			continue
		}
		if c := h.tlsOf[name]; c != nil {
			ln = tls.NewListener(ln, c)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: httpReadHeaderTimeout, IdleTimeout: httpIdleTimeout,
			ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)}
		srv.RegisterOnShutdown(h.api.EndLiveStreams)
		h.servers = append(h.servers, srv)
		h.served = append(h.served, &servedListener{name: name, srv: srv, ln: ln})
	}
	for _, sl := range h.served {
		go func() {
			if err := sl.srv.Serve(sl.ln); !errors.Is(err, http.ErrServerClosed) {
				sl.dead.Store(true)
				h.log.Error("http listener stopped", "listener", sl.name, "error", err)
			}
		}()
	}
	return nil
}

// bind listens on addr; with FallbackPorts, a privileged port refused for
// lack of permission moves elsewhere (see Config.FallbackPorts).
func (h *Hub) bind(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	if h.cfg.FallbackPorts && errors.Is(err, syscall.EACCES) && p > 0 && p < 1024 {
		alt := net.JoinHostPort(host, strconv.Itoa(p+8000))
		if p == 443 {
			alt = net.JoinHostPort(host, "8443")
		}
		if ln, err2 := net.Listen("tcp", alt); err2 == nil {
			h.Warnings = append(h.Warnings, fmt.Sprintf(
				"%s: port %d needs root or CAP_NET_BIND_SERVICE; serving on %s instead. The official SDKs only use %d: run as root, or `sudo setcap cap_net_bind_service=+ep $(which iothub-emulator)`.",
				name, p, ln.Addr(), p))
			return ln, nil
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s listener: %s is already in use (another emulator or broker?); choose another port with --%s-port or stop the other process", name, addr, name)
	}
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("%s listener: no permission to bind %s; run as root, grant CAP_NET_BIND_SERVICE, or choose another port with --%s-port", name, addr, name)
	}
	return nil, fmt.Errorf("%s listener: %w", name, err)
}

func (h *Hub) loadCerts() (*certSet, error) {
	if h.cfg.TLSCertFile != "" || h.cfg.TLSKeyFile != "" {
		return userCerts(h.cfg.TLSCertFile, h.cfg.TLSKeyFile)
	}
	names := []string{h.cfg.Hostname, "localhost", "127.0.0.1", "::1"}
	names = append(names, h.cfg.TLSSANs...)
	seen := map[string]bool{}
	uniq := names[:0]
	for _, n := range names {
		if n != "" && !seen[n] {
			seen[n] = true
			uniq = append(uniq, n)
		}
	}
	dir := ""
	if !h.cfg.InMemory {
		dir = filepath.Join(h.cfg.DataDir, "certs")
	}
	return loadOrCreateCerts(dir, uniq, time.Now()) // wall clock: clients check certificates against theirs
}

// writeCAFile gives clients a CA file to point at, also in memory mode.
func (h *Hub) writeCAFile() error {
	if !h.cfg.InMemory && h.cfg.TLSCertFile == "" {
		h.caFile, _ = filepath.Abs(filepath.Join(h.cfg.DataDir, "certs", "ca.pem"))
		return nil
	}
	dir, err := os.MkdirTemp("", "iothub-emulator-")
	if err != nil {
		return err
	}
	h.tmpDir = dir
	h.caFile = filepath.Join(dir, "ca.pem")
	return os.WriteFile(h.caFile, h.caPEM, 0o644)
}

func loadDeviceCAs(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--device-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--device-ca %s: no PEM certificate found", f)
		}
	}
	return pool, nil
}

// Close stops every listener and closes the database. Closing twice is
// harmless: the second call returns the first's result.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() { h.closeErr = h.close() })
	return h.closeErr
}

func (h *Hub) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if h.Simulator != nil {
		h.Simulator.Close() // its devices disconnect while the broker still runs
	}
	if h.Telemetry != nil {
		h.Telemetry.EndSubscriptions() // end SSE streams, which Shutdown would wait for
	}
	for _, s := range h.servers {
		_ = s.Shutdown(ctx)
	}
	if h.Jobs != nil {
		h.Jobs.Close()
	}
	if h.Configurations != nil {
		_ = h.Configurations.Close()
	}
	if h.Faults != nil {
		_ = h.Faults.Close() // no delayed drop fires into a closing broker
	}
	if h.Provisioning != nil {
		_ = h.Provisioning.Close() // DPS requests still arriving get 503
	}
	if h.broker != nil {
		_ = h.broker.Close()
	}
	if h.amqp != nil {
		_ = h.amqp.Close()
	}
	if h.EventHub != nil {
		_ = h.EventHub.Close()
	}
	for _, ln := range h.listener {
		_ = ln.Close()
	}
	if h.Telemetry != nil {
		h.Telemetry.Close()
	}
	if h.C2D != nil {
		h.C2D.Close()
	}
	if h.stores.twins != nil {
		h.stores.twins.Close()
	}
	var err error
	if h.db != nil {
		err = h.db.Close()
	}
	if h.tmpDir != "" {
		_ = os.RemoveAll(h.tmpDir)
	}
	if h.lock != nil {
		_ = h.lock.Close() // releases the data directory
	}
	return err
}

// sessionCloser lets the registry drop and forget a device's MQTT session.
type sessionCloser struct{ b *broker.Broker }

func (s sessionCloser) CloseSession(deviceID, moduleID string, forget bool) {
	if forget {
		s.b.ForgetSession(deviceID, moduleID)
	} else {
		s.b.CloseSession(deviceID, moduleID)
	}
}

// DeadListeners names the listeners that stopped accepting connections
// for good; /_emulator/health reports the hub unhealthy while any is.
func (h *Hub) DeadListeners() []string {
	dead := h.broker.DeadListeners()
	for _, sl := range h.served {
		if sl.dead.Load() {
			dead = append(dead, sl.name)
		}
	}
	return dead
}

func (h *Hub) listenersAlive() bool { return len(h.DeadListeners()) == 0 }

// Addr returns the bound address of a listener ("mqtts", "mqtt", "https",
// "http", "amqps"), or "" when it is disabled.
func (h *Hub) Addr(name string) string {
	if ln, ok := h.listener[name]; ok {
		return ln.Addr().String()
	}
	return ""
}

// CACertPEM returns the CA certificate that clients must trust.
func (h *Hub) CACertPEM() []byte { return h.caPEM }

// CACertFile returns the path of a file holding the CA certificate.
func (h *Hub) CACertFile() string { return h.caFile }

// Hostname is the hub's host name.
func (h *Hub) Hostname() string { return h.cfg.Hostname }

// ServiceConnectionString returns the connection string of a policy
// ("iothubowner" when empty).
func (h *Hub) ServiceConnectionString(policy string) string {
	if policy == "" {
		policy = "iothubowner"
	}
	for _, p := range h.policies {
		if p.Name == policy {
			return "HostName=" + h.cfg.Hostname + ";SharedAccessKeyName=" + p.Name + ";SharedAccessKey=" + p.PrimaryKey
		}
	}
	return ""
}

// Policies returns the shared access policies.
func (h *Hub) Policies() []sasauth.Policy { return h.policies }

// DeviceConnectionString returns a device's (or module's) connection string.
func (h *Hub) DeviceConnectionString(ctx context.Context, deviceID, moduleID string) (string, error) {
	id, err := h.Registry.Get(ctx, deviceID, moduleID)
	if err != nil {
		return "", err
	}
	s := "HostName=" + h.cfg.Hostname + ";DeviceId=" + deviceID
	if moduleID != "" {
		s += ";ModuleId=" + moduleID
	}
	if id.Auth.Type == registry.AuthSAS {
		return s + ";SharedAccessKey=" + id.Auth.PrimaryKey, nil
	}
	return s + ";x509=true", nil
}

// IsSubscribed reports whether a device's live MQTT connection holds filter.
func (h *Hub) IsSubscribed(deviceID, moduleID, filter string) bool {
	return h.broker.IsSubscribed(deviceID, moduleID, filter)
}

// fakeClock is c when it is a fake clock (tests, --fake-clock), else nil.
func fakeClock(c clock.Clock) *clock.Fake {
	f, _ := c.(*clock.Fake)
	return f
}
