package amqp

import (
	"context"
	"encoding/binary"
	"fmt"
)

// Link is one attached link. Its Role is the server's: RoleReceiver links carry messages from
// the peer (Receive), RoleSender links carry messages to the peer (Send, SendSettled).
type Link struct {
	session     *session
	conn        *Conn
	name        string
	role        Role
	localHandle uint32

	source        *Source
	target        *Target
	peerProps     Fields
	peerOffered   []Symbol
	peerDesired   []Symbol
	peerMaxSize   uint64
	sndSettleMode SenderSettleMode
	rcvSettleMode ReceiverSettleMode
	initialCount  uint32

	// The attach reply; set by the handler during Attach.
	replySource    *Source
	replyTarget    *Target
	replyRcvMode   *ReceiverSettleMode
	replyProps     Fields
	offered        []Symbol
	maxMessageSize uint64

	// Everything below is guarded by conn.mu.
	attached   bool
	detachSent bool
	closed     bool
	err        error
	done       chan struct{}
	notify     chan struct{} // closed and replaced on every state change, to wake waiters

	deliveryCount uint32
	credit        uint32
	deliveryLimit uint32 // receiver: delivery-count + credit at the last flow sent
	drain         bool
	window        uint32

	// RoleReceiver
	queue      []*Delivery
	queueBytes int64 // payload bytes of queue
	unsettled  int
	partial    *Delivery
	partialBuf []byte

	// RoleSender
	sendLock     chan struct{}
	waiting      int
	unsettledOut int
	nextTag      uint64
}

func newLink(s *session, p *attachFrame) *Link {
	cfg := &s.conn.srv.cfg
	l := &Link{
		session:       s,
		conn:          s.conn,
		name:          p.Name,
		role:          !p.Role,
		source:        p.Source,
		target:        p.Target,
		peerProps:     p.Properties,
		peerOffered:   p.OfferedCapabilities,
		peerDesired:   p.DesiredCapabilities,
		peerMaxSize:   p.MaxMessageSize,
		sndSettleMode: SenderSettleMixed,
		rcvSettleMode: ReceiverSettleFirst,
		replySource:   p.Source,
		replyTarget:   p.Target,
		replyProps:    p.Properties,
		done:          make(chan struct{}),
		notify:        make(chan struct{}),
		window:        cfg.LinkCredit,
		sendLock:      make(chan struct{}, 1),
	}
	if p.SndSettleMode != nil {
		l.sndSettleMode = *p.SndSettleMode
	}
	if p.RcvSettleMode != nil {
		l.rcvSettleMode = *p.RcvSettleMode
	}
	l.replyRcvMode = p.RcvSettleMode
	if l.role == RoleReceiver {
		l.maxMessageSize = cfg.MaxMessageSize
		if p.InitialDeliveryCount != nil {
			l.initialCount = *p.InitialDeliveryCount
		}
		l.deliveryCount = l.initialCount
		l.deliveryLimit = l.deliveryCount
	}
	return l
}

// Name is the link's name.
func (l *Link) Name() string { return l.name }

// Role is the server's role on the link.
func (l *Link) Role() Role { return l.role }

// Source and Target are the peer's terminus proposals (nil when absent).
func (l *Link) Source() *Source { return l.source }
func (l *Link) Target() *Target { return l.target }

// Address is the node the link is attached to: the target's address for RoleReceiver links,
// the source's for RoleSender links.
func (l *Link) Address() string {
	if l.role == RoleReceiver {
		if l.target != nil {
			return l.target.Address
		}
	} else if l.source != nil {
		return l.source.Address
	}
	return ""
}

// Properties are the peer's link properties.
func (l *Link) Properties() Fields { return l.peerProps }

// DesiredCapabilities and OfferedCapabilities are the peer's.
func (l *Link) DesiredCapabilities() []Symbol { return l.peerDesired }
func (l *Link) OfferedCapabilities() []Symbol { return l.peerOffered }

