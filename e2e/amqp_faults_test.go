package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Faults and throttling over AMQP, with go-amqp as a raw device: each fault
// of the SDK suites ends what it names (the connection, the session, one
// link) with the condition the SDKs retry, refused reconnects are refused at
// link attach, and the device recovers once the fault is over.

// amqpDevice is a device connected over AMQP with every link the SDKs
// attach, the $cbs links kept open as the SDKs keep them.
type amqpDevice struct {
	conn                *goamqp.Conn
	sess                *goamqp.Session
	cbsReq              *goamqp.Sender
	cbsResp             *goamqp.Receiver
	d2c                 *goamqp.Sender
	c2d                 *goamqp.Receiver
	methodReq, twinResp *goamqp.Receiver
	methodResp, twinReq *goamqp.Sender
}

func connectAMQPDevice(t *testing.T, h *hubtest.Hub, d *hubtest.Device) *amqpDevice {
	t.Helper()
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ad := &amqpDevice{conn: c, sess: session(t, c)}
	ctx := ctxT(t)
	if ad.cbsReq, err = ad.sess.NewSender(ctx, "$cbs", nil); err != nil {
		t.Fatalf("attach $cbs sender: %v", err)
	}
	if ad.cbsResp, err = ad.sess.NewReceiver(ctx, "$cbs", &goamqp.ReceiverOptions{TargetAddress: "cbs"}); err != nil {
		t.Fatalf("attach $cbs receiver: %v", err)
	}
	put := goamqp.NewMessage(nil)
	put.Value = d.Token(t, h, time.Hour)
	put.Properties = &goamqp.MessageProperties{MessageID: "put-1", ReplyTo: ptr("cbs")}
	put.ApplicationProperties = map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "localhost/devices/" + d.ID}
	if err := ad.cbsReq.Send(ctx, put, nil); err != nil {
		t.Fatalf("put-token: %v", err)
	}
	reply, err := ad.cbsResp.Receive(ctx, nil)
	if err != nil || reply.ApplicationProperties["status-code"] != int32(200) {
		t.Fatalf("put-token reply: %v %+v", err, reply)
	}
	_ = ad.cbsResp.AcceptMessage(ctx, reply)
	base := "/devices/" + d.ID
	mprops := map[string]any{"com.microsoft:channel-correlation-id": "methods:x", "com.microsoft:api-version": "2021-04-12"}
	tprops := map[string]any{"com.microsoft:channel-correlation-id": "twin:x", "com.microsoft:api-version": "2021-04-12"}
	steps := []struct {
		name string
		do   func() error
	}{
		{"events", func() (err error) { ad.d2c, err = ad.sess.NewSender(ctx, base+"/messages/events", nil); return }},
		{"devicebound", func() (err error) { ad.c2d, err = ad.sess.NewReceiver(ctx, base+"/messages/devicebound", nil); return }},
		{"method requests", func() (err error) {
			ad.methodReq, err = ad.sess.NewReceiver(ctx, base+"/methods/devicebound", &goamqp.ReceiverOptions{Properties: mprops})
			return
		}},
		{"method responses", func() (err error) {
			ad.methodResp, err = ad.sess.NewSender(ctx, base+"/methods/devicebound", &goamqp.SenderOptions{Properties: mprops})
			return
		}},
		{"twin requests", func() (err error) {
			ad.twinReq, err = ad.sess.NewSender(ctx, base+"/twin", &goamqp.SenderOptions{Properties: tprops})
			return
		}},
		{"twin responses", func() (err error) {
			ad.twinResp, err = ad.sess.NewReceiver(ctx, base+"/twin", &goamqp.ReceiverOptions{Properties: tprops})
			return
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("attach %s: %v", st.name, err)
		}
	}
	return ad
}

