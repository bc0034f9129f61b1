package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
	"github.com/iothub-emulator/iothub-emulator/sessions"
	"github.com/iothub-emulator/iothub-emulator/throttling"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// hook is the broker's one mochi hook. It must be the only hook that
// answers auth and ACL checks: mochi ORs them across hooks.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "iothub" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublish, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.StoredClients, mqtt.StoredSubscriptions,
	}, []byte{b})
}

// errRefused ends a connection whose packet the hub refuses.
var errRefused = errors.New("refused by the hub")

// OnConnect authenticates the device. It runs before mochi's own
// authentication step so that failures get CONNACK 5 "not authorized", the
// code the hub sends for every auth or identity failure (digest §1.3).
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		_ = h.b.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return errRefused
	}
	if h.b.cfg.Provisioning != nil {
		if scope, regID, ok := dpsUsername(string(pk.Connect.Username), cl.ID); ok {
			return h.connectDPS(cl, pk, scope, regID)
		}
	}
	var dev Device
	var err error
	onFreshStack(func() {
		dev, err = h.authenticate(cl, pk)
		if admit := h.b.handlers.AdmitConnect; err == nil && admit != nil {
			err = admit(dev)
		}
	})
	if err != nil {
		var he *iothub.Error
		if !errors.As(err, &he) || he.Code == iothub.ServiceUnavailable || he.Code == iothub.ServerError {
			// The hub could not decide (storage failing, disk full): 3
			// "server unavailable" makes the SDKs retry, where 5 would make
			// them give up as if the key were wrong.
			h.b.log.Error("mqtt connection refused: the hub cannot serve it", "client", cl.ID, "remote", cl.Net.Remote, "error", err)
			_ = h.b.srv.SendConnack(cl, packets.ErrServerUnavailable, false, nil)
			return errRefused
		}
		h.b.log.Info("mqtt connection refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", err)
		// ErrBadUsernameOrPassword is what mochi maps to 3.1.1 code 5.
		_ = h.b.srv.SendConnack(cl, packets.ErrBadUsernameOrPassword, false, nil)
		return errRefused
	}
	c := &conn{dev: dev, cl: cl}
	if t, err := sasauth.Parse(string(pk.Connect.Password)); err == nil {
		clk := clock.OrReal(h.b.cfg.Clock)
		c.expiry = clk.AfterFunc(expiryTime(t.Expiry).Sub(clk.Now()), func() {
			h.b.log.Info("device disconnected: its SAS token expired", "device", dev.ClientID())
			cl.Stop(errTokenExpired)
		})
	}
	h.b.register(c)
	return nil
}

// maxExpiry is the end of year 9999: later "se" values mean "never" and
// must not overflow time.Time (se=2^63-1 once closed connections at once).
const maxExpiry = 253402300799

func expiryTime(se int64) time.Time { return time.Unix(min(se, maxExpiry), 0) }

// refusal marks an identity or credential failure: CONNACK 5.
func refusal(format string, args ...any) error {
	return iothub.Errorf(iothub.IotHubUnauthorizedAccess, format, args...)
}

// errTokenExpired ends a connection whose SAS token ran out.
var errTokenExpired = errors.New("the SAS token expired")

// authenticate checks the username, then the SAS token in the password or
// the TLS client certificate.
func (h *hook) authenticate(cl *mqtt.Client, pk packets.Packet) (Device, error) {
	path, params, ok := parseUsername(string(pk.Connect.Username), cl.ID)
	if !ok {
		return Device{}, refusal("username %q does not name client id %q", pk.Connect.Username, cl.ID)
	}
	deviceID, moduleID := identityOf(path)
	// "A/" would otherwise be device A under a second client id, beside A's
	// own connection.
	if deviceID == "" || (Device{DeviceID: deviceID, ModuleID: moduleID}).ClientID() != cl.ID {
		return Device{}, refusal("client id %q names no device or module", cl.ID)
	}
	ctx := context.Background()
	id, err := registry.Connectable(ctx, h.b.cfg.Identities, deviceID, moduleID)
	if err != nil {
		return Device{}, err
	}
	dev := Device{DeviceID: deviceID, ModuleID: moduleID, AuthMethod: "sas", GenerationID: id.GenerationID, Transport: "mqtt"}
	if cl.Net.Listener == h.b.ws.id {
		dev.Transport = "mqtt-ws"
	}
	if password := string(pk.Connect.Password); password != "" {
		if err := h.b.cfg.Auth.Device(password, deviceID, moduleID, id.Auth.PrimaryKey, id.Auth.SecondaryKey); err != nil {
			return Device{}, err
		}
	} else if err := h.verifyCertificate(cl, id); err != nil {
		return Device{}, err
	} else {
		dev.AuthMethod = "x509"
	}
	// PnP devices announce their model in the username (digest §1.2).
	if err := h.b.cfg.Identities.SetConnection(ctx, deviceID, moduleID, registry.Connected, params.Get("model-id")); err != nil {
		return Device{}, err
	}
	return dev, nil
}