// SenderSettleMode and ReceiverSettleMode are the modes the peer asked for (the reply echoes
// them).
func (l *Link) SenderSettleMode() SenderSettleMode     { return l.sndSettleMode }
func (l *Link) ReceiverSettleMode() ReceiverSettleMode { return l.rcvSettleMode }

// PeerMaxMessageSize is the peer's max-message-size (0: no limit).
func (l *Link) PeerMaxMessageSize() uint64 { return l.peerMaxSize }

// Conn is the link's connection.
func (l *Link) Conn() *Conn { return l.conn }

// Done is closed when the link has been detached (by either side) or its session or connection
// has ended.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err is why the link ended: the peer's *Error, the one given to Close, ErrLinkClosed, or the
// connection's error.
func (l *Link) Err() error {
	l.conn.mu.Lock()
	defer l.conn.mu.Unlock()
	return l.err
}

// The Set methods change the attach reply; call them only from ConnHandler.Attach.

// SetSource sets the source of the attach reply (default: the peer's).
func (l *Link) SetSource(s *Source) { l.replySource = s }

// SetTarget sets the target of the attach reply (default: the peer's).
func (l *Link) SetTarget(t *Target) { l.replyTarget = t }

// SetReceiverSettleMode sets the rcv-settle-mode of the attach reply on a RoleReceiver link, and
// the link settles by it (first: Settle sends settled dispositions at once). Some clients ask for
// second but only complete a send on a settled disposition.
func (l *Link) SetReceiverSettleMode(m ReceiverSettleMode) {
	l.rcvSettleMode = m
	l.replyRcvMode = &m
}

// SetProperties sets the link properties of the attach reply (default: the peer's, or an empty
// map: some clients fail on a null map).
func (l *Link) SetProperties(p Fields) { l.replyProps = p }

// SetOfferedCapabilities sets the offered capabilities of the attach reply.
func (l *Link) SetOfferedCapabilities(c []Symbol) { l.offered = c }

// SetCredit sets the credit window of a RoleReceiver link (default Config.LinkCredit).
func (l *Link) SetCredit(n uint32) {
	if n > 0 {
		l.window = n
	}
}

// SetMaxMessageSize bounds messages on a RoleReceiver link (default Config.MaxMessageSize, which
// it cannot exceed).
func (l *Link) SetMaxMessageSize(n uint64) {
	if n > 0 && n < l.conn.srv.cfg.MaxMessageSize {
		l.maxMessageSize = n
	}
}

// Close detaches the link (closed=true) with err, which may be nil.
func (l *Link) Close(err *Error) {
	c := l.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	l.detachLocked(err)
}

// EndSession ends the link's session with err (nil for a clean end): every
// link of the session ends, and the frames the peer still sends on it are
// ignored until it answers with its own end.
func (l *Link) EndSession(err *Error) {
	_ = l.session.fail(err)
}

func (l *Link) detachLocked(err *Error) error {
	if l.detachSent || l.closed {
		return nil
	}
	var reason error = ErrLinkClosed
	if err != nil {
		reason = err
	}
	if l.conn.closing.Load() {
		// After Shutdown's close only answers go out: the link ends here,
		// and the peer's own detach is still answered.
		l.finish(reason)
		return nil
	}
	l.detachSent = true
	l.finish(reason)
	return l.conn.send(l.session.local, &detachFrame{Handle: l.localHandle, Closed: true, Error: err})
}

// wake tells every waiter of the link that something changed; conn.mu is held.
func (l *Link) wake() {
	close(l.notify)
	l.notify = make(chan struct{})
}