// faultMessage is a telemetry message asking for a fault, as the SDK suites
// send it.
func faultMessage(op string, delay, duration int) *goamqp.Message {
	m := goamqp.NewMessage(nil)
	m.ApplicationProperties = map[string]any{"AzIoTHub_FaultOperationType": op, "AzIoTHub_FaultOperationCloseReason": "boom",
		"AzIoTHub_FaultOperationDelayInSecs": fmt.Sprint(delay)}
	if duration > 0 {
		m.ApplicationProperties["AzIoTHub_FaultOperationDurationInSecs"] = fmt.Sprint(duration)
	}
	return m
}

// remoteErr is the error the hub sent with a detach, end or close, nil when
// it sent none.
func remoteErr(err error) *goamqp.Error {
	var le *goamqp.LinkError
	var se *goamqp.SessionError
	var ce *goamqp.ConnError
	switch {
	case errors.As(err, &le):
		return le.RemoteErr
	case errors.As(err, &se):
		return se.RemoteErr
	case errors.As(err, &ce):
		return ce.RemoteErr
	}
	return nil
}

// sendUntilFails sends on snd until the hub's detach (or end, or close)
// reaches it; transfers on a link the hub has detached are dropped, so this
// never stores a probe after the fault.
func sendUntilFails(t *testing.T, snd *goamqp.Sender) error {
	t.Helper()
	ctx := ctxT(t)
	for {
		err := snd.Send(ctx, goamqp.NewMessage([]byte("probe")), nil)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			t.Fatal("the link was never detached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func receiveFails(t *testing.T, rcv *goamqp.Receiver) error {
	t.Helper()
	m, err := rcv.Receive(ctxT(t), nil)
	if err == nil {
		t.Fatalf("received %+v, want the link to end", m)
	}
	return err
}

func TestAMQPFaults_EachOperationEndsWhatItNames(t *testing.T) {
	for _, tc := range []struct {
		op string
		// broken is the link whose failure shows the fault; other links of
		// the device must stay usable when only a link is killed.
		broken   func(t *testing.T, ad *amqpDevice) error
		cond     goamqp.ErrCond // "" : no error (a clean close, or a lost connection)
		onlyLink bool
	}{
		{"KillAmqpConnection", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.c2d) }, "amqp:internal-error", false},
		{"KillAmqpSession", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.c2d) }, "amqp:internal-error", false},
		{"ShutDownAmqp", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.c2d) }, "", false},
		{"KillTcp", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.c2d) }, "", false},
		{"KillAmqpCBSLinkReq", func(t *testing.T, ad *amqpDevice) error { return sendUntilFails(t, ad.cbsReq) }, "amqp:link:detach-forced", true},
		{"KillAmqpCBSLinkResp", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.cbsResp) }, "amqp:link:detach-forced", true},
		{"KillAmqpD2CLink", func(t *testing.T, ad *amqpDevice) error { return sendUntilFails(t, ad.d2c) }, "amqp:link:detach-forced", true},
		{"KillAmqpC2DLink", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.c2d) }, "amqp:link:detach-forced", true},
		{"KillAmqpTwinLinkReq", func(t *testing.T, ad *amqpDevice) error { return sendUntilFails(t, ad.twinReq) }, "amqp:link:detach-forced", true},
		{"KillAmqpTwinLinkResp", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.twinResp) }, "amqp:link:detach-forced", true},
		{"KillAmqpMethodReqLink", func(t *testing.T, ad *amqpDevice) error { return receiveFails(t, ad.methodReq) }, "amqp:link:detach-forced", true},
		{"KillAmqpMethodRespLink", func(t *testing.T, ad *amqpDevice) error { return sendUntilFails(t, ad.methodResp) }, "amqp:link:detach-forced", true},
	} {
		t.Run(tc.op, func(t *testing.T) {
			t.Parallel()
			h := hubtest.Start(t, hubtest.WithClock(clockStart))
			d := h.CreateDevice(t, "dev1")
			ad := connectAMQPDevice(t, h, d)
			if err := ad.d2c.Send(ctxT(t), faultMessage(tc.op, 1, 0), nil); err != nil {
				t.Fatalf("send the fault message: %v", err)
			}
			// Nothing happens before the delay: a C2D message still arrives.
			c2dFromREST(t, h, "dev1", "before", "before the fault")
			m, err := ad.c2d.Receive(ctxT(t), nil)
			if err != nil || string(m.GetData()) != "before the fault" {
				t.Fatalf("C2D before the delay: %v", err)
			}
			_ = ad.c2d.AcceptMessage(ctxT(t), m)

			h.Advance(t, time.Second)
			err = tc.broken(t, ad)
			re := remoteErr(err)
			switch {
			case tc.cond == "" && re != nil:
				t.Errorf("%s ended with %v, want no error", tc.op, re)
			case tc.cond != "" && (re == nil || re.Condition != tc.cond || re.Description != "boom"):
				t.Errorf("%s ended with %v (%T), want %s with the close reason", tc.op, err, err, tc.cond)
			}
			if tc.op == "KillTcp" || tc.op == "ShutDownAmqp" {
				var ce *goamqp.ConnError
				if !errors.As(err, &ce) {
					t.Errorf("%s: %v, want the connection to end", tc.op, err)
				}
				// A clean close says so; a lost TCP connection is an I/O error.
				if clean := err.Error() == "amqp: connection closed"; clean != (tc.op == "ShutDownAmqp") {
					t.Errorf("%s: connection ended with %q", tc.op, err)
				}
			}
			if tc.onlyLink {
				// The rest of the device's links work on: a telemetry message
				// (or, when the D2C link is the one killed, a twin read).
				if tc.op != "KillAmqpD2CLink" {
					if err := ad.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("after")), nil); err != nil {
						t.Errorf("telemetry after %s: %v", tc.op, err)
					}
				} else {
					c2dFromREST(t, h, "dev1", "after", "after the fault")
					if _, err := ad.c2d.Receive(ctxT(t), nil); err != nil {
						t.Errorf("C2D after %s: %v", tc.op, err)
					}
				}
			}
			// Recovery: a new connection works at once (no duration asked).
			ad2 := connectAMQPDevice(t, h, d)
			if err := ad2.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("reconnected")), nil); err != nil {
				t.Fatalf("telemetry after reconnecting: %v", err)
			}
			if f := listFaults(t, h); len(f) != 1 || f[0].Hits != 1 || f[0].Source != "message" {
				t.Errorf("faults %+v, want the message's fault with one hit", f)
			}
		})
	}
}

