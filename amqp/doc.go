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
// Bounds: frames above Config.MaxFrameSize are refused before their body is read; a
// reassembled message above Config.MaxMessageSize detaches its link; credit never exceeds what
// a link can buffer, and no more credit is granted while Config.MaxUnsettled deliveries await
// settlement; sessions, links and the writer queue are bounded; the handshake, every socket
// write and the peer's idle time have deadlines. One writer goroutine per connection owns the
// socket's write side, so no lock is held while writing and a slow peer only slows itself.
package amqp
