// Package amqphub is the hub's service-side AMQP 1.0 transport, on the
// engine in package amqp: claims-based security on $cbs, cloud-to-device
// send on /messages/devicebound, the feedback receiver on
// /messages/serviceBound/feedback and the file-notification receiver on
// /messages/serviceBound/filenotifications. It is thin: messages become
// messaging.C2DMessage and go through the same CloudToDevice service as the
// MQTT and HTTPS transports, and iothub.Error becomes an AMQP error in one
// place (errors.go). It serves AMQPS listeners (Serve) and AMQP over
// WebSockets (WebSocketHandler).
package amqphub

import (
	"context"
	"crypto/x509"
	"errors"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/eventhub"
	"github.com/iothub-emulator/iothub-emulator/fileupload"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// Deps are the services the transport calls.
type Deps struct {
	Auth *sasauth.Authenticator
	C2D  *messaging.CloudToDevice
	// EventHub serves the Event Hub-compatible nodes (eventhub.go); nil
	// leaves them out.
	EventHub *eventhub.Hub
	// FileNotifications feeds the file-notification node.
	FileNotifications fileupload.NotificationSource

	// The device side: devices authenticate against Identities and reach
	// the same services as over MQTT, under the same rules (rules.go).
	Identities DeviceIdentities
	Telemetry  TelemetrySink
	Twins      DeviceTwins
	Methods    DeviceMethods
	Admission  Admission
}

// Config configures the transport; zero values take the defaults of
// withDefaults.
type Config struct {
	// Hostname is the hub's host name; its first label is the hub name,
	// the user-id of feedback messages.
	Hostname string
	// MaxConnections bounds the AMQP connections open at once, over every
	// listener; more are closed at once. Default 1,000.
	MaxConnections int
	// SendTimeout bounds one C2D enqueue and the wait for a feedback
	// receiver's credit. Default 30 s.
	SendTimeout time.Duration
	// DeviceCAs verifies certificateAuthority devices' client certificates.
	DeviceCAs *x509.CertPool
	// EventHubPort is the TLS port that redirects from messages/events
	// name (the AMQPS listener's, known once it is bound). Default 5671.
	EventHubPort func() int
	// Engine tunes the protocol engine (frame sizes, credit, timeouts).
	Engine amqp.Config
	// Clock ends connections whose token expires; nil means the wall
	// clock. Now, when nil, reads it.
	Clock  clock.Clock
	Now    func() time.Time
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1000
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	c.Clock = clock.OrReal(c.Clock)
	if c.EventHubPort == nil {
		c.EventHubPort = func() int { return 5671 }
	}
	if c.Now == nil {
		c.Now = c.Clock.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Engine.ContainerID = c.Hostname
	// Go's service SDK skips SASL and authenticates with CBS only.
	c.Engine.AllowNoSASL = true
	return c
}

// Server is the hub's AMQP endpoint.
type Server struct {
	deps   Deps
	cfg    Config
	log    *slog.Logger
	engine *amqp.Server
	slots  chan struct{} // one per open connection
	// fileDone is the sequence number up to which file notifications have
	// been accepted by a receiver.
	fileDone atomic.Int64
	// devices are the AMQP devices connected now.
	devices *deviceTable
	// conns are the open connections, for the fault service (drop.go).
	connsMu sync.Mutex
	conns   map[*connState]struct{}
	ctx     context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	listeners []net.Listener
	closed    bool
}

// New returns a transport ready to serve; Close ends it.
func New(deps Deps, cfg Config) (*Server, error) {
	if err := iothub.CheckDeps("amqp", deps, "EventHub"); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{deps: deps, cfg: cfg, log: cfg.Logger.With("component", "amqp"), slots: make(chan struct{}, cfg.MaxConnections)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.devices = &deviceTable{srv: s, cur: map[devKey]*deviceSession{}}
	s.conns = map[*connState]struct{}{}
	cfg.Engine.Authenticate = s.authenticate
	s.engine = amqp.NewServer(s, cfg.Engine)
	return s, nil
}

// Serve accepts connections on ln (TLS already wrapped around it) until ln
// or the server is closed; then it returns iothub.ErrClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return iothub.ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return iothub.ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait, do not spin.
			s.log.Warn("AMQP accept failed", "error", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return iothub.ErrClosed
			}
			continue
		}
		go s.ServeConn(nc)
	}
}

// ServeConn runs the protocol on one accepted connection (TCP, TLS or a
// WebSocket) until it ends; over MaxConnections it closes nc at once.
func (s *Server) ServeConn(nc net.Conn) {
	select {
	case s.slots <- struct{}{}:
	default:
		s.log.Warn("AMQP connection refused: too many connections", "remote", nc.RemoteAddr(), "max", s.cfg.MaxConnections)
		_ = nc.Close()
		return
	}
	defer func() { <-s.slots }()
	if err := s.engine.ServeConn(s.ctx, nc); err != nil && !errors.Is(err, amqp.ErrServerClosed) {
		s.log.Debug("AMQP connection ended", "remote", nc.RemoteAddr(), "error", err)
	}
}

