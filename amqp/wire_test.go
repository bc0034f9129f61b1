package amqp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive the server with hand-written frames, to check the wire rules real clients
// depend on and to misbehave in ways no client library will.

type acceptAll struct {
	attach func(l *Link) error
	closed chan error
}

func (h *acceptAll) Connected(c *Conn) (ConnHandler, error) { return h, nil }
func (h *acceptAll) Attach(l *Link) error {
	if h.attach != nil {
		return h.attach(l)
	}
	return nil
}
func (h *acceptAll) Closed(err error) {
	if h.closed != nil {
		h.closed <- err
	}
}

func rawServe(t *testing.T, h Handler, cfg Config) string {
	t.Helper()
	srv := NewServer(h, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(context.Background(), c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

type rawPeer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, c: c, br: bufio.NewReader(c)}
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *rawPeer) readHeader() []byte {
	p.t.Helper()
	h := make([]byte, 8)
	if _, err := io.ReadFull(p.br, h); err != nil {
		p.t.Fatalf("read header: %v", err)
	}
	return h
}

func (p *rawPeer) send(frameType byte, ch uint16, perf performative) {
	p.t.Helper()
	b, err := appendFrame(nil, frameType, ch, perf)
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(b)
}

// next returns the next frame's channel, decoded performative and raw body; heartbeats are
// returned as a nil performative.
func (p *rawPeer) next() (uint16, performative, []byte) {
	p.t.Helper()
	h := make([]byte, 8)
	if _, err := io.ReadFull(p.br, h); err != nil {
		p.t.Fatalf("read frame: %v", err)
	}
	fh, err := parseFrameHeader(h)
	if err != nil {
		p.t.Fatal(err)
	}
	body := make([]byte, fh.Size-8)
	if _, err := io.ReadFull(p.br, body); err != nil {
		p.t.Fatal(err)
	}
	body = body[int(fh.DataOff)*4-8:]
	perf, err := parseFrameBody(fh.Type, body)
	if err != nil {
		p.t.Fatalf("server sent an undecodable frame: %v", err)
	}
	return fh.Channel, perf, body
}

// frame returns the next non-heartbeat frame.
func (p *rawPeer) frame() (performative, []byte) {
	p.t.Helper()
	for {
		_, perf, body := p.next()
		if perf != nil {
			return perf, body
		}
	}
}

func expect[T performative](p *rawPeer) (T, []byte) {
	p.t.Helper()
	perf, body := p.frame()
	v, ok := perf.(T)
	if !ok {
		p.t.Fatalf("got %T %+v, want %T", perf, perf, v)
	}
	return v, body
}

// fieldCount is the number of fields of the described list in body.
func fieldCount(t *testing.T, body []byte) int {
	t.Helper()
	v, err := Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return len(v.(*Described).Value.([]any))
}

// saslAnonymous runs the SASL ANONYMOUS exchange and the AMQP header.
func (p *rawPeer) saslAnonymous() *saslMechanisms {
	p.t.Helper()
	p.write(headerSASL)
	if h := p.readHeader(); !bytes.Equal(h, headerSASL) {
		p.t.Fatalf("header %q", h)
	}
	mechs, _ := expect[*saslMechanisms](p)
	p.send(frameTypeSASL, 0, &saslInit{Mechanism: MechanismAnonymous, InitialResponse: []byte("trace")})
	if o, _ := expect[*saslOutcome](p); o.Code != saslOK {
		p.t.Fatalf("sasl outcome %d", o.Code)
	}
	p.write(headerAMQP)
	if h := p.readHeader(); !bytes.Equal(h, headerAMQP) {
		p.t.Fatalf("header %q", h)
	}
	return mechs
}

func (p *rawPeer) open(idleMS uint32) *openFrame {
	p.t.Helper()
	p.saslAnonymous()
	p.send(frameTypeAMQP, 0, &openFrame{ContainerID: "raw", Hostname: "localhost:5672", MaxFrameSize: 65536, ChannelMax: 65535, IdleTimeout: idleMS})
	o, _ := expect[*openFrame](p)
	return o
}

func (p *rawPeer) begin() {
	p.t.Helper()
	p.send(frameTypeAMQP, 0, &beginFrame{NextOutgoingID: 0, IncomingWindow: 1000, OutgoingWindow: 1000, HandleMax: 10})
	expect[*beginFrame](p)
}

func u32(v uint32) *uint32 { return &v }

func TestServerFramesCarryEveryFieldClientsRead(t *testing.T) {
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		if l.Address() == "refuse" {
			return Errorf(ErrCondNotFound, "no such node")
		}
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	mechs := p.saslAnonymous()
	if got := mechs.Mechanisms; len(got) != 3 || got[0] != "MSSBCBS" || got[1] != "ANONYMOUS" || got[2] != "PLAIN" {
		t.Fatalf("mechanisms %v", got)
	}
	p.send(frameTypeAMQP, 0, &openFrame{ContainerID: "raw", MaxFrameSize: 65536, ChannelMax: 65535})
	open, body := expect[*openFrame](p)
	if n := fieldCount(t, body); n != 10 {
		t.Errorf("open has %d fields, want 10", n)
	}
	fields := fieldList(mustList(t, body))
	for i, name := range []string{"max-frame-size", "channel-max", "idle-time-out"} {
		if fields.at(2+i) == nil {
			t.Errorf("open.%s is null", name)
		}
	}
	if open.MaxFrameSize != 65536 || open.ChannelMax != 255 || open.IdleTimeout != 240000 {
		t.Errorf("open %+v", open)
	}
	p.send(frameTypeAMQP, 0, &beginFrame{IncomingWindow: 100, OutgoingWindow: 100})
	begin, body := expect[*beginFrame](p)
	if n := fieldCount(t, body); n != 8 {
		t.Errorf("begin has %d fields, want 8", n)
	}
	if fieldList(mustList(t, body)).at(4) == nil || begin.RemoteChannel == nil || *begin.RemoteChannel != 0 {
		t.Errorf("begin %+v: want explicit handle-max and remote-channel 0", begin)
	}

	// A receiver asking snd-settle-mode settled and rcv-settle-mode second gets both echoed,
	// initial-delivery-count, full-length terminus and a properties map.
	settled, second := SenderSettleSettled, ReceiverSettleSecond
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r1", Handle: 0, Role: RoleReceiver, SndSettleMode: &settled, RcvSettleMode: &second,
		Source: &Source{Address: "$cbs"}, Target: &Target{Address: "$cbs$$cbs-reply-to-1"}})
	reply, body := expect[*attachFrame](p)
	if n := fieldCount(t, body); n != 14 {
		t.Errorf("attach has %d fields, want 14", n)
	}
	if reply.Role != RoleSender || reply.SndSettleMode == nil || *reply.SndSettleMode != settled || reply.RcvSettleMode == nil || *reply.RcvSettleMode != second {
		t.Errorf("settle modes not echoed: %+v", reply)
	}
	if reply.InitialDeliveryCount == nil || *reply.InitialDeliveryCount != 0 {
		t.Errorf("sender reply without initial-delivery-count")
	}
	if reply.Properties == nil {
		t.Errorf("attach reply with null properties")
	}
	if reply.Source == nil || reply.Source.Address != "$cbs" || reply.Target == nil || reply.Target.Address != "$cbs$$cbs-reply-to-1" {
		t.Errorf("terminus not echoed: %+v %+v", reply.Source, reply.Target)
	}
	if n := describedListCount(t, body, codeSource); n != 11 {
		t.Errorf("source has %d fields, want 11", n)
	}
	if n := describedListCount(t, body, codeTarget); n != 7 {
		t.Errorf("target has %d fields, want 7", n)
	}

	// Without settle modes in the request the reply carries none either.
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s1", Handle: 1, Role: RoleSender, Source: &Source{Address: "me"}, Target: &Target{Address: "q"},
		InitialDeliveryCount: u32(0)})
	reply, _ = expect[*attachFrame](p)
	if reply.SndSettleMode != nil || reply.RcvSettleMode != nil || reply.InitialDeliveryCount != nil || reply.Role != RoleReceiver {
		t.Errorf("receiver reply %+v", reply)
	}
	flow, _ := expect[*flowFrame](p)
	if flow.Handle == nil || *flow.Handle != reply.Handle || flow.LinkCredit == nil || *flow.LinkCredit == 0 {
		t.Errorf("no credit after attach: %+v", flow)
	}

	// A refusal: attach with null source and target, then detach(closed) with the error.
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "x", Handle: 2, Role: RoleReceiver, Source: &Source{Address: "refuse"}, Target: &Target{}})
	reply, _ = expect[*attachFrame](p)
	if reply.Source != nil || reply.Target != nil || reply.Properties == nil {
		t.Errorf("refusal attach %+v", reply)
	}
	detach, _ := expect[*detachFrame](p)
	if !detach.Closed || detach.Error == nil || detach.Error.Condition != ErrCondNotFound || detach.Handle != reply.Handle {
		t.Errorf("refusal detach %+v", detach)
	}
}