func TestAMQPFaults_ReconnectsRefusedForTheDuration(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	ad := connectAMQPDevice(t, h, d)
	if err := ad.d2c.Send(ctxT(t), faultMessage("KillAmqpConnection", 1, 5), nil); err != nil {
		t.Fatalf("send the fault message: %v", err)
	}
	h.Advance(t, time.Second)
	if err := receiveFails(t, ad.c2d); remoteErr(err) == nil {
		t.Fatalf("connection ended with %v, want the hub's error", err)
	}
	// The SDKs' reconnect: the put-token succeeds (a refused put-token is an
	// authentication failure to them), the links are refused with a
	// condition they retry.
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, c)
	if code, desc := putToken(t, s, d.Token(t, h, time.Hour)); code != 200 {
		t.Fatalf("put-token during the refusal: %d %s", code, desc)
	}
	_, err = s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil)
	if c := amqpCondition(err); c != "amqp:link:detach-forced" || !strings.Contains(err.Error(), "ServiceUnavailable") {
		t.Fatalf("attach during the refusal: %v, want amqp:link:detach-forced", err)
	}
	h.Advance(t, 5*time.Second)
	snd, err := s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil)
	if err != nil {
		t.Fatalf("attach after the duration: %v", err)
	}
	if err := snd.Send(ctxT(t), goamqp.NewMessage([]byte("back")), nil); err != nil {
		t.Fatalf("send after the duration: %v", err)
	}
	if got := listMessages(t, h, "deviceId=dev1"); len(got) != 2 || got[1].Body != "back" {
		t.Errorf("stored %+v, want the fault message and the one after", got)
	}
}

