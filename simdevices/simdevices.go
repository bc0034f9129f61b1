// Package simdevices runs simulated devices: real MQTT clients that connect
// to the emulator's own MQTT listener with SAS tokens signed by their device
// keys, send telemetry from a template, answer direct methods, complete C2D
// messages, and optionally report their desired properties back. They are
// clients of the hub like any device, so they exercise the same paths (the
// broker, the topic ACL, the twins and methods services); nothing reaches
// into a store.
package simdevices

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// Deps are the simulator's dependencies.
type Deps struct {
	Identities Identities
}

// Identities gives the simulator its devices' keys: the hub creates the
// devices that do not exist yet (with generated keys, as the registry does)
// and returns every device's primary key, or the registry's error.
type Identities interface {
	EnsureDevices(ctx context.Context, deviceIDs []string) (primaryKeys []string, err error)
}

// Config says where the hub's MQTT listener is and bounds the simulator.
type Config struct {
	// Hostname is the hub's host name, signed into SAS tokens and the
	// MQTT user name.
	Hostname string
	// BrokerURL is the MQTT listener: tcp://host:port, or ssl://host:port
	// with TLS set.
	BrokerURL string
	TLS       *tls.Config
	// MaxDevices bounds the devices all simulations run at once.
	MaxDevices int
	// TokenTTL is the lifetime of each SAS token; a reconnect signs a new one.
	TokenTTL time.Duration
	// Now is the hub's clock: tokens are signed with it, so a hub whose
	// clock was moved ahead (--fake-clock) still accepts them. time.Now
	// when nil. Send intervals and connection timeouts stay on the wall
	// clock: they pace the machine's work, not the hub's.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultMaxDevices bounds a simulator whose Config says nothing.
const DefaultMaxDevices = 10000

// Origins of a simulation.
const (
	OriginSeed = "seed"
	OriginAPI  = "api"
)

// Simulator runs simulations until Close.
type Simulator struct {
	Deps
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	groups  map[string]*group
	devices map[string]string // device id -> simulation id, reserved or running
	closed  bool
}

type group struct {
	spec    *compiled
	origin  string
	started time.Time
	devs    []*device
	cancel  context.CancelFunc
	done    chan struct{}
}

// New returns a simulator with nothing running; Close stops what runs.
func New(deps Deps, cfg Config) (*Simulator, error) {
	if err := iothub.CheckDeps("simdevices", deps); err != nil {
		return nil, err
	}
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = DefaultMaxDevices
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Simulator{Deps: deps, cfg: cfg, log: cfg.Logger.With("component", "simdevices"), ctx: ctx, cancel: cancel,
		groups: map[string]*group{}, devices: map[string]string{}}, nil
}

// SetBroker says where the MQTT listener is, once it is bound; before, and
// with an empty url, Start fails.
func (s *Simulator) SetBroker(url string, tlsCfg *tls.Config) {
	s.mu.Lock()
	s.cfg.BrokerURL, s.cfg.TLS = url, tlsCfg
	s.mu.Unlock()
}

// Start validates spec, makes sure its devices exist, and starts them; it
// returns once the clients are started (they connect in the background).
func (s *Simulator) Start(ctx context.Context, spec Spec, origin string) (Status, error) {
	c, err := compile(spec)
	if err != nil {
		return Status{}, err
	}
	ids := spec.DeviceIDs()
	if err := s.reserve(spec.ID, ids); err != nil {
		return Status{}, err
	}
	keys, err := s.Identities.EnsureDevices(ctx, ids)
	if err != nil {
		s.release(spec.ID, ids)
		return Status{}, err
	}
	gctx, cancel := context.WithCancel(s.ctx)
	g := &group{spec: c, origin: origin, started: s.cfg.Now().UTC(), cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	for i, id := range ids {
		g.devs = append(g.devs, newDevice(cfg, c, id, keys[i]))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		s.release(spec.ID, ids)
		return Status{}, iothub.ErrClosed
	}
	s.groups[spec.ID] = g
	s.wg.Add(1)
	s.mu.Unlock()

	var dwg sync.WaitGroup
	for _, d := range g.devs {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			d.run(gctx)
		}()
	}
	go func() {
		defer s.wg.Done()
		dwg.Wait()
		close(g.done)
	}()
	s.log.Info("simulation started", "simulation", spec.ID, "devices", len(ids), "origin", origin)
	return g.status(false), nil
}

// reserve claims a simulation id and its device ids, so two simulations
// never run the same device (they would keep disconnecting each other).
func (s *Simulator) reserve(id string, deviceIDs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return iothub.ErrClosed
	}
	if s.cfg.BrokerURL == "" {
		return iothub.Errorf(iothub.InvalidOperation, "simulation: the emulator has no MQTT listener for simulated devices (enable --mqtt-port or --mqtts-port).")
	}
	if _, ok := s.groups[id]; ok {
		return iothub.Errorf(iothub.InvalidOperation, "simulation: %q is already running; stop it first.", id)
	}
	if len(s.devices)+len(deviceIDs) > s.cfg.MaxDevices {
		return iothub.Errorf(iothub.IotHubQuotaExceeded, "simulation: at most %d simulated devices run at once (%d are running).", s.cfg.MaxDevices, len(s.devices))
	}
	for _, d := range deviceIDs {
		if other, ok := s.devices[d]; ok {
			return iothub.Errorf(iothub.InvalidOperation, "simulation: device %q is already simulated by %q.", d, other)
		}
	}
	for _, d := range deviceIDs {
		s.devices[d] = id
	}
	// A placeholder until the devices exist, so the id is taken meanwhile.
	s.groups[id] = nil
	return nil
}