func mustList(t *testing.T, body []byte) []any {
	t.Helper()
	v, err := Unmarshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return v.(*Described).Value.([]any)
}

// describedListCount finds the described list with the code in body and returns its count.
func describedListCount(t *testing.T, body []byte, code byte) int {
	t.Helper()
	i := bytes.Index(body, []byte{typeDescribed, typeSmallUlong, code})
	if i < 0 {
		t.Fatalf("no described 0x%x", code)
	}
	switch body[i+3] {
	case typeList8:
		return int(body[i+5])
	case typeList32:
		return int(binary.BigEndian.Uint32(body[i+8:]))
	}
	t.Fatalf("described 0x%x is not a list", code)
	return 0
}

func TestSASLOutcomes(t *testing.T) {
	auth := func(ctx context.Context, req *SASLRequest) (any, error) {
		switch req.Mechanism {
		case MechanismPlain:
			if req.Username == "iothubowner" && req.Password == "key" {
				return "owner", nil
			}
			return nil, errors.New("bad key")
		}
		return nil, nil
	}
	identities := make(chan any, 10)
	h := &testIdentity{identities: identities}
	addr := rawServe(t, h, Config{Authenticate: auth, AllowNoSASL: true})
	for _, tc := range []struct {
		name     string
		mech     Symbol
		response []byte
		code     uint8
		identity any
	}{
		{"plain ok", MechanismPlain, []byte("\x00iothubowner\x00key"), saslOK, "owner"},
		{"plain with authzid", MechanismPlain, []byte("hub\x00iothubowner\x00key"), saslOK, "owner"},
		{"plain bad password", MechanismPlain, []byte("\x00iothubowner\x00nope"), saslAuth, nil},
		{"plain malformed", MechanismPlain, []byte("iothubowner"), saslAuth, nil},
		{"anonymous", MechanismAnonymous, nil, saslOK, nil},
		{"mssbcbs", MechanismMSSBCBS, nil, saslOK, nil},
		{"not offered", MechanismExternal, nil, saslAuth, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := rawDial(t, addr)
			p.write(headerSASL)
			p.readHeader()
			expect[*saslMechanisms](p)
			p.send(frameTypeSASL, 0, &saslInit{Mechanism: tc.mech, InitialResponse: tc.response, Hostname: "localhost"})
			o, _ := expect[*saslOutcome](p)
			if o.Code != tc.code {
				t.Fatalf("outcome %d, want %d", o.Code, tc.code)
			}
			if tc.code != saslOK {
				if _, err := p.br.ReadByte(); err == nil {
					t.Fatal("connection still open after a failed SASL exchange")
				}
				return
			}
			p.write(headerAMQP)
			p.readHeader()
			p.send(frameTypeAMQP, 0, &openFrame{ContainerID: "c"})
			expect[*openFrame](p)
			if got := <-identities; got != tc.identity {
				t.Fatalf("identity %v, want %v", got, tc.identity)
			}
		})
	}
	t.Run("no SASL layer", func(t *testing.T) {
		p := rawDial(t, addr)
		p.write(headerAMQP)
		if h := p.readHeader(); !bytes.Equal(h, headerAMQP) {
			t.Fatalf("header %q", h)
		}
		p.send(frameTypeAMQP, 0, &openFrame{ContainerID: "c"})
		expect[*openFrame](p)
		if got := <-identities; got != nil {
			t.Fatalf("identity %v", got)
		}
	})
	t.Run("bad header", func(t *testing.T) {
		p := rawDial(t, addr)
		p.write([]byte("HTTP/1.1"))
		if h := p.readHeader(); !bytes.Equal(h, headerSASL) {
			t.Fatalf("answered %q, want the SASL header", h)
		}
		if _, err := p.br.ReadByte(); err == nil {
			t.Fatal("still open")
		}
	})
}