// verifyCertificate checks an X.509 device's TLS client certificate, from
// a direct TLS connection or the HTTPS connection a WebSocket came over.
func (h *hook) verifyCertificate(cl *mqtt.Client, id *registry.Identity) error {
	var chain []*x509.Certificate
	switch c := cl.Net.Conn.(type) {
	case *tls.Conn:
		chain = c.ConnectionState().PeerCertificates
	case *wsConn:
		chain = c.peerCerts
	}
	if err := registry.VerifyCertificate(id, chain, h.b.cfg.DeviceCAs); err != nil {
		return refusal("%v", err)
	}
	return nil
}

// OnConnectAuthenticate accepts what OnConnect already authenticated.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.b.currentConn(cl)
	return ok
}

// device returns the device of cl while cl is its live connection.
func (h *hook) device(cl *mqtt.Client) (Device, bool) {
	c, ok := h.b.currentConn(cl)
	if !ok || c.dps != nil {
		return Device{}, false
	}
	return c.dev, true
}

// OnSessionEstablished records the connection and forgets stored
// subscriptions when a clean session replaced a persistent one.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if _, ok := h.dpsConn(cl); ok {
		return
	}
	dev, ok := h.device(cl)
	if !ok {
		return
	}
	clean := pk.Connect.Clean
	onFreshStack(func() {
		if clean && h.b.cfg.Sessions != nil {
			_ = h.b.cfg.Sessions.DeleteSession(context.Background(), cl.ID)
		}
		h.b.log.Info("device connected", "device", dev.DeviceID, "module", dev.ModuleID, "auth", dev.AuthMethod,
			"remote", cl.Net.Remote, "listener", cl.Net.Listener, "clean", clean)
		h.changed(dev)
		h.c2dReady(dev)
	})
}

// onFreshStack runs f on a short-lived goroutine and waits for it. The
// connection's read loop calls it for work with deep stacks (SQLite,
// logging) at CONNECT: run on the read loop, that work would grow the
// goroutine's stack to 16-32 KB, which it keeps, idle, until garbage
// collections shrink it by half at a time; the short-lived goroutine's
// stack goes back to the runtime at once.
func onFreshStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// c2dReady tells the domain a device may now take C2D messages (queued
// ones are delivered on connect when the session kept the subscription).
func (h *hook) c2dReady(dev Device) {
	if dev.ModuleID == "" && h.b.handlers.C2DReady != nil {
		h.b.handlers.C2DReady(dev)
	}
}

func (h *hook) changed(dev Device) {
	if h.b.handlers.SessionChanged != nil {
		h.b.handlers.SessionChanged(dev)
	}
}

// OnDisconnect records the disconnection, unless a newer connection of the
// same device took over, and drops a clean session's stored state.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Conn == nil {
		return // a session restored from storage at start
	}
	h.b.mu.Lock()
	c, ok := h.b.conns[cl.ID]
	mine := ok && c.cl == cl
	if mine {
		delete(h.b.conns, cl.ID)
		c.current.Store(false)
	}
	h.b.mu.Unlock()
	own, hadOwn := h.b.connOf(cl)
	h.b.byClient.Delete(cl)
	if hadOwn && own.expiry != nil {
		own.expiry.Stop()
	}
	if hadOwn {
		// Telemetry the device will never see acknowledged: stored or not,
		// its waits must be answered.
		own.stored.drain()
	}
	// C2D messages this connection did not acknowledge go back to the queue,
	// also when a newer connection took over. The outbox closes first, so
	// no delivery slips in after the drain.
	if hadOwn {
		own.closeOutbox()
		written, unsent := own.c2d.drain()
		if len(written)+len(unsent) > 0 && h.b.handlers.C2DRelease != nil {
			h.b.handlers.C2DRelease(own.dev, written, unsent)
		}
	}
	if !mine {
		return
	}
	if c.dps != nil {
		h.b.log.Debug("dps client disconnected", "registration", c.dps.RegistrationID, "reason", err)
		return
	}
	if expire && h.b.cfg.Sessions != nil {
		_ = h.b.cfg.Sessions.DeleteSession(context.Background(), cl.ID)
	}
	_ = h.b.cfg.Identities.SetConnection(context.Background(), c.dev.DeviceID, c.dev.ModuleID, registry.Disconnected, "")
	h.b.log.Info("device disconnected", "device", c.dev.DeviceID, "module", c.dev.ModuleID, "reason", err)
	h.changed(c.dev)
}

