// Package hubtest starts a whole emulator inside a Go test, on random
// loopback ports, and hands back what a test needs to talk to it: addresses,
// the CA, connection strings, and small REST and token helpers.
//
//	h := hubtest.Start(t)
//	dev := h.CreateDevice(t, "dev1")
//	// connect an MQTT client to h.MQTTSAddr() with h.TLSConfig() and dev.Token(h)
package hubtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// Hub is a running emulator owned by a test.
type Hub struct {
	*hub.Hub
	cfg    hub.Config
	client *http.Client
}

// Option adjusts the configuration before the hub starts.
type Option func(*hub.Config)

// WithDataDir keeps state in dir (for restart tests) instead of in memory.
func WithDataDir(dir string) Option {
	return func(c *hub.Config) { c.DataDir, c.InMemory = dir, false }
}

// WithClock runs the hub on a fake clock that the test moves with
// h.Advance; it starts at start (the wall clock's now when zero).
func WithClock(start time.Time) Option {
	if start.IsZero() {
		start = time.Now().UTC()
	}
	return func(c *hub.Config) { c.Clock = clock.NewFake(start) }
}

// Advance moves the hub's fake clock forward by d, firing what falls due on
// the way (token expiries, C2D TTLs, scheduled jobs, method timeouts). The
// hub must have been started WithClock.
func (h *Hub) Advance(tb testing.TB, d time.Duration) {
	tb.Helper()
	h.fake(tb).Advance(d)
}

// Now is the hub's time: the fake clock's under WithClock.
func (h *Hub) Now() time.Time {
	return clock.OrReal(h.cfg.Clock).Now()
}

func (h *Hub) fake(tb testing.TB) *clock.Fake {
	tb.Helper()
	f, ok := h.cfg.Clock.(*clock.Fake)
	if !ok {
		tb.Fatal("hubtest: Advance needs a hub started WithClock")
	}
	return f
}

// WithConfig lets a test change anything else.
func WithConfig(fn func(*hub.Config)) Option { return Option(fn) }

// Start opens a hub on random 127.0.0.1 ports, in memory unless an option
// says otherwise, and closes it when the test ends.
func Start(tb testing.TB, opts ...Option) *Hub {
	tb.Helper()
	cfg := hub.Config{
		Hostname:  "localhost",
		MQTTSAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		AMQPSAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0",
		InMemory: true,
		Logger:   discardLogger(tb),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h := &Hub{cfg: cfg}
	h.open(tb)
	tb.Cleanup(func() { h.Close() })
	return h
}

func (h *Hub) open(tb testing.TB) {
	tb.Helper()
	hh, err := hub.Open(context.Background(), h.cfg)
	if err != nil {
		tb.Fatalf("start the hub: %v", err)
	}
	h.Hub = hh
	h.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: h.TLSConfig()}}
}

// Restart closes the hub and opens it again on the same data directory and
// the same ports, as a process restart would.
func (h *Hub) Restart(tb testing.TB) {
	tb.Helper()
	for name, addr := range map[string]*string{"mqtts": &h.cfg.MQTTSAddr, "https": &h.cfg.HTTPSAddr, "mqtt": &h.cfg.MQTTAddr, "http": &h.cfg.HTTPAddr, "amqps": &h.cfg.AMQPSAddr, "amqp": &h.cfg.AMQPAddr} {
		if *addr != "" {
			*addr = h.Addr(name)
		}
	}
	if err := h.Hub.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	h.open(tb)
}

// TLSConfig trusts the hub's CA, with localhost as the server name.
func (h *Hub) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.CACertPEM())
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// MQTTSAddr, MQTTAddr, AMQPSAddr, HTTPSURL and HTTPURL locate the listeners.
func (h *Hub) MQTTSAddr() string { return h.Addr("mqtts") }
func (h *Hub) AMQPSAddr() string { return h.Addr("amqps") }
func (h *Hub) AMQPAddr() string  { return h.Addr("amqp") }
func (h *Hub) MQTTAddr() string  { return h.Addr("mqtt") }
func (h *Hub) HTTPSURL() string  { return "https://" + h.Addr("https") }
func (h *Hub) HTTPURL() string   { return "http://" + h.Addr("http") }

