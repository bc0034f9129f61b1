package amqp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one AMQP connection. Its state is guarded by mu; frames go to the socket through a
// bounded queue drained by one writer goroutine, so no lock is ever held during a socket write.
type Conn struct {
	srv *Server
	nc  net.Conn
	br  *bufio.Reader
	hdr [8]byte

	identity  any
	mechanism Symbol
	peer      *openFrame
	// peerMaxFrame is the largest frame the peer accepts; peerIdle is its idle-time-out.
	peerMaxFrame uint32
	peerIdle     time.Duration
	channelMax   uint16
	handler      ConnHandler
	ctx          context.Context
	cancel       context.CancelFunc

	out  chan []byte
	stop chan struct{} // closed when the connection is ending: the writer flushes and closes nc
	done chan struct{} // closed when everything has been torn down

	stopOnce sync.Once
	writing  atomic.Bool // the writer goroutine runs and will close nc
	closing  atomic.Bool // Shutdown sent close: only goodbyes go out
	answered atomic.Bool // the peer answered Shutdown's close: its hang-up is a clean end
	err      error       // why it ended; set before stop is closed

	mu       sync.Mutex
	sessions map[uint16]*session // by the peer's channel
	localCh  map[uint16]bool
	links    int
}

// Identity is what the Authenticator returned (nil without SASL or without an Authenticator).
func (c *Conn) Identity() any { return c.identity }

// Mechanism is the SASL mechanism the peer used; empty without SASL.
func (c *Conn) Mechanism() Symbol { return c.mechanism }

// ContainerID is the peer's container-id.
func (c *Conn) ContainerID() string { return c.peer.ContainerID }

// Hostname is the hostname of the peer's open frame (never validated: clients differ).
func (c *Conn) Hostname() string { return c.peer.Hostname }

// Properties are the properties of the peer's open frame.
func (c *Conn) Properties() Fields { return c.peer.Properties }

// RemoteAddr is the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// TLS is the connection's TLS state, nil on a plain connection.
func (c *Conn) TLS() *tls.ConnectionState { return c.tlsState() }

// Context is cancelled when the connection ends.
func (c *Conn) Context() context.Context { return c.ctx }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (nil while it runs or after a clean close by the peer).
func (c *Conn) Err() error {
	select {
	case <-c.stop:
		return c.err
	default:
		return nil
	}
}

// Close sends close with err (nil for a clean close) and ends the connection, e.g. when the
// credentials behind it expire.
func (c *Conn) Close(err *Error) {
	c.shutdown(errOf(err), true)
}

