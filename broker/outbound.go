package broker

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Everything the hub sends a device on its own initiative (twin responses,
// desired-property notifications, method requests, C2D messages) goes
// through the connection's outbox: callers append and return at once, and
// a writer goroutine, started only while the outbox holds packets, writes
// them in order. No domain lock, no shared worker and no read loop of
// another device ever waits on a device's socket. A device that cannot keep
// up (its outbox overflows, or one write takes longer than WriteTimeout) is
// disconnected, as the hub does; the C2D messages it had not acknowledged
// go back to its queue.

// errSlowDevice ends the connection of a device that does not read fast
// enough for what the hub sends it.
var errSlowDevice = errors.New("the device does not read what the hub sends it")

type outbox struct {
	mu      sync.Mutex
	q       []outPacket
	bytes   int
	writing bool
	closed  bool
}

type outPacket struct {
	pk packets.Packet
	// c2d is the packet id of a C2D publish, tracked in c2dInflight.
	c2d uint16
}

// packetCost approximates a packet's encoded size for the outbox bound.
func packetCost(pk *packets.Packet) int { return len(pk.TopicName) + len(pk.Payload) + 8 }

// send queues pk for c's device. It never blocks on the socket: when the
// outbox is full the connection is closed (asynchronously, as closing a TLS
// connection may itself try to write) and errSlowDevice returned.
func (b *Broker) send(c *conn, p outPacket) error {
	o := &c.out
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrNotConnected
	}
	cost := packetCost(&p.pk)
	if len(o.q) >= b.cfg.OutboxPackets || o.bytes+cost > b.cfg.OutboxBytes {
		o.closed = true
		o.mu.Unlock()
		b.log.Info("device disconnected: it does not read fast enough", "device", c.dev.ClientID(), "queued", len(o.q))
		go c.cl.Stop(errSlowDevice)
		return errSlowDevice
	}
	o.q = append(o.q, p)
	o.bytes += cost
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	if start {
		go b.writeOut(c)
	}
	return nil
}

// writeOut drains c's outbox and exits when it is empty. A failed write
// (its deadline passed, the connection closed) ends the connection.
func (b *Broker) writeOut(c *conn) {
	o := &c.out
	for {
		o.mu.Lock()
		if len(o.q) == 0 || o.closed {
			o.writing = false
			o.mu.Unlock()
			return
		}
		p := o.q[0]
		o.q[0] = outPacket{}
		o.q = o.q[1:]
		o.bytes -= packetCost(&p.pk)
		o.mu.Unlock()
		if err := c.cl.WritePacket(p.pk); err != nil {
			o.mu.Lock()
			o.closed = true
			o.writing = false
			o.mu.Unlock()
			if !c.cl.Closed() {
				b.log.Info("device disconnected: a write failed", "device", c.dev.ClientID(), "error", err)
			}
			c.cl.Stop(errSlowDevice)
			return
		}
		if p.c2d != 0 {
			c.c2d.sent(p.c2d)
		}
	}
}

// closeOutbox stops c's outbox taking packets; those still queued are
// dropped (C2D ones are returned to the queue by the caller).
func (c *conn) closeOutbox() {
	c.out.mu.Lock()
	c.out.closed = true
	c.out.q = nil
	c.out.bytes = 0
	c.out.mu.Unlock()
}

// deadlineConn gives every write a deadline, so a device that stops reading
// cannot hold a writer (its own read loop included) for longer than that.
// It wraps the TCP connection under TLS; mochi's keepalive deadlines still
// apply to reads.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetDeadline and SetWriteDeadline keep the write timeout in force: mochi
// sets one deadline for both directions from the keep-alive.
func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
