package amqp

import (
	"io"
	"testing"
	"time"
)

// How the server ends what a fault names: a graceful close that still
// answers the client's rundown, a dropped socket, an ended session.

// attachedPeer opens a connection with two sender links and returns the
// peer and the server's side of the first link.
func attachedPeer(t *testing.T) (*rawPeer, *Link, chan error) {
	t.Helper()
	links := make(chan *Link, 2)
	h := &acceptAll{attach: func(l *Link) error { links <- l; return nil }, closed: make(chan error, 1)}
	p := rawDial(t, rawServe(t, h, Config{AllowNoSASL: true}))
	p.open(0)
	p.begin()
	for i, name := range []string{"a", "b"} {
		p.send(frameTypeAMQP, 0, &attachFrame{Name: name, Handle: uint32(i), Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
		expect[*attachFrame](p)
		expect[*flowFrame](p)
	}
	return p, <-links, h.closed
}

func TestShutdownAnswersTheRundownThenEnds(t *testing.T) {
	p, l, closed := attachedPeer(t)
	l.Conn().Shutdown(&Error{Condition: ErrCondInternalError, Description: "boom"}, 5*time.Second)
	c, _ := expect[*closeFrame](p)
	if c.Error == nil || c.Error.Condition != ErrCondInternalError || c.Error.Description != "boom" {
		t.Fatalf("close %+v", c.Error)
	}
	// rhea answers the close at once, then the Node SDK detaches its links
	// and ends its session, waiting for each answer.
	p.send(frameTypeAMQP, 0, &closeFrame{})
	p.send(frameTypeAMQP, 0, &flowFrame{IncomingWindow: 10, OutgoingWindow: 10}) // ignored
	// The server's own goodbyes stay unsent after its close; the peer's
	// detach of that link is still answered.
	l.Close(&Error{Condition: ErrCondDetachForced})
	p.send(frameTypeAMQP, 0, &detachFrame{Handle: 0, Closed: true})
	if d, _ := expect[*detachFrame](p); !d.Closed || d.Handle != 0 || d.Error != nil {
		t.Errorf("detach answered with %+v (the server's own detach after its close?)", d)
	}
	p.send(frameTypeAMQP, 0, &detachFrame{Handle: 1, Closed: true})
	expect[*detachFrame](p)
	p.send(frameTypeAMQP, 0, &endFrame{})
	expect[*endFrame](p)
	// Nothing else comes: the peer hangs up and the server's side ends.
	p.c.Close()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("a close both sides agreed on ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end when the peer hung up")
	}
}

func TestShutdownEndsAfterTheGrace(t *testing.T) {
	p, l, closed := attachedPeer(t)
	l.Conn().Shutdown(nil, 50*time.Millisecond)
	if c, _ := expect[*closeFrame](p); c.Error != nil {
		t.Fatalf("a clean shutdown sent %+v", c.Error)
	}
	// A peer that never answers is cut off: the socket closes.
	for {
		if _, err := io.ReadFull(p.br, make([]byte, 8)); err != nil {
			break
		}
	}
	<-closed
}

func TestAbortDropsTheSocketWithoutClose(t *testing.T) {
	p, l, closed := attachedPeer(t)
	l.Conn().Abort()
	b, _ := io.ReadAll(p.br)
	if len(b) != 0 {
		t.Fatalf("the server sent %d bytes (a close frame?) before dropping the connection", len(b))
	}
	<-closed
}

func TestEndSessionEndsItsLinks(t *testing.T) {
	p, l, _ := attachedPeer(t)
	l.EndSession(&Error{Condition: ErrCondInternalError, Description: "boom"})
	e, _ := expect[*endFrame](p)
	if e.Error == nil || e.Error.Description != "boom" {
		t.Fatalf("end %+v", e.Error)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the link did not end with its session")
	}
	// Frames on the ended session are ignored until the peer's end, which
	// is not answered again; the connection stays.
	p.send(frameTypeAMQP, 0, &endFrame{})
	p.send(frameTypeAMQP, 1, &beginFrame{NextOutgoingID: 0, IncomingWindow: 1000, OutgoingWindow: 1000, HandleMax: 10})
	expect[*beginFrame](p)
}