func TestAMQPFaults_LinkReattachRefusedForTheDuration(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	ad := connectAMQPDevice(t, h, d)
	if err := ad.d2c.Send(ctxT(t), faultMessage("KillAmqpC2DLink", 1, 3), nil); err != nil {
		t.Fatalf("send the fault message: %v", err)
	}
	h.Advance(t, time.Second)
	if c := remoteErr(receiveFails(t, ad.c2d)); c == nil || c.Condition != "amqp:link:detach-forced" {
		t.Fatalf("C2D link ended with %v", c)
	}
	if _, err := ad.sess.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", nil); amqpCondition(err) != "amqp:link:detach-forced" {
		t.Fatalf("re-attach during the refusal: %v", err)
	}
	h.Advance(t, 3*time.Second)
	rcv, err := ad.sess.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", nil)
	if err != nil {
		t.Fatalf("re-attach after the duration: %v", err)
	}
	c2dFromREST(t, h, "dev1", "m1", "after the fault")
	if m, err := rcv.Receive(ctxT(t), nil); err != nil || string(m.GetData()) != "after the fault" {
		t.Fatalf("C2D after the fault: %v", err)
	}
}

func TestAMQPFaults_APIDropsEveryConnectionOfTheDevice(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	ad := connectAMQPDevice(t, h, d)
	mq := mustDial(t, h, d, connOpts{tls: true}) // the same identity over MQTT too
	d3 := h.CreateDevice(t, "dev3")
	other := connectAMQPDevice(t, h, d3)
	f := createFault(t, h, map[string]any{"action": "dropConnection", "deviceId": "dev1", "operation": "KillAmqpSession", "closeReason": "maintenance"})
	if re := remoteErr(receiveFails(t, ad.c2d)); re == nil || re.Condition != "amqp:internal-error" || re.Description != "maintenance" {
		t.Errorf("AMQP session ended with %v", re)
	}
	mq.waitLost(t) // MQTT has no sessions of its own: the connection closes
	if err := other.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("x")), nil); err != nil {
		t.Errorf("another device's connection was hit: %v", err)
	}
	waitHits(t, h, f.ID, 1)
	r := h.Do(t, http.MethodPost, "/_emulator/faults", map[string]any{"action": "dropConnection", "deviceId": "dev1", "operation": "KillAmqpEverything"})
	checkHubError(t, r, 400, "ArgumentInvalid")

	// refuseConnect leaves live connections alone and refuses new ones,
	// over AMQP at the first link, until it is cleared.
	refuse := createFault(t, h, map[string]any{"action": "refuseConnect", "deviceId": "dev3", "durationInSeconds": 60})
	if err := other.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("still")), nil); err != nil {
		t.Errorf("a live connection under refuseConnect: %v", err)
	}
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, c)
	if code, _ := putToken(t, s, d3.Token(t, h, time.Hour)); code != 200 {
		t.Fatalf("put-token under refuseConnect: %d", code)
	}
	if _, err := s.NewSender(ctxT(t), "/devices/dev3/messages/events", nil); amqpCondition(err) != "amqp:link:detach-forced" {
		t.Errorf("a new connection under refuseConnect: %v", err)
	}
	waitHits(t, h, refuse.ID, 1)
	h.Do(t, http.MethodDelete, "/_emulator/faults/"+refuse.ID, nil)
	if _, err := s.NewSender(ctxT(t), "/devices/dev3/messages/events", nil); err != nil {
		t.Errorf("after the fault was cleared: %v", err)
	}
}

