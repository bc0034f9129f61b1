package amqphub

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/messaging"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// outboxSize bounds what waits for one device link's writer: it holds a
// full C2D queue (50) and bursts of method requests and twin replies. A
// full outbox refuses more (the domain retries or reports the device
// offline) instead of growing.
const outboxSize = 64

// deviceSession is one device's (or module's) links on one connection. The
// domain reaches the device through it without waiting on the socket: each
// link the hub sends on has a bounded outbox and its own writer.
type deviceSession struct {
	cs        *connState
	key       devKey
	claim     *deviceClaim
	transport string // "amqp" or "amqp-ws"

	mu      sync.Mutex
	links   map[*amqp.Link]linkKind
	c2d     *c2dOutbox // the C2D receiver, nil when none is attached
	methods *msgOutbox // the method-request receiver
	twin    *msgOutbox // the twin-response receiver
	desired bool       // the device asked for desired-property notifications
	ended   bool
}

func newDeviceSession(cs *connState, k devKey, claim *deviceClaim) *deviceSession {
	transport := "amqp"
	if cs.conn.TLS() == nil {
		transport = "amqp-ws" // TLS ends at the HTTPS listener
	}
	return &deviceSession{cs: cs, key: k, claim: claim, transport: transport, links: map[*amqp.Link]linkKind{}}
}

func (s *deviceSession) srv() *Server { return s.cs.srv }

// linkKind is which of a device's links a link is, as the fault service
// names them (drop.go).
type linkKind int

const (
	linkTelemetry      linkKind = iota + 1 // device sends on messages/events (D2C)
	linkModuleInput                        // a module's receiver on messages/events
	linkC2D                                // the hub sends on messages/devicebound
	linkMethodRequests                     // the hub sends method requests on methods/devicebound
	linkMethodReplies                      // the device answers on methods/devicebound
	linkTwinRequests                       // the device sends twin requests on twin
	linkTwinReplies                        // the hub sends twin responses and notifications on twin
)

// track remembers l, a link of kind, until it ends, so that a token's
// expiry or a fault closes it.
func (s *deviceSession) track(l *amqp.Link, kind linkKind) {
	s.mu.Lock()
	s.links[l] = kind
	s.mu.Unlock()
	go func() {
		<-l.Done()
		s.mu.Lock()
		delete(s.links, l)
		s.mu.Unlock()
	}()
}

// closeLinks detaches every link of the session with err.
func (s *deviceSession) closeLinks(err *amqp.Error) {
	s.mu.Lock()
	links := make([]*amqp.Link, 0, len(s.links))
	for l := range s.links {
		links = append(links, l)
	}
	s.mu.Unlock()
	for _, l := range links {
		l.Close(err)
	}
}

// end is the connection's end for this device.
func (s *deviceSession) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.srv().devices.disconnect(s)
}

// ---- telemetry: /devices/{id}[/modules/{mid}]/messages/events

// serveTelemetry stores each message the device sends and settles it
// accepted once stored, in the same durable log as MQTT and HTTPS
// telemetry; the link reads on while earlier messages are committed, so
// messages of many devices share commits.
func (s *deviceSession) serveTelemetry(l *amqp.Link) {
	serveSubmissions(l, func(ctx context.Context, am *amqp.Message) (func() error, error) {
		// A storage failure is the hub's fault, not the device's: log it.
		logged := func(err error) error {
			if err != nil && iothub.CodeOf(err) == iothub.ServerError {
				s.srv().log.Error("telemetry not stored", "device", s.key, "error", err)
			}
			return err
		}
		wait, err := s.srv().deps.Telemetry.Submit(ctx, s.telemetryMessage(am))
		if err != nil {
			return nil, logged(err)
		}
		return func() error { return logged(wait()) }, nil
	}, func(err error) {
		s.srv().log.Info("a pre-settled telemetry message was not stored", "device", s.key, "error", err)
	})
}

