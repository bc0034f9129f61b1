package amqp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SASL mechanisms the engine knows how to read. MSSBCBS ("use CBS instead") carries nothing: the
// client authenticates later with a put-token on $cbs, like ANONYMOUS.
const (
	MechanismMSSBCBS   Symbol = "MSSBCBS"
	MechanismAnonymous Symbol = "ANONYMOUS"
	MechanismPlain     Symbol = "PLAIN"
	MechanismExternal  Symbol = "EXTERNAL"
)

// Config tunes a Server. Zero fields take the defaults listed with them (see withDefaults, the
// one place defaults live).
type Config struct {
	// ContainerID is the container-id of the server's open frame. Default "amqp-server".
	ContainerID string
	// Mechanisms are the SASL mechanisms offered, in order. Default MSSBCBS, ANONYMOUS, PLAIN
	// (as IoT Hub offers them).
	Mechanisms []Symbol
	// Authenticate decides on the peer's SASL init. Nil accepts every offered mechanism with a nil
	// identity.
	Authenticate Authenticator
	// AllowNoSASL accepts the plain AMQP protocol header ("AMQP 0.1.0.0") without a SASL layer
	// first; the connection then has a nil identity. Some clients skip SASL.
	AllowNoSASL bool
	// MaxFrameSize is the largest frame the server accepts, announced in open. Default 65536.
	MaxFrameSize uint32
	// ChannelMax is the highest channel (session) number, announced in open. Default 255.
	ChannelMax uint16
	// MaxLinks bounds the links open at once on one connection. Default 128.
	MaxLinks int
	// IdleTimeout is announced in open: a peer silent for longer is disconnected with
	// amqp:resource-limit-exceeded. Default 4 minutes (IoT Hub's value); negative disables.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the protocol header, SASL and open exchange. Default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each socket write; a peer that does not read is disconnected. Default 10 s.
	WriteTimeout time.Duration
	// MaxMessageSize bounds a reassembled incoming message (announced as max-message-size in
	// attach replies). Default 1 MiB.
	MaxMessageSize uint64
	// LinkCredit is the credit window granted on links where the peer sends. Default 256.
	LinkCredit uint32
	// LinkBuffer bounds the bytes one link where the peer sends may hold: messages received
	// and not yet taken by Receive, plus MaxMessageSize for each credit granted. Credit shrinks
	// to fit (at least 1). Default 4 MiB.
	LinkBuffer int64
	// MaxUnsettled bounds unsettled deliveries per link, in each direction. Default 1024.
	MaxUnsettled int
	// SessionWindow is the incoming-window of each session, in transfer frames. Default 2048.
	SessionWindow uint32
	// WriteQueue is the number of frames queued for the writer of one connection; outgoing
	// frames are at most MaxFrameSize, so it bounds a connection's pending output to
	// WriteQueue × MaxFrameSize. Default 64.
	WriteQueue int
	// OfferedCapabilities and Properties go into the server's open frame.
	OfferedCapabilities []Symbol
	Properties          Fields
	// Trace, when set, is called with every frame sent ("->") or received ("<-").
	Trace func(direction string, channel uint16, frame any)
}

func (c Config) withDefaults() Config {
	if c.ContainerID == "" {
		c.ContainerID = "amqp-server"
	}
	if c.Mechanisms == nil {
		c.Mechanisms = []Symbol{MechanismMSSBCBS, MechanismAnonymous, MechanismPlain}
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = 65536
	}
	if c.MaxFrameSize < minMaxFrameSize {
		c.MaxFrameSize = minMaxFrameSize
	}
	if c.ChannelMax == 0 {
		c.ChannelMax = 255
	}
	if c.MaxLinks <= 0 {
		c.MaxLinks = 128
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 4 * time.Minute
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 1 << 20
	}
	if c.LinkCredit == 0 {
		c.LinkCredit = 256
	}
	if c.LinkBuffer <= 0 {
		c.LinkBuffer = 4 << 20
	}
	if c.MaxUnsettled <= 0 {
		c.MaxUnsettled = 1024
	}
	if c.SessionWindow == 0 {
		c.SessionWindow = 2048
	}
	if c.WriteQueue <= 0 {
		c.WriteQueue = 64
	}
	return c
}

// SASLRequest is what the peer's sasl-init carried.
type SASLRequest struct {
	Mechanism Symbol
	// Response is the raw initial response.
	Response []byte
	// Username and Password are PLAIN's authentication identity and password; for ANONYMOUS,
	// Username is the trace string.
	Username, Password string
	// Hostname is sasl-init's hostname field.
	Hostname   string
	RemoteAddr net.Addr
	// TLS is the connection's TLS state, nil on a plain connection.
	TLS *tls.ConnectionState
}

// Authenticator decides a SASL exchange: it returns the connection's identity (any value the
// handler understands) or an error, which fails SASL with code auth.
type Authenticator func(ctx context.Context, req *SASLRequest) (identity any, err error)

// Handler is the application side of a Server: it is told about each connection once the
// peer's open has arrived.
type Handler interface {
	// Connected returns the handler for the connection's links, or an error to close the
	// connection with (an *Error travels as is; anything else as amqp:internal-error).
	Connected(c *Conn) (ConnHandler, error)
}

