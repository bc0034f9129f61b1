package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

func TestSASLPlainWithGoAMQP(t *testing.T) {
	identities := make(chan any, 1)
	h := &testHandler{connected: func(c *amqp.Conn) error { identities <- c.Identity(); return nil }}
	addr, _ := serve(t, h, amqp.Config{Authenticate: func(_ context.Context, req *amqp.SASLRequest) (any, error) {
		if req.Mechanism == amqp.MechanismPlain && req.Username == "iothubowner@sas.root.hub" && req.Password == "SharedAccessSignature sr=x" {
			return req.Username, nil
		}
		return nil, errors.New("denied")
	}})
	dial(t, addr, &goamqp.ConnOptions{SASLType: goamqp.SASLTypePlain("iothubowner@sas.root.hub", "SharedAccessSignature sr=x")})
	if got := <-identities; got != "iothubowner@sas.root.hub" {
		t.Fatalf("identity %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := goamqp.Dial(ctx, "amqp://"+addr, &goamqp.ConnOptions{SASLType: goamqp.SASLTypePlain("iothubowner", "wrong")}); err == nil {
		c.Close()
		t.Fatal("dial with a wrong password succeeded")
	}
}

func TestConnectedCanRefuseTheConnection(t *testing.T) {
	h := &testHandler{connected: func(*amqp.Conn) error {
		return &amqp.Error{Condition: amqp.ErrCondUnauthorizedAccess, Description: "hub disabled"}
	}}
	addr, _ := serve(t, h, amqp.Config{})
	ctx := testCtx(t)
	c, err := goamqp.Dial(ctx, "amqp://"+addr, &goamqp.ConnOptions{SASLType: goamqp.SASLTypeAnonymous()})
	if err == nil {
		// go-amqp may report the close only on the next operation.
		_, err = c.NewSession(ctx, nil)
		c.Close()
	}
	var ce *goamqp.ConnError
	if !errors.As(err, &ce) || ce.RemoteErr == nil || ce.RemoteErr.Condition != goamqp.ErrCondUnauthorizedAccess {
		t.Fatalf("got %#v", err)
	}
}

func TestCloseFromOutsideReachesTheClient(t *testing.T) {
	h := &testHandler{}
	addr, _ := serve(t, h, amqp.Config{})
	c := dial(t, addr, nil)
	s := session(t, c)
	ctx := testCtx(t)
	rcv, err := s.NewReceiver(ctx, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	h.lastConn().Close(&amqp.Error{Condition: amqp.ErrCondUnauthorizedAccess, Description: "token expired"})
	_, err = rcv.Receive(ctx, nil)
	var ce *goamqp.ConnError
	if !errors.As(err, &ce) || ce.RemoteErr == nil || ce.RemoteErr.Condition != goamqp.ErrCondUnauthorizedAccess {
		t.Fatalf("receive: %#v", err)
	}
	<-h.lastConn().Done()
}

func TestServerCloseForcesConnectionsClosed(t *testing.T) {
	h := &testHandler{}
	addr, srv := serve(t, h, amqp.Config{})
	c := dial(t, addr, nil)
	s := session(t, c)
	ctx := testCtx(t)
	rcv, err := s.NewReceiver(ctx, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err = rcv.Receive(ctx, nil)
	var ce *goamqp.ConnError
	if !errors.As(err, &ce) || ce.RemoteErr == nil || ce.RemoteErr.Condition != goamqp.ErrCondConnectionForced {
		t.Fatalf("receive: %#v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	if err := srv.ServeConn(ctx, a); !errors.Is(err, amqp.ErrServerClosed) {
		t.Fatalf("ServeConn after Close: %v", err)
	}
}

// A handler that never settles must stop the flow at MaxUnsettled: no more credit, nothing lost.
func TestUnsettledBoundStopsCreditUntilSettled(t *testing.T) {
	received := make(chan *amqp.Delivery, 100)
	addr, _ := serve(t, queueHandler(t, received, nil, nil), amqp.Config{MaxUnsettled: 3, LinkCredit: 10})
	s := session(t, dial(t, addr, nil))
	ctx := testCtx(t)
	snd, err := s.NewSender(ctx, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 5)
	for i := 0; i < 5; i++ {
		go func() { sent <- snd.Send(ctx, &goamqp.Message{Value: int32(i)}, nil) }()
	}
	var held []*amqp.Delivery
	for i := 0; i < 3; i++ {
		held = append(held, <-received)
	}
	select {
	case d := <-received:
		t.Fatalf("a fourth delivery (%v) arrived while three were unsettled", d.Message.Value)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Accept()
	fourth := <-received
	select {
	case d := <-received:
		t.Fatalf("a fifth delivery (%v) arrived with three unsettled", d.Message.Value)
	case <-time.After(300 * time.Millisecond):
	}
	for _, d := range append(held[1:], fourth) {
		d.Accept()
	}
	(<-received).Accept()
	for i := 0; i < 5; i++ {
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreditAndDrain(t *testing.T) {
	links := make(chan *amqp.Link, 1)
	addr, _ := serve(t, &testHandler{onAttach: func(l *amqp.Link) error { links <- l; return nil }}, amqp.Config{})
	s := session(t, dial(t, addr, nil))
	ctx := testCtx(t)
	rcv, err := s.NewReceiver(ctx, "q", &goamqp.ReceiverOptions{Credit: -1}) // manual credit
	if err != nil {
		t.Fatal(err)
	}
	l := <-links
	if err := rcv.IssueCredit(3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := l.SendSettled(ctx, &amqp.Message{Value: int32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rcv.DrainCredit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if c := l.Credit(); c != 0 {
		t.Fatalf("credit after drain %d", c)
	}
	for i := 0; i < 2; i++ {
		m, err := rcv.Receive(ctx, nil)
		if err != nil || m.Value != int32(i) {
			t.Fatalf("message %d: %v %v", i, m, err)
		}
	}
	// Without credit Send waits; its context bounds the wait.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := l.SendSettled(short, &amqp.Message{Value: "late"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send without credit: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.SendSettled(ctx, &amqp.Message{Value: "after"}) }()
	rcv.IssueCredit(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m, err := rcv.Receive(ctx, nil); err != nil || m.Value != "after" {
		t.Fatalf("got %v %v", m, err)
	}
}

func TestRequestNodeAnswersOnTheReplyLink(t *testing.T) {
	serveReq := func(_ context.Context, req *amqp.Message) *amqp.Message {
		return &amqp.Message{ApplicationProperties: map[string]any{"status-code": int32(200), "status-description": "OK",
			"echo": req.ApplicationProperties["operation"]}}
	}
	h := &testHandler{}
	var mu sync.Mutex
	nodes := map[*amqp.Conn]*amqp.RequestNode{}
	h.onAttach = func(l *amqp.Link) error {
		mu.Lock()
		n := nodes[l.Conn()]
		if n == nil {
			n = amqp.NewRequestNode(serveReq, 0)
			nodes[l.Conn()] = n
		}
		mu.Unlock()
		if l.Address() != "$cbs" {
			return amqp.Errorf(amqp.ErrCondNotFound, "no %s", l.Address())
		}
		if l.Role() == amqp.RoleReceiver {
			n.AddRequestLink(l)
		} else {
			n.AddReplyLink(l)
		}
		return nil
	}
	addr, _ := serve(t, h, amqp.Config{})
	ctx := testCtx(t)
	for _, tc := range []struct {
		name, replyTarget, replyName, replyTo string
		messageID                             any
	}{
		{"by target address", "$cbs$$reply-1", "", "$cbs$$reply-1", goamqp.UUID{1}},
		{"by link name", "", "cbs-link-7", "cbs-link-7", "id-1"},
		{"the only reply link", "", "", "cbs", uint64(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := session(t, dial(t, addr, nil))
			snd, err := s.NewSender(ctx, "$cbs", nil)
			if err != nil {
				t.Fatal(err)
			}
			rcv, err := s.NewReceiver(ctx, "$cbs", &goamqp.ReceiverOptions{TargetAddress: tc.replyTarget, Name: tc.replyName})
			if err != nil {
				t.Fatal(err)
			}
			err = snd.Send(ctx, &goamqp.Message{Value: "token",
				Properties:            &goamqp.MessageProperties{MessageID: tc.messageID, ReplyTo: strp(tc.replyTo)},
				ApplicationProperties: map[string]any{"operation": "put-token"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			m, err := rcv.Receive(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if canonical(m.Properties.CorrelationID) != canonical(tc.messageID) {
				t.Fatalf("correlation-id %#v, want %#v", m.Properties.CorrelationID, tc.messageID)
			}
			if m.ApplicationProperties["status-code"] != int32(200) || m.ApplicationProperties["echo"] != "put-token" {
				t.Fatalf("reply %v", m.ApplicationProperties)
			}
		})
	}
}

// A client that stops reading must not hold up anybody else: its connection ends at the
// write deadline while other connections carry on.
func TestSlowReaderDoesNotStallOtherConnections(t *testing.T) {
	closed := make(chan error, 4)
	h := &testHandler{}
	h.onAttach = func(l *amqp.Link) error {
		if l.Role() == amqp.RoleSender && l.Address() == "flood" {
			go func() {
				big := &amqp.Message{Data: [][]byte{make([]byte, 60000)}}
				for {
					if err := l.SendSettled(l.Conn().Context(), big); err != nil {
						return
					}
				}
			}()
		}
		if l.Address() == "echo" && l.Role() == amqp.RoleReceiver {
			go func() {
				for {
					d, err := l.Receive(l.Conn().Context())
					if err != nil {
						return
					}
					d.Accept()
				}
			}()
		}
		return nil
	}
	addr, _ := serve(t, &closeRecorder{testHandler: h, closed: closed}, amqp.Config{WriteTimeout: 500 * time.Millisecond})
	ctx := testCtx(t)

	// The slow client: a raw TCP connection that handshakes with go-amqp and then never reads.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	stuck := &stopReading{Conn: raw}
	slow, err := goamqp.NewConn(ctx, stuck, &goamqp.ConnOptions{SASLType: goamqp.SASLTypeAnonymous(), IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	ss, err := slow.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ss.NewReceiver(ctx, "flood", &goamqp.ReceiverOptions{Credit: 1000, MaxMessageSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	stuck.stop()

	// Meanwhile another client works normally.
	s := session(t, dial(t, addr, nil))
	snd, err := s.NewSender(ctx, "echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := snd.Send(ctx, &goamqp.Message{Value: fmt.Sprint(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("the stuck connection ended cleanly")
		}
	case <-ctx.Done():
		t.Fatal("the stuck connection was never dropped")
	}
}

type closeRecorder struct {
	*testHandler
	closed chan error
}

func (h *closeRecorder) Connected(c *amqp.Conn) (amqp.ConnHandler, error) {
	ch, err := h.testHandler.Connected(c)
	if err != nil {
		return nil, err
	}
	return &closeNotify{ConnHandler: ch, closed: h.closed}, nil
}

type closeNotify struct {
	amqp.ConnHandler
	closed chan error
}

func (c *closeNotify) Closed(err error) { c.closed <- err }

// stopReading is a net.Conn whose reads block forever once stopped, so the server's writes
// fill the socket buffers.
type stopReading struct {
	net.Conn
	once    sync.Once
	stopped chan struct{}
	mu      sync.Mutex
}

func (s *stopReading) stop() {
	s.mu.Lock()
	if s.stopped == nil {
		s.stopped = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *stopReading) Read(b []byte) (int, error) {
	s.mu.Lock()
	st := s.stopped
	s.mu.Unlock()
	if st != nil {
		<-st // never closed: block until the test ends
	}
	return s.Conn.Read(b)
}

func (s *stopReading) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		if s.stopped == nil {
			s.stopped = make(chan struct{})
		}
		close(s.stopped)
		s.mu.Unlock()
	})
	return s.Conn.Close()
}
