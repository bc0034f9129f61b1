package amqp

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// sessionScript is a client's side of a short session after the handshake: it attaches a
// sender and a receiver, grants credit, sends, settles and detaches.
func sessionScript(t testing.TB) []byte {
	payload, _ := (&Message{Value: "x", Properties: &Properties{MessageID: "m"}}).MarshalBinary()
	unsettled, second := SenderSettleUnsettled, ReceiverSettleSecond
	var b []byte
	for _, p := range []performative{
		&openFrame{ContainerID: "fuzz", MaxFrameSize: 512, ChannelMax: 3, IdleTimeout: 1000},
		&beginFrame{IncomingWindow: 2, OutgoingWindow: 10, HandleMax: 5},
		&attachFrame{Name: "s", Handle: 0, Role: RoleSender, RcvSettleMode: &second, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)},
		&attachFrame{Name: "r", Handle: 1, Role: RoleReceiver, SndSettleMode: &unsettled, Source: &Source{Address: "q"}},
		&flowFrame{NextIncomingID: u32(0), IncomingWindow: 1, OutgoingWindow: 10, Handle: u32(1), DeliveryCount: u32(0), LinkCredit: u32(3), Drain: true},
		&transferFrame{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{1}, More: true, Payload: payload[:3]},
		&transferFrame{Handle: 0, Payload: payload[3:]},
		&transferFrame{Handle: 0, DeliveryID: u32(1), DeliveryTag: []byte{2}, Aborted: true},
		&dispositionFrame{Role: RoleReceiver, First: 0, Last: u32(5), State: &Rejected{Error: &Error{Condition: ErrCondNotFound}}},
		&dispositionFrame{Role: RoleSender, First: 0, Settled: true},
		&flowFrame{NextIncomingID: u32(1), IncomingWindow: 5, OutgoingWindow: 10, Echo: true},
		&detachFrame{Handle: 0, Closed: true},
		&endFrame{},
		&closeFrame{},
	} {
		var err error
		if b, err = appendFrame(b, frameTypeAMQP, 0, p); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// FuzzServerConnection plays arbitrary frames at a server whose handler receives, accepts, sends
// and detaches: whatever arrives, the connection must end (by the script's close, a protocol
// error or the end of input) without a panic or a deadlock.
//
//	go test -run XXX -fuzz FuzzServerConnection -fuzztime 60s ./amqp/
func FuzzServerConnection(f *testing.F) {
	f.Add(sessionScript(f))
	f.Fuzz(serveScript)
}

func serveScript(t *testing.T, script []byte) {
	h := &acceptAll{attach: func(l *Link) error {
		if l.Address() == "" {
			return Errorf(ErrCondNotFound, "no address")
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if l.Role() == RoleReceiver {
				for {
					d, err := l.Receive(ctx)
					if err != nil {
						return
					}
					d.Accept()
				}
			}
			l.Send(ctx, &Message{Value: "out"})
			l.SendSettled(ctx, &Message{Data: [][]byte{make([]byte, 700)}})
			l.Close(nil)
		}()
		return nil
	}}
	srv := NewServer(h, Config{AllowNoSASL: true, MaxFrameSize: 4096, HandshakeTimeout: time.Second, WriteTimeout: time.Second,
		IdleTimeout: time.Second, MaxMessageSize: 2048, LinkCredit: 4, MaxUnsettled: 2, SessionWindow: 4, MaxLinks: 4})
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), &scriptConn{r: bytes.NewReader(append(append([]byte{}, headerAMQP...), script...))})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not end")
	}
	srv.Close()
}

// scriptConn is a net.Conn that reads a script, then EOF, and swallows what is written.
type scriptConn struct {
	r *bytes.Reader
}

func (c *scriptConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
