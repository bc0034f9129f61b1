// Package amqp is an AMQP 1.0 server engine: the type system and codec, the protocol and SASL
// headers, connections, sessions and links, on the standard library only. It knows nothing of
// IoT Hub; the hub's transport plugs in through Handler and ConnHandler, as the MQTT transport
// plugs into its broker.
//
// A Server runs the protocol on connections accepted elsewhere (TCP, TLS, or a WebSocket adapted
// to a net.Conn):
//
//	srv := amqp.NewServer(handler, amqp.Config{Authenticate: auth})
//	go srv.ServeConn(ctx, conn)
//
// For each connection the Handler returns a ConnHandler, which accepts or refuses every link the
// peer attaches. A link's Role is the server's: on a RoleReceiver link the peer sends (Receive
// each Delivery, then Accept, Reject, Release or Modify it); on a RoleSender link the peer
// receives (Send waits for credit and returns the outcome; SendSettled does not wait).
// RequestNode pairs request and reply links for nodes such as $cbs and $management.
//
// The wire format follows what real clients require, which is stricter than the specification
// in places: every performative is encoded with its full field list, the open and begin frames
// carry explicit max-frame-size, channel-max, idle-time-out and handle-max, attach replies echo
// the peer's settle modes, carry initial-delivery-count on sender links and a non-null
// properties map, sources and targets have all their 11 and 7 fields, and a refused link is
// answered with null source and target followed by a detach carrying the error.
//
// Settlement: a link where the peer sends and asked rcv-settle-mode second gets second in the
// reply and two-phase settlement (Settle sends an unsettled outcome, the delivery ends when the
// peer settles), as the specification says. The Python clients (uamqp and pyamqp) ask second but
// complete a send only on a settled disposition; a handler that serves them answers with
// Link.SetReceiverSettleMode(ReceiverSettleFirst) during Attach. go-amqp refuses a reply whose
// mode differs from what it asked, so the engine never changes the mode by itself.
//
// Bounds: frames above Config.MaxFrameSize are refused before their body is read; a
// reassembled message above Config.MaxMessageSize (or the link's SetMaxMessageSize) detaches its
// link; credit is granted only as far as Config.LinkBuffer holds that many messages of the
// maximum size, and not while Config.MaxUnsettled deliveries await settlement, so a link holds
// at most about LinkBuffer bytes the handler has not taken; outgoing frames are at most
// MaxFrameSize and at most Config.WriteQueue of them wait per connection; sessions and links are
// bounded; the handshake, every socket write and the peer's idle time have deadlines. One writer goroutine per connection owns the
// socket's write side, so no lock is held while writing and a slow peer only slows itself.
package amqp
