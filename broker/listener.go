package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// netListener adapts a listener the hub already bound (so bind errors come
// back to the caller at once, and port 0 works) to mochi's Listener. It
// does TLS itself, so that every stage of a new connection has a deadline:
// the TLS handshake, then the CONNECT packet (mochi only sets deadlines
// from the keep-alive, after CONNECT).
type netListener struct {
	id  string
	l   net.Listener
	tls *tls.Config
	b   *Broker
	end atomic.Bool
	// dead is set when the listener stopped accepting for good.
	dead atomic.Bool
}

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.l.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }
func (l *netListener) Init(*slog.Logger) error { return nil }

// Serve accepts until Close. Errors such as EMFILE (out of file
// descriptors) do not end it: it backs off up to a second and accepts
// again, as net/http does. Only a listener closed under it ends the loop,
// and Alive then reports it.
func (l *netListener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		c, err := l.l.Accept()
		if err != nil {
			if l.end.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				l.dead.Store(true)
				l.b.log.Error("mqtt listener stopped", "listener", l.id, "error", err)
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.b.log.Warn("mqtt accept failed; retrying", "listener", l.id, "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.handle(c, establish)
	}
}

// handle serves one connection for its whole life. Its goroutine is the
// connection's read loop, parked in a read while the device is idle, so
// its own frame is kept small: the runtime can shrink an idle goroutine's
// stack only to twice what is in use.
func (l *netListener) handle(c net.Conn, establish listeners.EstablishFn) {
	if nc := l.prepare(c); nc != nil {
		_ = establish(l.id, nc)
	}
}

// prepare wraps c with write deadlines and TLS, and sets the deadline for
// the CONNECT packet; nil means the handshake failed and c is closed.
func (l *netListener) prepare(c net.Conn) net.Conn {
	var nc net.Conn = &deadlineConn{Conn: c, timeout: l.b.cfg.WriteTimeout}
	if l.tls != nil {
		tc := tls.Server(nc, l.tls)
		_ = tc.SetReadDeadline(time.Now().Add(l.b.cfg.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			l.b.log.Debug("tls handshake failed", "listener", l.id, "remote", c.RemoteAddr(), "error", err)
			_ = c.Close()
			return nil
		}
		nc = tc
	}
	// mochi replaces this deadline with the keep-alive's after CONNECT.
	_ = nc.SetReadDeadline(time.Now().Add(l.b.cfg.ConnectTimeout))
	return nc
}

func (l *netListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		_ = l.l.Close()
		closeClients(l.id)
	}
}

// wsListener serves MQTT over WebSockets from the hub's HTTPS server, at
// /$iothub/websocket, as the SDKs' WebSocket transports expect.
type wsListener struct {
	id           string
	writeTimeout time.Duration
	// connectTimeout bounds the wait for CONNECT after the upgrade.
	connectTimeout time.Duration
	mu             sync.RWMutex
	establish      listeners.EstablishFn
	upgrader       websocket.Upgrader
	end            atomic.Bool
}

func newWSListener(id string, writeTimeout, connectTimeout time.Duration) *wsListener {
	return &wsListener{id: id, writeTimeout: writeTimeout, connectTimeout: connectTimeout, upgrader: websocket.Upgrader{
		CheckOrigin:     func(*http.Request) bool { return true },
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
	}}
}

func (l *wsListener) ID() string              { return l.id }
func (l *wsListener) Address() string         { return "/$iothub/websocket" }
func (l *wsListener) Protocol() string        { return "wss" }
func (l *wsListener) Init(*slog.Logger) error { return nil }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
}

// ServeHTTP upgrades the request and runs an MQTT session over it. The
// sub-protocol is matched case-insensitively and echoed as offered: the C
// SDK offers "MQTT", the others "mqtt" (digest §1.1).
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.RLock()
	establish := l.establish
	l.mu.RUnlock()
	if establish == nil || l.end.Load() {
		http.Error(w, "MQTT over WebSocket is not available", http.StatusServiceUnavailable)
		return
	}
	var proto string
	for _, p := range websocket.Subprotocols(r) {
		if strings.EqualFold(p, "mqtt") {
			proto = p
			break
		}
	}
	if proto == "" {
		http.Error(w, "the WebSocket sub-protocol must be mqtt", http.StatusBadRequest)
		return
	}
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", proto)
	up := l.upgrader
	c, err := up.Upgrade(w, r, h)
	if err != nil {
		return
	}
	defer c.Close()
	// mochi replaces this deadline with the keep-alive's after CONNECT.
	_ = c.SetReadDeadline(time.Now().Add(l.connectTimeout))
	conn := &wsConn{Conn: c.UnderlyingConn(), ws: c, writeTimeout: l.writeTimeout}
	if r.TLS != nil {
		// X.509 devices authenticate with the certificate they gave the
		// HTTPS listener, as on the hub.
		conn.peerCerts = r.TLS.PeerCertificates
	}
	_ = establish(l.id, conn)
}

// wsConn presents a WebSocket as a net.Conn carrying binary frames.
type wsConn struct {
	net.Conn
	ws           *websocket.Conn
	writeTimeout time.Duration
	peerCerts    []*x509.Certificate // the TLS client certificates, if any
	r            interface{ Read([]byte) (int, error) }
	wm           sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			t, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if t != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err != nil {
			c.r = nil // any error ends this frame; EOF just means the next one
			if !errors.Is(err, io.EOF) {
				return n, err
			}
			if n == 0 {
				continue
			}
		}
		return n, nil
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	// Every write has a deadline, whatever mochi set from the keep-alive.
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Deadlines: mochi refreshes them from its read loop after each packet;
// they apply to reads only, writes get WriteTimeout each (see Write).
func (c *wsConn) SetDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetWriteDeadline(time.Time) error { return nil }
