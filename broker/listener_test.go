package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// fakeListener hands out the errors and connections a test queues.
type fakeListener struct {
	next chan any // error or net.Conn
}

func (f *fakeListener) Accept() (net.Conn, error) {
	switch v := (<-f.next).(type) {
	case net.Conn:
		return v, nil
	case error:
		return nil, v
	}
	return nil, net.ErrClosed
}

func (f *fakeListener) Close() error   { return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

func quietBroker() *Broker {
	return New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// Running out of file descriptors must not end the accept loop for good
// (issue #13): it backs off and accepts again.
func TestNetListener_KeepsAcceptingAfterEMFILE(t *testing.T) {
	b := quietBroker()
	fl := &fakeListener{next: make(chan any, 4)}
	l := &netListener{id: "mqtt", l: fl, b: b}
	b.listeners = append(b.listeners, l)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	server, client := net.Pipe()
	defer client.Close()
	fl.next <- emfile
	fl.next <- emfile
	fl.next <- server
	established := make(chan net.Conn, 1)
	go l.Serve(func(_ string, c net.Conn) error { established <- c; return nil })
	select {
	case <-established:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener stopped accepting after EMFILE")
	}
	if dead := b.DeadListeners(); len(dead) != 0 {
		t.Errorf("dead listeners %v", dead)
	}
	// A listener closed under the broker is dead, and says so.
	fl.next <- net.ErrClosed
	checkSoon(t, func() bool { return slices.Equal(b.DeadListeners(), []string{"mqtt"}) })
}

func checkSoon(t *testing.T, ok func() bool) {
	t.Helper()
	for range 1000 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met")
}

// A connection's unacknowledged C2D messages split into those that reached
// the socket (a delivery attempt) and those still queued (never sent).
func TestC2DInflight_DrainSplitsWrittenFromUnsent(t *testing.T) {
	var f c2dInflight
	a, _ := f.add("tok-a")
	b, _ := f.add("tok-b")
	f.add("tok-c")
	f.sent(a)
	f.sent(b)
	if tok, ok := f.take(b); !ok || tok != "tok-b" { // acknowledged
		t.Fatalf("take = %q %v", tok, ok)
	}
	written, unsent := f.drain()
	if !slices.Equal(written, []string{"tok-a"}) || !slices.Equal(unsent, []string{"tok-c"}) {
		t.Errorf("written %v, unsent %v", written, unsent)
	}
}

// A device whose outbox overflows is disconnected at once; nothing waits.
func TestOutbox_OverflowDisconnects(t *testing.T) {
	b := New(Config{Logger: quietBroker().log, OutboxPackets: 2, OutboxBytes: 1 << 20})
	c := &conn{dev: Device{DeviceID: "d"}, cl: &mqtt.Client{}}
	c.out.writing = true // a writer is stuck on the socket
	pk := outPacket{}
	for i := range 2 {
		if err := b.send(c, pk); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := b.send(c, pk); !errors.Is(err, errSlowDevice) {
		t.Errorf("third send: %v, want errSlowDevice", err)
	}
	if err := b.send(c, pk); !errors.Is(err, ErrNotConnected) {
		t.Errorf("send after overflow: %v, want ErrNotConnected", err)
	}
	checkSoon(t, func() bool { return errors.Is(c.cl.StopCause(), errSlowDevice) })
}