// telemetryMessage maps a device's AMQP message to the hub's: the AMQP
// properties are the system properties, application properties the
// message's (iothub-outputname and the dt-/iothub- names among them are
// system properties, as Node sends an output name), message annotations
// with those prefixes too. The connection's identity is the hub's to set.
func (s *deviceSession) telemetryMessage(am *amqp.Message) *messaging.Message {
	m := &messaging.Message{DeviceID: s.key.device, ModuleID: s.key.module, AuthMethod: s.claim.method,
		GenerationID: s.claim.identity.GenerationID, Transport: s.transport}
	if p := am.Properties; p != nil {
		m.MessageID, m.CorrelationID = idString(p.MessageID), idString(p.CorrelationID)
		m.UserID, m.To = string(p.UserID), p.To
		m.ContentType, m.ContentEncoding = string(p.ContentType), string(p.ContentEncoding)
		if p.AbsoluteExpiryTime.Unix() > 0 {
			m.ExpiryTime = p.AbsoluteExpiryTime.UTC()
		}
		if p.CreationTime.Unix() > 0 {
			m.CreationTime = p.CreationTime.UTC()
		}
	}
	for k, v := range am.Annotations {
		name := propString(k)
		if systemName(name) {
			m.SetSystem(name, annotationString(v))
		}
	}
	for k, v := range am.ApplicationProperties {
		if systemName(k) {
			m.SetSystem(k, propString(v))
		} else {
			m.SetProperty(k, propString(v))
		}
	}
	switch {
	case len(am.Data) > 0:
		for _, d := range am.Data {
			m.Body = append(m.Body, d...)
		}
	case am.HasValue:
		switch v := am.Value.(type) {
		case string:
			m.Body = []byte(v)
		case []byte:
			m.Body = v
		}
	}
	return m
}

// systemName reports whether a device-sent name is a system property the
// hub keeps (iothub-outputname, iothub-interface-id, dt-subject,
// dt-dataschema, iothub-creation-time-utc); the iothub-connection-* ones
// are the hub's own and never taken from a device.
func systemName(k string) bool {
	if strings.HasPrefix(k, "iothub-connection-") || strings.HasPrefix(k, "iothub-enqueuedtime") || strings.HasPrefix(k, "x-opt-") {
		return false
	}
	return strings.HasPrefix(k, "iothub-") || strings.HasPrefix(k, "dt-")
}

func annotationString(v any) string {
	if t, ok := v.(time.Time); ok {
		return t.UTC().Format(time.RFC3339Nano)
	}
	return propString(v)
}

// ---- cloud-to-device: /devices/{id}/messages/devicebound

// c2dOutbox feeds one C2D receiver link; closed under the session's lock,
// so no delivery slips in after its drain.
type c2dOutbox struct {
	l      *amqp.Link
	q      chan *messaging.C2DMessage
	closed bool
}

// attachC2D makes l the device's C2D link (replacing an older one) and asks
// the queue for the device's pending messages.
func (s *deviceSession) attachC2D(l *amqp.Link) {
	s.track(l, linkC2D)
	out := &c2dOutbox{l: l, q: make(chan *messaging.C2DMessage, outboxSize)}
	s.mu.Lock()
	old := s.c2d
	s.c2d = out
	s.mu.Unlock()
	if old != nil {
		old.l.Close(amqp.Errorf(amqp.ErrCondStolen, "A newer C2D link of %s replaced this one.", s.key))
	}
	go s.runC2D(out)
	s.srv().deps.C2D.Kick(s.key.device)
}

// deliverC2D queues a locked message for the device's C2D link.
func (s *deviceSession) deliverC2D(m *messaging.C2DMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.c2d
	if out == nil || out.closed || s.ended {
		return errNoLink
	}
	select {
	case out.q <- m:
		return nil
	default:
		return errOutboxFull
	}
}

var (
	errNoLink     = errors.New("the device has no link for this")
	errOutboxFull = errors.New("the device's link has too much waiting")
)

// runC2D sends the queued messages one at a time and turns each outcome
// into the queue's verdict: accepted completes the message (feedback
// Success), released or modified abandons it (delivered again), rejected
// dead-letters it (feedback Rejected). When the link or connection ends, a
// message sent without an outcome counts as a delivery and is unlocked,
// and the unsent ones go back uncounted: nothing is lost.
func (s *deviceSession) runC2D(out *c2dOutbox) {
	c2d := s.srv().deps.C2D
	dev := s.key.device
	var written []string
	defer func() {
		s.mu.Lock()
		out.closed = true
		if s.c2d == out {
			s.c2d = nil
		}
		s.mu.Unlock()
		var unsent []string
		for {
			select {
			case m := <-out.q:
				unsent = append(unsent, m.LockToken)
				continue
			default:
			}
			break
		}
		c2d.Release(context.Background(), dev, written)
		c2d.Return(context.Background(), dev, unsent)
	}()
	for {
		var m *messaging.C2DMessage
		select {
		case m = <-out.q:
		case <-out.l.Done():
			return
		}
		ctx, cancel := context.WithTimeout(out.l.Conn().Context(), time.Until(m.LockedUntil)+time.Second)
		outcome, err := out.l.Send(ctx, c2dToDevice(m))
		cancel()
		if err != nil {
			written = append(written, m.LockToken)
			// A lapsed lock hands the message to the sweep; the link is
			// of no more use only when it ended.
			select {
			case <-out.l.Done():
				return
			default:
				c2d.Release(context.Background(), dev, written)
				written = written[:0]
				continue
			}
		}
		var serr error
		switch outcome.(type) {
		case *amqp.Accepted:
			serr = c2d.Complete(context.Background(), dev, m.LockToken)
		case *amqp.Rejected:
			serr = c2d.Reject(context.Background(), dev, m.LockToken)
		default: // released, modified
			serr = c2d.Abandon(context.Background(), dev, m.LockToken)
		}
		if serr != nil && !iothub.Is(serr, iothub.DeviceMessageLockLost) {
			s.srv().log.Error("settle a C2D message", "device", dev, "error", serr)
		}
	}
}

