package amqphub

import (
	"context"
	"github.com/iothub-emulator/iothub-emulator/clock"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// The device side of the endpoint: devices and modules authenticate with a
// device-scoped put-token on $cbs (or a TLS client certificate) and attach
// to their own nodes under /devices/{id}[/modules/{mid}]/.

// devKey names a device or module.
type devKey struct{ device, module string }

func (k devKey) String() string {
	if k.module != "" {
		return k.device + "/" + k.module
	}
	return k.device
}

// deviceKind is which device node a link attaches to.
type deviceKind int

const (
	nodeEvents  deviceKind = iota + 1 // messages/events: telemetry (and a module's input link)
	nodeC2D                           // messages/devicebound: cloud-to-device
	nodeMethods                       // methods/devicebound: method requests and responses
	nodeTwin                          // twin: twin requests, responses and desired notifications
)

// deviceNode parses a device node address, keeping the ids' case:
// /devices/{id}/messages/events, /devices/{id}/modules/{mid}/messages/events,
// /devices/{id}/messages/devicebound, …/methods/devicebound, …/twin. ok is
// false for any other address.
func deviceNode(addr string) (devKey, deviceKind, bool) {
	for _, scheme := range []string{"amqps://", "amqp://", "wss://"} {
		if len(addr) > len(scheme) && strings.EqualFold(addr[:len(scheme)], scheme) {
			addr = addr[len(scheme):]
			i := strings.IndexByte(addr, '/')
			if i < 0 {
				return devKey{}, 0, false
			}
			addr = addr[i:]
			break
		}
	}
	parts := strings.Split(strings.Trim(addr, "/"), "/")
	if len(parts) < 3 || !strings.EqualFold(parts[0], "devices") || parts[1] == "" {
		return devKey{}, 0, false
	}
	k := devKey{device: parts[1]}
	rest := parts[2:]
	if len(rest) >= 3 && strings.EqualFold(rest[0], "modules") && rest[1] != "" {
		k.module = rest[1]
		rest = rest[2:]
	}
	tail := strings.ToLower(strings.Join(rest, "/"))
	switch {
	case tail == "messages/events":
		return k, nodeEvents, true
	case tail == "messages/devicebound" && k.module == "":
		return k, nodeC2D, true
	case tail == "methods/devicebound":
		return k, nodeMethods, true
	case tail == "twin":
		return k, nodeTwin, true
	}
	return devKey{}, 0, false
}

// deviceClaim is a device's authentication on one connection: a SAS token
// until its expiry, or a verified client certificate (zero expiry).
type deviceClaim struct {
	identity *registry.Identity
	method   string // "sas" or "x509"
	expiry   time.Time
	timer    clock.Timer
}

// deviceIdentityOf reads the device or module a device-scoped token is for:
// from its resource ({host}/devices/{id}[/modules/{mid}]), else from the
// put-token's name (a policy token signed for the bare host).
func deviceIdentityOf(t sasauth.Token, audience string) (devKey, bool) {
	for _, s := range []string{t.Resource(), audience} {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "amqps://")
		i := strings.Index(strings.ToLower(s), "/devices/")
		if i < 0 {
			continue
		}
		parts := strings.Split(strings.Trim(s[i:], "/"), "/")
		switch {
		case len(parts) == 2 && parts[1] != "":
			return devKey{device: parts[1]}, true
		case len(parts) == 4 && strings.EqualFold(parts[2], "modules") && parts[1] != "" && parts[3] != "":
			return devKey{device: parts[1], module: parts[3]}, true
		}
	}
	return devKey{}, false
}

// putDeviceToken checks a device-scoped token as the MQTT transport checks a
// CONNECT password (registry.Connectable, sasauth.Device) and records it as
// the connection's claim for that device; the device's links close when it
// expires without a renewal.
func (cs *connState) putDeviceToken(k devKey, token string) (int, string) {
	ctx, cancel := context.WithTimeout(cs.conn.Context(), cs.srv.cfg.SendTimeout)
	defer cancel()
	id, err := registry.Connectable(ctx, cs.srv.deps.Identities, k.device, k.module)
	if err == nil {
		err = cs.srv.deps.Auth.Device(token, k.device, k.module, id.Auth.PrimaryKey, id.Auth.SecondaryKey)
	}
	if err != nil {
		if code := iothub.CodeOf(err); code == iothub.ServerError || code == iothub.ServiceUnavailable {
			return 500, iothub.MessageOf(err)
		}
		return 401, iothub.MessageOf(err)
	}
	t, _ := sasauth.Parse(token)
	cs.grantDevice(k, &deviceClaim{identity: id, method: "sas", expiry: time.Unix(min(t.Expiry, maxExpiry), 0)})
	return 200, "OK"
}

// maxExpiry is the end of year 9999: later "se" values mean "never".
const maxExpiry = 253402300799

func (cs *connState) grantDevice(k devKey, c *deviceClaim) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if old := cs.devices[k]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	if !c.expiry.IsZero() {
		c.timer = cs.srv.cfg.Clock.AfterFunc(c.expiry.Sub(cs.srv.cfg.Now()), func() { cs.expireDevice(k) })
	}
	cs.devices[k] = c
}