// errOf keeps a nil *Error a nil error.
func errOf(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

// goodbye tells the frames Shutdown still serves: after its close the
// server answers only the peer's rundown, detach and end (clients such as
// the Node IoT SDK detach every link and end their session after a close,
// and stall until they are answered); everything else is ignored and
// nothing else goes out.
func goodbye(p performative) bool {
	switch p.(type) {
	case *detachFrame, *endFrame, *closeFrame:
		return true
	}
	return false
}

// Shutdown closes the connection gracefully: it sends close with err (nil
// for a clean close), serves the peer's rundown (goodbye) and ends the
// connection when the peer hangs up or grace has passed.
func (c *Conn) Shutdown(err *Error, grace time.Duration) {
	if !c.writing.Load() || !c.closing.CompareAndSwap(false, true) {
		c.shutdown(errOf(err), true)
		return
	}
	b, encErr := c.encode(0, &closeFrame{Error: err})
	if encErr != nil {
		c.shutdown(errOf(err), false)
		return
	}
	select {
	case c.out <- b:
	case <-c.stop:
		return
	default: // the peer is not reading: no goodbye to wait for
		c.shutdown(errOf(err), false)
		return
	}
	time.AfterFunc(grace, func() { c.shutdown(errOf(err), false) })
}

// Abort drops the connection without a close frame, as a lost network
// connection looks to the peer.
func (c *Conn) Abort() {
	c.shutdown(ErrConnClosed, false)
}

// shutdown ends the connection once: it records why, queues a close frame when asked, and tells
// the writer to flush and close the socket.
func (c *Conn) shutdown(reason error, sendClose bool) {
	c.stopOnce.Do(func() {
		if sendClose {
			var ae *Error
			if reason != nil && !errors.As(reason, &ae) {
				ae = &Error{Condition: ErrCondInternalError, Description: reason.Error()}
			}
			if b, err := c.encode(0, &closeFrame{Error: ae}); err == nil {
				select {
				case c.out <- b:
				default: // the queue is full: the peer is not reading; drop the courtesy frame
				}
			}
		}
		if reason == nil {
			reason = ErrConnClosed
		}
		c.err = reason
		close(c.stop)
		if !c.writing.Load() {
			c.nc.Close() // no writer yet to do it: end the handshake now
		}
	})
}

func (c *Conn) encode(ch uint16, p performative) ([]byte, error) {
	c.trace("->", ch, p)
	return appendFrame(nil, frameTypeAMQP, ch, p)
}

// send queues a frame for the writer. It may block while the queue is full (the writer drains
// it or the write deadline ends the connection), never on the socket itself.
func (c *Conn) send(ch uint16, p performative) error {
	if c.closing.Load() && !goodbye(p) {
		return ErrConnClosed // after our close, only the answers to the peer's rundown go out
	}
	b, err := c.encode(ch, p)
	if err != nil {
		return err
	}
	select {
	case <-c.stop:
		return ErrConnClosed
	default:
	}
	select {
	case c.out <- b:
		return nil
	case <-c.stop:
		return ErrConnClosed
	}
}

func (c *Conn) serve(ctx context.Context) error {
	cfg := &c.srv.cfg
	c.ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	stopOnCancel := context.AfterFunc(ctx, func() {
		c.shutdown(&Error{Condition: ErrCondConnectionForced, Description: "server shutting down"}, true)
	})
	defer stopOnCancel()
	deadline := time.Now().Add(cfg.HandshakeTimeout)
	c.nc.SetDeadline(deadline)
	hctx, hcancel := context.WithDeadline(c.ctx, deadline)
	err := c.handshake(hctx)
	hcancel()
	if err != nil {
		c.shutdown(err, false)
		c.nc.Close()
		close(c.done)
		return err
	}
	fh, p, err := c.readFrame()
	open, ok := p.(*openFrame)
	if err == nil && (!ok || fh.Type != frameTypeAMQP) {
		err = fmt.Errorf("amqp: expected open, got %T", p)
	}
	if err != nil {
		c.shutdown(err, false)
		c.nc.Close()
		close(c.done)
		return err
	}
	c.nc.SetDeadline(time.Time{})
	c.peer = open
	// Frames sent are within both limits, so the writer queue's bytes are bounded by ours.
	c.peerMaxFrame = min(max(open.MaxFrameSize, minMaxFrameSize), cfg.MaxFrameSize)
	c.peerIdle = time.Duration(open.IdleTimeout) * time.Millisecond
	c.channelMax = min(cfg.ChannelMax, open.ChannelMax)

	writerDone := make(chan struct{})
	c.writing.Store(true)
	go func() {
		c.writeLoop()
		close(writerDone)
	}()
	idle := uint32(0)
	if cfg.IdleTimeout > 0 {
		idle = uint32(cfg.IdleTimeout / time.Millisecond)
	}
	c.send(0, &openFrame{
		ContainerID:         cfg.ContainerID,
		MaxFrameSize:        cfg.MaxFrameSize,
		ChannelMax:          cfg.ChannelMax,
		IdleTimeout:         idle,
		OfferedCapabilities: cfg.OfferedCapabilities,
		Properties:          cfg.Properties,
	})
	h, herr := c.srv.handler.Connected(c)
	if herr != nil {
		c.shutdown(herr, true)
	} else {
		c.handler = h
		c.readLoop()
	}
	<-writerDone
	c.nc.Close()
	c.teardown()
	close(c.done)
	if c.handler != nil {
		reason := c.err
		if reason == errPeerClosed {
			reason = nil
		}
		c.handler.Closed(reason)
	}
	if c.err == errPeerClosed {
		return nil
	}
	return c.err
}

// errPeerClosed marks a connection the peer closed without an error.
var errPeerClosed = errors.New("amqp: closed by the peer")

// writeLoop owns the socket's write side: it batches queued frames, applies the write deadline
// and sends heartbeats at half the peer's idle-time-out.
func (c *Conn) writeLoop() {
	// Closing the socket on the way out also wakes the reader, whatever it is waiting for.
	defer c.nc.Close()
	cfg := &c.srv.cfg
	var tick <-chan time.Time
	if c.peerIdle > 0 {
		// Checking at a quarter of the period keeps the longest silence under 3/4 of it.
		t := time.NewTicker(max(c.peerIdle/4, 25*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	w := bufio.NewWriterSize(c.nc, 32<<10)
	lastWrite := time.Now()
	write := func(b []byte) bool {
		c.nc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			c.shutdown(err, false)
			return false
		}
		lastWrite = time.Now()
		return true
	}
	flush := func() bool {
		if err := w.Flush(); err != nil {
			c.shutdown(err, false)
			return false
		}
		return true
	}
	for {
		select {
		case b := <-c.out:
			if !write(b) {
				return
			}
			for more := true; more; {
				select {
				case b := <-c.out:
					if !write(b) {
						return
					}
				default:
					more = false
				}
			}
			if !flush() {
				return
			}
		case <-tick:
			if time.Since(lastWrite) >= c.peerIdle/2 {
				if !write([]byte{0, 0, 0, 8, 2, 0, 0, 0}) || !flush() {
					return
				}
			}
		case <-c.stop:
			// Flush what is queued (the close frame among it), briefly.
			c.nc.SetWriteDeadline(time.Now().Add(min(cfg.WriteTimeout, time.Second)))
			for {
				select {
				case b := <-c.out:
					if _, err := w.Write(b); err != nil {
						return
					}
				default:
					w.Flush()
					return
				}
			}
		}
	}
}

func (c *Conn) readLoop() {
	idle := c.srv.cfg.IdleTimeout
	for {
		if idle > 0 {
			c.nc.SetReadDeadline(time.Now().Add(idle))
		}
		fh, p, err := c.readFrame()
		if err != nil {
			select {
			case <-c.stop:
				return
			default:
			}
			var ae *Error
			var ne net.Error
			switch {
			case c.answered.Load():
				c.shutdown(errPeerClosed, false) // the hang-up after the rundown
			case errors.As(err, &ae):
				c.shutdown(ae, true)
			case errors.As(err, &ne) && ne.Timeout():
				c.shutdown(&Error{Condition: ErrCondResourceLimitExceeded, Description: "local-idle-timeout expired"}, true)
			default:
				c.shutdown(err, false)
			}
			return
		}
		if p == nil {
			continue // heartbeat
		}
		if fh.Type != frameTypeAMQP {
			c.shutdown(&Error{Condition: ErrCondFramingError, Description: "SASL frame after SASL"}, true)
			return
		}
		if c.closing.Load() && !goodbye(p) {
			continue // Shutdown serves the peer's rundown only
		}
		if err := c.handle(fh.Channel, p); err != nil {
			c.shutdown(err, true)
			return
		}
		select {
		case <-c.stop:
			return
		default:
		}
	}
}

// handle dispatches one frame; an error ends the connection with it.
func (c *Conn) handle(ch uint16, p performative) error {
	switch p := p.(type) {
	case *openFrame:
		return &Error{Condition: ErrCondIllegalState, Description: "second open"}
	case *closeFrame:
		if c.closing.Load() {
			// The answer to our close. rhea sends it at once and the Node
			// SDK runs its links and session down afterwards, waiting for
			// answers: serve that until the peer hangs up or grace ends.
			c.answered.Store(true)
			return nil
		}
		c.send(0, &closeFrame{})
		if p.Error != nil {
			c.shutdown(p.Error, false)
		} else {
			c.shutdown(errPeerClosed, false)
		}
		return nil
	case *beginFrame:
		return c.begin(ch, p)
	}
	c.mu.Lock()
	s := c.sessions[ch]
	ended := s != nil && s.ended
	c.mu.Unlock()
	if s == nil {
		return &Error{Condition: ErrCondIllegalState, Description: fmt.Sprintf("frame on channel %d without a session", ch)}
	}
	if end, ok := p.(*endFrame); ok {
		return s.end(end)
	}
	if ended {
		return nil // the server ended the session; frames in flight until the peer's end are void
	}
	var err error
	switch p := p.(type) {
	case *attachFrame:
		err = s.attach(p)
	case *flowFrame:
		err = s.flow(p)
	case *transferFrame:
		err = s.transfer(p)
	case *dispositionFrame:
		err = s.disposition(p)
	case *detachFrame:
		err = s.detach(p)
	default:
		err = &Error{Condition: ErrCondNotImplemented, Description: fmt.Sprintf("unexpected %T", p)}
	}
	var ae *Error
	if errors.As(err, &ae) && sessionErrors[ae.Condition] {
		return s.fail(ae)
	}
	return err
}

// sessionErrors are the conditions that end only the session they occur in (§2.8.17); other
// errors close the connection.
var sessionErrors = map[Condition]bool{
	ErrCondUnattachedHandle: true, ErrCondHandleInUse: true, ErrCondWindowViolation: true, ErrCondErrantLink: true,
}

// fail ends the session with err: its links end, and frames still arriving on it are ignored
// until the peer answers with its end.
func (s *session) fail(err *Error) error {
	c := s.conn
	c.mu.Lock()
	if s.ended {
		c.mu.Unlock()
		return nil
	}
	s.ended = true
	s.closeLinks(err)
	c.mu.Unlock()
	if c.closing.Load() {
		return nil // after Shutdown's close only answers to the peer go out
	}
	return c.send(s.local, &endFrame{Error: err})
}

func (c *Conn) begin(ch uint16, p *beginFrame) error {
	cfg := &c.srv.cfg
	if p.RemoteChannel != nil {
		return &Error{Condition: ErrCondNotAllowed, Description: "begin answering a session the server never started"}
	}
	if ch > c.channelMax {
		return &Error{Condition: ErrCondFramingError, Description: fmt.Sprintf("channel %d above channel-max %d", ch, c.channelMax)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[ch] != nil {
		return &Error{Condition: ErrCondFramingError, Description: fmt.Sprintf("channel %d already has a session", ch)}
	}
	if c.localCh == nil {
		c.localCh = make(map[uint16]bool)
	}
	local := uint16(0)
	for c.localCh[local] {
		local++
	}
	c.localCh[local] = true
	s := &session{
		conn:                 c,
		local:                local,
		remote:               ch,
		nextIncomingID:       p.NextOutgoingID,
		incomingWindow:       cfg.SessionWindow,
		remoteIncomingWindow: p.IncomingWindow,
		handleMax:            uint32(cfg.MaxLinks - 1),
		links:                make(map[uint32]*Link),
		localHandles:         make(map[uint32]bool),
		inUnsettled:          make(map[uint32]*Delivery),
		outUnsettled:         make(map[uint32]*outDelivery),
	}
	c.sessions[ch] = s
	rc := ch
	return c.send(local, &beginFrame{
		RemoteChannel:  &rc,
		NextOutgoingID: s.nextOutgoingID,
		IncomingWindow: s.incomingWindow,
		OutgoingWindow: cfg.SessionWindow,
		HandleMax:      s.handleMax,
	})
}

// teardown fails every link once the connection has ended.
func (c *Conn) teardown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		s.closeLinks(c.err)
	}
}

// session is one AMQP session; guarded by conn.mu.
type session struct {
	conn          *Conn
	local, remote uint16
	ended         bool

	nextIncomingID       uint32
	incomingWindow       uint32
	nextOutgoingID       uint32
	remoteIncomingWindow uint32
	nextDeliveryID       uint32
	handleMax            uint32

	links        map[uint32]*Link // by the peer's handle
	localHandles map[uint32]bool
	inUnsettled  map[uint32]*Delivery    // deliveries from the peer awaiting settlement, by delivery-id
	outUnsettled map[uint32]*outDelivery // deliveries to the peer awaiting their outcome
}

// outDelivery is a delivery the server sent unsettled.
type outDelivery struct {
	link   *Link
	result chan Outcome // buffered; receives the outcome once
}

func (s *session) sendFlow(l *Link, echo bool) error {
	next := s.nextIncomingID
	f := &flowFrame{
		NextIncomingID: &next,
		IncomingWindow: s.incomingWindow,
		NextOutgoingID: s.nextOutgoingID,
		OutgoingWindow: s.conn.srv.cfg.SessionWindow,
		Echo:           echo,
	}
	if l != nil {
		h, dc, credit := l.localHandle, l.deliveryCount, l.credit
		f.Handle, f.DeliveryCount, f.LinkCredit = &h, &dc, &credit
		f.Drain = l.drain
		if l.role == RoleSender {
			avail := uint32(l.waiting)
			f.Available = &avail
		}
	}
	return s.conn.send(s.local, f)
}

func (s *session) end(p *endFrame) error {
	c := s.conn
	c.mu.Lock()
	reason := error(ErrLinkClosed)
	if p.Error != nil {
		reason = p.Error
	}
	s.closeLinks(reason)
	delete(c.sessions, s.remote)
	delete(c.localCh, s.local)
	ended := s.ended
	s.ended = true
	c.mu.Unlock()
	if !ended {
		return c.send(s.local, &endFrame{})
	}
	return nil
}

// closeLinks ends every link of the session with reason; conn.mu is held.
func (s *session) closeLinks(reason error) {
	for h, l := range s.links {
		l.finish(reason)
		delete(s.links, h)
		s.conn.links--
	}
}

func (s *session) attach(p *attachFrame) error {
	c := s.conn
	c.mu.Lock()
	if s.links[p.Handle] != nil {
		c.mu.Unlock()
		return &Error{Condition: ErrCondHandleInUse, Description: fmt.Sprintf("handle %d in use", p.Handle)}
	}
	l := newLink(s, p)
	local := uint32(0)
	for s.localHandles[local] {
		local++
	}
	s.localHandles[local] = true
	l.localHandle = local
	s.links[p.Handle] = l
	c.links++
	var refuse error
	if c.links > c.srv.cfg.MaxLinks || p.Handle > s.handleMax {
		refuse = &Error{Condition: ErrCondResourceLimitExceeded, Description: fmt.Sprintf("at most %d links per connection", c.srv.cfg.MaxLinks)}
	}
	c.mu.Unlock()
	if refuse == nil {
		refuse = c.handler.Attach(l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if refuse != nil {
		var ae *Error
		if !errors.As(refuse, &ae) {
			ae = &Error{Condition: ErrCondInternalError, Description: refuse.Error()}
		}
		reply := &attachFrame{Name: p.Name, Handle: local, Role: l.role, SndSettleMode: p.SndSettleMode, RcvSettleMode: p.RcvSettleMode,
			Properties: Fields{}}
		if l.role == RoleSender {
			zero := uint32(0)
			reply.InitialDeliveryCount = &zero
		}
		if err := c.send(s.local, reply); err != nil {
			return err
		}
		l.detachSent = true
		l.finish(ae)
		return c.send(s.local, &detachFrame{Handle: local, Closed: true, Error: ae})
	}
	reply := &attachFrame{
		Name:                p.Name,
		Handle:              local,
		Role:                l.role,
		SndSettleMode:       p.SndSettleMode,
		RcvSettleMode:       l.replyRcvMode,
		Source:              l.replySource,
		Target:              l.replyTarget,
		MaxMessageSize:      l.maxMessageSize,
		OfferedCapabilities: l.offered,
		Properties:          l.replyProps,
	}
	if reply.Properties == nil {
		reply.Properties = Fields{}
	}
	if l.role == RoleSender {
		zero := uint32(0)
		reply.InitialDeliveryCount = &zero
	}
	if err := c.send(s.local, reply); err != nil {
		return err
	}
	l.attached = true
	if l.role == RoleReceiver {
		return l.refill()
	}
	return nil
}

func (s *session) flow(p *flowFrame) error {
	c := s.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	next := uint32(0)
	if p.NextIncomingID != nil {
		next = *p.NextIncomingID
	}
	s.remoteIncomingWindow = next + p.IncomingWindow - s.nextOutgoingID
	if p.Handle == nil {
		for _, l := range s.links {
			l.wake()
		}
		if p.Echo {
			return s.sendFlow(nil, false)
		}
		return nil
	}
	l := s.links[*p.Handle]
	if l == nil {
		return &Error{Condition: ErrCondUnattachedHandle, Description: fmt.Sprintf("flow for handle %d", *p.Handle)}
	}
	if l.detachSent {
		return nil
	}
	if l.role == RoleSender {
		peerCount := l.initialCount
		if p.DeliveryCount != nil {
			peerCount = *p.DeliveryCount
		}
		if p.LinkCredit != nil {
			credit := int64(peerCount) + int64(*p.LinkCredit) - int64(l.deliveryCount)
			// delivery-count wraps: compare with serial number arithmetic.
			credit = int64(int32(uint32(credit)))
			l.credit = uint32(max(credit, 0))
		}
		l.drain = p.Drain
		l.wake()
		if l.drain && l.waiting == 0 {
			return l.drainCredit()
		}
		if p.Echo {
			return s.sendFlow(l, false)
		}
		return nil
	}
	if p.DeliveryCount != nil {
		l.deliveryCount = *p.DeliveryCount
		l.credit = uint32(max(int32(l.deliveryLimit-l.deliveryCount), 0))
	}
	if p.Echo {
		if err := s.sendFlow(l, false); err != nil {
			return err
		}
	}
	return l.refill()
}

func (s *session) transfer(p *transferFrame) error {
	c := s.conn
	cfg := &c.srv.cfg
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.incomingWindow == 0 {
		return &Error{Condition: ErrCondWindowViolation, Description: "transfer beyond the session's incoming-window"}
	}
	s.nextIncomingID++
	s.incomingWindow--
	if s.incomingWindow < cfg.SessionWindow/2 {
		s.incomingWindow = cfg.SessionWindow
		if err := s.sendFlow(nil, false); err != nil {
			return err
		}
	}
	l := s.links[p.Handle]
	if l == nil {
		return &Error{Condition: ErrCondUnattachedHandle, Description: fmt.Sprintf("transfer for handle %d", p.Handle)}
	}
	if l.detachSent {
		return nil
	}
	if l.role != RoleReceiver {
		return &Error{Condition: ErrCondNotAllowed, Description: "transfer on a link where the peer receives"}
	}
	return l.onTransfer(p)
}

func (s *session) disposition(p *dispositionFrame) error {
	c := s.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	last := p.First
	if p.Last != nil {
		last = *p.Last
	}
	if last-p.First > uint32(c.srv.cfg.MaxUnsettled)*uint32(max(c.links, 1)) {
		// A range wider than everything that can be unsettled: walk the maps instead.
		return s.dispositionSparse(p, last)
	}
	for id := p.First; ; id++ {
		s.disposeOne(p, id)
		if id == last {
			break
		}
	}
	return s.settleForPeer(p, last)
}

// settleForPeer answers a receiver in rcv-settle-mode second, which waits for the sender to
// settle what it has disposed: one settled disposition for the whole range, tracked deliveries
// or not (SendSettled does not track).
func (s *session) settleForPeer(p *dispositionFrame, last uint32) error {
	if p.Role != RoleReceiver || p.Settled || p.State == nil {
		return nil
	}
	if _, isReceived := p.State.(*received); isReceived {
		return nil
	}
	f := &dispositionFrame{Role: RoleSender, First: p.First, Settled: true, State: p.State}
	if last != p.First {
		f.Last = &last
	}
	return s.conn.send(s.local, f)
}

func (s *session) dispositionSparse(p *dispositionFrame, last uint32) error {
	in := func(id uint32) bool { return id-p.First <= last-p.First }
	if p.Role == RoleReceiver {
		for id := range s.outUnsettled {
			if in(id) {
				s.disposeOne(p, id)
			}
		}
	} else {
		for id := range s.inUnsettled {
			if in(id) {
				s.disposeOne(p, id)
			}
		}
	}
	return s.settleForPeer(p, last)
}

// disposeOne applies the peer's disposition to one delivery; conn.mu is held.
func (s *session) disposeOne(p *dispositionFrame, id uint32) {
	if p.Role == RoleReceiver {
		// The peer received something the server sent.
		od := s.outUnsettled[id]
		if od == nil {
			return
		}
		outcome := p.State
		if _, isReceived := outcome.(*received); isReceived || (outcome == nil && !p.Settled) {
			return // not terminal yet
		}
		if outcome == nil {
			outcome = &Accepted{} // settled with no state: the source's default outcome
		}
		delete(s.outUnsettled, id)
		od.link.unsettledOut--
		od.link.wake()
		od.result <- outcome
		return
	}
	// The peer sent it: it settles a delivery the server already disposed (mode second).
	d := s.inUnsettled[id]
	if d == nil || !p.Settled {
		return
	}
	delete(s.inUnsettled, id)
	d.link.unsettled--
	d.link.refill()
}

func (s *session) detach(p *detachFrame) error {
	c := s.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	l := s.links[p.Handle]
	if l == nil {
		return &Error{Condition: ErrCondUnattachedHandle, Description: fmt.Sprintf("detach for handle %d", p.Handle)}
	}
	delete(s.links, p.Handle)
	delete(s.localHandles, l.localHandle)
	c.links--
	if l.detachSent {
		return nil
	}
	reason := error(ErrLinkClosed)
	if p.Error != nil {
		reason = p.Error
	}
	l.detachSent = true
	l.finish(reason)
	return c.send(s.local, &detachFrame{Handle: l.localHandle, Closed: p.Closed})
}