// finish ends the link locally; conn.mu is held.
func (l *Link) finish(reason error) {
	if l.closed {
		return
	}
	l.closed = true
	l.err = reason
	close(l.done)
	l.wake()
	s := l.session
	for id, od := range s.outUnsettled {
		if od.link == l {
			delete(s.outUnsettled, id)
		}
	}
	for id, d := range s.inUnsettled {
		if d.link == l {
			delete(s.inUnsettled, id)
		}
	}
	l.partial, l.partialBuf = nil, nil
}

// Credit is the credit the peer has granted a RoleSender link.
func (l *Link) Credit() uint32 {
	l.conn.mu.Lock()
	defer l.conn.mu.Unlock()
	return l.credit
}

// Delivery is a message received on a RoleReceiver link. Unless the peer sent it settled, settle
// it exactly once with Accept, Reject, Release or Modify; until then it counts against the
// link's unsettled bound, and the peer gets no more credit once that bound is reached.
type Delivery struct {
	Message *Message
	Tag     []byte
	// Settled is true when the peer sent the message settled: it expects no outcome.
	Settled bool

	link   *Link
	id     uint32
	format uint32
	size   int64
	done   bool
}

// Link is the link the delivery arrived on.
func (d *Delivery) Link() *Link { return d.link }

// Accept settles the delivery with the accepted outcome.
func (d *Delivery) Accept() error { return d.Settle(&Accepted{}) }

// Reject settles the delivery with the rejected outcome carrying err.
func (d *Delivery) Reject(err *Error) error { return d.Settle(&Rejected{Error: err}) }

// Release settles the delivery with the released outcome (the peer may send it again).
func (d *Delivery) Release() error { return d.Settle(&Released{}) }

// Modify settles the delivery with the modified outcome.
func (d *Delivery) Modify(m *Modified) error { return d.Settle(m) }

// Settle sends the outcome. On a link in rcv-settle-mode second the delivery stays unsettled
// until the peer settles it.
func (d *Delivery) Settle(o Outcome) error {
	l := d.link
	c := l.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.done {
		return ErrSettled
	}
	d.done = true
	if d.Settled {
		return nil
	}
	if l.closed {
		return l.err
	}
	s := l.session
	first := l.rcvSettleMode == ReceiverSettleFirst
	err := c.send(s.local, &dispositionFrame{Role: RoleReceiver, First: d.id, Settled: first, State: o})
	if first {
		if s.inUnsettled[d.id] == d {
			delete(s.inUnsettled, d.id)
		}
		l.unsettled--
		l.refill()
	}
	return err
}

// onTransfer takes one transfer frame of the peer; conn.mu is held. Link-level errors detach
// the link; the returned error ends the connection.
func (l *Link) onTransfer(p *transferFrame) error {
	if l.partial == nil {
		if p.DeliveryID == nil {
			return &Error{Condition: ErrCondInvalidField, Description: "first transfer of a delivery without delivery-id"}
		}
		if l.credit == 0 {
			return l.detachLocked(&Error{Condition: ErrCondTransferLimitExceeded, Description: "transfer without link credit"})
		}
		l.credit--
		l.deliveryCount++
		d := &Delivery{link: l, id: *p.DeliveryID, Tag: p.DeliveryTag}
		if p.MessageFormat != nil {
			d.format = *p.MessageFormat
		}
		l.partial = d
		l.partialBuf = l.partialBuf[:0]
	}
	d := l.partial
	if p.Settled != nil && *p.Settled {
		d.Settled = true
	}
	if p.Aborted {
		l.partial = nil
		return l.refill()
	}
	if uint64(len(l.partialBuf))+uint64(len(p.Payload)) > l.maxMessageSize {
		l.partial = nil
		return l.detachLocked(&Error{Condition: ErrCondMessageSizeExceeded,
			Description: fmt.Sprintf("message larger than %d bytes", l.maxMessageSize)})
	}
	l.partialBuf = append(l.partialBuf, p.Payload...)
	if p.More {
		return nil
	}
	l.partial = nil
	msg := new(Message)
	if err := msg.UnmarshalBinary(l.partialBuf); err != nil {
		if !d.Settled {
			return l.conn.send(l.session.local, &dispositionFrame{Role: RoleReceiver, First: d.id, Settled: true,
				State: &Rejected{Error: &Error{Condition: ErrCondDecodeError, Description: err.Error()}}})
		}
		return l.refill()
	}
	msg.Format = d.format
	d.Message = msg
	if !d.Settled {
		l.unsettled++
		l.session.inUnsettled[d.id] = d
	}
	l.queue = append(l.queue, d)
	l.queueBytes += int64(len(l.partialBuf))
	d.size = int64(len(l.partialBuf))
	if cap(l.partialBuf) > 64<<10 {
		l.partialBuf = nil // do not keep a large reassembly buffer alive on an idle link
	}
	l.wake()
	return nil
}

