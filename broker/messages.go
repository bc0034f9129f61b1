package broker

import (
	"sort"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/messaging"
)

// c2dFilter is the one filter a device subscribes to for C2D messages, as
// the broker stores it (see topicID).
func c2dFilter(deviceID string) string {
	return "devices/" + topicID(deviceID) + "/messages/devicebound/#"
}

// wildcardEscaper escapes MQTT's wildcards. The hub allows '+' and '#' in
// device and module ids, but a topic name or filter level holding them is
// not valid MQTT; the broker keeps such ids escaped in the topics and
// filters it handles, and a device sees its topics as it wrote them.
var wildcardEscaper = strings.NewReplacer("+", "%2B", "#", "%23")

// topicID is an id as it appears in the broker's topics and filters.
func topicID(id string) string {
	if !strings.ContainsAny(id, "+#") {
		return id
	}
	return wildcardEscaper.Replace(id)
}

// DeviceBoundTopic is the topic a C2D message is published on, in the form
// every SDK parses (digest §1.7, sdk-behavior §3.5): the trailing slash after
// devicebound, system properties first with "%24." names (Go drops a topic
// without "$."; C only maps encoded names), %24.to always, then iothub-ack,
// then application properties sorted by name; names and values
// percent-encoded except RFC 3986 unreserved characters, so "/", "&", "="
// and spaces never reach the SDKs' naive splitters.
func DeviceBoundTopic(m *messaging.C2DMessage) string {
	var b strings.Builder
	b.Grow(128 + len(m.To))
	b.WriteString("devices/")
	b.WriteString(m.DeviceID)
	b.WriteString("/messages/devicebound/")
	first := true
	add := func(k, v string) {
		if !first {
			b.WriteByte('&')
		}
		first = false
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escape(v))
	}
	if m.MessageID != "" {
		add("%24.mid", m.MessageID)
	}
	to := m.To
	if to == "" {
		to = "/devices/" + m.DeviceID + "/messages/devicebound"
	}
	add("%24.to", to)
	if !m.ExpiryTime.IsZero() {
		add("%24.exp", m.ExpiryTime.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	if m.CorrelationID != "" {
		add("%24.cid", m.CorrelationID)
	}
	if m.UserID != "" {
		add("%24.uid", m.UserID)
	}
	if m.ContentType != "" {
		add("%24.ct", m.ContentType)
	}
	if m.ContentEncoding != "" {
		add("%24.ce", m.ContentEncoding)
	}
	ack := m.Ack
	if ack == "" {
		ack = messaging.AckNone
	}
	add("iothub-ack", string(ack))
	keys := make([]string, 0, len(m.Properties))
	for k := range m.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte('&') // iothub-ack came before
		b.WriteString(escape(k))
		b.WriteByte('=')
		b.WriteString(escape(m.Properties[k]))
	}
	return b.String()
}

// escape percent-encodes everything but RFC 3986 unreserved characters.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			out = append(out, c)
		} else {
			out = append(out, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(out)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// c2dInflight maps the packet ids of a connection's unacknowledged C2D
// publishes to their lock tokens. The broker allocates these ids itself,
// outside mochi's inflight store: mochi would resend them on reconnect,
// while the queue already redelivers what was not acknowledged.
type c2dInflight struct {
	mu   sync.Mutex
	next uint16
	ids  map[uint16]*inflightC2D
}

type inflightC2D struct {
	token string
	// written is set once the publish left the outbox: only then does a
	// lost connection count as a delivery attempt.
	written bool
}

func (f *c2dInflight) add(token string) (uint16, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = map[uint16]*inflightC2D{}
	}
	for range 65535 {
		f.next++
		if f.next == 0 {
			f.next = 1
		}
		if _, used := f.ids[f.next]; !used {
			f.ids[f.next] = &inflightC2D{token: token}
			return f.next, true
		}
	}
	return 0, false
}

func (f *c2dInflight) sent(id uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.ids[id]; ok {
		m.written = true
	}
}

func (f *c2dInflight) take(id uint16) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.ids[id]
	delete(f.ids, id)
	if !ok {
		return "", false
	}
	return m.token, true
}

// drain empties the table: written are the lock tokens of messages the
// device may have seen, unsent those that never left the outbox.
func (f *c2dInflight) drain() (written, unsent []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.ids {
		if m.written {
			written = append(written, m.token)
		} else {
			unsent = append(unsent, m.token)
		}
	}
	f.ids = nil
	return written, unsent
}

// C2DReady reports whether the device's live connection is subscribed to
// its C2D topic.
func (b *Broker) C2DReady(deviceID string) bool {
	return b.IsSubscribed(deviceID, "", c2dFilter(deviceID))
}

// DeliverC2D queues a locked C2D message at QoS 1 for the device's live
// connection only (digest §1.4: the hub delivers C2D at QoS 1); it does not
// wait for the write. The PUBACK completes it through Handlers.C2DComplete;
// a connection lost first returns it through Handlers.C2DRelease.
func (b *Broker) DeliverC2D(m *messaging.C2DMessage) error {
	c, ok := b.live(m.DeviceID)
	if !ok {
		return ErrNotConnected
	}
	if _, ok := c.cl.State.Subscriptions.Get(c2dFilter(m.DeviceID)); !ok {
		return ErrNotConnected
	}
	id, ok := c.c2d.add(m.LockToken)
	if !ok {
		return packets.ErrQuotaExceeded
	}
	err := b.send(c, outPacket{c2d: id, pk: packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   DeviceBoundTopic(m),
		Payload:     m.Body,
		PacketID:    id,
	}})
	if err != nil {
		c.c2d.take(id)
		return err
	}
	return nil
}

// c2dAcked completes the C2D message a PUBACK acknowledges.
func (h *hook) c2dAcked(cl *mqtt.Client, id uint16) {
	c, ok := h.b.connOf(cl)
	if !ok {
		return
	}
	tok, ok := c.c2d.take(id)
	if ok && h.b.handlers.C2DComplete != nil {
		h.b.handlers.C2DComplete(c.dev, tok)
	}
}

// TelemetryMessage builds the stored message from a decoded property bag:
// "$."-keys become the hub's system properties, every other key an
// application property (digest §1.6).
func TelemetryMessage(d Device, props map[string]string, body []byte) *messaging.Message {
	m := &messaging.Message{DeviceID: d.DeviceID, ModuleID: d.ModuleID, AuthMethod: d.AuthMethod, GenerationID: d.GenerationID,
		Transport: d.Transport, Body: body}
	for k, v := range props {
		name, sys := strings.CutPrefix(k, "$.")
		switch {
		case !sys:
			m.SetProperty(k, v)
		case name == "cdid" || name == "cmid":
			// The connection's identity is the hub's to set.
		default:
			m.SetSystem(systemName(name), v)
		}
	}
	return m
}

// systemName maps a "$." key of the MQTT property bag to the hub's name
// for that system property (digest §1.6).
func systemName(k string) string {
	switch k {
	case "mid":
		return messaging.SysMessageID
	case "cid":
		return messaging.SysCorrelationID
	case "uid":
		return messaging.SysUserID
	case "to":
		return messaging.SysTo
	case "ct":
		return messaging.SysContentType
	case "ce":
		return messaging.SysContentEncoding
	case "exp":
		return messaging.SysExpiryTime
	case "ctime":
		return messaging.SysCreationTime
	case "on":
		return "iothub-outputname"
	case "sub":
		return "dt-subject"
	case "ifid":
		return "iothub-interface-id"
	case "schema":
		return "dt-dataschema"
	}
	return "$." + k
}