// OnPacketRead closes the connection on what the hub refuses outright: QoS 2
// publishes (digest §1.4) and publishes outside the device's own topics,
// whatever their QoS (mochi would drop a QoS 0 one silently).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Puback {
		h.c2dAcked(cl, pk.PacketID)
		return pk, nil
	}
	if pk.FixedHeader.Type == packets.Subscribe || pk.FixedHeader.Type == packets.Unsubscribe {
		if dev, ok := h.device(cl); ok {
			escapeOwnFilters(dev, pk.Filters)
		}
		return pk, nil
	}
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	// Only ErrRejectPacket makes mochi end the read loop, closing the connection.
	if c, ok := h.dpsConn(cl); ok {
		if pk.FixedHeader.Qos > 1 || !dpsMayPublish(pk.TopicName) {
			h.b.log.Info("publish refused: not a DPS topic", "registration", c.dps.RegistrationID, "topic", pk.TopicName)
			return pk, packets.ErrRejectPacket
		}
		return pk, nil
	}
	dev, ok := h.device(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Qos > 1 {
		h.b.log.Info("publish refused: QoS 2 is not supported", "device", dev.ClientID(), "topic", pk.TopicName)
		return pk, packets.ErrRejectPacket
	}
	if strings.ContainsAny(pk.TopicName, "+#") {
		// The C SDK sends property values unencoded (digest §1.6), so a '+'
		// can reach the bag, and ids may hold '+' and '#'; mochi would drop
		// such a topic name without a PUBACK. Escaping keeps its meaning:
		// the bag is percent-decoded, ids compare escaped (topicID).
		pk.TopicName = wildcardEscaper.Replace(pk.TopicName)
	}
	if !mayPublish(dev, pk.TopicName) {
		h.b.log.Info("publish refused: not the device's topic", "device", dev.ClientID(), "topic", pk.TopicName)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnACLCheck confines a device to its own topics (digest §1.5).
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if _, ok := h.dpsConn(cl); ok {
		if write {
			return dpsMayPublish(topic)
		}
		return dpsMaySubscribe(topic)
	}
	dev, ok := h.device(cl)
	if !ok {
		return false
	}
	if write {
		return mayPublish(dev, topic)
	}
	return maySubscribe(dev, topic)
}

// escapeOwnFilters rewrites a device's filters for its own topics when its
// id holds '+' or '#' (see topicID), so that mochi accepts them.
func escapeOwnFilters(dev Device, filters packets.Subscriptions) {
	raw, esc := ownTopicBase(dev)
	if raw == esc {
		return
	}
	for i := range filters {
		if rest, ok := strings.CutPrefix(filters[i].Filter, raw); ok {
			filters[i].Filter = esc + rest
		}
	}
}

// ownTopicBase is the prefix of a device's (or module's) own topics, as the
// device writes it and as the broker keeps it.
func ownTopicBase(dev Device) (raw, escaped string) {
	raw = "devices/" + dev.DeviceID + "/"
	escaped = "devices/" + topicID(dev.DeviceID) + "/"
	if dev.ModuleID != "" {
		raw += "modules/" + dev.ModuleID + "/"
		escaped += "modules/" + topicID(dev.ModuleID) + "/"
	}
	return raw, escaped
}

func mayPublish(dev Device, topic string) bool {
	r := route(topic)
	switch r.Kind {
	case RouteTelemetry:
		// Publish topics arrive with wildcards escaped (OnPacketRead).
		return r.DeviceID == topicID(dev.DeviceID) && r.ModuleID == topicID(dev.ModuleID)
	case RouteTwinGet, RouteTwinPatchReported, RouteMethodResponse:
		return true
	}
	return false
}

func maySubscribe(dev Device, filter string) bool {
	switch filter {
	case twinResponseFilter, desiredFilter, methodsFilter:
		return true
	}
	if dev.ModuleID == "" {
		return filter == c2dFilter(dev.DeviceID)
	}
	_, base := ownTopicBase(dev)
	// Module input filters differ per SDK; the hub accepts them and never
	// publishes on them (module inputs are an IoT Edge feature).
	return filter == base+"#" || filter == base+"inputs/#" || filter == base+"messages/devicebound/#"
}

// OnSubscribe lets mochi grant QoS 1 for a QoS 2 request (MaximumQos).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet { return pk }

// OnSubscribed stores a persistent session's subscriptions, so they survive
// reconnects and restarts: the SDKs never subscribe again (sdk-behavior §3.2).
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if _, ok := h.dpsConn(cl); ok {
		return // DPS sessions are never kept
	}
	dev, ok := h.device(cl)
	if !ok {
		return
	}
	if !cl.Properties.Clean && h.b.cfg.Sessions != nil {
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] <= 1 {
				if err := h.b.cfg.Sessions.SaveSubscription(context.Background(), sessions.Subscription{ClientID: cl.ID, Filter: f.Filter, QoS: codes[i]}); err != nil {
					h.b.log.Error("store subscription", "client", cl.ID, "error", err)
				}
			}
		}
	}
	h.changed(dev)
	for _, f := range pk.Filters {
		if f.Filter == c2dFilter(dev.DeviceID) {
			h.c2dReady(dev)
		}
	}
}