// ConnHandler handles the links of one connection.
type ConnHandler interface {
	// Attach decides on a link the peer attached. Returning nil accepts it: the reply echoes the
	// peer's source, target and settle modes (change them with the Link's Set methods first).
	// Returning an error refuses it the way clients understand: an attach with null source
	// and target, then a detach (closed) carrying the error (an *Error as is, e.g.
	// amqp:link:redirect with its info; anything else as amqp:internal-error).
	// Attach runs on the connection's reader, so it must not block for long; start a goroutine
	// for the link's work.
	Attach(l *Link) error
	// Closed is called once when the connection has ended, with the reason (nil when the peer
	// closed it cleanly).
	Closed(err error)
}

// Errors returned by the engine.
var (
	ErrServerClosed = errors.New("amqp: server closed")
	ErrConnClosed   = errors.New("amqp: connection closed")
	ErrLinkClosed   = errors.New("amqp: link detached")
	ErrWrongRole    = errors.New("amqp: operation not valid for the link's role")
	ErrSettled      = errors.New("amqp: delivery already settled")
)

// Server runs the AMQP 1.0 protocol on connections accepted elsewhere (TCP, TLS or a WebSocket
// adapted to a net.Conn).
type Server struct {
	handler Handler
	cfg     Config

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
}

// NewServer returns a server that hands connections to h.
func NewServer(h Handler, cfg Config) *Server {
	return &Server{handler: h, cfg: cfg.withDefaults(), conns: make(map[*Conn]struct{})}
}

// Close closes every connection (amqp:connection:forced); later ServeConn calls fail with
// ErrServerClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(&Error{Condition: ErrCondConnectionForced, Description: "server shutting down"})
	}
	for _, c := range conns {
		<-c.done
	}
	return nil
}

// ServeConn runs the protocol on nc until the connection ends, and closes nc. It returns nil
// when the peer closed the connection cleanly, else the reason.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	c := newConn(s, nc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	return c.serve(ctx)
}

// Protocol headers (§2.2, §5.3.1).
var (
	headerAMQP = []byte{'A', 'M', 'Q', 'P', 0, 1, 0, 0}
	headerSASL = []byte{'A', 'M', 'Q', 'P', 3, 1, 0, 0}
)

// handshake reads the protocol header and runs SASL when the peer asks for it. It returns
// after the AMQP header exchange, with the connection's identity set.
func (c *Conn) handshake(ctx context.Context) error {
	cfg := &c.srv.cfg
	h := make([]byte, 8)
	if _, err := io.ReadFull(c.br, h); err != nil {
		return err
	}
	preferred := headerSASL
	if len(cfg.Mechanisms) == 0 {
		preferred = headerAMQP
	}
	if !bytes.Equal(h[:4], []byte("AMQP")) || h[5] != 1 || h[6] != 0 || h[7] != 0 {
		c.nc.Write(preferred)
		return fmt.Errorf("amqp: unsupported protocol header %q", h)
	}
	switch h[4] {
	case 3:
		if len(cfg.Mechanisms) == 0 {
			c.nc.Write(headerAMQP)
			return errors.New("amqp: SASL requested but none offered")
		}
		if err := c.sasl(ctx); err != nil {
			return err
		}
		if _, err := io.ReadFull(c.br, h); err != nil {
			return err
		}
		if !bytes.Equal(h, headerAMQP) {
			c.nc.Write(headerAMQP)
			return fmt.Errorf("amqp: expected the AMQP header after SASL, got %q", h)
		}
	case 0:
		if !cfg.AllowNoSASL {
			c.nc.Write(preferred)
			return errors.New("amqp: peer skipped SASL")
		}
	default:
		c.nc.Write(preferred)
		return fmt.Errorf("amqp: unsupported protocol id %d", h[4])
	}
	_, err := c.nc.Write(headerAMQP)
	return err
}

func (c *Conn) writeDirect(frameType byte, p performative) error {
	c.trace("->", 0, p)
	b, err := appendFrame(nil, frameType, 0, p)
	if err != nil {
		return err
	}
	_, err = c.nc.Write(b)
	return err
}

func (c *Conn) sasl(ctx context.Context) error {
	cfg := &c.srv.cfg
	if _, err := c.nc.Write(headerSASL); err != nil {
		return err
	}
	if err := c.writeDirect(frameTypeSASL, &saslMechanisms{Mechanisms: cfg.Mechanisms}); err != nil {
		return err
	}
	fh, p, err := c.readFrame()
	if err != nil {
		return err
	}
	init, ok := p.(*saslInit)
	if !ok || fh.Type != frameTypeSASL {
		return fmt.Errorf("amqp: expected sasl-init, got %T", p)
	}
	req := &SASLRequest{Mechanism: init.Mechanism, Response: init.InitialResponse, Hostname: init.Hostname,
		RemoteAddr: c.nc.RemoteAddr(), TLS: c.tlsState()}
	authErr := c.checkMechanism(req)
	if authErr == nil {
		if cfg.Authenticate != nil {
			c.identity, authErr = cfg.Authenticate(ctx, req)
		}
	}
	code := uint8(saslOK)
	if authErr != nil {
		code = saslAuth
	}
	if err := c.writeDirect(frameTypeSASL, &saslOutcome{Code: code}); err != nil {
		return err
	}
	if authErr != nil {
		return fmt.Errorf("amqp: SASL %s failed: %w", init.Mechanism, authErr)
	}
	c.mechanism = init.Mechanism
	return nil
}

