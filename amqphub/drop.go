package amqphub

import (
	"time"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/faults"
)

// The fault service's reach into AMQP connections (faults.Connections):
// what the SDK suites' AzIoTHub_FaultOperationType values name, applied to
// every AMQP connection that carries the device.

// closeGrace is how long a connection closed by a fault serves the client's
// rundown (amqp.Conn.Shutdown) before its socket goes.
const closeGrace = 5 * time.Second

// linkOps are the device links each link fault detaches: "Req" is the link
// requests travel on, "Resp" the one responses travel on (for methods the
// hub asks and the device answers; for twins the device asks).
var linkOps = map[string]linkKind{
	faults.OpKillAmqpD2CLink:      linkTelemetry,
	faults.OpKillAmqpC2DLink:      linkC2D,
	faults.OpKillAmqpTwinLinkReq:  linkTwinRequests,
	faults.OpKillAmqpTwinLinkResp: linkTwinReplies,
	faults.OpKillAmqpMethodReq:    linkMethodRequests,
	faults.OpKillAmqpMethodResp:   linkMethodReplies,
}

// Drop ends what op names on every AMQP connection that carries the device
// (or module), with reason as the error's description:
//
//   - KillTcp drops the connection without a close frame;
//   - ShutDownAmqp (and ShutDownMqtt) closes it without an error;
//   - KillAmqpConnection closes it, KillAmqpSession ends the sessions of
//     the device's links, with amqp:internal-error (what the hub's AMQP
//     stack sends when it closes on an exception; the SDKs retry it);
//   - the KillAmqp…Link faults detach that link with
//     amqp:link:detach-forced ($cbs links: the connection's), which the
//     SDKs treat as transient.
//
// An operation unknown here closes the connection with an error.
func (s *Server) Drop(deviceID, moduleID, op, reason string) {
	k := devKey{deviceID, moduleID}
	for _, cs := range s.connectionsOf(k) {
		cs.drop(k, op, reason)
	}
}

// connectionsOf lists the connections that carry k: a claim for it or a
// session of its links.
func (s *Server) connectionsOf(k devKey) []*connState {
	s.connsMu.Lock()
	all := make([]*connState, 0, len(s.conns))
	for cs := range s.conns {
		all = append(all, cs)
	}
	s.connsMu.Unlock()
	var out []*connState
	for _, cs := range all {
		cs.mu.Lock()
		_, claimed := cs.devices[k]
		_, linked := cs.sessions[k]
		cs.mu.Unlock()
		if claimed || linked {
			out = append(out, cs)
		}
	}
	return out
}

func (cs *connState) drop(k devKey, op, reason string) {
	faultErr := func(cond amqp.Condition) *amqp.Error {
		return &amqp.Error{Condition: cond, Description: reason}
	}
	cs.srv.log.Info("injected fault", "device", k, "operation", op, "remote", cs.conn.RemoteAddr())
	switch op {
	case faults.OpKillTcp:
		cs.conn.Abort()
	case faults.OpShutDownAmqp, faults.OpShutDownMqtt:
		cs.conn.Shutdown(nil, closeGrace)
	case faults.OpKillAmqpSession:
		links := cs.deviceLinks(k, func(linkKind) bool { return true })
		if len(links) == 0 {
			links = cs.cbsLinksOf(func(*amqp.Link) bool { return true })
		}
		for _, l := range links {
			l.EndSession(faultErr(amqp.ErrCondInternalError)) // once per session: later calls find it ended
		}
	case faults.OpKillAmqpCBSLinkReq, faults.OpKillAmqpCBSLinkResp:
		// The request link is the one the client sends put-tokens on: the
		// hub receives on it.
		wantRole := amqp.RoleReceiver
		if op == faults.OpKillAmqpCBSLinkResp {
			wantRole = amqp.RoleSender
		}
		for _, l := range cs.cbsLinksOf(func(l *amqp.Link) bool { return l.Role() == wantRole }) {
			l.Close(faultErr(amqp.ErrCondDetachForced))
		}
	default:
		kind, ok := linkOps[op]
		if !ok {
			cs.conn.Shutdown(faultErr(amqp.ErrCondInternalError), closeGrace) // KillAmqpConnection
			return
		}
		for _, l := range cs.deviceLinks(k, func(lk linkKind) bool { return lk == kind }) {
			l.Close(faultErr(amqp.ErrCondDetachForced))
		}
	}
}

// deviceLinks lists k's links on the connection whose kind matches.
func (cs *connState) deviceLinks(k devKey, match func(linkKind) bool) []*amqp.Link {
	cs.mu.Lock()
	sess := cs.sessions[k]
	cs.mu.Unlock()
	if sess == nil {
		return nil
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	var out []*amqp.Link
	for l, kind := range sess.links {
		if match(kind) {
			out = append(out, l)
		}
	}
	return out
}

// trackCBS remembers a $cbs link until it ends.
func (cs *connState) trackCBS(l *amqp.Link) {
	cs.mu.Lock()
	if cs.cbsLinks == nil {
		cs.cbsLinks = map[*amqp.Link]struct{}{}
	}
	cs.cbsLinks[l] = struct{}{}
	cs.mu.Unlock()
	go func() {
		<-l.Done()
		cs.mu.Lock()
		delete(cs.cbsLinks, l)
		cs.mu.Unlock()
	}()
}

func (cs *connState) cbsLinksOf(match func(*amqp.Link) bool) []*amqp.Link {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []*amqp.Link
	for l := range cs.cbsLinks {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}