func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Properties.Clean || h.b.cfg.Sessions == nil {
		return
	}
	for _, f := range pk.Filters {
		_ = h.b.cfg.Sessions.DeleteSubscription(context.Background(), cl.ID, f.Filter)
	}
}

// StoredClients and StoredSubscriptions restore persistent sessions at start.
func (h *hook) StoredClients() ([]storage.Client, error) {
	if h.b.cfg.Sessions == nil {
		return nil, nil
	}
	subs, err := h.b.cfg.Sessions.Subscriptions(context.Background())
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []storage.Client
	for _, s := range subs {
		if !seen[s.ClientID] {
			seen[s.ClientID] = true
			out = append(out, storage.Client{ID: s.ClientID, ProtocolVersion: 4, Clean: false})
		}
	}
	return out, nil
}

func (h *hook) StoredSubscriptions() ([]storage.Subscription, error) {
	if h.b.cfg.Sessions == nil {
		return nil, nil
	}
	subs, err := h.b.cfg.Sessions.Subscriptions(context.Background())
	if err != nil {
		return nil, err
	}
	out := make([]storage.Subscription, len(subs))
	for i, s := range subs {
		out[i] = storage.Subscription{Client: s.ClientID, Filter: s.Filter, Qos: s.QoS}
	}
	return out, nil
}

