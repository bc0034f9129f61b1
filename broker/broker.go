// Package broker is the hub's device-facing MQTT endpoint: an embedded
// mochi-mqtt server with one hook that authenticates devices, confines each
// to its own topics, keeps clean-session-0 sessions across restarts, and
// routes hub topics to the domain services. It never forwards one device's
// publishes to another: everything a device sends is consumed by the hub.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/provisioning"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/sessions"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Identities is what the broker needs from the registry.
type Identities interface {
	Get(ctx context.Context, deviceID, moduleID string) (*registry.Identity, error)
	SetConnection(ctx context.Context, deviceID, moduleID, state, modelID string) error
}

// Device identifies the device or module behind a connection.
type Device struct {
	DeviceID, ModuleID string
	// AuthMethod is "sas" or "x509", for iothub-connection-auth-method.
	AuthMethod string
	// GenerationID is the identity's generation id, for
	// iothub-connection-auth-generation-id.
	GenerationID string
	// Transport is "mqtt" or "mqtt-ws".
	Transport string
}

// ClientID is the MQTT client id the device uses.
func (d Device) ClientID() string {
	if d.ModuleID != "" {
		return d.DeviceID + "/" + d.ModuleID
	}
	return d.DeviceID
}

// Handlers are the domain entry points for hub topics. Each returns an
// *iothub.Error for failures the device should see; any other error means
// the publish was not stored and is not acknowledged.
type Handlers struct {
	// TwinGet returns the device's twin for a twin GET.
	TwinGet func(ctx context.Context, d Device) (*twins.Twin, error)
	// TwinPatchReported applies a reported patch and returns the new version.
	TwinPatchReported func(ctx context.Context, d Device, patch map[string]any) (int64, error)
	// MethodResponse delivers a device's direct-method answer.
	MethodResponse func(d Device, rid string, status int, body []byte)
	// Telemetry queues a device-to-cloud message for storage, in order
	// behind the connection's earlier ones. For a message the device wants
	// acknowledged (QoS 1, ack true) it returns wait, which returns once the
	// message is stored (call it exactly once): the PUBACK is written only
	// after that, while the connection's read loop reads on. For QoS 0 wait
	// is nil; a later message's wait still covers it.
	Telemetry func(ctx context.Context, d Device, props map[string]string, body []byte, ack bool) (wait func() error, err error)
	// SessionChanged is called after a device connects, subscribes or
	// disconnects (direct methods wait on it).
	SessionChanged func(d Device)
	// C2DReady is called when a device may receive cloud-to-device
	// messages: it connected with a stored subscription, or subscribed.
	C2DReady func(d Device)
	// C2DComplete reports the device's PUBACK of a C2D message.
	C2DComplete func(d Device, lockToken string)
	// C2DRelease hands back the C2D messages a closed connection had not
	// acknowledged: written ones count as a delivery attempt, unsent ones
	// never reached the socket.
	C2DRelease func(d Device, written, unsent []string)
	// AdmitConnect, if set, may refuse an authenticated device's connection
	// (injected faults); an *iothub.Error of 503001 gives CONNACK 3 (the
	// SDKs retry), any other CONNACK 5.
	AdmitConnect func(d Device) error
}

// Config configures a Broker.
type Config struct {
	Auth       *sasauth.Authenticator
	Identities Identities
	Sessions   sessions.Store
	// DeviceCAs verifies certificateAuthority devices' client certificates.
	DeviceCAs *x509.CertPool
	// Provisioning serves devices that register with the Device
	// Provisioning Service on the hub's listeners (dps.go); nil: none.
	Provisioning Provisioning
	Logger       *slog.Logger
	// Clock ends connections whose SAS token expires; nil means the wall
	// clock.
	Clock clock.Clock

	// HandshakeTimeout bounds a new connection's TLS handshake and
	// ConnectTimeout the wait for its CONNECT packet after that.
	HandshakeTimeout time.Duration
	ConnectTimeout   time.Duration
	// MaxPacketSize is the largest packet a device may send; a connection
	// that announces a larger one is closed before it is read.
	MaxPacketSize int
	// WriteTimeout bounds each write to a device; a device that takes longer
	// to read is disconnected. OutboxPackets and OutboxBytes bound what may
	// wait for a connection's writer; more disconnects the device.
	WriteTimeout  time.Duration
	OutboxPackets int
	OutboxBytes   int
}