func TestSkippingSASLIsRefusedUnlessAllowed(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{})
	p := rawDial(t, addr)
	p.write(headerAMQP)
	if h := p.readHeader(); !bytes.Equal(h, headerSASL) {
		t.Fatalf("answered %q, want the SASL header", h)
	}
	if _, err := p.br.ReadByte(); err == nil {
		t.Fatal("still open")
	}
}

type testIdentity struct{ identities chan any }

func (h *testIdentity) Connected(c *Conn) (ConnHandler, error) {
	h.identities <- c.Identity()
	return &acceptAll{}, nil
}

func TestOversizedFrameIsRefusedBeforeItsBodyIsRead(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{MaxFrameSize: 4096})
	p := rawDial(t, addr)
	p.open(0)
	// A header announcing a 1 GiB frame, and no body.
	p.write([]byte{0x40, 0, 0, 0, 2, 0, 0, 0})
	c, _ := expect[*closeFrame](p)
	if c.Error == nil || c.Error.Condition != ErrCondFramingError {
		t.Fatalf("close %+v", c.Error)
	}
}

func TestUndecodableFrameClosesWithDecodeError(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.write([]byte{0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x11, 0xd0}) // begin whose list is cut short
	c, _ := expect[*closeFrame](p)
	if c.Error == nil || c.Error.Condition != ErrCondDecodeError {
		t.Fatalf("close %+v", c.Error)
	}
}