// c2dToDevice is the AMQP form of a C2D message as devices receive it: the
// system properties as AMQP properties, the message's properties as
// application properties, the enqueued time, delivery count and sequence
// number as message annotations.
func c2dToDevice(m *messaging.C2DMessage) *amqp.Message {
	am := &amqp.Message{
		Properties: &amqp.Properties{
			MessageID: m.MessageID, To: m.To, UserID: []byte(m.UserID), ContentType: amqp.Symbol(m.ContentType),
			ContentEncoding: amqp.Symbol(m.ContentEncoding), AbsoluteExpiryTime: m.ExpiryTime,
		},
		Annotations: amqp.Annotations{
			amqp.Symbol("iothub-enqueuedtime"):   m.EnqueuedTime,
			amqp.Symbol("iothub-deliverycount"):  int32(m.DeliveryCount),
			amqp.Symbol("x-opt-sequence-number"): m.SequenceNumber,
		},
		Data: [][]byte{m.Body},
	}
	if m.CorrelationID != "" {
		am.Properties.CorrelationID = m.CorrelationID
	}
	if m.To == "" {
		am.Properties.To = "/devices/" + m.DeviceID + "/messages/devicebound"
	}
	if len(m.Properties) > 0 {
		am.ApplicationProperties = make(map[string]any, len(m.Properties))
		for k, v := range m.Properties {
			am.ApplicationProperties[k] = v
		}
	}
	return am
}

// ---- links the hub sends on: method requests, twin responses

// msgOutbox feeds one link the hub sends on, settled, from a bounded queue.
type msgOutbox struct {
	l *amqp.Link
	q chan *amqp.Message
}

func newMsgOutbox(l *amqp.Link) *msgOutbox {
	return &msgOutbox{l: l, q: make(chan *amqp.Message, outboxSize)}
}

func (o *msgOutbox) run(timeout time.Duration) {
	for {
		select {
		case m := <-o.q:
			ctx, cancel := context.WithTimeout(o.l.Conn().Context(), timeout)
			err := o.l.SendSettled(ctx, m)
			cancel()
			if err != nil {
				select {
				case <-o.l.Done():
					return
				default:
				}
			}
		case <-o.l.Done():
			return
		}
	}
}

func (o *msgOutbox) push(m *amqp.Message) error {
	if o == nil {
		return errNoLink
	}
	select {
	case o.q <- m:
		return nil
	default:
		return errOutboxFull
	}
}

// attachMethods makes l the link method requests go to; the invoker is
// told, as it waits for a device to come online.
func (s *deviceSession) attachMethods(l *amqp.Link) {
	s.track(l, linkMethodRequests)
	out := newMsgOutbox(l)
	s.mu.Lock()
	s.methods = out
	s.mu.Unlock()
	s.srv().deps.Methods.SessionChanged(s.key.device, s.key.module)
	go func() {
		out.run(s.srv().cfg.SendTimeout)
		s.mu.Lock()
		if s.methods == out {
			s.methods = nil
		}
		s.mu.Unlock()
		s.srv().deps.Methods.SessionChanged(s.key.device, s.key.module)
	}()
}

// sendMethod queues a method request: IoThub-methodname names the method,
// the correlation-id (a UUID, which the C# and Java SDKs require) carries
// the invoker's request id, the body is the payload.
func (s *deviceSession) sendMethod(req methods.DeviceRequest) error {
	s.mu.Lock()
	out := s.methods
	s.mu.Unlock()
	return out.push(&amqp.Message{
		Properties:            &amqp.Properties{CorrelationID: ridUUID(req.RID)},
		ApplicationProperties: map[string]any{"IoThub-methodname": req.MethodName},
		Data:                  [][]byte{req.Payload},
	})
}