// authorizeDevice admits a link to k's nodes: the connection holds a live
// claim for exactly that identity, or presented a client certificate that
// k's registration accepts. A device never reaches another's nodes.
func (cs *connState) authorizeDevice(l *amqp.Link, k devKey) (*deviceClaim, error) {
	cs.mu.Lock()
	c := cs.devices[k]
	cs.mu.Unlock()
	if c == nil {
		if tlsState := cs.conn.TLS(); tlsState != nil && len(tlsState.PeerCertificates) > 0 {
			ctx, cancel := context.WithTimeout(cs.conn.Context(), cs.srv.cfg.SendTimeout)
			defer cancel()
			id, err := registry.Connectable(ctx, cs.srv.deps.Identities, k.device, k.module)
			if err == nil {
				if verr := registry.VerifyCertificate(id, tlsState.PeerCertificates, cs.srv.cfg.DeviceCAs); verr != nil {
					err = iothub.Errorf(iothub.IotHubUnauthorizedAccess, "%v", verr)
				}
			}
			if err != nil {
				return nil, amqpError(err)
			}
			c = &deviceClaim{identity: id, method: "x509"}
			cs.grantDevice(k, c)
		} else {
			return nil, amqp.Errorf(amqp.ErrCondUnauthorizedAccess,
				"Unauthorized: put a token for %s on $cbs before attaching %s.", k, l.Address())
		}
	}
	if !c.expiry.IsZero() && !cs.srv.cfg.Now().Before(c.expiry) {
		return nil, amqp.Errorf(amqp.ErrCondUnauthorizedAccess, "Unauthorized: the token for %s expired at %s.", k, c.expiry.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// expireDevice closes k's links on this connection once its token lapsed
// without a renewal, as the hub does.
func (cs *connState) expireDevice(k devKey) {
	cs.mu.Lock()
	c := cs.devices[k]
	if c == nil || c.expiry.IsZero() || cs.srv.cfg.Now().Before(c.expiry) {
		cs.mu.Unlock()
		return
	}
	sess := cs.sessions[k]
	cs.mu.Unlock()
	if sess != nil {
		sess.closeLinks(amqp.Errorf(amqp.ErrCondUnauthorizedAccess, "Unauthorized: the token for %s expired at %s.", k, c.expiry.UTC().Format(time.RFC3339)))
	}
}

// attachDevice routes a link to one of k's nodes.
func (cs *connState) attachDevice(l *amqp.Link, k devKey, kind deviceKind) error {
	peerSends := l.Role() == amqp.RoleReceiver
	if kind == nodeC2D && peerSends {
		return amqp.Errorf(amqp.ErrCondNotAllowed, "The node %s cannot be attached as a %s link.", l.Address(), peerRole(l))
	}
	claim, err := cs.authorizeDevice(l, k)
	if err != nil {
		if ae, ok := err.(*amqp.Error); ok {
			return ae
		}
		return amqpError(err)
	}
	if err := cs.admitDevice(k); err != nil {
		return amqpError(err)
	}
	sess := cs.deviceSession(k, claim)
	switch {
	case kind == nodeEvents && peerSends:
		sess.track(l, linkTelemetry) // before it serves: a fault may detach it at once
		go sess.serveTelemetry(l)
	case kind == nodeEvents:
		// A module's input link (Node attaches a receiver on its events
		// node): messages routed to module inputs come from IoT Edge, which
		// the emulator is not; the link stays attached and quiet.
		sess.track(l, linkModuleInput)
	case kind == nodeC2D:
		sess.attachC2D(l)
	case kind == nodeMethods && peerSends:
		sess.track(l, linkMethodReplies) // before it serves: a fault may detach it at once
		go sess.serveMethodResponses(l)
	case kind == nodeMethods:
		sess.attachMethods(l)
	case kind == nodeTwin && peerSends:
		sess.track(l, linkTwinRequests) // before it serves: a fault may detach it at once
		go sess.serveTwinRequests(l)
	case kind == nodeTwin:
		sess.attachTwin(l)
	default:
		return amqp.Errorf(amqp.ErrCondNotFound, "The node %s does not exist on this hub.", l.Address())
	}
	return nil
}

// admitDevice asks the hub whether k may attach a link now: its first link
// on this connection is a new device connection (injected refusals, the
// tier's new-connection budget), a later one is refused only while a fault
// refuses its reconnects. Refusals are 503001, which goes out as
// amqp:link:detach-forced: the SDKs retry it.
func (cs *connState) admitDevice(k devKey) error {
	cs.mu.Lock()
	_, connected := cs.sessions[k]
	cs.mu.Unlock()
	if connected {
		return cs.srv.deps.Admission.AdmitLink(k.device, k.module)
	}
	return cs.srv.deps.Admission.AdmitConnection(k.device, k.module)
}

// deviceSession returns the connection's session of k, creating it (and
// reporting the device connected) on its first link.
func (cs *connState) deviceSession(k devKey, claim *deviceClaim) *deviceSession {
	cs.mu.Lock()
	sess := cs.sessions[k]
	if sess == nil {
		sess = newDeviceSession(cs, k, claim)
		cs.sessions[k] = sess
	}
	cs.mu.Unlock()
	cs.srv.devices.connect(sess)
	return sess
}

// closeDevices ends the connection's device sessions (from Closed).
func (cs *connState) closeDevices() {
	cs.mu.Lock()
	sessions := make([]*deviceSession, 0, len(cs.sessions))
	for _, s := range cs.sessions {
		sessions = append(sessions, s)
	}
	for _, c := range cs.devices {
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	cs.mu.Unlock()
	for _, s := range sessions {
		s.end()
	}
}

// isDeviceToken tells a device-scoped put-token from a service one: its
// resource or audience names a device.
func isDeviceToken(token, audience string) (devKey, bool) {
	t, err := sasauth.Parse(token)
	if err != nil {
		return devKey{}, false
	}
	return deviceIdentityOf(t, audience)
}