// Defaults of Config's limits.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 30 * time.Second
	// DefaultMaxPacketSize fits the hub's largest device message (256 KB of
	// telemetry, a 128 KB method response) with its topic and properties.
	DefaultMaxPacketSize = 256*1024 + 16*1024
	DefaultWriteTimeout  = 20 * time.Second
	DefaultOutboxPackets = 1024
	// DefaultOutboxBytes holds a full C2D queue (50 messages of 64 KB) and
	// then some.
	DefaultOutboxBytes = 4 << 20
)

// Broker wraps the mochi server.
type Broker struct {
	cfg      Config
	srv      *mqtt.Server
	log      *slog.Logger
	handlers Handlers
	ws       *wsListener

	mu        sync.RWMutex
	conns     map[string]*conn // live connections by client id
	listeners []*netListener
	// byClient maps each *mqtt.Client to its conn, also while a newer
	// connection replaces it. Every packet looks its connection up here,
	// so it is a sync.Map (lock-free reads) rather than a map under mu.
	byClient sync.Map
	serving  atomic.Bool
}

type conn struct {
	dev Device
	cl  *mqtt.Client
	// current is set while this is conns[its client id]: not replaced by
	// a newer connection of the device, not disconnected.
	current atomic.Bool
	c2d     c2dInflight
	out     outbox
	// expiry closes the connection when its SAS token expires, as the hub
	// does (digest §1.3); the SDKs reconnect with a fresh token before that.
	expiry clock.Timer
	// dps is set for a device registering with DPS (dps.go), not the hub.
	dps *provisioning.Credentials
	// stored holds the telemetry this connection's read loop queued and
	// has not acknowledged yet (hook.OnPacketEncode).
	stored pendingAcks
}

// New builds a broker; add listeners, set handlers, then Start.
func New(cfg Config) *Broker {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.OutboxPackets <= 0 {
		cfg.OutboxPackets = DefaultOutboxPackets
	}
	if cfg.OutboxBytes <= 0 {
		cfg.OutboxBytes = DefaultOutboxBytes
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1 // the hub grants QoS 1 for QoS 2 subscriptions (digest §1.4)
	caps.RetainAvailable = 0
	caps.MinimumProtocolVersion = 4
	caps.SharedSubAvailable = 0
	// mochi allocates a packet's declared length before reading it: without
	// a bound, four sockets declaring 256 MB each take gigabytes.
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	// mochi allocates this queue per connection (8 bytes a slot); the hub
	// writes to devices through its own outboxes, so it stays near empty.
	caps.MaximumClientWritesPending = 32
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(quietHandler{log.With("component", "mqtt").Handler()}),
		InlineClient: true,
		// $SYS topics are a mochi feature, not the hub's; refresh them rarely.
		SysTopicResendInterval: 3600,
	})
	b := &Broker{cfg: cfg, srv: srv, log: log, conns: map[string]*conn{}}
	b.ws = newWSListener("wss", cfg.WriteTimeout, cfg.ConnectTimeout)
	return b
}

// SetHandlers installs the domain handlers; call before Start.
func (b *Broker) SetHandlers(h Handlers) { b.handlers = h }

// AddListener serves MQTT on an already-bound TCP listener, over TLS when
// tlsConfig is not nil.
func (b *Broker) AddListener(name string, l net.Listener, tlsConfig *tls.Config) error {
	nl := &netListener{id: name, l: l, tls: tlsConfig, b: b}
	if err := b.srv.AddListener(nl); err != nil {
		return err
	}
	b.mu.Lock()
	b.listeners = append(b.listeners, nl)
	b.mu.Unlock()
	return nil
}

// DeadListeners names the listeners that stopped accepting for good.
func (b *Broker) DeadListeners() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	for _, l := range b.listeners {
		if l.dead.Load() {
			out = append(out, l.id)
		}
	}
	return out
}

// WebSocketHandler serves MQTT over WebSockets; mount it at /$iothub/websocket.
func (b *Broker) WebSocketHandler() *wsListener { return b.ws }

