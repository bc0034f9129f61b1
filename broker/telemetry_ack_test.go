package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

const ackTestKey = "QWNrVGVzdERldmljZUtleUZvclRoZUJyb2tlclRlc3Q="

// enabledDevices knows every device, enabled, with ackTestKey.
type enabledDevices struct{}

func (enabledDevices) Get(_ context.Context, deviceID, moduleID string) (*registry.Identity, error) {
	return &registry.Identity{DeviceID: deviceID, ModuleID: moduleID, Status: registry.StatusEnabled,
		Auth: registry.Authentication{Type: registry.AuthSAS, PrimaryKey: ackTestKey, SecondaryKey: ackTestKey}}, nil
}
func (enabledDevices) SetConnection(context.Context, string, string, string, string) error {
	return nil
}

// gatedStore is a Telemetry handler whose QoS 1 messages are stored when
// the test says so, with the outcome it says.
type gatedStore struct {
	mu      sync.Mutex
	queued  []string
	results []chan error
}

func (s *gatedStore) telemetry(_ context.Context, _ Device, _ map[string]string, body []byte, ack bool) (func() error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = append(s.queued, string(body))
	if !ack {
		return nil, nil
	}
	res := make(chan error, 1)
	s.results = append(s.results, res)
	return func() error { return <-res }, nil
}

func (s *gatedStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queued)
}

// store completes the i-th QoS 1 message with err.
func (s *gatedStore) store(i int, err error) {
	s.mu.Lock()
	res := s.results[i]
	s.mu.Unlock()
	res <- err
}

func startAckBroker(t *testing.T, store *gatedStore) string {
	t.Helper()
	b := New(Config{Auth: &sasauth.Authenticator{Policies: sasauth.DefaultPolicies("")}, Identities: enabledDevices{},
		Logger: quietBroker().log})
	b.SetHandlers(Handlers{Telemetry: store.telemetry})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddListener("mqtt", ln, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return ln.Addr().String()
}

// connectDev1 opens an MQTT connection as dev1 and reads its CONNACK.
func connectDev1(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tok, err := sasauth.Sign("localhost/devices/dev1", ackTestKey, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: "dev1", Keepalive: 60,
		UsernameFlag: true, Username: []byte("localhost/dev1/?api-version=2021-04-12"),
		PasswordFlag: true, Password: []byte(tok),
	}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		t.Fatalf("CONNACK %x: %v", ack, err)
	}
	return c
}

// writeBurst writes QoS 1 telemetry publishes with packet ids 1..n, bodies
// "m1".."mn", in one write.
func writeBurst(t *testing.T, c net.Conn, n int) {
	t.Helper()
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
			TopicName: "devices/dev1/messages/events/", PacketID: uint16(i), Payload: []byte("m" + string(rune('0'+i)))}
		if err := pk.PublishEncode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// A burst of QoS 1 publishes is queued for storage without waiting for
// each message, and the PUBACKs wait until the messages are stored: none is
// written before, then all come in order, in one write.
func TestTelemetry_PubackOnlyAfterStored(t *testing.T) {
	store := &gatedStore{}
	c := connectDev1(t, startAckBroker(t, store))
	writeBurst(t, c, 3)
	checkSoon(t, func() bool { return store.count() == 3 }) // all queued: the read loop did not wait per message
	defer func() {                                          // never leave the read loop waiting, or Close would wait for it
		for i := range 3 {
			select {
			case store.results[i] <- nil:
			default:
			}
		}
	}()

	store.store(0, nil)
	store.store(1, nil)
	got := make([]byte, 12)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(got); n > 0 || err == nil {
		t.Fatalf("read % x before the last message of the burst was stored", got[:n])
	}
	store.store(2, nil)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read the PUBACKs: %v", err)
	}
	if want := []byte{0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x40, 2, 0, 3}; !bytes.Equal(got, want) {
		t.Fatalf("PUBACKs % x, want % x", got, want)
	}
}

// A message that could not be stored is never acknowledged: the connection
// closes instead, and nothing queued after it is acknowledged either.
func TestTelemetry_StorageFailureClosesWithoutPuback(t *testing.T) {
	store := &gatedStore{}
	c := connectDev1(t, startAckBroker(t, store))
	writeBurst(t, c, 2)
	checkSoon(t, func() bool { return store.count() == 2 })
	store.store(0, errors.New("disk I/O error"))
	store.store(1, nil)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Fatalf("got % x after a failed store, want the connection closed without a PUBACK", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the connection stayed open after a failed store")
	}
}