func TestIdlePeerIsDisconnectedAndHeartbeatsAreSent(t *testing.T) {
	closed := make(chan error, 1)
	addr := rawServe(t, &acceptAll{closed: closed}, Config{IdleTimeout: 300 * time.Millisecond})
	p := rawDial(t, addr)
	open := p.open(100) // the peer wants a frame at least every 100 ms
	if open.IdleTimeout != 300 {
		t.Fatalf("idle-time-out %d", open.IdleTimeout)
	}
	heartbeats := 0
	for {
		_, perf, _ := p.next()
		if perf == nil {
			heartbeats++
			continue
		}
		c, ok := perf.(*closeFrame)
		if !ok {
			t.Fatalf("got %T", perf)
		}
		if c.Error == nil || c.Error.Condition != ErrCondResourceLimitExceeded {
			t.Fatalf("close %+v", c.Error)
		}
		break
	}
	if heartbeats == 0 {
		t.Fatal("no heartbeat before the idle timeout")
	}
	if err := <-closed; err == nil {
		t.Fatal("handler told the connection closed cleanly")
	}
}

func TestSilentClientIsDroppedAfterTheHandshakeTimeout(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{HandshakeTimeout: 200 * time.Millisecond})
	p := rawDial(t, addr)
	p.write(headerSASL[:4]) // a partial header, then nothing
	if _, err := io.ReadAll(p.br); err != nil {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestTransferBeyondCreditDetachesTheLink(t *testing.T) {
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error { l.SetCredit(2); return nil }}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
	expect[*attachFrame](p)
	flow, _ := expect[*flowFrame](p)
	if *flow.LinkCredit != 2 {
		t.Fatalf("credit %d", *flow.LinkCredit)
	}
	payload, _ := (&Message{Value: "x"}).MarshalBinary()
	settled := true
	for i := uint32(0); i < 3; i++ {
		p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(i), DeliveryTag: []byte{byte(i)}, MessageFormat: u32(0), Settled: &settled, Payload: payload})
	}
	d, _ := expect[*detachFrame](p)
	if d.Error == nil || d.Error.Condition != ErrCondTransferLimitExceeded || !d.Closed {
		t.Fatalf("detach %+v", d)
	}
}

