package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// Devices over AMQP with go-amqp as a raw client: device put-tokens,
// confinement to the device's own nodes, telemetry, C2D settlement and
// redelivery, methods and twins. The SDKs are exercised in e2e/sdk/.

// deviceSession connects and puts d's device token on $cbs.
func deviceSession(t *testing.T, h *hubtest.Hub, d *hubtest.Device) (*goamqp.Conn, *goamqp.Session) {
	t.Helper()
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s := session(t, c)
	if code, desc := putToken(t, s, d.Token(t, h, time.Hour)); code != 200 {
		t.Fatalf("device put-token: %d %s", code, desc)
	}
	return c, s
}

func TestAMQPDevice_TelemetryIsStoredWithItsProperties(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	_, s := deviceSession(t, h, d)
	snd, err := s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil)
	if err != nil {
		t.Fatalf("attach events: %v", err)
	}
	m := goamqp.NewMessage([]byte(`{"t":21}`))
	m.Properties = &goamqp.MessageProperties{MessageID: "m1", CorrelationID: "c1", ContentType: ptr("application/json"), ContentEncoding: ptr("utf-8")}
	m.ApplicationProperties = map[string]any{"alert": "high", "iothub-outputname": "out1"}
	m.Annotations = goamqp.Annotations{"dt-subject": "thermo", "iothub-connection-device-id": "forged"}
	if err := snd.Send(ctxT(t), m, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	// A batch (message format 0x80013700), as C# and Java send SendEventBatch.
	batch := &goamqp.Message{Format: 0x80013700}
	for _, body := range []string{"b1", "b2"} {
		enc, err := goamqp.NewMessage([]byte(body)).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		batch.Data = append(batch.Data, enc)
	}
	if err := snd.Send(ctxT(t), batch, nil); err != nil {
		t.Fatalf("send a batch: %v", err)
	}
	// Settled means stored: the list shows them at once.
	got := listMessages(t, h, "deviceId=dev1")
	if len(got) != 3 {
		t.Fatalf("%d messages stored, want 3: %+v", len(got), got)
	}
	first := got[0]
	if first.Body != `{"t":21}` || first.Transport != "amqp" || first.Properties["alert"] != "high" {
		t.Errorf("message %+v", first)
	}
	for k, want := range map[string]string{"message-id": "m1", "correlation-id": "c1", "content-type": "application/json",
		"iothub-outputname": "out1", "dt-subject": "thermo", "iothub-connection-device-id": "dev1", "iothub-connection-auth-method": "sas"} {
		if v := first.SystemProperties[k]; !strings.Contains(v, want) {
			t.Errorf("system property %s = %q, want %q (all: %v)", k, v, want, first.SystemProperties)
		}
	}
	if got[1].Body != "b1" || got[2].Body != "b2" {
		t.Errorf("batch stored as %q, %q", got[1].Body, got[2].Body)
	}
}

func TestAMQPDevice_ReachesOnlyItsOwnNodes(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	_, s := deviceSession(t, h, d)
	for _, addr := range []string{"/devices/dev2/messages/events", "/devices/dev2/twin", "/devices/dev1/modules/m1/messages/events", "/messages/devicebound"} {
		_, err := s.NewSender(ctxT(t), addr, nil)
		if c := amqpCondition(err); c != "amqp:unauthorized-access" {
			t.Errorf("attach %s with dev1's token: %v (condition %q), want amqp:unauthorized-access", addr, err, c)
		}
	}
	for _, addr := range []string{"/devices/dev2/messages/devicebound", "/devices/dev2/methods/devicebound"} {
		_, err := s.NewReceiver(ctxT(t), addr, nil)
		if c := amqpCondition(err); c != "amqp:unauthorized-access" {
			t.Errorf("attach receiver %s with dev1's token: %v, want amqp:unauthorized-access", addr, err)
		}
	}
	// Its own nodes still attach on the same connection.
	if _, err := s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil); err != nil {
		t.Errorf("own events node: %v", err)
	}
}

