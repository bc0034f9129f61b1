package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// closedByHub reports whether the hub closed c: a read ends with EOF or a
// reset rather than the test's own deadline (generous, not a measurement).
func closedByHub(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A packet that declares more than the hub accepts ends the connection
// before the hub reads (or allocates) it (issue #13: 256 MB declared by
// four sockets took 2 GB).
func TestLimits_OversizedPacketRefusedUnread(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"CONNECT of 256 MB", []byte{0x10, 0xff, 0xff, 0xff, 0x7f}},
		{"PUBLISH of 1 MB after CONNECT", []byte{0x30, 0x80, 0x80, 0x40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.MQTTAddr())
			if tc.header[0] == 0x30 {
				var code byte
				c, code = rawConnect(t, h, h.CreateDevice(t, "big"))
				if code != 0 {
					t.Fatalf("CONNACK %d", code)
				}
			}
			if _, err := c.Write(tc.header); err != nil {
				t.Fatal(err)
			}
			if !closedByHub(t, c) {
				t.Error("the hub kept the connection open, waiting for the packet")
			}
		})
	}
}

// Every stage of a new connection has a deadline: TCP without CONNECT, TLS
// without a hello, a TLS handshake and then no CONNECT (issue #13).
func TestLimits_StageTimeouts(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) {
		c.HandshakeTimeout, c.ConnectTimeout = 300*time.Millisecond, 300*time.Millisecond
	}))
	t.Run("no CONNECT on mqtt", func(t *testing.T) {
		if !closedByHub(t, dialRaw(t, h.MQTTAddr())) {
			t.Error("still open")
		}
	})
	t.Run("no TLS hello on mqtts", func(t *testing.T) {
		if !closedByHub(t, dialRaw(t, h.MQTTSAddr())) {
			t.Error("still open")
		}
	})
	t.Run("WebSocket upgrade, then no CONNECT", func(t *testing.T) {
		d := websocket.Dialer{TLSClientConfig: h.TLSConfig(), Subprotocols: []string{"mqtt"}, HandshakeTimeout: 10 * time.Second}
		ws, _, err := d.Dial("wss://"+h.Addr("https")+"/$iothub/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, _, err = ws.ReadMessage()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("still open")
		}
	})
	t.Run("TLS, then no CONNECT", func(t *testing.T) {
		tc := tls.Client(dialRaw(t, h.MQTTSAddr()), h.TLSConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if !closedByHub(t, tc) {
			t.Error("still open")
		}
	})
}

// Connections over the limit are closed at once; a freed slot is reused.
func TestLimits_ConnectionCap(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithConfig(func(c *hub.Config) { c.MaxConnections = 3 }))
	held := []net.Conn{dialRaw(t, h.MQTTAddr()), dialRaw(t, h.MQTTAddr()), dialRaw(t, h.MQTTAddr())}
	// The listener counts a connection once it accepted it: wait for that
	// by finding the fourth refused.
	checkFor(t, 10*time.Second, func() error {
		c := dialRaw(t, h.MQTTAddr())
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("a fourth connection stays open")
		}
		return nil
	})
	// The cap covers the HTTP listeners as well.
	c := dialRaw(t, h.Addr("http"))
	if !closedByHub(t, c) {
		t.Error("an HTTP connection over the cap stays open")
	}
	held[0].Close()
	// Once the hub has seen the close, a new connection is served.
	checkFor(t, 10*time.Second, func() error {
		resp, err := http.Get(h.HTTPURL() + "/_emulator/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// A limit above the maximum is refused, not silently cut to a default.
func TestLimits_MessageListLimit(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	checkHubError(t, h.Do(t, http.MethodGet, "/_emulator/messages?limit=10001", nil), http.StatusBadRequest, "ArgumentInvalid")
	if r := h.Do(t, http.MethodGet, "/_emulator/messages?limit=10000", nil); r.StatusCode != http.StatusOK {
		t.Errorf("limit=10000: %d %s", r.StatusCode, r.Body)
	}
}