func TestAMQPFaults_InvokeThrottlingAnswersTheDevicesOperations(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	ad := connectAMQPDevice(t, h, d)
	m := faultMessage("InvokeThrottling", 0, 10)
	if err := ad.d2c.Send(ctxT(t), m, nil); err != nil {
		t.Fatalf("send the fault message: %v", err)
	}
	err := ad.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("throttled")), nil)
	if c := amqpCondition(err); c != "com.microsoft:device-container-throttled" {
		t.Errorf("telemetry under InvokeThrottling: %v, want com.microsoft:device-container-throttled", err)
	}
	// A twin read answers 429 with the hub's error body.
	req := goamqp.NewMessage(nil)
	req.Annotations = goamqp.Annotations{"operation": "GET"}
	req.Properties = &goamqp.MessageProperties{CorrelationID: "g1"}
	if err := ad.twinReq.Send(ctxT(t), req, nil); err != nil {
		t.Fatal(err)
	}
	reply, err := ad.twinResp.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Annotations["status"] != int32(429) || !strings.Contains(string(reply.GetData()), "429001") {
		t.Errorf("twin GET under InvokeThrottling: %v %s", reply.Annotations, reply.GetData())
	}
	h.Advance(t, 10*time.Second)
	if err := ad.d2c.Send(ctxT(t), goamqp.NewMessage([]byte("after")), nil); err != nil {
		t.Errorf("telemetry after the duration: %v", err)
	}
}

func TestAMQPThrottling_S1ShapesTelemetryAndCountsC2DSends(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	ad := connectAMQPDevice(t, h, d)
	// Device-to-cloud: 100 a second; the 101st is held until the clock
	// moves, as over MQTT and HTTPS.
	for i := 0; i < 100; i++ {
		if err := ad.d2c.Send(ctxT(t), goamqp.NewMessage([]byte(fmt.Sprint(i))), nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	held := make(chan error, 1)
	go func() { held <- ad.d2c.Send(context.Background(), goamqp.NewMessage([]byte("101st")), nil) }()
	select {
	case err := <-held:
		t.Fatalf("the 101st send of the second was settled at once (%v); S1 shapes past 100/s", err)
	case <-time.After(200 * time.Millisecond):
	}
	h.Advance(t, 10*time.Millisecond)
	if err := <-held; err != nil {
		t.Fatalf("the shaped send: %v", err)
	}

	// Cloud-to-device sends: 100 a minute per unit, then 429001 as
	// device-container-throttled (the service SDKs' ThrottlingError).
	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := snd.Send(ctxT(t), c2dMessage("dev1", fmt.Sprint(i), []byte("x"), nil), nil); err != nil {
			t.Fatalf("C2D send %d: %v", i, err)
		}
		m, err := ad.c2d.Receive(ctxT(t), nil) // keep the device's queue (50) from filling
		if err != nil {
			t.Fatal(err)
		}
		_ = ad.c2d.AcceptMessage(ctxT(t), m)
	}
	err = snd.Send(ctxT(t), c2dMessage("dev1", "101", []byte("x"), nil), nil)
	if c := amqpCondition(err); c != "com.microsoft:device-container-throttled" || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("the 101st C2D send of the minute: %v, want com.microsoft:device-container-throttled", err)
	}
	h.Advance(t, time.Second) // 100/min: one more send's worth after 0.6 s
	if err := snd.Send(ctxT(t), c2dMessage("dev1", "102", []byte("x"), nil), nil); err != nil {
		t.Fatalf("C2D send after the budget refilled: %v", err)
	}
}