func TestAMQPDevice_BadTokenIsRefused(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, c)
	wrong := &hubtest.Device{ID: "dev1", PrimaryKey: "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk="}
	code, desc := putToken(t, s, wrong.Token(t, h, time.Hour))
	if code != 401 || !strings.Contains(desc, "signature") {
		t.Errorf("put-token with a wrong key: %d %q, want 401", code, desc)
	}
	_, err = s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil)
	if cond := amqpCondition(err); cond != "amqp:unauthorized-access" {
		t.Errorf("attach after a refused token: %v, want amqp:unauthorized-access", err)
	}
	expired := d.Token(t, h, -time.Minute)
	if code, _ := putToken(t, s, expired); code != 401 {
		t.Errorf("expired token: %d, want 401", code)
	}
	// A token of the device policy, scoped to the device, works too; a
	// service policy's token does not open device nodes.
	for _, p := range h.Policies() {
		if p.Name != "device" {
			continue
		}
		tok, err := sasauth.Sign(h.Hostname()+"/devices/dev1", p.PrimaryKey, p.Name, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if code, desc := putToken(t, s, tok); code != 200 {
			t.Fatalf("device policy token: %d %s", code, desc)
		}
	}
	if _, err := s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil); err != nil {
		t.Errorf("attach with the device policy's token: %v", err)
	}
	_, s2 := func() (*goamqp.Conn, *goamqp.Session) {
		c, err := dialAMQP(t, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, session(t, c)
	}()
	if code, _ := putToken(t, s2, serviceToken(t, h, "service", time.Hour)); code != 200 {
		t.Fatalf("service token: %d", code)
	}
	if _, err := s2.NewSender(ctxT(t), "/devices/dev1/messages/events", nil); amqpCondition(err) != "amqp:unauthorized-access" {
		t.Errorf("device node with a service token: %v, want amqp:unauthorized-access", err)
	}
}

// c2dFromREST queues a C2D message through the service's REST send.
func c2dFromREST(t *testing.T, h *hubtest.Hub, deviceID, messageID, body string) {
	t.Helper()
	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(ctxT(t), c2dMessage(deviceID, messageID, []byte(body), map[string]any{"iothub-ack": "full", "k": "v"}), nil); err != nil {
		t.Fatalf("send C2D: %v", err)
	}
}

func feedbackStatuses(t *testing.T, h *hubtest.Hub) string {
	var recs []struct{ OriginalMessageID, StatusCode string }
	h.Do(t, http.MethodGet, "/_emulator/feedback", nil).JSON(t, &recs)
	var out []string
	for _, r := range recs {
		out = append(out, r.OriginalMessageID+"="+r.StatusCode)
	}
	return strings.Join(out, ",")
}

func TestAMQPDevice_C2DOutcomesAndRedeliveryAfterADrop(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c2dFromREST(t, h, "dev1", "a", "first")

	c, s := deviceSession(t, h, d)
	rcv, err := s.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", &goamqp.ReceiverOptions{SettlementMode: goamqp.ReceiverSettleModeFirst.Ptr()})
	if err != nil {
		t.Fatalf("attach C2D: %v", err)
	}
	m, err := rcv.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if string(m.GetData()) != "first" || m.Properties.MessageID != "a" || m.ApplicationProperties["k"] != "v" ||
		m.Properties.To == nil || *m.Properties.To != "/devices/dev1/messages/devicebound" {
		t.Errorf("C2D message %+v %+v", m.Properties, m.ApplicationProperties)
	}
	// Dropped without a settlement: the message comes again, counted.
	_ = c.Close()
	_, s = deviceSession(t, h, d)
	rcv, err = s.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", nil)
	if err != nil {
		t.Fatalf("attach C2D again: %v", err)
	}
	m, err = rcv.Receive(ctxT(t), nil)
	if err != nil || m.Properties.MessageID != "a" {
		t.Fatalf("redelivery: %v %+v", err, m)
	}
	if n := m.Annotations["iothub-deliverycount"]; fmt.Sprint(n) != "1" {
		t.Errorf("delivery count %v, want 1", n)
	}
	// Released: delivered again; then accepted: Success feedback.
	if err := rcv.ReleaseMessage(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	m, err = rcv.Receive(ctxT(t), nil)
	if err != nil || m.Properties.MessageID != "a" {
		t.Fatalf("after release: %v", err)
	}
	if err := rcv.AcceptMessage(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	c2dFromREST(t, h, "dev1", "b", "second")
	m, err = rcv.Receive(ctxT(t), nil)
	if err != nil || m.Properties.MessageID != "b" {
		t.Fatalf("second: %v", err)
	}
	if err := rcv.RejectMessage(ctxT(t), m, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if got := feedbackStatuses(t, h); got != "a=Success,b=Rejected" {
			return fmt.Errorf("feedback %q", got)
		}
		return nil
	})
	var pending []any
	h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &pending)
	if len(pending) != 0 {
		t.Errorf("pending after complete and reject: %v", pending)
	}
}