func (s *Simulator) release(id string, deviceIDs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range deviceIDs {
		if s.devices[d] == id {
			delete(s.devices, d)
		}
	}
	if g, ok := s.groups[id]; ok && g == nil {
		delete(s.groups, id)
	}
}

// Stop stops a simulation and waits (at most until ctx ends) for its
// devices to disconnect.
func (s *Simulator) Stop(ctx context.Context, id string) error {
	s.mu.Lock()
	g := s.groups[id]
	if g == nil {
		s.mu.Unlock()
		return iothub.Errorf(iothub.GenericNotFound, "simulation: %q is not running.", id)
	}
	delete(s.groups, id)
	for _, d := range g.devs {
		delete(s.devices, d.id)
	}
	s.mu.Unlock()
	g.cancel()
	select {
	case <-g.done:
	case <-ctx.Done():
	}
	s.log.Info("simulation stopped", "simulation", id)
	return nil
}

// List returns every running simulation, without per-device details.
func (s *Simulator) List() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.groups))
	for _, g := range s.groups {
		if g != nil {
			out = append(out, g.status(false))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Get returns one simulation with its devices.
func (s *Simulator) Get(id string) (Status, error) {
	s.mu.Lock()
	g := s.groups[id]
	s.mu.Unlock()
	if g == nil {
		return Status{}, iothub.Errorf(iothub.GenericNotFound, "simulation: %q is not running.", id)
	}
	return g.status(true), nil
}

// Close stops every simulation and waits for its devices to disconnect.
func (s *Simulator) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Status describes a running simulation.
type Status struct {
	ID             string         `json:"id"`
	Origin         string         `json:"origin"`
	StartedTime    time.Time      `json:"startedTimeUtc"`
	Spec           Spec           `json:"spec"`
	DeviceCount    int            `json:"deviceCount"`
	ConnectedCount int            `json:"connectedCount"`
	MessagesSent   int64          `json:"messagesSent"`
	MethodCalls    int64          `json:"methodCalls"`
	Devices        []DeviceStatus `json:"devices,omitempty"`
}

// DeviceStatus describes one simulated device.
type DeviceStatus struct {
	DeviceID     string `json:"deviceId"`
	Connected    bool   `json:"connected"`
	MessagesSent int64  `json:"messagesSent"`
	MethodCalls  int64  `json:"methodCalls"`
	C2DReceived  int64  `json:"c2dReceived"`
	LastError    string `json:"lastError,omitempty"`
}

func (g *group) status(withDevices bool) Status {
	st := Status{ID: g.spec.ID, Origin: g.origin, StartedTime: g.started, Spec: g.spec.Spec, DeviceCount: len(g.devs)}
	for _, d := range g.devs {
		ds := d.status()
		if ds.Connected {
			st.ConnectedCount++
		}
		st.MessagesSent += ds.MessagesSent
		st.MethodCalls += ds.MethodCalls
		if withDevices {
			st.Devices = append(st.Devices, ds)
		}
	}
	return st
}