// ridUUID encodes the invoker's numeric request id as a UUID; ridOf reads
// it back from the response's correlation-id (a UUID, or its string form
// as Node sends it).
func ridUUID(rid string) any {
	n, err := strconv.ParseUint(rid, 10, 64)
	if err != nil {
		return rid
	}
	var u amqp.UUID
	binary.BigEndian.PutUint64(u[8:], n)
	return u
}

func ridOf(v any) string {
	var u amqp.UUID
	switch x := v.(type) {
	case amqp.UUID:
		u = x
	case string:
		p, err := uuid.Parse(x)
		if err != nil {
			return x
		}
		u = amqp.UUID(p)
	case []byte:
		if len(x) != 16 {
			return idString(v)
		}
		copy(u[:], x)
	default:
		return idString(v)
	}
	return strconv.FormatUint(binary.BigEndian.Uint64(u[8:]), 10)
}

// serveMethodResponses hands the device's answers to the invoker: the
// correlation-id names the request, IoThub-status is the status.
func (s *deviceSession) serveMethodResponses(l *amqp.Link) {
	ctx := l.Conn().Context()
	for {
		d, err := l.Receive(ctx)
		if err != nil {
			return
		}
		m := d.Message
		var rid string
		if m.Properties != nil {
			rid = ridOf(m.Properties.CorrelationID)
		}
		status, ok := intOf(m.ApplicationProperties["IoThub-status"])
		if rid == "" || !ok {
			_ = d.Reject(amqpError(iothub.Errorf(iothub.ArgumentInvalid, "A method response needs a correlation-id and an IoThub-status application property.")))
			continue
		}
		var body []byte
		for _, b := range m.Data {
			body = append(body, b...)
		}
		s.srv().deps.Methods.Deliver(s.key.device, s.key.module, rid, status, body)
		_ = d.Accept()
	}
}