// OnPublish hands hub topics to the domain. Every device publish is consumed
// by the hub (CodeSuccessIgnore: acked, never forwarded). Work that must be
// durable happens here, before mochi writes the PUBACK, so "acked" means
// "stored"; a storage failure returns ErrRejectPacket and sends no PUBACK.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if c, ok := h.dpsConn(cl); ok {
		return h.dpsPublish(c, pk)
	}
	dev, ok := h.device(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	r := route(pk.TopicName)
	// Telemetry needs no deadline (the writer answers every queued message
	// and bounds each commit), method responses take no context (they are
	// handed to a waiting caller), and a timer per message shows in profiles.
	ctx := context.Background()
	if r.Kind != RouteTelemetry && r.Kind != RouteMethodResponse {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	hd := h.b.handlers
	switch r.Kind {
	case RouteTwinGet:
		if hd.TwinGet == nil {
			h.twinError(dev, r.RID, iothub.Errorf(iothub.InvalidOperation, "Twins are not available."))
			break
		}
		t, err := hd.TwinGet(ctx, dev)
		if err != nil {
			if h.twinError(dev, r.RID, err) {
				return pk, packets.ErrRejectPacket
			}
			break
		}
		_ = h.b.Send(dev.DeviceID, dev.ModuleID, "$iothub/twin/res/200/?$rid="+r.RID, wire.TwinForDevice(t))
	case RouteTwinPatchReported:
		if hd.TwinPatchReported == nil {
			h.twinError(dev, r.RID, iothub.Errorf(iothub.InvalidOperation, "Twins are not available."))
			break
		}
		v, err := h.patchReported(ctx, dev, pk.Payload)
		if err != nil {
			if h.twinError(dev, r.RID, err) {
				return pk, packets.ErrRejectPacket
			}
			break
		}
		_ = h.b.Send(dev.DeviceID, dev.ModuleID, "$iothub/twin/res/204/?$rid="+r.RID+"&$version="+strconv.FormatInt(v, 10), nil)
	case RouteMethodResponse:
		if hd.MethodResponse != nil {
			hd.MethodResponse(dev, r.RID, r.Status, pk.Payload)
		}
	case RouteTelemetry:
		if hd.Telemetry != nil {
			props := ParsePropertyBag(r.PropertyBag)
			if pk.FixedHeader.Retain {
				props["mqtt-retain"] = "true" // the hub keeps no retained messages (digest §1.4)
			}
			// Queue the message and read on: mochi holds the PUBACK back
			// until the connection has nothing more to read, and
			// OnPacketEncode holds it back until the message is stored. QoS
			// 0 is acknowledged by nobody; the PUBACK of a later QoS 1
			// publish still means that it and everything before it on this
			// connection is stored.
			// A send the tier shapes is held here, on the read loop: the
			// PUBACKs owed for the sends before it go out first.
			// The hold ends when the connection does (the hub closing it).
			held := throttling.WithBeforeHold(cl.Context(), func() { _ = cl.FlushReplies() })
			wait, err := hd.Telemetry(held, dev, props, pk.Payload, pk.FixedHeader.Qos > 0)
			if err == nil && wait != nil {
				h.pendingAck(cl, pk.PacketID, wait)
			}
			if err != nil {
				var he *iothub.Error
				if errors.As(err, &he) {
					// A message the hub refuses (too large): it closes the connection.
					h.b.log.Info("telemetry refused", "device", dev.ClientID(), "error", err)
					cl.Stop(err)
				} else {
					h.b.log.Error("telemetry not stored", "device", dev.ClientID(), "error", err)
				}
				return pk, packets.ErrRejectPacket
			}
		}
	}
	return pk, packets.CodeSuccessIgnore
}

func (h *hook) patchReported(ctx context.Context, dev Device, body []byte) (int64, error) {
	patch, err := wire.DecodeReportedPatch(body)
	if err != nil {
		return 0, err
	}
	return h.b.handlers.TwinPatchReported(ctx, dev, patch)
}

// twinError answers a twin request with the hub's error status and a JSON
// body carrying errorCode (Node only notices errors through it, sdk-behavior
// §3.7). It reports whether the failure was internal, in which case the
// publish is not acknowledged.
func (h *hook) twinError(dev Device, rid string, err error) (internal bool) {
	code := iothub.CodeOf(err)
	body := h.b.errorBody(err)
	_ = h.b.Send(dev.DeviceID, dev.ModuleID, "$iothub/twin/res/"+strconv.Itoa(code.Status())+"/?$rid="+rid, body)
	if code == iothub.ServerError {
		h.b.log.Error("twin request failed", "device", dev.ClientID(), "error", err)
		return true
	}
	return false
}

// pendingAcks are the telemetry messages of one connection that are queued
// for storage and not yet acknowledged, in the order received. Only the
// connection's read loop adds and takes them (OnPublish, then
// OnPacketEncode of the PUBACK, or OnDisconnect); the mutex is for safety.
type pendingAcks struct {
	mu sync.Mutex
	q  []pendingAck
}

type pendingAck struct {
	id   uint16
	wait func() error
}

// pendingAck records that the PUBACK of packet id must wait for its
// message to be stored.
func (h *hook) pendingAck(cl *mqtt.Client, id uint16, wait func() error) {
	c, ok := h.b.connOf(cl)
	if !ok {
		_ = wait() // the connection is closing: nobody will be acknowledged
		return
	}
	c.stored.mu.Lock()
	c.stored.q = append(c.stored.q, pendingAck{id, wait})
	c.stored.mu.Unlock()
}

// through waits until the messages queued up to and including packet id
// are stored. It returns the first storage failure.
func (p *pendingAcks) through(id uint16) error {
	p.mu.Lock()
	n := 0
	for i, a := range p.q {
		if a.id == id {
			n = i + 1
			break
		}
	}
	done := p.q[:n:n]
	p.q = p.q[n:]
	if len(p.q) == 0 {
		p.q = nil
	}
	p.mu.Unlock()
	var first error
	for _, a := range done {
		if err := a.wait(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// drain answers every pending wait (the connection closed).
func (p *pendingAcks) drain() {
	p.mu.Lock()
	q := p.q
	p.q = nil
	p.mu.Unlock()
	for _, a := range q {
		_ = a.wait()
	}
}

// OnPacketEncode holds each PUBACK of device telemetry back until the
// message (and those before it) is stored: "acknowledged" means "stored".
// If storing failed, the connection is closed before the PUBACK is
// written (mochi writes nothing for a stopped client), and the device
// sends the message again on its next connection.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Puback {
		return pk
	}
	c, ok := h.b.connOf(cl)
	if !ok {
		return pk
	}
	if err := c.stored.through(pk.PacketID); err != nil {
		h.b.log.Error("telemetry not stored", "device", c.dev.ClientID(), "error", err)
		cl.Stop(err)
		c.stored.drain()
	}
	return pk
}