// refill grants the peer credit up to the link's window, bounded by the unsettled limit; it
// tops up only once half the credit is used, so a busy link sends one flow per half window.
// conn.mu is held.
func (l *Link) refill() error {
	if l.role != RoleReceiver || !l.attached || l.closed {
		return nil
	}
	want := int64(l.window) - int64(len(l.queue))
	if u := int64(l.conn.srv.cfg.MaxUnsettled - l.unsettled); u < want {
		want = u
	}
	// Bound the bytes the link may hold: what waits in the queue, a message being reassembled,
	// and a whole MaxMessageSize for every credit.
	perMessage := int64(l.maxMessageSize)
	held := l.queueBytes
	if l.partial != nil {
		held += perMessage
	}
	affordable := (l.conn.srv.cfg.LinkBuffer - held) / perMessage
	if affordable < 1 && held == 0 {
		affordable = 1 // messages larger than the buffer still flow, one at a time
	}
	want = min(want, affordable)
	if want <= int64(l.credit) {
		return nil
	}
	if l.credit != 0 && int64(l.credit) > min(int64(l.window), affordable)/2 {
		return nil
	}
	l.credit = uint32(want)
	l.deliveryLimit = l.deliveryCount + l.credit
	return l.session.sendFlow(l, false)
}

// Receive returns the next message the peer sent on a RoleReceiver link. Messages already
// received are returned even after the link ended; then the link's error.
func (l *Link) Receive(ctx context.Context) (*Delivery, error) {
	if l.role != RoleReceiver {
		return nil, ErrWrongRole
	}
	c := l.conn
	c.mu.Lock()
	for {
		if len(l.queue) > 0 {
			d := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.queueBytes -= d.size
			l.refill()
			c.mu.Unlock()
			return d, nil
		}
		if l.closed {
			err := l.err
			c.mu.Unlock()
			return nil, err
		}
		ch := l.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
}

// Send sends msg on a RoleSender link and returns the peer's outcome. It waits for link credit
// and session window, and for fewer than Config.MaxUnsettled outcomes outstanding. On a link
// whose peer asked snd-settle-mode settled, the message goes settled and the outcome is
// Accepted at once. An error means the outcome is unknown (the link or connection ended, or ctx
// expired after the message left).
func (l *Link) Send(ctx context.Context, msg *Message) (Outcome, error) {
	if l.role != RoleSender {
		return nil, ErrWrongRole
	}
	payload, err := msg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return l.send(ctx, payload, msg.Format, l.sndSettleMode == SenderSettleSettled, true)
}

// SendSettled sends msg without waiting for an outcome: settled, unless the peer asked
// snd-settle-mode unsettled, in which case it goes unsettled and whatever outcome the peer sends
// is ignored (some Event Hubs clients never settle).
func (l *Link) SendSettled(ctx context.Context, msg *Message) error {
	if l.role != RoleSender {
		return ErrWrongRole
	}
	payload, err := msg.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = l.send(ctx, payload, msg.Format, l.sndSettleMode != SenderSettleUnsettled, false)
	return err
}

func (l *Link) send(ctx context.Context, payload []byte, format uint32, settled, track bool) (Outcome, error) {
	select {
	case l.sendLock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, l.Err()
	}
	// The lock keeps one delivery's frames together; it is released before waiting for the
	// outcome, so concurrent Sends pipeline.
	locked := true
	unlock := func() {
		if locked {
			locked = false
			<-l.sendLock
		}
	}
	defer unlock()
	c := l.conn
	s := l.session
	maxUnsettled := c.srv.cfg.MaxUnsettled
	c.mu.Lock()
	l.waiting++
	for {
		if l.closed {
			l.waiting--
			err := l.err
			c.mu.Unlock()
			return nil, err
		}
		if l.credit > 0 && s.remoteIncomingWindow > 0 && (settled || !track || l.unsettledOut < maxUnsettled) {
			break
		}
		ch := l.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			l.waiting--
			l.maybeDrain()
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	l.waiting--
	id := s.nextDeliveryID
	s.nextDeliveryID++
	tag := binary.BigEndian.AppendUint64(nil, l.nextTag)
	l.nextTag++
	l.credit--
	l.deliveryCount++
	var od *outDelivery
	if !settled && track {
		od = &outDelivery{link: l, result: make(chan Outcome, 1)}
		s.outUnsettled[id] = od
		l.unsettledOut++
	}
	frame := func() *transferFrame {
		// Every frame repeats the delivery's identity: clients differ in what they expect on
		// continuation frames, and the specification allows it.
		idv, fmtv, settledv := id, format, settled
		return &transferFrame{Handle: l.localHandle, DeliveryID: &idv, DeliveryTag: tag, MessageFormat: &fmtv, Settled: &settledv}
	}
	head, _ := appendFrame(nil, frameTypeAMQP, s.local, frame())
	chunk := int(c.peerMaxFrame) - len(head) - 1 // "more" may grow by nothing; keep a byte spare
	rest := payload
	for {
		f := frame()
		n := min(len(rest), chunk)
		f.Payload, rest = rest[:n], rest[n:]
		f.More = len(rest) > 0
		for s.remoteIncomingWindow == 0 && !l.closed {
			ch := l.notify
			c.mu.Unlock()
			cancelled := false
			select {
			case <-ch:
			case <-ctx.Done():
				cancelled = true
			}
			c.mu.Lock()
			if !cancelled {
				continue
			}
			// Give up mid-message: abort the delivery (§2.6.14).
			if !l.closed {
				a := frame()
				a.Aborted = true
				*a.Settled = true
				s.nextOutgoingID++
				c.send(s.local, a)
			}
			if od != nil && s.outUnsettled[id] == od {
				delete(s.outUnsettled, id)
				l.unsettledOut--
			}
			l.maybeDrain()
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		if l.closed {
			err := l.err
			c.mu.Unlock()
			return nil, err
		}
		s.nextOutgoingID++
		s.remoteIncomingWindow--
		if err := c.send(s.local, f); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if !f.More {
			break
		}
	}
	l.maybeDrain()
	c.mu.Unlock()
	unlock()
	if od == nil {
		return &Accepted{}, nil
	}
	select {
	case o := <-od.result:
		return o, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		select {
		case o := <-od.result:
			return o, nil
		default:
		}
		return nil, l.Err()
	}
}

// maybeDrain completes a pending drain request once nothing waits to send; conn.mu is held.
func (l *Link) maybeDrain() {
	if l.role == RoleSender && l.drain && l.waiting == 0 && !l.closed {
		l.drainCredit()
	}
}

// drainCredit answers the peer's drain (§2.6.7): the remaining credit is used up by advancing
// delivery-count, and a flow with drain set tells the peer so. conn.mu is held.
func (l *Link) drainCredit() error {
	l.deliveryCount += l.credit
	l.credit = 0
	err := l.session.sendFlow(l, false)
	l.drain = false
	return err
}