func TestOversizedMessageDetachesTheLink(t *testing.T) {
	received := make(chan *Delivery, 1)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		go func() {
			if d, err := l.Receive(context.Background()); err == nil {
				received <- d
			}
		}()
		return nil
	}}, Config{MaxMessageSize: 1000})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
	if a, _ := expect[*attachFrame](p); a.MaxMessageSize != 1000 {
		t.Fatalf("max-message-size %d", a.MaxMessageSize)
	}
	expect[*flowFrame](p)
	for i := 0; i < 3; i++ {
		p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{1}, More: i < 2, Payload: make([]byte, 400)})
	}
	d, _ := expect[*detachFrame](p)
	if d.Error == nil || d.Error.Condition != ErrCondMessageSizeExceeded {
		t.Fatalf("detach %+v", d)
	}
	select {
	case <-received:
		t.Fatal("the oversized message was delivered")
	default:
	}
}

func TestConnectionDroppedMidTransferDeliversNothing(t *testing.T) {
	ended := make(chan error, 1)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		go func() {
			d, err := l.Receive(context.Background())
			if err == nil {
				err = errors.New("received " + string(d.Message.GetData()))
			}
			ended <- err
		}()
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
	expect[*attachFrame](p)
	expect[*flowFrame](p)
	payload, _ := (&Message{Data: [][]byte{make([]byte, 3000)}}).MarshalBinary()
	p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{1}, More: true, Payload: payload[:1500]})
	p.c.Close()
	if err := <-ended; err == nil || strings.HasPrefix(err.Error(), "received") {
		t.Fatalf("Receive: %v, want the connection's error", err)
	}
}

func TestServerSendWithoutOutcomeFailsWhenThePeerDisappears(t *testing.T) {
	result := make(chan error, 1)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		go func() {
			_, err := l.Send(context.Background(), &Message{Value: "c2d"})
			result <- err
		}()
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(0), IncomingWindow: 100, OutgoingWindow: 100, Handle: u32(0), DeliveryCount: u32(0), LinkCredit: u32(1)})
	tr, _ := expect[*transferFrame](p)
	if tr.Settled == nil || *tr.Settled {
		t.Fatalf("unsettled send arrived settled")
	}
	p.c.Close() // never settles
	if err := <-result; err == nil {
		t.Fatal("Send reported an outcome for a delivery the peer never settled")
	}
}

func TestTooManyLinksAreRefused(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{MaxLinks: 2})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	for i := uint32(0); i < 3; i++ {
		p.send(frameTypeAMQP, 0, &attachFrame{Name: string(rune('a' + i)), Handle: i, Role: RoleReceiver, Source: &Source{Address: "q"}})
		a, _ := expect[*attachFrame](p)
		if i < 2 && a.Source == nil {
			t.Fatalf("link %d refused", i)
		}
		if i == 2 {
			if a.Source != nil {
				t.Fatal("third link accepted")
			}
			d, _ := expect[*detachFrame](p)
			if d.Error == nil || d.Error.Condition != ErrCondResourceLimitExceeded {
				t.Fatalf("detach %+v", d)
			}
		}
	}
}

func TestSessionWindowIsReopenedOnceHalfUsed(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{SessionWindow: 4, LinkCredit: 100})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
	expect[*attachFrame](p)
	expect[*flowFrame](p)
	// The server reopens its incoming window with a session flow once half of it is used.
	payload, _ := (&Message{Value: "x"}).MarshalBinary()
	for i := uint32(0); i < 3; i++ {
		p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(i), DeliveryTag: []byte{byte(i)}, Payload: payload})
	}
	f, _ := expect[*flowFrame](p)
	if f.Handle != nil || f.IncomingWindow != 4 {
		t.Fatalf("window not reopened: %+v", f)
	}
}