func TestAMQPThrottling_S1CountsNewDeviceConnections(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	// S1 admits 100 new device connections a second: a device's first link
	// on an AMQP connection is one; its later links are not.
	attach := func() error {
		c, err := dialAMQP(t, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := session(t, c)
		if code, desc := putToken(t, s, d.Token(t, h, time.Hour)); code != 200 {
			t.Fatalf("put-token: %d %s", code, desc)
		}
		if _, err := s.NewSender(ctxT(t), "/devices/dev1/messages/events", nil); err != nil {
			return err
		}
		_, err = s.NewReceiver(ctxT(t), "/devices/dev1/messages/devicebound", nil)
		return err
	}
	for i := 0; i < 100; i++ {
		if err := attach(); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	err := attach()
	if c := amqpCondition(err); c != "amqp:link:detach-forced" || !strings.Contains(err.Error(), "new device connections") {
		t.Fatalf("the 101st connection of the second: %v, want amqp:link:detach-forced", err)
	}
	h.Advance(t, 10*time.Millisecond) // one more connection's worth at 100/s
	if err := attach(); err != nil {
		t.Fatalf("after the budget refilled: %v", err)
	}
}

func TestAMQPFaults_DelayedTwinUpdateAndMethodResponse(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	ad := connectAMQPDevice(t, h, d)

	// A reported-property update over AMQP is held for the delay.
	tf := createFault(t, h, map[string]any{"action": "delayTwinUpdate", "deviceId": "dev1", "delayInSeconds": 10})
	req := goamqp.NewMessage([]byte(`{"battery":55}`))
	req.Annotations = goamqp.Annotations{"operation": "PATCH", "resource": "/properties/reported"}
	req.Properties = &goamqp.MessageProperties{CorrelationID: "p1"}
	sent := make(chan error, 1) // the hub settles a twin request once it has answered it
	go func() { sent <- ad.twinReq.Send(context.Background(), req, nil) }()
	waitHits(t, h, tf.ID, 1)
	if tw := getTwin(t, h, "/twins/dev1"); tw.Properties.Reported["battery"] != nil {
		t.Fatalf("the held update is already applied: %v", tw.Properties.Reported)
	}
	h.Advance(t, 10*time.Second)
	reply, err := ad.twinResp.Receive(ctxT(t), nil)
	if err != nil || reply.Annotations["status"] != int32(204) {
		t.Fatalf("twin PATCH after the delay: %v %v", err, reply)
	}
	if err := <-sent; err != nil {
		t.Fatalf("twin PATCH settled with %v", err)
	}

	// A method response over AMQP is held for the delay too.
	mf := createFault(t, h, map[string]any{"action": "delayMethodResponse", "deviceId": "dev1", "delayInSeconds": 3})
	done := make(chan *hubtest.Response, 1)
	go func() {
		done <- h.Do(t, http.MethodPost, "/twins/dev1/methods", map[string]any{"methodName": "m", "payload": 1, "responseTimeoutInSeconds": 5})
	}()
	m, err := ad.methodReq.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = ad.methodReq.AcceptMessage(ctxT(t), m)
	answer := goamqp.NewMessage([]byte(`{"ok":true}`))
	answer.Properties = &goamqp.MessageProperties{CorrelationID: m.Properties.CorrelationID}
	answer.ApplicationProperties = map[string]any{"IoThub-status": int32(200)}
	if err := ad.methodResp.Send(ctxT(t), answer, nil); err != nil {
		t.Fatal(err)
	}
	waitHits(t, h, mf.ID, 1)
	select {
	case r := <-done:
		t.Fatalf("answered while held: %d %s", r.StatusCode, r.Body)
	default:
	}
	h.Advance(t, 3*time.Second)
	if r := <-done; r.StatusCode != 200 || !strings.Contains(string(r.Body), `"ok":true`) {
		t.Fatalf("held method response: %d %s", r.StatusCode, r.Body)
	}
}

// The rule is one for every transport: over MQTT the same fault answers
// the device's twin reads with the status of the hub's error.
func TestFaults_InvokeThrottlingAnswersMQTTTwinReads(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "$iothub/twin/res/#")
	c.publish(t, "devices/dev1/messages/events/AzIoTHub_FaultOperationType=InvokeThrottling&AzIoTHub_FaultOperationDurationInSecs=10", 1, "")
	c.publish(t, "$iothub/twin/GET/?$rid=1", 0, "")
	if m := c.waitFor(t, "$iothub/twin/res/"); !strings.HasPrefix(m.Topic(), "$iothub/twin/res/429/") || !strings.Contains(string(m.Payload()), "429001") {
		t.Fatalf("twin GET under InvokeThrottling: %s %s", m.Topic(), m.Payload())
	}
	h.Advance(t, 10*time.Second)
	c.publish(t, "$iothub/twin/GET/?$rid=2", 0, "")
	if m := c.waitFor(t, "$iothub/twin/res/200/"); !strings.Contains(m.Topic(), "rid=2") {
		t.Fatalf("twin GET after the duration: %s", m.Topic())
	}
}