func TestAMQPDevice_MethodsTwinsAndConnectionState(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c, s := deviceSession(t, h, d)
	props := map[string]any{"com.microsoft:channel-correlation-id": "methods:x", "com.microsoft:api-version": "2021-04-12"}
	req, err := s.NewReceiver(ctxT(t), "/devices/dev1/methods/devicebound", &goamqp.ReceiverOptions{Properties: props})
	if err != nil {
		t.Fatalf("attach method requests: %v", err)
	}
	res, err := s.NewSender(ctxT(t), "/devices/dev1/methods/devicebound", &goamqp.SenderOptions{Properties: props})
	if err != nil {
		t.Fatalf("attach method responses: %v", err)
	}
	var dev struct{ ConnectionState string }
	h.Do(t, http.MethodGet, "/devices/dev1", nil).JSON(t, &dev)
	if dev.ConnectionState != "Connected" {
		t.Errorf("connectionState %q, want Connected", dev.ConnectionState)
	}

	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		r := h.Do(t, http.MethodPost, "/twins/dev1/methods", map[string]any{"methodName": "reboot", "payload": map[string]any{"in": 1}, "responseTimeoutInSeconds": 10})
		done <- result{r.StatusCode, string(r.Body)}
	}()
	m, err := req.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatalf("method request: %v", err)
	}
	if m.ApplicationProperties["IoThub-methodname"] != "reboot" || string(m.GetData()) != `{"in":1}` {
		t.Errorf("method request %+v %s", m.ApplicationProperties, m.GetData())
	}
	if _, ok := m.Properties.CorrelationID.(goamqp.UUID); !ok {
		t.Errorf("correlation-id %T, want a UUID", m.Properties.CorrelationID)
	}
	_ = req.AcceptMessage(ctxT(t), m)
	answer := goamqp.NewMessage([]byte(`{"ok":true}`))
	// Node answers with the string form of the UUID.
	answer.Properties = &goamqp.MessageProperties{CorrelationID: fmt.Sprint(m.Properties.CorrelationID)}
	answer.ApplicationProperties = map[string]any{"IoThub-status": int32(201)}
	if err := res.Send(ctxT(t), answer, nil); err != nil {
		t.Fatalf("method response: %v", err)
	}
	if r := <-done; r.status != 200 || !strings.Contains(r.body, `"status":201`) || !strings.Contains(r.body, `"ok":true`) {
		t.Errorf("invoke: %d %s", r.status, r.body)
	}

	// Twins.
	tprops := map[string]any{"com.microsoft:channel-correlation-id": "twin:x", "com.microsoft:api-version": "2021-04-12"}
	tsnd, err := s.NewSender(ctxT(t), "/devices/dev1/twin", &goamqp.SenderOptions{Properties: tprops})
	if err != nil {
		t.Fatal(err)
	}
	trcv, err := s.NewReceiver(ctxT(t), "/devices/dev1/twin", &goamqp.ReceiverOptions{Properties: tprops})
	if err != nil {
		t.Fatal(err)
	}
	twinReq := func(op, resource, corr, body string) *goamqp.Message {
		t.Helper()
		m := goamqp.NewMessage([]byte(body))
		m.Annotations = goamqp.Annotations{"operation": op}
		if resource != "" {
			m.Annotations["resource"] = resource
		}
		m.Properties = &goamqp.MessageProperties{CorrelationID: corr}
		if err := tsnd.Send(ctxT(t), m, nil); err != nil {
			t.Fatalf("twin %s: %v", op, err)
		}
		r, err := trcv.Receive(ctxT(t), nil)
		if err != nil {
			t.Fatalf("twin %s reply: %v", op, err)
		}
		_ = trcv.AcceptMessage(ctxT(t), r)
		if r.Properties == nil || r.Properties.CorrelationID != corr {
			t.Errorf("twin %s reply correlation %+v", op, r.Properties)
		}
		return r
	}
	r := twinReq("PATCH", "/properties/reported", "c1", `{"fw":"1.2"}`)
	if fmt.Sprint(r.Annotations["status"]) != "204" || fmt.Sprint(r.Annotations["version"]) != "2" {
		t.Errorf("PATCH reported: %v", r.Annotations)
	}
	r = twinReq("GET", "", "c2", " ")
	var tw struct {
		Desired, Reported map[string]any
	}
	if err := json.Unmarshal(r.GetData(), &tw); err != nil || fmt.Sprint(r.Annotations["status"]) != "200" || tw.Reported["fw"] != "1.2" {
		t.Errorf("GET: %v %s %v", r.Annotations, r.GetData(), err)
	}
	r = twinReq("PATCH", "/properties/reported", "c3", `not json`)
	if fmt.Sprint(r.Annotations["status"]) != "400" || !strings.Contains(string(r.GetData()), "errorCode") {
		t.Errorf("bad PATCH: %v %s", r.Annotations, r.GetData())
	}
	r = twinReq("PUT", "/notifications/twin/properties/desired", "c4", " ")
	if fmt.Sprint(r.Annotations["status"]) != "200" {
		t.Errorf("PUT notifications: %v", r.Annotations)
	}
	if pr := h.Do(t, http.MethodPatch, "/twins/dev1", map[string]any{"properties": map[string]any{"desired": map[string]any{"mode": "eco"}}}); pr.StatusCode != 200 {
		t.Fatalf("service patch: %d %s", pr.StatusCode, pr.Body)
	}
	n, err := trcv.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatalf("desired notification: %v", err)
	}
	if n.Properties != nil && n.Properties.CorrelationID != nil {
		t.Errorf("a notification has no correlation-id: %+v", n.Properties)
	}
	if !strings.Contains(string(n.GetData()), `"mode":"eco"`) || fmt.Sprint(n.Annotations["version"]) != "2" {
		t.Errorf("notification %s %v", n.GetData(), n.Annotations)
	}

	_ = c.Close()
	checkFor(t, 10*time.Second, func() error {
		h.Do(t, http.MethodGet, "/devices/dev1", nil).JSON(t, &dev)
		if dev.ConnectionState != "Disconnected" {
			return fmt.Errorf("connectionState %q after close", dev.ConnectionState)
		}
		return nil
	})
	r2 := h.Do(t, http.MethodPost, "/twins/dev1/methods", map[string]any{"methodName": "reboot", "responseTimeoutInSeconds": 5})
	if r2.StatusCode != 404 || !strings.Contains(string(r2.Body), "404103") {
		t.Errorf("method to a disconnected device: %d %s", r2.StatusCode, r2.Body)
	}
}

func TestAMQPDevice_TokenExpiryClosesDeviceLinks(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, c)
	if code, desc := putToken(t, s, d.Token(t, h, 2*time.Second)); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	rcv, err := s.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = rcv.Receive(ctx, nil)
	if cond := amqpCondition(err); cond != "amqp:unauthorized-access" {
		t.Errorf("after expiry: %v, want amqp:unauthorized-access", err)
	}
}