// WebSocketHandler serves AMQP over WebSockets (subprotocol AMQPWSB10), as
// the SDKs' AmqpWs transports use it at /$iothub/websocket on 443.
func (s *Server) WebSocketHandler() http.Handler { return wsHandler{s} }

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lns := s.listeners
	s.mu.Unlock()
	s.cancel()
	for _, ln := range lns {
		_ = ln.Close()
	}
	return s.engine.Close()
}

// Connected gives each connection its own state: the claims put on $cbs and
// the links of the service nodes (amqp.Handler).
func (s *Server) Connected(c *amqp.Conn) (amqp.ConnHandler, error) {
	cs := &connState{srv: s, conn: c, links: map[*amqp.Link]struct{}{},
		devices: map[devKey]*deviceClaim{}, sessions: map[devKey]*deviceSession{}}
	if g, ok := c.Identity().(*grant); ok {
		cs.grant(g)
	}
	cs.cbs = amqp.NewRequestNode(cs.serveCBS, s.cfg.SendTimeout)
	s.connsMu.Lock()
	s.conns[cs] = struct{}{}
	s.connsMu.Unlock()
	return cs, nil
}

// nodeAddress reduces a link address to the node's path, lower case:
// clients send "/messages/devicebound", "amqps://host/messages/devicebound"
// or "/messages/serviceBound/feedback".
func nodeAddress(addr string) string {
	for _, scheme := range []string{"amqps://", "amqp://", "wss://"} {
		if len(addr) > len(scheme) && strings.EqualFold(addr[:len(scheme)], scheme) {
			addr = addr[len(scheme):]
			if i := strings.IndexByte(addr, '/'); i >= 0 {
				addr = addr[i:]
			} else {
				addr = ""
			}
			break
		}
	}
	return strings.ToLower(strings.Trim(addr, "/"))
}

// The nodes of the service endpoint.
const (
	nodeCBS               = "$cbs"
	nodeDevicebound       = "messages/devicebound"
	nodeFeedback          = "messages/servicebound/feedback"
	nodeFileNotifications = "messages/servicebound/filenotifications"
)

// Attach routes a link to its node (amqp.ConnHandler). Every node but $cbs
// needs a live ServiceConnect claim on the connection.
func (cs *connState) Attach(l *amqp.Link) error {
	node := nodeAddress(l.Address())
	if node == nodeCBS {
		cs.trackCBS(l)
		if l.Role() == amqp.RoleReceiver {
			cs.cbs.AddRequestLink(l)
		} else {
			cs.cbs.AddReplyLink(l)
		}
		return nil
	}
	if k, kind, ok := deviceNode(l.Address()); ok {
		return cs.attachDevice(l, k, kind)
	}
	var serve func(*amqp.Link)
	switch {
	case node == nodeDevicebound && l.Role() == amqp.RoleReceiver:
		// uamqp (Python) asks for second but completes a send only on a
		// settled disposition; the hub answers first.
		l.SetReceiverSettleMode(amqp.ReceiverSettleFirst)
		serve = cs.serveDevicebound
	case node == nodeFeedback && l.Role() == amqp.RoleSender:
		serve = cs.serveFeedback
	case node == nodeFileNotifications && l.Role() == amqp.RoleSender:
		serve = cs.serveFileNotifications
	case node == nodeDevicebound || node == nodeFeedback || node == nodeFileNotifications:
		return amqp.Errorf(amqp.ErrCondNotAllowed, "The node %s cannot be attached as a %s link.", l.Address(), peerRole(l))
	default:
		if handled, err := cs.attachEventHub(l, node); handled {
			return err
		}
		return amqp.Errorf(amqp.ErrCondNotFound, "The node %s does not exist on this hub.", l.Address())
	}
	if err := cs.authorize(l); err != nil {
		return err
	}
	go serve(l)
	return nil
}

// peerRole names the client's role on l, the one an error message must use.
func peerRole(l *amqp.Link) string {
	if l.Role() == amqp.RoleReceiver {
		return "sender"
	}
	return "receiver"
}

// Closed stops the connection's claim timer (amqp.ConnHandler).
func (cs *connState) Closed(error) {
	cs.srv.connsMu.Lock()
	delete(cs.srv.conns, cs)
	cs.srv.connsMu.Unlock()
	cs.mu.Lock()
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.mu.Unlock()
	cs.closeDevices()
}