// ServiceToken signs a token for a policy ("iothubowner" when empty).
func (h *Hub) ServiceToken(tb testing.TB, policy string) string {
	tb.Helper()
	if policy == "" {
		policy = "iothubowner"
	}
	for _, p := range h.Policies() {
		if p.Name == policy {
			tok, err := sasauth.Sign(h.Hostname(), p.PrimaryKey, p.Name, h.Now().Add(time.Hour))
			if err != nil {
				tb.Fatal(err)
			}
			return tok
		}
	}
	tb.Fatalf("no policy %q", policy)
	return ""
}

// Response is a REST answer.
type Response struct {
	*http.Response
	Body []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r *Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("%s: body is not JSON: %v\n%s", r.Request.URL, err, r.Body)
	}
}

// Do calls the REST API over HTTPS with an iothubowner token. path may carry
// its own query; api-version is added when absent. body is JSON-encoded
// unless it is a string or []byte. headers are "Name: value" pairs; an
// "Authorization:" one replaces the default token (empty means none).
func (h *Hub) Do(tb testing.TB, method, path string, body any, headers ...string) *Response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	if !strings.Contains(path, "api-version=") {
		if strings.Contains(path, "?") {
			path += "&api-version=2021-04-12"
		} else {
			path += "?api-version=2021-04-12"
		}
	}
	req, err := http.NewRequest(method, h.HTTPSURL()+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", h.ServiceToken(tb, ""))
	if rd != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		v = strings.TrimSpace(v)
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return &Response{Response: resp, Body: b}
}

// Device is a registered test device.
type Device struct {
	ID, ModuleID string
	PrimaryKey   string
}

// CreateDevice registers a SAS device through the REST API.
func (h *Hub) CreateDevice(tb testing.TB, id string) *Device {
	tb.Helper()
	r := h.Do(tb, http.MethodPut, "/devices/"+url.PathEscape(id), map[string]any{"deviceId": id})
	if r.StatusCode != http.StatusOK {
		tb.Fatalf("create device %s: %d %s", id, r.StatusCode, r.Body)
	}
	var d struct {
		Authentication struct {
			SymmetricKey struct{ PrimaryKey string }
		}
	}
	r.JSON(tb, &d)
	return &Device{ID: id, PrimaryKey: d.Authentication.SymmetricKey.PrimaryKey}
}

// ClientID is the MQTT client id of the device or module.
func (d *Device) ClientID() string {
	if d.ModuleID != "" {
		return d.ID + "/" + d.ModuleID
	}
	return d.ID
}

// Username is the MQTT username the Node SDK would send.
func (d *Device) Username(h *Hub) string {
	return h.Hostname() + "/" + d.ClientID() + "/?api-version=2021-04-12"
}

// Token signs a device token valid for ttl.
func (d *Device) Token(tb testing.TB, h *Hub, ttl time.Duration) string {
	tb.Helper()
	res := h.Hostname() + "/devices/" + d.ID
	if d.ModuleID != "" {
		res += "/modules/" + d.ModuleID
	}
	tok, err := sasauth.Sign(res, d.PrimaryKey, "", h.Now().Add(ttl))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// ConnectionString is the device's connection string.
func (d *Device) ConnectionString(h *Hub) string {
	s := "HostName=" + h.Hostname() + ";DeviceId=" + d.ID
	if d.ModuleID != "" {
		s += ";ModuleId=" + d.ModuleID
	}
	return s + ";SharedAccessKey=" + d.PrimaryKey
}

// InjectFault puts an emulator-only fault in force, as POST
// /_emulator/faults does, and returns it with its id and times:
//
//	h.InjectFault(t, faults.Fault{Action: faults.Error, Route: "PUT /devices/{id}", ErrorCode: iothub.ThrottlingException, Count: 2})
//	h.InjectFault(t, faults.Fault{Action: faults.DropConnection, DeviceID: "dev1", Duration: 30 * time.Second})
func (h *Hub) InjectFault(tb testing.TB, f faults.Fault) faults.Fault {
	tb.Helper()
	out, err := h.Faults.Create(f)
	if err != nil {
		tb.Fatalf("inject fault: %v", err)
	}
	return out
}

// ClearFaults ends every injected fault.
func (h *Hub) ClearFaults() { h.Faults.Clear() }