func TestCreditFitsTheLinkBuffer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		buffer     int64
		maxMessage uint64
		credit     uint32
	}{
		{"credit times max-message-size fits the buffer", 10000, 4000, 2},
		{"a message larger than the buffer still gets one credit", 1000, 4000, 1},
		{"the window caps credit", 1 << 20, 1000, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServe(t, &acceptAll{}, Config{LinkBuffer: tc.buffer, MaxMessageSize: tc.maxMessage, LinkCredit: 5})
			p := rawDial(t, addr)
			p.open(0)
			p.begin()
			p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
			expect[*attachFrame](p)
			flow, _ := expect[*flowFrame](p)
			if *flow.LinkCredit != tc.credit {
				t.Fatalf("credit %d, want %d", *flow.LinkCredit, tc.credit)
			}
			// Nobody takes the messages, so no credit comes back: one more is a violation.
			payload, _ := (&Message{Value: "x"}).MarshalBinary()
			settled := true
			for i := uint32(0); i <= tc.credit; i++ {
				p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(i), DeliveryTag: []byte{byte(i)}, Settled: &settled, Payload: payload})
			}
			d, _ := expect[*detachFrame](p)
			if d.Error == nil || d.Error.Condition != ErrCondTransferLimitExceeded {
				t.Fatalf("detach %+v", d)
			}
		})
	}
}

// Some clients ask rcv-settle-mode second but complete a send only on a settled disposition; the
// handler can answer first, and the link then settles at once.
func TestHandlerCanAnswerReceiverSettleModeFirst(t *testing.T) {
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		l.SetReceiverSettleMode(ReceiverSettleFirst)
		go func() {
			if d, err := l.Receive(context.Background()); err == nil {
				d.Accept()
			}
		}()
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	second := ReceiverSettleSecond
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, RcvSettleMode: &second,
		Target: &Target{Address: "/messages/devicebound"}, InitialDeliveryCount: u32(0)})
	a, _ := expect[*attachFrame](p)
	if a.RcvSettleMode == nil || *a.RcvSettleMode != ReceiverSettleFirst {
		t.Fatalf("reply rcv-settle-mode %v", a.RcvSettleMode)
	}
	expect[*flowFrame](p)
	payload, _ := (&Message{Value: "x"}).MarshalBinary()
	p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{1}, Payload: payload})
	d, _ := expect[*dispositionFrame](p)
	if !d.Settled {
		t.Fatal("disposition unsettled on a link answered with rcv-settle-mode first")
	}
	if _, ok := d.State.(*Accepted); !ok {
		t.Fatalf("state %T", d.State)
	}
}

// Without the handler's say, a receiver in mode second gets an unsettled outcome and the
// delivery is settled when the peer settles.
func TestReceiverSettleModeSecondIsTwoPhase(t *testing.T) {
	settledByPeer := make(chan error, 1)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		go func() {
			d, err := l.Receive(context.Background())
			if err == nil {
				d.Accept()
			}
			settledByPeer <- err
		}()
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	second := ReceiverSettleSecond
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "s", Handle: 0, Role: RoleSender, RcvSettleMode: &second,
		Target: &Target{Address: "q"}, InitialDeliveryCount: u32(0)})
	a, _ := expect[*attachFrame](p)
	if a.RcvSettleMode == nil || *a.RcvSettleMode != second {
		t.Fatalf("reply rcv-settle-mode %v", a.RcvSettleMode)
	}
	expect[*flowFrame](p)
	payload, _ := (&Message{Value: "x"}).MarshalBinary()
	p.send(frameTypeAMQP, 0, &transferFrame{Handle: 0, DeliveryID: u32(0), DeliveryTag: []byte{1}, Payload: payload})
	d, _ := expect[*dispositionFrame](p)
	if d.Settled {
		t.Fatal("mode second: the receiver settled first")
	}
	if err := <-settledByPeer; err != nil {
		t.Fatal(err)
	}
	// The peer settles; the server must not answer a settled disposition.
	p.send(frameTypeAMQP, 0, &dispositionFrame{Role: RoleSender, First: 0, Settled: true, State: &Accepted{}})
	p.send(frameTypeAMQP, 0, &closeFrame{})
	if c, _ := expect[*closeFrame](p); c.Error != nil {
		t.Fatalf("close %+v", c.Error)
	}
}

// sendOutcomes starts n server sends on every RoleSender link and reports their outcomes.
func sendOutcomes(n int, outcomes chan<- Outcome) func(l *Link) error {
	return func(l *Link) error {
		if l.Role() == RoleSender {
			for i := 0; i < n; i++ {
				go func() {
					o, err := l.Send(context.Background(), &Message{Value: int32(i)})
					if err != nil {
						o = nil
					}
					outcomes <- o
				}()
			}
		}
		return nil
	}
}

