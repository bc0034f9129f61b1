package amqphub

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocol is the WebSocket subprotocol of AMQP, as the SDKs' AmqpWs
// transports ask for it.
const Subprotocol = "AMQPWSB10"

// IsAMQP reports whether a WebSocket upgrade request asks for AMQP; the
// hub serves MQTT on the same path for any other subprotocol.
func IsAMQP(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == Subprotocol {
			return true
		}
	}
	return false
}

type wsHandler struct{ s *Server }

var upgrader = websocket.Upgrader{
	Subprotocols:    []string{Subprotocol},
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  16 * 1024,
	WriteBufferSize: 16 * 1024,
}

func (h wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	h.s.ServeConn(NewWebSocketConn(ws))
}

// NewWebSocketConn adapts a WebSocket to a net.Conn: binary messages in
// either direction form one AMQP byte stream. Its user must keep to one
// reader and one writer at a time, as the engine does (and clients in tests).
func NewWebSocketConn(ws *websocket.Conn) net.Conn { return &wsConn{ws: ws} }

// wsConn is NewWebSocketConn's net.Conn.
type wsConn struct {
	ws     *websocket.Conn
	r      io.Reader // the current message
	closer sync.Once
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error {
	var err error
	c.closer.Do(func() { err = c.ws.Close() })
	return err
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}