// checkMechanism verifies the mechanism was offered and parses its response.
func (c *Conn) checkMechanism(req *SASLRequest) error {
	offered := false
	for _, m := range c.srv.cfg.Mechanisms {
		if m == req.Mechanism {
			offered = true
		}
	}
	if !offered {
		return fmt.Errorf("mechanism %q not offered", req.Mechanism)
	}
	switch req.Mechanism {
	case MechanismPlain:
		// message = [authzid] NUL authcid NUL passwd (RFC 4616)
		parts := bytes.Split(req.Response, []byte{0})
		if len(parts) != 3 {
			return errors.New("malformed PLAIN response")
		}
		req.Username, req.Password = string(parts[1]), string(parts[2])
	case MechanismAnonymous:
		req.Username = string(req.Response)
	}
	return nil
}

func (c *Conn) tlsState() *tls.ConnectionState {
	if tc, ok := c.nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

// readFrame reads one frame, refusing one larger than the configured maximum before reading
// its body.
func (c *Conn) readFrame() (frameHeader, performative, error) {
	h := c.hdr[:]
	if _, err := io.ReadFull(c.br, h); err != nil {
		return frameHeader{}, nil, err
	}
	fh, err := parseFrameHeader(h)
	if err != nil {
		return fh, nil, err
	}
	if fh.Size > c.srv.cfg.MaxFrameSize {
		return fh, nil, &Error{Condition: ErrCondFramingError,
			Description: fmt.Sprintf("frame of %d bytes exceeds max-frame-size %d", fh.Size, c.srv.cfg.MaxFrameSize)}
	}
	body := make([]byte, fh.Size-8)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return fh, nil, err
	}
	if fh.Type != frameTypeAMQP && fh.Type != frameTypeSASL {
		return fh, nil, &Error{Condition: ErrCondFramingError, Description: fmt.Sprintf("unknown frame type %d", fh.Type)}
	}
	p, err := parseFrameBody(fh.Type, body[int(fh.DataOff)*4-8:])
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			err = &Error{Condition: ErrCondDecodeError, Description: err.Error()}
		}
		return fh, nil, err
	}
	if p != nil {
		c.trace("<-", fh.Channel, p)
	}
	return fh, p, nil
}

// trace reports a frame to Config.Trace without secrets: SASL responses and message payloads
// (which carry put-token SAS tokens) are reduced to their length.
func (c *Conn) trace(dir string, ch uint16, p performative) {
	t := c.srv.cfg.Trace
	if t == nil {
		return
	}
	switch f := p.(type) {
	case *saslInit:
		r := *f
		r.InitialResponse = []byte(fmt.Sprintf("<%d bytes>", len(f.InitialResponse)))
		p = &r
	case *saslResponse:
		p = &saslResponse{Response: []byte(fmt.Sprintf("<%d bytes>", len(f.Response)))}
	case *transferFrame:
		r := *f
		r.Payload = []byte(fmt.Sprintf("<%d bytes>", len(f.Payload)))
		p = &r
	}
	t(dir, ch, p)
}

func newConn(s *Server, nc net.Conn) *Conn {
	return &Conn{
		srv:      s,
		nc:       nc,
		br:       bufio.NewReaderSize(nc, 16<<10),
		out:      make(chan []byte, s.cfg.WriteQueue),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		sessions: make(map[uint16]*session),
	}
}

// TraceTo returns a Config.Trace function that writes one line per frame to w, for debugging
// clients (like rhea's DEBUG=rhea:frames). Lines from concurrent connections do not interleave.
func TraceTo(w io.Writer) func(direction string, channel uint16, frame any) {
	var mu sync.Mutex
	return func(direction string, channel uint16, frame any) {
		line := fmt.Sprintf("amqp %s ch=%d %s\n", direction, channel, formatFrame(frame))
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, line)
	}
}

// formatFrame renders a performative as name{field:value ...}, with pointers followed and
// empty fields left out.
func formatFrame(frame any) string {
	v := reflect.ValueOf(frame)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return fmt.Sprint(frame)
	}
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(v.Type().Name(), "Frame"))
	b.WriteByte('{')
	first := true
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		if f.Kind() == reflect.Pointer {
			f = f.Elem()
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		if s, ok := f.Interface().([]byte); ok && utf8.Valid(s) && v.Type().Field(i).Name != "DeliveryTag" {
			fmt.Fprintf(&b, "%s:%s", v.Type().Field(i).Name, s)
			continue
		}
		fmt.Fprintf(&b, "%s:%+v", v.Type().Field(i).Name, f.Interface())
	}
	b.WriteByte('}')
	return b.String()
}