func TestOneDispositionRangeSettlesManyDeliveries(t *testing.T) {
	outcomes := make(chan Outcome, 3)
	addr := rawServe(t, &acceptAll{attach: sendOutcomes(3, outcomes)}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(0), IncomingWindow: 100, OutgoingWindow: 100, Handle: u32(0), DeliveryCount: u32(0), LinkCredit: u32(10)})
	var ids []uint32
	for len(ids) < 3 {
		tr, _ := expect[*transferFrame](p)
		ids = append(ids, *tr.DeliveryID)
	}
	if ids[0] != 0 || ids[2] != 2 {
		t.Fatalf("delivery ids %v", ids)
	}
	p.send(frameTypeAMQP, 0, &dispositionFrame{Role: RoleReceiver, First: 0, Last: u32(2), Settled: true, State: &Modified{DeliveryFailed: true}})
	for i := 0; i < 3; i++ {
		if m, ok := (<-outcomes).(*Modified); !ok || !m.DeliveryFailed {
			t.Fatalf("outcome %d: %#v", i, m)
		}
	}
}

func TestServerSendsWithinThePeersSessionWindow(t *testing.T) {
	outcomes := make(chan Outcome, 2)
	addr := rawServe(t, &acceptAll{attach: sendOutcomes(2, outcomes)}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.send(frameTypeAMQP, 0, &beginFrame{IncomingWindow: 1, OutgoingWindow: 100, HandleMax: 10})
	expect[*beginFrame](p)
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(0), IncomingWindow: 1, OutgoingWindow: 100, Handle: u32(0), DeliveryCount: u32(0), LinkCredit: u32(10)})
	expect[*transferFrame](p)
	// The window is used up: the second transfer waits for the peer to reopen it. Echo asks the
	// server for a flow, which must come before any transfer.
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(0), IncomingWindow: 1, OutgoingWindow: 100, Echo: true})
	f, _ := expect[*flowFrame](p)
	if f.Handle != nil || f.NextOutgoingID != 1 {
		t.Fatalf("echoed flow %+v", f)
	}
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(1), IncomingWindow: 1, OutgoingWindow: 100})
	tr, _ := expect[*transferFrame](p)
	if *tr.DeliveryID != 1 {
		t.Fatalf("second delivery id %d", *tr.DeliveryID)
	}
}

func TestPeerEndingASessionEndsItsLinks(t *testing.T) {
	links := make(chan *Link, 2)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error { links <- l; return nil }}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	l := <-links
	p.send(frameTypeAMQP, 0, &endFrame{Error: &Error{Condition: "app:bye"}})
	expect[*endFrame](p)
	<-l.Done()
	var ae *Error
	if err := l.Err(); !errors.As(err, &ae) || ae.Condition != "app:bye" {
		t.Fatalf("link error %v", err)
	}
	if _, err := l.Send(context.Background(), &Message{Value: "x"}); err == nil {
		t.Fatal("send on an ended session succeeded")
	}
	// The channel is free again for a new session.
	p.begin()
}

func TestPeerSuspendingALinkGetsAnOpenDetachBack(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	p.send(frameTypeAMQP, 0, &detachFrame{Handle: 0, Closed: false})
	if d, _ := expect[*detachFrame](p); d.Closed {
		t.Fatal("answered a suspending detach with closed=true")
	}
	// The handle can be attached again.
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, Source: &Source{Address: "q"}})
	if a, _ := expect[*attachFrame](p); a.Source == nil {
		t.Fatal("re-attach refused")
	}
}

