package e2e

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// mqttConn is a raw MQTT 3.1.1 client, as a device would use.
type mqttConn struct {
	paho.Client
	mu       sync.Mutex
	received []paho.Message
	lost     chan error
}

type connOpts struct {
	tls      bool   // over the 8883-style TLS listener (default: plain 1883)
	ws       bool   // over wss://…/$iothub/websocket
	clean    bool   // clean session (the SDKs use false)
	password string // overrides the device token
	username string // overrides the username
	clientID string // overrides the client id
}

// dial connects a device and returns the client and the CONNACK error.
func dial(t *testing.T, h *hubtest.Hub, d *hubtest.Device, o connOpts) (*mqttConn, error) {
	t.Helper()
	c := &mqttConn{lost: make(chan error, 1)}
	opts := paho.NewClientOptions()
	switch {
	case o.ws:
		opts.AddBroker("wss://" + h.Addr("https") + "/$iothub/websocket")
		opts.SetTLSConfig(h.TLSConfig())
	case o.tls:
		opts.AddBroker("tls://" + h.MQTTSAddr())
		opts.SetTLSConfig(h.TLSConfig())
	default:
		opts.AddBroker("tcp://" + h.MQTTAddr())
	}
	opts.SetProtocolVersion(4)
	opts.SetClientID(d.ClientID())
	if o.clientID != "" {
		opts.SetClientID(o.clientID)
	}
	opts.SetUsername(d.Username(h))
	if o.username != "" {
		opts.SetUsername(o.username)
	}
	pw := o.password
	if pw == "" {
		pw = d.Token(t, h, time.Hour)
	}
	opts.SetPassword(pw)
	opts.SetCleanSession(o.clean)
	opts.SetAutoReconnect(false)
	opts.SetConnectRetry(false)
	opts.SetConnectTimeout(10 * time.Second)
	opts.SetOrderMatters(true) // deliver in arrival order; handlers only append
	opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		c.mu.Lock()
		c.received = append(c.received, m)
		c.mu.Unlock()
	})
	opts.SetConnectionLostHandler(func(_ paho.Client, err error) {
		select {
		case c.lost <- err:
		default:
		}
	})
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return c, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return c, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustDial(t *testing.T, h *hubtest.Hub, d *hubtest.Device, o connOpts) *mqttConn {
	t.Helper()
	c, err := dial(t, h, d, o)
	if err != nil {
		t.Fatalf("connect %s: %v", d.ClientID(), err)
	}
	return c
}

// subscribe returns the granted QoS codes.
func (c *mqttConn) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscribe %v timed out", filters)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	st := tok.(*paho.SubscribeToken)
	var out []byte
	for _, f := range filters {
		out = append(out, st.Result()[f])
	}
	return out
}

func (c *mqttConn) publish(t *testing.T, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("publish %s timed out", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// waitFor polls the messages received until one has a topic with prefix.
func (c *mqttConn) waitFor(t *testing.T, prefix string) paho.Message {
	t.Helper()
	var found paho.Message
	checkFor(t, 30*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.received {
			if strings.HasPrefix(m.Topic(), prefix) {
				found = m
				return nil
			}
		}
		return errors.New("no message on " + prefix)
	})
	return found
}

func (c *mqttConn) waitLost(t *testing.T) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not closed")
	}
}

// checkFor polls fn until it returns nil or the timeout passes (nats style;
// the timeout is generous and never a measurement).
func checkFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", timeout, err)
}
