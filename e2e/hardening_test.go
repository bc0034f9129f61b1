package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// rest calls the REST API without failing the test, so goroutines can use it.
func rest(h *hubtest.Hub, token, method, path string, body []byte) (int, []byte, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, h.HTTPURL()+path+sep+"api-version=2021-04-12", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// rawConnect opens a plain MQTT connection for d by hand, with a tiny
// receive buffer, sends CONNECT (keep-alive 0: the hub never times it out)
// and reads the CONNACK; it returns the connection and the CONNACK code.
func rawConnect(t *testing.T, h *hubtest.Hub, d *hubtest.Device) (net.Conn, byte) {
	t.Helper()
	dialer := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := dialer.Dial("tcp", h.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: d.ClientID(),
		UsernameFlag: true, Username: []byte(d.Username(h)), PasswordFlag: true, Password: []byte(d.Token(t, h, time.Hour)),
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
	_ = c.SetReadDeadline(time.Time{})
	return c, ack[3]
}

// rawSubscribe subscribes at QoS 1 and reads the SUBACK.
func rawSubscribe(t *testing.T, c net.Conn, filters ...string) {
	t.Helper()
	var subs packets.Subscriptions
	for _, f := range filters {
		subs = append(subs, packets.Subscription{Filter: f, Qos: 1})
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, Filters: subs, ProtocolVersion: 4}
	if err := pk.SubscribeEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4+len(filters))
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("read SUBACK: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// A device that stops reading its socket must not stall anyone else (issue
// #13): while a flood of large desired patches fills its socket, C2D
// messages, twin patches, a twin job over the whole fleet (the stuck device
// included) and direct methods for 100 other devices all complete, and
// every REST call on the stuck device's own twin returns.
func TestHardening_StuckDeviceStallsNoOne(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	const others = 100
	token := h.ServiceToken(t, "")

	stuck := h.CreateDevice(t, "stuck")
	sc, code := rawConnect(t, h, stuck)
	if code != 0 {
		t.Fatalf("stuck device CONNACK %d", code)
	}
	rawSubscribe(t, sc, "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#", "devices/stuck/messages/devicebound/#")
	// From here on nobody reads sc.

	type device struct {
		id          string
		c           *mqttConn
		methodCalls atomic.Int32
	}
	devs := make([]*device, others)
	for i := range devs {
		d := h.CreateDevice(t, fmt.Sprintf("ok%03d", i))
		dv := &device{id: d.ID, c: mustDial(t, h, d, connOpts{})}
		dv.c.subscribe(t, "$iothub/twin/PATCH/properties/desired/#", "devices/"+d.ID+"/messages/devicebound/#")
		// Answer direct methods at once, from paho's callback.
		tok := dv.c.Subscribe("$iothub/methods/POST/#", 0, func(cl paho.Client, m paho.Message) {
			_, rid, _ := strings.Cut(m.Topic(), "?$rid=")
			dv.methodCalls.Add(1)
			cl.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, `{"ok":true}`)
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe methods: %v", tok.Error())
		}
		devs[i] = dv
	}

	// The flood: large desired patches for the stuck device, more than its
	// socket, the kernel's buffers and its outbox can hold.
	var flood sync.WaitGroup
	var flooded atomic.Int32
	floodErr := make(chan error, 1)
	flood.Add(1)
	go func() {
		defer flood.Done()
		// Six values of 4,000 bytes: the hub's limit is 4 KB a value.
		var big strings.Builder
		for k := range 6 {
			fmt.Fprintf(&big, `"blob%d":"%s",`, k, strings.Repeat("x", 4000))
		}
		for i := range 250 {
			body := fmt.Sprintf(`{"properties":{"desired":{%s"n":%d}}}`, big.String(), i)
			st, b, err := rest(h, token, http.MethodPatch, "/twins/stuck", []byte(body))
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("PATCH /twins/stuck: %d %s", st, b)
			}
			if err != nil {
				floodErr <- err
				return
			}
			flooded.Add(1)
		}
	}()
	// Everything below runs while the stuck device's socket is full.
	checkFor(t, 60*time.Second, func() error {
		select {
		case err := <-floodErr:
			t.Fatal(err)
		default:
		}
		if n := flooded.Load(); n < 50 {
			return fmt.Errorf("PATCH /twins/stuck hangs after %d patches", n)
		}
		return nil
	})

	var wg sync.WaitGroup
	errs := make(chan error, 10*others)
	run := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errs <- err
			}
		}()
	}
	// A C2D message and a method call for the stuck device as well: neither
	// may hold the one C2D worker or the caller beyond its timeout.
	run(func() error {
		st, b, err := rest(h, token, http.MethodPost, "/_emulator/devices/stuck/messages/devicebound", []byte(`{"body":"to the stuck one"}`))
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("C2D to stuck: %d %s", st, b)
		}
		return err
	})
	run(func() error {
		st, b, err := rest(h, token, http.MethodPost, "/twins/stuck/methods", []byte(`{"methodName":"m","responseTimeoutInSeconds":5,"payload":{}}`))
		if err == nil && st != http.StatusGatewayTimeout && st != http.StatusNotFound {
			err = fmt.Errorf("method on stuck: %d %s, want 504 or 404", st, b)
		}
		return err
	})
	sem := make(chan struct{}, 16)
	for _, dv := range devs {
		run(func() error {
			sem <- struct{}{}
			defer func() { <-sem }()
			st, b, err := rest(h, token, http.MethodPost, "/_emulator/devices/"+dv.id+"/messages/devicebound", []byte(`{"body":"hello `+dv.id+`"}`))
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("C2D to %s: %d %s", dv.id, st, b)
			}
			if err != nil {
				return err
			}
			st, b, err = rest(h, token, http.MethodPatch, "/twins/"+dv.id, []byte(`{"properties":{"desired":{"mine":"`+dv.id+`"}}}`))
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("PATCH twin %s: %d %s", dv.id, st, b)
			}
			if err != nil {
				return err
			}
			st, b, err = rest(h, token, http.MethodPost, "/twins/"+dv.id+"/methods", []byte(`{"methodName":"ping","responseTimeoutInSeconds":30,"payload":{}}`))
			if err == nil && (st != http.StatusOK || !strings.Contains(string(b), `"status":200`)) {
				err = fmt.Errorf("method on %s: %d %s", dv.id, st, b)
			}
			return err
		})
	}
	job := `{"jobId":"fleet","type":"scheduleUpdateTwin","queryCondition":"*","maxExecutionTimeInSeconds":120,
		"updateTwin":{"etag":"*","properties":{"desired":{"fleet":1}}},"startTime":null}`
	if r := h.Do(t, http.MethodPut, "/jobs/v2/fleet", job); r.StatusCode != http.StatusOK {
		t.Fatalf("PUT job: %d %s", r.StatusCode, r.Body)
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	j := waitJob(t, h, "fleet", func(j jobDoc) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "completed" || j.Stats.SucceededCount != others+1 {
		t.Errorf("twin job = %s %+v", j.Status, j.Stats)
	}
	for _, dv := range devs {
		dv.c.waitFor(t, "devices/"+dv.id+"/messages/devicebound/")
		checkFor(t, 30*time.Second, func() error {
			dv.c.mu.Lock()
			defer dv.c.mu.Unlock()
			var mine, fleet bool
			for _, m := range dv.c.received {
				var p map[string]any
				if strings.HasPrefix(m.Topic(), "$iothub/twin/PATCH/properties/desired/") && json.Unmarshal(m.Payload(), &p) == nil {
					mine = mine || p["mine"] == dv.id
					fleet = fleet || p["fleet"] == float64(1)
				}
			}
			if !mine || !fleet {
				return fmt.Errorf("%s: desired notifications mine=%v fleet=%v", dv.id, mine, fleet)
			}
			return nil
		})
		if n := dv.methodCalls.Load(); n != 1 {
			t.Errorf("%s answered %d method calls", dv.id, n)
		}
	}

	done := make(chan struct{})
	go func() { flood.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("PATCH /twins/stuck hangs: the hub waits on the stuck device's socket")
	}
	select {
	case err := <-floodErr:
		t.Fatal(err)
	default:
	}
	// The stuck device was disconnected for not reading, as the hub does.
	checkFor(t, 60*time.Second, func() error {
		var d struct{ ConnectionState string }
		r := h.Do(t, http.MethodGet, "/devices/stuck", nil)
		r.JSON(t, &d)
		if d.ConnectionState != "Disconnected" {
			return fmt.Errorf("stuck device is %s", d.ConnectionState)
		}
		return nil
	})
	// The C2D message it never acknowledged went back to its queue: it gets
	// it once it reads again.
	c := mustDial(t, h, stuck, connOpts{clean: true})
	c.subscribe(t, "devices/stuck/messages/devicebound/#")
	if m := c.waitFor(t, "devices/stuck/messages/devicebound/"); string(m.Payload()) != "to the stuck one" {
		t.Errorf("stuck device got C2D %q", m.Payload())
	}
}
