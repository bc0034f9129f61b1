package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
	"github.com/gorilla/websocket"

	"github.com/iothub-emulator/iothub-emulator/amqphub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// The service-side AMQP endpoint with go-amqp as a raw client: SASL, CBS,
// C2D send to MQTT devices, feedback, credit, settlement and dropped
// connections. The official SDKs are exercised in e2e/sdk/.

func amqpOpts(h *hubtest.Hub, sasl goamqp.SASLType) *goamqp.ConnOptions {
	return &goamqp.ConnOptions{TLSConfig: h.TLSConfig(), SASLType: sasl, HostName: "localhost"}
}

// dialAMQP opens an AMQPS connection with SASL ANONYMOUS (sasl nil) or the
// given mechanism.
func dialAMQP(t testing.TB, h *hubtest.Hub, sasl goamqp.SASLType) (*goamqp.Conn, error) {
	t.Helper()
	if sasl == nil {
		sasl = goamqp.SASLTypeAnonymous()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := goamqp.Dial(ctx, "amqps://"+h.AMQPSAddr(), amqpOpts(h, sasl))
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func session(t testing.TB, c *goamqp.Conn) *goamqp.Session {
	t.Helper()
	s, err := c.NewSession(ctxT(t), nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// putToken sends a put-token on $cbs as the Node SDK does and returns the
// reply's status-code and status-description.
func putToken(t testing.TB, s *goamqp.Session, token string) (int32, string) {
	t.Helper()
	ctx := ctxT(t)
	snd, err := s.NewSender(ctx, "$cbs", nil)
	if err != nil {
		t.Fatalf("attach $cbs sender: %v", err)
	}
	defer snd.Close(ctx)
	rcv, err := s.NewReceiver(ctx, "$cbs", &goamqp.ReceiverOptions{Name: "cbs-reply", TargetAddress: "cbs"})
	if err != nil {
		t.Fatalf("attach $cbs receiver: %v", err)
	}
	defer rcv.Close(ctx)
	msg := goamqp.NewMessage(nil)
	msg.Value = token
	msg.Properties = &goamqp.MessageProperties{MessageID: "put-1", ReplyTo: ptr("cbs")}
	msg.ApplicationProperties = map[string]any{"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": "localhost"}
	if err := snd.Send(ctx, msg, nil); err != nil {
		t.Fatalf("put-token: %v", err)
	}
	reply, err := rcv.Receive(ctx, nil)
	if err != nil {
		t.Fatalf("put-token reply: %v", err)
	}
	_ = rcv.AcceptMessage(ctx, reply)
	if reply.Properties == nil || reply.Properties.CorrelationID != "put-1" {
		t.Errorf("reply properties %+v, want correlation-id put-1", reply.Properties)
	}
	code, _ := reply.ApplicationProperties["status-code"].(int32)
	desc, _ := reply.ApplicationProperties["status-description"].(string)
	return code, desc
}

func ptr[T any](v T) *T { return &v }

func serviceToken(t testing.TB, h *hubtest.Hub, policy string, ttl time.Duration) string {
	t.Helper()
	for _, p := range h.Policies() {
		if p.Name == policy {
			tok, err := sasauth.Sign(h.Hostname(), p.PrimaryKey, p.Name, h.Now().Add(ttl))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	t.Fatalf("no policy %s", policy)
	return ""
}

// authorizedSession is a session on a connection that put an iothubowner
// token on $cbs.
func authorizedSession(t testing.TB, h *hubtest.Hub) *goamqp.Session {
	t.Helper()
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	s := session(t, c)
	if code, desc := putToken(t, s, serviceToken(t, h, "iothubowner", time.Hour)); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	return s
}

func c2dMessage(deviceID, messageID string, body []byte, props map[string]any) *goamqp.Message {
	m := goamqp.NewMessage(body)
	m.Properties = &goamqp.MessageProperties{To: ptr("/devices/" + deviceID + "/messages/devicebound"), MessageID: messageID}
	m.ApplicationProperties = props
	return m
}

func amqpCondition(err error) string {
	var ae *goamqp.Error
	if errors.As(err, &ae) {
		return string(ae.Condition)
	}
	var le *goamqp.LinkError
	if errors.As(err, &le) && le.RemoteErr != nil {
		return string(le.RemoteErr.Condition)
	}
	return ""
}

func TestAMQP_C2DSendReachesMQTTDeviceAndFeedbackFollows(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	dev := mustDial(t, h, d, connOpts{tls: true})
	dev.subscribe(t, "devices/dev1/messages/devicebound/#")

	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatalf("attach /messages/devicebound: %v", err)
	}
	m := c2dMessage("dev1", "mid1", []byte("hello"), map[string]any{"iothub-ack": "full", "prop 1": "val/1&x"})
	m.Properties.CorrelationID = "cid1"
	m.Properties.ContentType = ptr("application/json")
	m.Properties.ContentEncoding = ptr("utf-8")
	m.Properties.UserID = []byte("backend")
	if err := snd.Send(ctxT(t), m, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := dev.waitFor(t, "devices/dev1/messages/devicebound/")
	for _, part := range []string{"%24.mid=mid1", "%24.cid=cid1", "%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound", "%24.ct=application%2Fjson",
		"%24.ce=utf-8", "%24.uid=backend", "iothub-ack=full", "prop%201=val%2F1%26x"} {
		if !strings.Contains(got.Topic(), part) {
			t.Errorf("topic %s lacks %s", got.Topic(), part)
		}
	}
	if string(got.Payload()) != "hello" {
		t.Errorf("payload %q", got.Payload())
	}

	// paho's PUBACK completed it; the feedback receiver gets the batch.
	rcv, err := s.NewReceiver(ctxT(t), "/messages/serviceBound/feedback", nil)
	if err != nil {
		t.Fatalf("attach feedback: %v", err)
	}
	fb, err := rcv.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatalf("receive feedback: %v", err)
	}
	if ct := fb.Properties.ContentType; ct == nil || *ct != "application/vnd.microsoft.iothub.feedback.json" || string(fb.Properties.UserID) != "localhost" {
		t.Errorf("feedback properties %+v", fb.Properties)
	}
	var recs []struct {
		OriginalMessageID, StatusCode, DeviceID, DeviceGenerationID, Description string
		EnqueuedTimeUTC                                                          time.Time
	}
	if err := json.Unmarshal(fb.GetData(), &recs); err != nil || len(recs) != 1 {
		t.Fatalf("feedback body %s: %v", fb.GetData(), err)
	}
	if r := recs[0]; r.OriginalMessageID != "mid1" || r.StatusCode != "Success" || r.DeviceID != "dev1" || r.DeviceGenerationID == "" || r.EnqueuedTimeUTC.IsZero() {
		t.Errorf("feedback record %+v", r)
	}
	if err := rcv.AcceptMessage(ctxT(t), fb); err != nil {
		t.Fatal(err)
	}
}

func TestAMQP_C2DRejectionsCarryTheHubsConditions(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "full")
	h.CreateDevice(t, "dev1")
	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "amqps://localhost/messages/devicebound", nil) // Python's full URI
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	for i := range 50 {
		if err := snd.Send(ctxT(t), c2dMessage("full", fmt.Sprint("m", i), []byte("x"), nil), nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	bad := goamqp.NewMessage([]byte("x"))
	bad.Properties = &goamqp.MessageProperties{To: ptr("/devices/dev1/modules/m1/messages/devicebound")}
	noTo := goamqp.NewMessage([]byte("x"))
	for _, tc := range []struct {
		name string
		msg  *goamqp.Message
		cond string
	}{
		{"unknown device", c2dMessage("nobody", "a", []byte("x"), nil), "amqp:not-found"},
		{"51st pending", c2dMessage("full", "b", []byte("x"), nil), "amqp:resource-limit-exceeded"},
		{"over 64 KB", c2dMessage("dev1", "c", make([]byte, 64*1024+1), nil), "amqp:link:message-size-exceeded"},
		{"bad ack", c2dMessage("dev1", "d", []byte("x"), map[string]any{"iothub-ack": "sometimes"}), "com.microsoft:argument-error"},
		{"module address", bad, "com.microsoft:argument-error"},
		{"no to", noTo, "com.microsoft:argument-error"},
	} {
		err := snd.Send(ctxT(t), tc.msg, nil)
		if got := amqpCondition(err); got != tc.cond {
			t.Errorf("%s: %v (condition %q), want %s", tc.name, err, got, tc.cond)
		}
	}
	// The link survives rejections.
	if err := snd.Send(ctxT(t), c2dMessage("dev1", "ok", []byte("x"), nil), nil); err != nil {
		t.Errorf("send after rejections: %v", err)
	}
}

func TestAMQP_CBSChecksTokensPerPolicy(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	devToken := d.Token(t, h, time.Hour)
	c, err := dialAMQP(t, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, c)

	// Without a token the service nodes refuse to attach; a device's token
	// is accepted (for the device's own nodes) and does not open them.
	if _, err := s.NewSender(ctxT(t), "/messages/devicebound", nil); amqpCondition(err) != "amqp:unauthorized-access" {
		t.Errorf("attach without a token: %v", err)
	}
	if code, desc := putToken(t, s, devToken); code != 200 {
		t.Errorf("a device token: status %d (%s), want 200", code, desc)
	}
	if _, err := s.NewSender(ctxT(t), "/messages/devicebound", nil); amqpCondition(err) != "amqp:unauthorized-access" {
		t.Errorf("attach a service node with a device token: %v", err)
	}
	owner := serviceToken(t, h, "iothubowner", time.Hour)
	for _, tc := range []struct {
		name, token string
		code        int32
	}{
		{"registryRead lacks ServiceConnect", serviceToken(t, h, "registryRead", time.Hour), 401},
		{"expired", serviceToken(t, h, "service", -time.Minute), 401},
		{"bad signature", strings.Replace(owner, "sig=", "sig=AAAA", 1), 401},
		{"not a SAS token", "Bearer xyz", 401},
		{"service policy", serviceToken(t, h, "service", time.Hour), 200},
	} {
		if code, desc := putToken(t, s, tc.token); code != tc.code {
			t.Errorf("%s: status %d (%s), want %d", tc.name, code, desc, tc.code)
		}
	}
	if _, err := s.NewSender(ctxT(t), "/messages/devicebound", nil); err != nil {
		t.Errorf("attach after put-token: %v", err)
	}
	// Unknown nodes and wrong directions.
	if _, err := s.NewSender(ctxT(t), "/messages/events", nil); amqpCondition(err) != "amqp:not-found" {
		t.Errorf("attach an unknown node: %v", err)
	}
	if _, err := s.NewReceiver(ctxT(t), "/messages/devicebound", nil); amqpCondition(err) != "amqp:not-allowed" {
		t.Errorf("receive from devicebound: %v", err)
	}
	if _, err := s.NewReceiver(ctxT(t), "/messages/serviceBound/filenotifications", nil); err != nil {
		t.Errorf("attach file notifications: %v", err)
	}
}

func TestAMQP_TokenExpiryClosesLinksUnlessRenewed(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(time.Time{}))
	h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	open := func(ttl time.Duration) (*goamqp.Session, *goamqp.Sender) {
		c, err := dialAMQP(t, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := session(t, c)
		if code, desc := putToken(t, s, serviceToken(t, h, "service", ttl)); code != 200 {
			t.Fatalf("put-token: %d %s", code, desc)
		}
		snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, snd
	}
	_, expiring := open(time.Minute)
	renewedSession, renewed := open(time.Minute)
	if code, _ := putToken(t, renewedSession, serviceToken(t, h, "service", time.Hour)); code != 200 {
		t.Fatal("renewal refused")
	}
	// The first token lapses on the hub's clock: the link is detached with
	// unauthorized-access, which Send reports.
	h.Advance(t, time.Minute+time.Second)
	checkFor(t, 10*time.Second, func() error {
		err := expiring.Send(ctxT(t), c2dMessage("dev1", "late", []byte("x"), nil), nil)
		if amqpCondition(err) == "amqp:unauthorized-access" {
			return nil
		}
		return fmt.Errorf("send on an expired link: %v", err)
	})
	if err := renewed.Send(ctxT(t), c2dMessage("dev2", "renewed", []byte("x"), nil), nil); err != nil {
		t.Errorf("send on a renewed link after the first token's expiry: %v", err)
	}
}

func TestAMQP_SASL(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	owner := h.Policies()[0]
	for _, tc := range []struct {
		name   string
		sasl   goamqp.SASLType
		dialOK bool
		attach bool // service nodes open without CBS
	}{
		{"anonymous", goamqp.SASLTypeAnonymous(), true, false},
		{"plain policy and key", goamqp.SASLTypePlain(owner.Name, owner.PrimaryKey), true, true},
		{"plain SAS token", goamqp.SASLTypePlain(owner.Name+"@sas.root.localhost", serviceToken(t, h, "service", time.Hour)), true, true},
		{"plain wrong key", goamqp.SASLTypePlain(owner.Name, sasauth.DefaultServiceKey), false, false},
		{"plain policy without ServiceConnect", goamqp.SASLTypePlain("registryRead", sasauth.DefaultRegistryReadKey), false, false},
		{"plain expired token", goamqp.SASLTypePlain("service@sas.root.localhost", serviceToken(t, h, "service", -time.Minute)), false, false},
	} {
		c, err := dialAMQP(t, h, tc.sasl)
		if (err == nil) != tc.dialOK {
			t.Errorf("%s: dial error %v", tc.name, err)
			continue
		}
		if err != nil {
			continue
		}
		_, err = session(t, c).NewSender(ctxT(t), "/messages/devicebound", nil)
		if (err == nil) != tc.attach {
			t.Errorf("%s: attach error %v", tc.name, err)
		}
	}
	// Go's service SDK skips SASL: the plain AMQP header is accepted.
	raw, err := tls.Dial("tcp", h.AMQPSAddr(), h.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Write([]byte("AMQP\x00\x01\x00\x00")); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(raw, hdr); err != nil || string(hdr) != "AMQP\x00\x01\x00\x00" {
		t.Errorf("header without SASL: %q %v", hdr, err)
	}
}

// More messages than one credit window (256) on one link, spread over
// devices so no queue fills: the hub keeps granting credit.
func TestAMQP_CreditIsReplenished(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	for i := range 7 {
		h.CreateDevice(t, fmt.Sprint("d", i))
	}
	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", &goamqp.SenderOptions{SettlementMode: goamqp.SenderSettleModeUnsettled.Ptr()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 7 * 45 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := snd.Send(ctxT(t), c2dMessage(fmt.Sprint("d", i%7), fmt.Sprint("m", i), []byte("x"), nil), nil); err != nil {
				failed.Add(1)
				t.Errorf("send %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if failed.Load() == 0 {
		for i := range 7 {
			if n := c2dCount(t, h, fmt.Sprint("d", i)); n != 45 {
				t.Errorf("d%d has %d messages queued, want 45", i, n)
			}
		}
	}
}

// A feedback receiver that never settles, or whose connection drops, loses
// nothing: the batch goes to the next receiver. A released batch comes back
// at once.
func TestAMQP_FeedbackUnsettledOrReleasedIsRedelivered(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	dev := mustDial(t, h, d, connOpts{tls: true})
	dev.subscribe(t, "devices/dev1/messages/devicebound/#")
	sendC2D(t, h, "dev1", map[string]any{"body": "x", "messageId": "fb1", "ack": "positive"})
	waitFeedback(t, h, "dev1", 1)

	receiveBatch := func(s *goamqp.Session) (*goamqp.Receiver, *goamqp.Message) {
		rcv, err := s.NewReceiver(ctxT(t), "/messages/serviceBound/feedback", &goamqp.ReceiverOptions{Credit: 1})
		if err != nil {
			t.Fatal(err)
		}
		m, err := rcv.Receive(ctxT(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m.GetData()), `"originalMessageId":"fb1"`) {
			t.Fatalf("feedback %s", m.GetData())
		}
		return rcv, m
	}
	// Released: back at once on the same link.
	s1 := authorizedSession(t, h)
	rcv, m := receiveBatch(s1)
	if err := rcv.ReleaseMessage(ctxT(t), m); err != nil {
		t.Fatal(err)
	}
	again, err := rcv.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if string(again.GetData()) != string(m.GetData()) {
		t.Fatalf("after release: %s", again.GetData())
	}
	// Never settled, then the session ends: the next receiver gets it.
	s1.Close(ctxT(t))
	s2 := authorizedSession(t, h)
	rcv2, m2 := receiveBatch(s2)
	if err := rcv2.AcceptMessage(ctxT(t), m2); err != nil {
		t.Fatal(err)
	}
	if err := rcv2.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Accepted: a third receiver waits in vain; a new record wakes it.
	s3 := authorizedSession(t, h)
	rcv3, err := s3.NewReceiver(ctxT(t), "/messages/serviceBound/feedback", nil)
	if err != nil {
		t.Fatal(err)
	}
	sendC2D(t, h, "dev1", map[string]any{"body": "y", "messageId": "fb2", "ack": "positive"})
	m3, err := rcv3.Receive(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m3.GetData()), `"originalMessageId":"fb2"`) || strings.Contains(string(m3.GetData()), "fb1") {
		t.Fatalf("after accept: %s", m3.GetData())
	}
}

// cutConn passes bytes through until armed, then lets `budget` more bytes
// out and drops the connection: a transfer cut in the middle.
type cutConn struct {
	net.Conn
	armed  atomic.Bool
	budget atomic.Int64
}

func (c *cutConn) Write(p []byte) (int, error) {
	if !c.armed.Load() {
		return c.Conn.Write(p)
	}
	left := c.budget.Add(-int64(len(p)))
	if left < 0 {
		n, _ := c.Conn.Write(p[:max(0, int(left)+len(p))])
		_ = c.Conn.Close()
		return n, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// A multi-frame C2D message cut off mid-transfer is not queued; sent again
// on a new connection it reaches the device exactly once.
func TestAMQP_ConnectionDroppedMidTransfer(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")

	raw, err := tls.Dial("tcp", h.AMQPSAddr(), h.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	cc := &cutConn{Conn: raw}
	opts := amqpOpts(h, goamqp.SASLTypeAnonymous())
	opts.MaxFrameSize = 512 // so a 4 KB message takes several frames
	c, err := goamqp.NewConn(ctxT(t), cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := session(t, c)
	if code, _ := putToken(t, s, serviceToken(t, h, "service", time.Hour)); code != 200 {
		t.Fatal("put-token")
	}
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(ctxT(t), c2dMessage("dev1", "before", []byte("first"), nil), nil); err != nil {
		t.Fatal(err)
	}
	body := []byte(strings.Repeat("0123456789abcdef", 256))
	cc.budget.Store(1500)
	cc.armed.Store(true)
	if err := snd.Send(ctxT(t), c2dMessage("dev1", "cut", body, nil), nil); err == nil {
		t.Fatal("the cut transfer was acknowledged")
	}

	// Only the first message is queued.
	var queued []map[string]any
	checkFor(t, 5*time.Second, func() error {
		queued = nil
		h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &queued)
		if len(queued) != 1 || queued[0]["messageId"] != "before" {
			return fmt.Errorf("queue %v", queued)
		}
		return nil
	})
	// The sender retries on a new connection; the device gets each once.
	s2 := authorizedSession(t, h)
	snd2, err := s2.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd2.Send(ctxT(t), c2dMessage("dev1", "cut", body, nil), nil); err != nil {
		t.Fatal(err)
	}
	dev := mustDial(t, h, d, connOpts{tls: true})
	dev.subscribe(t, "devices/dev1/messages/devicebound/#")
	checkFor(t, 10*time.Second, func() error {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		if len(dev.received) < 2 {
			return fmt.Errorf("%d received", len(dev.received))
		}
		return nil
	})
	checkFor(t, 5*time.Second, func() error {
		if n := c2dCount(t, h, "dev1"); n != 0 {
			return fmt.Errorf("%d still queued", n)
		}
		return nil
	})
	dev.mu.Lock()
	defer dev.mu.Unlock()
	var ids []string
	for _, m := range dev.received {
		ids = append(ids, m.Topic()[strings.Index(m.Topic(), "%24.mid=")+8:][:6])
	}
	if len(dev.received) != 2 || string(dev.received[1].Payload()) != string(body) {
		t.Errorf("the device received %d messages %v", len(dev.received), ids)
	}
}

// AMQP over WebSockets shares /$iothub/websocket with MQTT, told apart by
// the subprotocol.
func TestAMQP_OverWebSockets(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	dialer := websocket.Dialer{TLSClientConfig: h.TLSConfig(), Subprotocols: []string{amqphub.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.Dial("wss://"+h.Addr("https")+"/$iothub/websocket", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != amqphub.Subprotocol {
		t.Errorf("subprotocol %q", got)
	}
	c, err := goamqp.NewConn(ctxT(t), amqphub.NewWebSocketConn(ws), &goamqp.ConnOptions{SASLType: goamqp.SASLTypeAnonymous(), HostName: "localhost"})
	if err != nil {
		t.Fatalf("AMQP over WebSockets: %v", err)
	}
	defer c.Close()
	s := session(t, c)
	if code, desc := putToken(t, s, serviceToken(t, h, "service", time.Hour)); code != 200 {
		t.Fatalf("put-token: %d %s", code, desc)
	}
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(ctxT(t), c2dMessage("dev1", "ws", []byte("over ws"), nil), nil); err != nil {
		t.Fatal(err)
	}
	if n := c2dCount(t, h, "dev1"); n != 1 {
		t.Errorf("queued %d", n)
	}
	// MQTT still works on the same path.
	d := h.CreateDevice(t, "dev2")
	mustDial(t, h, d, connOpts{ws: true})
}

// The batched form (message format 0x80013700, one encoded message per data
// section) queues each message in order; a refused one stops the batch.
func TestAMQP_BatchedSend(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	s := authorizedSession(t, h)
	snd, err := s.NewSender(ctxT(t), "/messages/devicebound", nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(msgs ...*goamqp.Message) *goamqp.Message {
		b := &goamqp.Message{Format: 0x80013700}
		for _, m := range msgs {
			enc, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			b.Data = append(b.Data, enc)
		}
		return b
	}
	if err := snd.Send(ctxT(t), batch(c2dMessage("dev1", "b1", []byte("one"), nil), c2dMessage("dev1", "b2", []byte("two"), nil)), nil); err != nil {
		t.Fatalf("send a batch: %v", err)
	}
	err = snd.Send(ctxT(t), batch(c2dMessage("dev1", "b3", []byte("three"), nil), c2dMessage("nobody", "b4", []byte("x"), nil)), nil)
	if amqpCondition(err) != "amqp:not-found" {
		t.Errorf("batch with an unknown device: %v", err)
	}
	var queued []map[string]any
	h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &queued)
	var ids []any
	for _, q := range queued {
		ids = append(ids, q["messageId"])
	}
	if fmt.Sprint(ids) != "[b1 b2 b3]" {
		t.Errorf("queued %v, want [b1 b2 b3]", ids)
	}
}
