package hubtest_test

// The README's "Hermetic tests in Go" section quotes the function between
// the README markers below; scripts/check-readme.sh fails when they differ.

// README:begin
import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

func TestMyDevice(t *testing.T) {
	h := hubtest.Start(t) // random ports, in memory, closed when the test ends
	dev := h.CreateDevice(t, "dev1")
	if cs := dev.ConnectionString(h); !strings.HasPrefix(cs, "HostName=localhost;DeviceId=dev1;") {
		t.Fatalf("connection string %q", cs)
	}

	// The device sends telemetry over MQTT/TLS, as the SDKs do.
	opts := paho.NewClientOptions().AddBroker("tls://" + h.MQTTSAddr()).
		SetTLSConfig(h.TLSConfig()).SetProtocolVersion(4).
		SetClientID(dev.ClientID()).SetUsername(dev.Username(h)).
		SetPassword(dev.Token(t, h, time.Hour))
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish("devices/dev1/messages/events/", 1, false, `{"t":21.5}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	// The PUBACK means it is stored: read it back over REST.
	var msgs []struct{ Body string }
	h.Do(t, "GET", "/_emulator/messages?deviceId=dev1", nil).JSON(t, &msgs)
	if len(msgs) != 1 || msgs[0].Body != `{"t":21.5}` {
		t.Fatalf("stored messages %+v", msgs)
	}
}

// README:end