func intOf(v any) (int, bool) {
	switch x := v.(type) {
	case int32:
		return int(x), true
	case int64:
		return int(x), true
	case int:
		return x, true
	case int16:
		return int(x), true
	case int8:
		return int(x), true
	case uint32:
		return int(x), true
	case uint64:
		return int(x), true
	case uint16:
		return int(x), true
	case uint8:
		return int(x), true
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	return 0, false
}

// ---- twins: /devices/{id}[/modules/{mid}]/twin

// attachTwin makes l the link twin responses and desired-property
// notifications go to.
func (s *deviceSession) attachTwin(l *amqp.Link) {
	s.track(l, linkTwinReplies)
	out := newMsgOutbox(l)
	s.mu.Lock()
	s.twin = out
	s.mu.Unlock()
	go func() {
		out.run(s.srv().cfg.SendTimeout)
		s.mu.Lock()
		if s.twin == out {
			s.twin = nil
			s.desired = false
		}
		s.mu.Unlock()
	}()
}

// serveTwinRequests answers the device's twin requests through the twin
// service, in order: the message annotation operation (GET, PATCH, PUT,
// DELETE) and resource (/properties/reported,
// /notifications/twin/properties/desired) say what; the reply carries the
// request's correlation-id and a status annotation (and version after a
// PATCH); failures carry the hub's error JSON.
func (s *deviceSession) serveTwinRequests(l *amqp.Link) {
	ctx := l.Conn().Context()
	for {
		d, err := l.Receive(ctx)
		if err != nil {
			return
		}
		reply := s.twinRequest(ctx, d.Message)
		_ = d.Accept()
		if reply == nil {
			continue
		}
		s.mu.Lock()
		out := s.twin
		s.mu.Unlock()
		if err := out.push(reply); err != nil {
			s.srv().log.Info("twin response dropped", "device", s.key, "reason", err)
		}
	}
}

func (s *deviceSession) twinRequest(ctx context.Context, m *amqp.Message) *amqp.Message {
	op := strings.ToUpper(propString(m.Annotations[amqp.Symbol("operation")]))
	resource := strings.TrimRight(propString(m.Annotations[amqp.Symbol("resource")]), "/")
	var corr any
	if m.Properties != nil {
		corr = m.Properties.CorrelationID
	}
	reply := func(status int, body []byte, version int64) *amqp.Message {
		r := &amqp.Message{Properties: &amqp.Properties{CorrelationID: corr},
			Annotations: amqp.Annotations{amqp.Symbol("status"): int32(status)}}
		if version > 0 {
			r.Annotations[amqp.Symbol("version")] = version
		}
		if body != nil {
			r.Data = [][]byte{body}
		}
		return r
	}
	fail := func(err error) *amqp.Message {
		if iothub.CodeOf(err) == iothub.ServerError {
			s.srv().log.Error("twin request failed", "device", s.key, "error", err)
		}
		return reply(iothub.CodeOf(err).Status(), wire.ErrorBodyAt(err, s.srv().cfg.Clock.Now()), 0)
	}
	key := twins.Key{DeviceID: s.key.device, ModuleID: s.key.module}
	ctx, cancel := context.WithTimeout(ctx, s.srv().cfg.SendTimeout)
	defer cancel()
	switch {
	case op == "GET" && (resource == "" || resource == "/properties"):
		t, err := s.srv().deps.Twins.Get(ctx, key)
		if err != nil {
			return fail(err)
		}
		return reply(200, wire.TwinForDevice(t), 0)
	case op == "PATCH" && resource == "/properties/reported":
		var body []byte
		for _, b := range m.Data {
			body = append(body, b...)
		}
		patch, err := wire.DecodeReportedPatch(body)
		if err != nil {
			return fail(err)
		}
		v, err := s.srv().deps.Twins.PatchReported(ctx, key, patch)
		if err != nil {
			return fail(err)
		}
		return reply(204, nil, v)
	case (op == "PUT" || op == "DELETE") && resource == "/notifications/twin/properties/desired":
		s.mu.Lock()
		s.desired = op == "PUT"
		s.mu.Unlock()
		return reply(200, nil, 0)
	}
	return fail(iothub.Errorf(iothub.ArgumentInvalid, "Unsupported twin operation %q on resource %q.", op, resource))
}

// desiredChanged queues a desired-property notification when the device
// asked for them: no correlation-id (that is how the SDKs tell it from a
// response), the patch with its $version as the body, and the resource and
// version annotations.
func (s *deviceSession) desiredChanged(patch map[string]any, version int64) {
	s.mu.Lock()
	out, on := s.twin, s.desired
	s.mu.Unlock()
	if !on {
		return
	}
	err := out.push(&amqp.Message{
		Properties: &amqp.Properties{MessageID: uuid.NewString()},
		Annotations: amqp.Annotations{
			amqp.Symbol("resource"):  "/notifications/twin/properties/desired",
			amqp.Symbol("operation"): "PATCH",
			amqp.Symbol("version"):   version,
		},
		Data: [][]byte{wire.DesiredPatch(patch, version)},
	})
	if err != nil {
		s.srv().log.Info("desired-property notification dropped", "device", s.key, "reason", err)
	}
}

// ---- the hub-wide table of connected AMQP devices

// deviceTable maps each device or module to its newest AMQP session, the
// one the domain's deliveries go to, and keeps the registry's connection
// state.
type deviceTable struct {
	srv *Server
	mu  sync.Mutex
	cur map[devKey]*deviceSession
}

func (t *deviceTable) get(k devKey) *deviceSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur[k]
}

// connect makes sess the device's current session; a device not connected
// before becomes Connected in the registry.
func (t *deviceTable) connect(sess *deviceSession) {
	t.mu.Lock()
	prev, had := t.cur[sess.key]
	if prev == sess {
		t.mu.Unlock()
		return
	}
	t.cur[sess.key] = sess
	t.mu.Unlock()
	if !had {
		t.setState(sess.key, registry.Connected)
		t.srv.log.Info("device connected", "device", sess.key.device, "module", sess.key.module, "auth", sess.claim.method,
			"transport", sess.transport, "remote", sess.cs.conn.RemoteAddr())
	}
}

// disconnect drops sess; when it was the device's current session, the
// device becomes Disconnected.
func (t *deviceTable) disconnect(sess *deviceSession) {
	t.mu.Lock()
	mine := t.cur[sess.key] == sess
	if mine {
		delete(t.cur, sess.key)
	}
	t.mu.Unlock()
	if !mine {
		return
	}
	t.setState(sess.key, registry.Disconnected)
	t.srv.log.Info("device disconnected", "device", sess.key.device, "module", sess.key.module, "transport", sess.transport)
	t.srv.deps.Methods.SessionChanged(sess.key.device, sess.key.module)
}

func (t *deviceTable) setState(k devKey, state string) {
	ctx, cancel := context.WithTimeout(context.Background(), t.srv.cfg.SendTimeout)
	defer cancel()
	if err := t.srv.deps.Identities.SetConnection(ctx, k.device, k.module, state, ""); err != nil && !iothub.Is(err, iothub.DeviceNotFound) {
		t.srv.log.Error("record a device's connection state", "device", k, "error", err)
	}
}