// Start loads stored sessions and starts serving.
func (b *Broker) Start() error {
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		return err
	}
	if err := b.srv.AddListener(b.ws); err != nil {
		return err
	}
	// mochi counts connections in a WaitGroup that Close waits on, and a
	// count rising from zero while Close waits is a race. Holding one count
	// while serving keeps it from ever rising from zero.
	b.srv.Listeners.ClientsWg.Add(1)
	b.serving.Store(true)
	return b.srv.Serve()
}

// Close stops the broker and closes every connection.
func (b *Broker) Close() error {
	if b.serving.CompareAndSwap(true, false) {
		b.srv.Listeners.ClientsWg.Done()
	}
	return b.srv.Close()
}

// register makes c the live connection of its client id.
func (b *Broker) register(c *conn) {
	b.mu.Lock()
	if old, ok := b.conns[c.cl.ID]; ok {
		old.current.Store(false)
	}
	b.conns[c.cl.ID] = c // replaced by the newest connection
	c.current.Store(true)
	b.mu.Unlock()
	b.byClient.Store(c.cl, c)
}

// connOf returns cl's connection, also when a newer one replaced it.
func (b *Broker) connOf(cl *mqtt.Client) (*conn, bool) {
	c, ok := b.byClient.Load(cl)
	if !ok {
		return nil, false
	}
	return c.(*conn), true
}

// currentConn returns cl's connection if it is its device's live one.
func (b *Broker) currentConn(cl *mqtt.Client) (*conn, bool) {
	c, ok := b.connOf(cl)
	if !ok || !c.current.Load() {
		return nil, false
	}
	return c, true
}

func (b *Broker) live(clientID string) (*conn, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	c, ok := b.conns[clientID]
	return c, ok
}

// IsConnected reports whether the device or module has a live connection.
func (b *Broker) IsConnected(deviceID, moduleID string) bool {
	_, ok := b.live(Device{DeviceID: deviceID, ModuleID: moduleID}.ClientID())
	return ok
}

// IsSubscribed reports whether the device's live connection holds filter.
func (b *Broker) IsSubscribed(deviceID, moduleID, filter string) bool {
	c, ok := b.live(Device{DeviceID: deviceID, ModuleID: moduleID}.ClientID())
	if !ok {
		return false
	}
	_, ok = c.cl.State.Subscriptions.Get(filter)
	return ok
}

// ConnectedCount is the number of live device and module connections.
func (b *Broker) ConnectedCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.conns)
}

// ErrNotConnected is returned when publishing to a device that is offline.
var ErrNotConnected = errors.New("device is not connected")

// Send queues a QoS 0 publish for one device's live connection only; it
// does not wait for the write. Hub topics like $iothub/twin/res/# are
// shared filters, so publishing through the topic tree would reach every
// device.
func (b *Broker) Send(deviceID, moduleID, topic string, payload []byte) error {
	c, ok := b.live(Device{DeviceID: deviceID, ModuleID: moduleID}.ClientID())
	if !ok {
		return ErrNotConnected
	}
	return b.send(c, outPacket{pk: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	}})
}

// CloseSession drops a device's live connection and forgets its stored
// session; the registry calls it when a device is disabled or deleted.
func (b *Broker) CloseSession(deviceID, moduleID string) {
	id := Device{DeviceID: deviceID, ModuleID: moduleID}.ClientID()
	if c, ok := b.live(id); ok {
		// Closing a TLS connection may write; never wait on a device here.
		go c.cl.Stop(packets.ErrNotAuthorized)
	}
}

// ForgetSession removes the stored session of a deleted identity.
func (b *Broker) ForgetSession(deviceID, moduleID string) {
	id := Device{DeviceID: deviceID, ModuleID: moduleID}.ClientID()
	b.CloseSession(deviceID, moduleID)
	if cl, ok := b.srv.Clients.Get(id); ok {
		b.srv.UnsubscribeClient(cl)
		b.srv.Clients.Delete(id)
	}
	if b.cfg.Sessions != nil {
		_ = b.cfg.Sessions.DeleteSession(context.Background(), id)
	}
}