func TestProtocolErrorsEndTheSessionOrCloseTheConnection(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{})
	for name, tc := range map[string]struct {
		ch         uint16
		perf       performative
		cond       Condition
		endSession bool
	}{
		"transfer on no link":  {0, &transferFrame{Handle: 7, DeliveryID: u32(0), Payload: []byte{0x00, 0x53, 0x77, 0x40}}, ErrCondUnattachedHandle, true},
		"flow on no link":      {0, &flowFrame{Handle: u32(7), LinkCredit: u32(1)}, ErrCondUnattachedHandle, true},
		"detach of no link":    {0, &detachFrame{Handle: 3}, ErrCondUnattachedHandle, true},
		"attach on no session": {5, &attachFrame{Name: "x", Role: RoleSender, Target: &Target{}}, ErrCondIllegalState, false},
		"second open":          {0, &openFrame{ContainerID: "again"}, ErrCondIllegalState, false},
	} {
		t.Run(name, func(t *testing.T) {
			p := rawDial(t, addr)
			p.open(0)
			p.begin()
			p.send(frameTypeAMQP, tc.ch, tc.perf)
			var got *Error
			if tc.endSession {
				e, _ := expect[*endFrame](p)
				got = e.Error
			} else {
				c, _ := expect[*closeFrame](p)
				got = c.Error
			}
			if got == nil || got.Condition != tc.cond {
				t.Fatalf("error %+v, want %s", got, tc.cond)
			}
			if tc.endSession {
				// Frames before the peer's end are ignored; after it the channel is free again
				// and the connection still works.
				p.send(frameTypeAMQP, 0, &flowFrame{Handle: u32(9)})
				p.send(frameTypeAMQP, 0, &endFrame{})
				p.begin()
			}
		})
	}
}

// A receiver in rcv-settle-mode second waits for the sender to settle what it disposed, also
// for messages sent with SendSettled on a link whose peer asked snd-settle-mode unsettled.
func TestServerSettlesForAReceiverInModeSecond(t *testing.T) {
	outcomes := make(chan Outcome, 1)
	addr := rawServe(t, &acceptAll{attach: func(l *Link) error {
		go func() {
			o, _ := l.Send(context.Background(), &Message{Value: "tracked"})
			outcomes <- o
			l.SendSettled(context.Background(), &Message{Value: "untracked"})
		}()
		return nil
	}}, Config{})
	p := rawDial(t, addr)
	p.open(0)
	p.begin()
	unsettled, second := SenderSettleUnsettled, ReceiverSettleSecond
	p.send(frameTypeAMQP, 0, &attachFrame{Name: "r", Handle: 0, Role: RoleReceiver, SndSettleMode: &unsettled, RcvSettleMode: &second, Source: &Source{Address: "q"}})
	expect[*attachFrame](p)
	p.send(frameTypeAMQP, 0, &flowFrame{NextIncomingID: u32(0), IncomingWindow: 100, OutgoingWindow: 100, Handle: u32(0), DeliveryCount: u32(0), LinkCredit: u32(10)})
	for i := uint32(0); i < 2; i++ {
		tr, _ := expect[*transferFrame](p)
		if *tr.Settled {
			t.Fatalf("delivery %d sent settled on an unsettled link", i)
		}
		p.send(frameTypeAMQP, 0, &dispositionFrame{Role: RoleReceiver, First: *tr.DeliveryID, State: &Accepted{}})
		d, _ := expect[*dispositionFrame](p)
		if !d.Settled || d.Role != RoleSender || d.First != *tr.DeliveryID {
			t.Fatalf("delivery %d: %+v", i, d)
		}
		if i == 0 {
			if _, ok := (<-outcomes).(*Accepted); !ok {
				t.Fatal("Send did not return accepted")
			}
		}
	}
}

func TestSessionsBeyondChannelMaxCloseTheConnection(t *testing.T) {
	addr := rawServe(t, &acceptAll{}, Config{ChannelMax: 1})
	p := rawDial(t, addr)
	if o := p.open(0); o.ChannelMax != 1 {
		t.Fatalf("channel-max %d", o.ChannelMax)
	}
	for ch := uint16(0); ch <= 1; ch++ {
		p.send(frameTypeAMQP, ch, &beginFrame{IncomingWindow: 10, OutgoingWindow: 10})
		if b, _ := expect[*beginFrame](p); *b.RemoteChannel != ch {
			t.Fatalf("begin on %d answered for %d", ch, *b.RemoteChannel)
		}
	}
	p.send(frameTypeAMQP, 2, &beginFrame{IncomingWindow: 10, OutgoingWindow: 10})
	c, _ := expect[*closeFrame](p)
	if c.Error == nil || c.Error.Condition != ErrCondFramingError {
		t.Fatalf("close %+v", c.Error)
	}
}
