package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/registry"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// identities answers Get with a fixed error.
type identities struct{ err error }

func (f identities) Get(context.Context, string, string) (*registry.Identity, error) {
	return nil, f.err
}
func (f identities) SetConnection(context.Context, string, string, string, string) error {
	return nil
}

// connackCode connects to addr as dev1 and returns the CONNACK return code.
func connackCode(t *testing.T, addr string) byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: "dev1", Keepalive: 60,
		UsernameFlag: true, Username: []byte("localhost/dev1/?api-version=2021-04-12"),
		PasswordFlag: true, Password: []byte("SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=AAAA&se=99999999999"),
	}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	return ack[3]
}

// When the hub cannot decide (its storage fails, the disk is full) a device
// gets CONNACK 3 "server unavailable", which the SDKs retry; 5 "not
// authorized" is for identity and credential failures only (issue #13).
func TestConnack_StorageFailureIsServerUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want byte
	}{
		{"storage failure", errors.New("database or disk is full"), 3},
		{"hub server error", iothub.Errorf(iothub.ServerError, "boom"), 3},
		{"unknown device", iothub.Errorf(iothub.DeviceNotFound, "Device dev1 not found."), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Auth: &sasauth.Authenticator{Policies: sasauth.DefaultPolicies("")}, Identities: identities{tc.err},
				Logger: quietBroker().log})
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
			defer b.Close()
			if got := connackCode(t, ln.Addr().String()); got != tc.want {
				t.Errorf("CONNACK %d, want %d", got, tc.want)
			}
		})
	}
}
