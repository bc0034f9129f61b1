package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// d2c is the emulator's view of a telemetry message.
type d2c struct {
	SequenceNumber   int64
	DeviceID         string
	ModuleID         string
	Transport        string
	Body             string
	BodyEncoding     string
	Properties       map[string]string
	SystemProperties map[string]string
}

func listMessages(t *testing.T, h *hubtest.Hub, query string) []d2c {
	t.Helper()
	r := h.Do(t, http.MethodGet, "/_emulator/messages?"+query, nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("list messages: %d %s", r.StatusCode, r.Body)
	}
	var out []d2c
	r.JSON(t, &out)
	return out
}

func waitMessages(t *testing.T, h *hubtest.Hub, query string, n int) []d2c {
	t.Helper()
	var got []d2c
	checkFor(t, 10*time.Second, func() error {
		got = listMessages(t, h, query)
		if len(got) < n {
			return fmt.Errorf("%d messages, want %d", len(got), n)
		}
		return nil
	})
	return got
}

func TestMessaging_TelemetryPropertyBagOverMQTT(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	// What Node sends (sdk-behavior §3.4), then a literal "$." bag with a
	// C#-style trailing slash and raw C-style values, then no bag at QoS 0.
	c.publish(t, "devices/dev1/messages/events/%24.mid=msg-1&%24.cid=corr-1&%24.uid=user1&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00.000Z&alert=hi%20there%2F%26%3D&plus=a+b&iothub-creation-time-utc=2021-04-21T11%3A30%3A16Z&%24.sub=subj", 1, `{"t":1}`)
	c.publish(t, "devices/dev1/messages/events/$.mid=m2&$.ct=application/json&prop=a b/", 1, "two")
	c.publish(t, "devices/dev1/messages/events/", 0, "three")
	got := waitMessages(t, h, "deviceId=dev1", 3)

	m := got[0]
	if m.Body != `{"t":1}` || m.BodyEncoding != "utf-8" || m.Transport != "mqtt" {
		t.Errorf("first message %+v", m)
	}
	wantProps := map[string]string{"alert": "hi there/&=", "plus": "a+b", "iothub-creation-time-utc": "2021-04-21T11:30:16Z"}
	for k, v := range wantProps {
		if m.Properties[k] != v {
			t.Errorf("property %s = %q, want %q (all: %v)", k, m.Properties[k], v, m.Properties)
		}
	}
	if len(m.Properties) != len(wantProps) {
		t.Errorf("properties %v: system keys leaked into application properties", m.Properties)
	}
	for k, v := range map[string]string{
		"message-id": "msg-1", "correlation-id": "corr-1", "user-id": "user1", "content-type": "application/json",
		"content-encoding": "utf-8", "absolute-expiry-time": "2030-01-01T00:00:00.0000000Z", "dt-subject": "subj",
		"iothub-connection-device-id": "dev1", "iothub-message-source": "Telemetry",
		"iothub-connection-auth-method": `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`,
	} {
		if m.SystemProperties[k] != v {
			t.Errorf("system property %s = %q, want %q", k, m.SystemProperties[k], v)
		}
	}
	for _, k := range []string{"iothub-enqueuedtime", "iothub-connection-auth-generation-id", "x-opt-sequence-number"} {
		if m.SystemProperties[k] == "" {
			t.Errorf("system property %s missing: %v", k, m.SystemProperties)
		}
	}
	if _, ok := m.SystemProperties["iothub-connection-module-id"]; ok {
		t.Error("a device message carries iothub-connection-module-id")
	}
	if got[1].SystemProperties["message-id"] != "m2" || got[1].SystemProperties["content-type"] != "application/json" || got[1].Properties["prop"] != "a b" {
		t.Errorf("literal $ bag: %+v", got[1])
	}
	if got[2].Body != "three" || len(got[2].Properties) != 0 {
		t.Errorf("QoS 0 message: %+v", got[2])
	}
	if !(got[0].SequenceNumber < got[1].SequenceNumber && got[1].SequenceNumber < got[2].SequenceNumber) {
		t.Errorf("sequence numbers not increasing: %d %d %d", got[0].SequenceNumber, got[1].SequenceNumber, got[2].SequenceNumber)
	}
	// from= filters by sequence number.
	if rest := listMessages(t, h, fmt.Sprintf("deviceId=dev1&from=%d", got[1].SequenceNumber)); len(rest) != 2 || rest[0].Body != "two" {
		t.Errorf("from: %+v", rest)
	}
}

func TestMessaging_ModuleTelemetry(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	r := h.Do(t, http.MethodPut, "/devices/dev1/modules/m1", map[string]any{"deviceId": "dev1", "moduleId": "m1"})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("create module: %d %s", r.StatusCode, r.Body)
	}
	var mod struct {
		Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
	}
	r.JSON(t, &mod)
	m := &hubtest.Device{ID: "dev1", ModuleID: "m1", PrimaryKey: mod.Authentication.SymmetricKey.PrimaryKey}
	_ = d
	c := mustDial(t, h, m, connOpts{tls: true})
	c.publish(t, "devices/dev1/modules/m1/messages/events/%24.on=out1&k=v", 1, "x")
	got := waitMessages(t, h, "deviceId=dev1&moduleId=m1", 1)
	if got[0].ModuleID != "m1" || got[0].SystemProperties["iothub-connection-module-id"] != "m1" ||
		got[0].SystemProperties["iothub-outputname"] != "out1" || got[0].Properties["k"] != "v" ||
		!strings.Contains(got[0].SystemProperties["iothub-connection-auth-method"], `"scope":"module"`) {
		t.Errorf("module message %+v", got[0])
	}
}

func TestMessaging_TelemetryTooLargeClosesConnection(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	tok := c.Publish("devices/dev1/messages/events/", 1, false, strings.Repeat("x", 256*1024+1))
	c.waitLost(t)
	tok.WaitTimeout(time.Second)
	if n := len(listMessages(t, h, "deviceId=dev1")); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
	// Over HTTPS the hub answers 413001.
	r := deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/events", strings.Repeat("x", 256*1024+1))
	checkHubError(t, r, http.StatusRequestEntityTooLarge, "MessageTooLarge")
}

// sendC2D enqueues a C2D message through the emulator's endpoint.
func sendC2D(t *testing.T, h *hubtest.Hub, deviceID string, req map[string]any) map[string]any {
	t.Helper()
	r := h.Do(t, http.MethodPost, "/_emulator/devices/"+deviceID+"/messages/devicebound", req)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("send C2D: %d %s", r.StatusCode, r.Body)
	}
	var out map[string]any
	r.JSON(t, &out)
	return out
}

type feedbackRecord struct {
	OriginalMessageID, StatusCode, DeviceID, DeviceGenerationID, Description, EnqueuedTimeUTC string
}

func waitFeedback(t *testing.T, h *hubtest.Hub, deviceID string, n int) []feedbackRecord {
	t.Helper()
	var fb []feedbackRecord
	checkFor(t, 10*time.Second, func() error {
		r := h.Do(t, http.MethodGet, "/_emulator/feedback?deviceId="+deviceID, nil)
		fb = nil
		r.JSON(t, &fb)
		if len(fb) < n {
			return fmt.Errorf("%d feedback records, want %d", len(fb), n)
		}
		return nil
	})
	return fb
}

func c2dCount(t *testing.T, h *hubtest.Hub, deviceID string) int {
	t.Helper()
	var dev struct{ CloudToDeviceMessageCount int }
	h.Do(t, http.MethodGet, "/devices/"+deviceID, nil).JSON(t, &dev)
	return dev.CloudToDeviceMessageCount
}

func TestMessaging_C2DOverMQTT(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{tls: true})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	sendC2D(t, h, "dev1", map[string]any{
		"body": "hello", "messageId": "mid1", "correlationId": "cid1", "contentType": "application/json", "contentEncoding": "utf-8",
		"expiryTimeUtc": "2099-01-01T00:00:00Z", "ack": "full",
		"properties": map[string]string{"prop 1": "val/1&x", "b": "x=y+z"},
	})
	m := c.waitFor(t, "devices/dev1/messages/devicebound/")
	// MaxTTL caps the expiry at two days from now.
	exp := m.Topic()[strings.Index(m.Topic(), "%24.exp=")+len("%24.exp=") : strings.Index(m.Topic(), "&%24.cid")]
	want := "devices/dev1/messages/devicebound/%24.mid=mid1&%24.to=%2Fdevices%2Fdev1%2Fmessages%2Fdevicebound&%24.exp=" + exp +
		"&%24.cid=cid1&%24.ct=application%2Fjson&%24.ce=utf-8&iothub-ack=full&b=x%3Dy%2Bz&prop%201=val%2F1%26x"
	if m.Topic() != want {
		t.Errorf("topic\n got %s\nwant %s", m.Topic(), want)
	}
	if et, err := time.Parse(time.RFC3339, strings.ReplaceAll(exp, "%3A", ":")); err != nil || et.After(time.Now().Add(49*time.Hour)) {
		t.Errorf("expiry %q: %v", exp, err)
	}
	if m.Qos() != 1 || string(m.Payload()) != "hello" {
		t.Errorf("qos %d payload %q", m.Qos(), m.Payload())
	}
	// paho acknowledged it: the message is completed and reported.
	fb := waitFeedback(t, h, "dev1", 1)
	if fb[0].OriginalMessageID != "mid1" || fb[0].StatusCode != "Success" || fb[0].DeviceGenerationID == "" {
		t.Errorf("feedback %+v", fb[0])
	}
	checkFor(t, 5*time.Second, func() error {
		if n := c2dCount(t, h, "dev1"); n != 0 {
			return fmt.Errorf("cloudToDeviceMessageCount %d", n)
		}
		return nil
	})
}

func TestMessaging_C2DDefaultsAndQueueLimit(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	out := sendC2D(t, h, "dev1", map[string]any{"body": map[string]any{"a": 1}})
	if out["messageId"] == "" || out["to"] != "/devices/dev1/messages/devicebound" || out["ack"] != "none" {
		t.Errorf("defaults %v", out)
	}
	for i := 1; i < 50; i++ {
		sendC2D(t, h, "dev1", map[string]any{"body": fmt.Sprint(i)})
	}
	if n := c2dCount(t, h, "dev1"); n != 50 {
		t.Errorf("cloudToDeviceMessageCount %d, want 50", n)
	}
	r := h.Do(t, http.MethodPost, "/_emulator/devices/dev1/messages/devicebound", map[string]any{"body": "51"})
	checkHubError(t, r, http.StatusForbidden, "DeviceMaximumQueueDepthExceeded")
	r = h.Do(t, http.MethodPost, "/_emulator/devices/nodev/messages/devicebound", map[string]any{"body": "x"})
	checkHubError(t, r, http.StatusNotFound, "DeviceNotFound")
	r = h.Do(t, http.MethodPost, "/_emulator/devices/dev1/messages/devicebound", map[string]any{"body": strings.Repeat("x", 64*1024+1)})
	checkHubError(t, r, http.StatusRequestEntityTooLarge, "MessageTooLarge")

	var queue []struct{ Body string }
	h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &queue)
	if len(queue) != 50 || queue[0].Body != `{"a":1}` || queue[1].Body != "1" {
		t.Errorf("queue of %d, first %+v", len(queue), queue[:min(2, len(queue))])
	}

	r = h.Do(t, http.MethodDelete, "/devices/dev1/commands", nil)
	var purged struct {
		TotalMessagesPurged int
		DeviceID            string
		ModuleID            *string
	}
	r.JSON(t, &purged)
	if r.StatusCode != http.StatusOK || purged.TotalMessagesPurged != 50 || purged.DeviceID != "dev1" || purged.ModuleID != nil {
		t.Errorf("purge: %d %s", r.StatusCode, r.Body)
	}
	if n := c2dCount(t, h, "dev1"); n != 0 {
		t.Errorf("cloudToDeviceMessageCount after purge %d", n)
	}
}

func TestMessaging_C2DQueuedWhileOfflineSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	d := h.CreateDevice(t, "dev1")
	// A persistent session subscribes once, as the SDKs do, then goes away.
	c := mustDial(t, h, d, connOpts{})
	c.subscribe(t, "devices/dev1/messages/devicebound/#")
	c.Disconnect(100)
	sendC2D(t, h, "dev1", map[string]any{"body": "while offline", "messageId": "off1"})
	h.Restart(t)
	c2 := mustDial(t, h, d, connOpts{})
	m := c2.waitFor(t, "devices/dev1/messages/devicebound/%24.mid=off1&")
	if string(m.Payload()) != "while offline" {
		t.Errorf("payload %q", m.Payload())
	}
}

// dialManualAck connects a device whose client does not PUBACK by itself.
func dialManualAck(t *testing.T, h *hubtest.Hub, d *hubtest.Device) (paho.Client, chan paho.Message) {
	t.Helper()
	ch := make(chan paho.Message, 10)
	opts := paho.NewClientOptions().AddBroker("tcp://" + h.MQTTAddr()).SetProtocolVersion(4).SetClientID(d.ClientID()).
		SetUsername(d.Username(h)).SetPassword(d.Token(t, h, time.Hour)).SetCleanSession(false).SetAutoReconnect(false).
		SetAutoAckDisabled(true).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { ch <- m })
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, ch
}

func recv(t *testing.T, ch chan paho.Message) paho.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no C2D message")
		return nil
	}
}

func TestMessaging_C2DUnackedIsRedeliveredOnReconnect(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	c, ch := dialManualAck(t, h, d)
	if tok := c.Subscribe("devices/dev1/messages/devicebound/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe")
	}
	sendC2D(t, h, "dev1", map[string]any{"body": "once", "messageId": "r1", "ack": "negative"})
	m := recv(t, ch)
	if !strings.Contains(m.Topic(), "%24.mid=r1&") {
		t.Fatalf("topic %s", m.Topic())
	}
	var queue []struct{ State string }
	h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &queue)
	if len(queue) != 1 || queue[0].State != "Invisible" {
		t.Errorf("queue while delivered: %+v", queue)
	}
	c.Disconnect(0) // no PUBACK
	c2, ch2 := dialManualAck(t, h, d)
	m = recv(t, ch2)
	if !strings.Contains(m.Topic(), "%24.mid=r1&") {
		t.Fatalf("redelivered topic %s", m.Topic())
	}
	m.Ack()
	checkFor(t, 10*time.Second, func() error {
		var q []struct{ DeliveryCount int }
		h.Do(t, http.MethodGet, "/_emulator/devices/dev1/messages/devicebound", nil).JSON(t, &q)
		if len(q) != 0 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})
	_ = c2
	// ack=negative: a success is not reported.
	r := h.Do(t, http.MethodGet, "/_emulator/feedback?deviceId=dev1", nil)
	if string(r.Body) != "[]" {
		t.Errorf("feedback %s", r.Body)
	}
}

func TestMessaging_DevicesAreConfined(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	h.CreateDevice(t, "dev1")
	d2 := h.CreateDevice(t, "dev2")
	c := mustDial(t, h, d2, connOpts{})
	// Another device's C2D filter is refused…
	tok := c.Subscribe("devices/dev1/messages/devicebound/#", 1, nil)
	if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		if code := tok.(*paho.SubscribeToken).Result()["devices/dev1/messages/devicebound/#"]; code != 0x80 {
			t.Errorf("SUBACK %#x for another device's C2D topic", code)
		}
	}
	c.subscribe(t, "devices/dev2/messages/devicebound/#")
	sendC2D(t, h, "dev1", map[string]any{"body": "for dev1"})
	sendC2D(t, h, "dev2", map[string]any{"body": "for dev2"})
	c.waitFor(t, "devices/dev2/messages/devicebound/")
	c.mu.Lock()
	for _, m := range c.received {
		if strings.HasPrefix(m.Topic(), "devices/dev1/") {
			t.Errorf("dev2 received %s", m.Topic())
		}
	}
	c.mu.Unlock()
	// …and so is telemetry in another device's name: the hub closes the connection.
	c.Publish("devices/dev1/messages/events/", 1, false, "spoof")
	c.waitLost(t)
	if n := len(listMessages(t, h, "deviceId=dev1")); n != 0 {
		t.Errorf("%d messages stored for dev1", n)
	}
}

// deviceDo calls the device HTTPS API with the device's own token.
func deviceDo(t *testing.T, h *hubtest.Hub, d *hubtest.Device, method, path string, body any, headers ...string) *hubtest.Response {
	t.Helper()
	return h.Do(t, method, path, body, append([]string{"Authorization: " + d.Token(t, h, time.Hour)}, headers...)...)
}

func TestMessaging_DeviceHTTPS(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	other := h.CreateDevice(t, "dev2")

	r := deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/events", "payload",
		"iothub-messageid: h1", "iothub-correlationid: c1", "iothub-contenttype: text/plain", "iothub-app-color: red", "iothub-to: /devices/dev1/messages/events")
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("send: %d %s", r.StatusCode, r.Body)
	}
	batch := `[{"body":"` + "YQ==" + `","properties":{"iothub-app-k":"v1"}},{"body":"Yg==","properties":{"iothub-messageid":"b2"}}]`
	r = deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/events", batch, "Content-Type: application/vnd.microsoft.iothub.json")
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("batch: %d %s", r.StatusCode, r.Body)
	}
	got := waitMessages(t, h, "deviceId=dev1", 3)
	if got[0].Body != "payload" || got[0].SystemProperties["message-id"] != "h1" || got[0].SystemProperties["content-type"] != "text/plain" ||
		got[0].Properties["color"] != "red" || got[0].Transport != "https" {
		t.Errorf("https message %+v", got[0])
	}
	bodies := map[string]bool{got[1].Body: true, got[2].Body: true}
	if !bodies["a"] || !bodies["b"] {
		t.Errorf("batch %+v %+v", got[1], got[2])
	}
	// Another device's token, or a service token, is refused.
	r = deviceDo(t, h, other, http.MethodPost, "/devices/dev1/messages/events", "x")
	checkHubError(t, r, http.StatusUnauthorized, "IotHubUnauthorizedAccess")
	r = deviceDo(t, h, other, http.MethodGet, "/devices/dev1/messages/deviceBound", nil)
	checkHubError(t, r, http.StatusUnauthorized, "IotHubUnauthorizedAccess")

	// C2D: empty queue, receive, complete, complete again.
	if r = deviceDo(t, h, d, http.MethodGet, "/devices/dev1/messages/deviceBound", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("empty receive: %d %s", r.StatusCode, r.Body)
	}
	sendC2D(t, h, "dev1", map[string]any{"body": "c2d-1", "messageId": "m1", "ack": "full", "properties": map[string]string{"p": "q"}})
	sendC2D(t, h, "dev1", map[string]any{"body": "c2d-2", "messageId": "m2", "ack": "full"})
	sendC2D(t, h, "dev1", map[string]any{"body": "c2d-3", "messageId": "m3", "ack": "full"})
	r = deviceDo(t, h, d, http.MethodGet, "/devices/dev1/messages/devicebound", nil)
	if r.StatusCode != http.StatusOK || string(r.Body) != "c2d-1" {
		t.Fatalf("receive: %d %s", r.StatusCode, r.Body)
	}
	lock := strings.Trim(r.Header.Get("ETag"), `"`)
	for k, want := range map[string]string{"iothub-messageid": "m1", "iothub-to": "/devices/dev1/messages/devicebound", "iothub-ack": "full",
		"iothub-deliverycount": "0", "iothub-app-p": "q"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if lock == "" || r.Header.Get("iothub-sequencenumber") == "" || r.Header.Get("iothub-enqueuedtime") == "" || r.Header.Get("iothub-expiry") == "" {
		t.Errorf("headers %v", r.Header)
	}
	if r = deviceDo(t, h, d, http.MethodDelete, "/devices/dev1/messages/devicebound/"+lock, nil, "If-Match: \""+lock+"\""); r.StatusCode != http.StatusNoContent {
		t.Fatalf("complete: %d %s", r.StatusCode, r.Body)
	}
	r = deviceDo(t, h, d, http.MethodDelete, "/devices/dev1/messages/devicebound/"+lock, nil)
	checkHubError(t, r, http.StatusPreconditionFailed, "DeviceMessageLockLost")

	// Abandon puts m2 back with one delivery counted; reject dead-letters it.
	r = deviceDo(t, h, d, http.MethodGet, "/devices/dev1/messages/deviceBound", nil)
	lock = strings.Trim(r.Header.Get("ETag"), `"`)
	if r = deviceDo(t, h, d, http.MethodPost, "/devices/dev1/messages/deviceBound/"+lock+"/abandon", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("abandon: %d %s", r.StatusCode, r.Body)
	}
	r = deviceDo(t, h, d, http.MethodGet, "/devices/dev1/messages/deviceBound", nil)
	if string(r.Body) != "c2d-2" || r.Header.Get("iothub-deliverycount") != "1" {
		t.Errorf("after abandon: %s deliverycount %s", r.Body, r.Header.Get("iothub-deliverycount"))
	}
	lock = strings.Trim(r.Header.Get("ETag"), `"`)
	if r = deviceDo(t, h, d, http.MethodDelete, "/devices/dev1/messages/deviceBound/"+lock+"?reject", nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("reject: %d %s", r.StatusCode, r.Body)
	}
	fb := waitFeedback(t, h, "dev1", 2)
	if fb[0].OriginalMessageID != "m1" || fb[0].StatusCode != "Success" || fb[1].OriginalMessageID != "m2" || fb[1].StatusCode != "Rejected" {
		t.Errorf("feedback %+v", fb)
	}
	if n := c2dCount(t, h, "dev1"); n != 1 {
		t.Errorf("cloudToDeviceMessageCount %d, want 1", n)
	}
}

func TestMessaging_StreamReplaysThenFollows(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t)
	d := h.CreateDevice(t, "dev1")
	h.CreateDevice(t, "dev2")
	c := mustDial(t, h, d, connOpts{})
	c.publish(t, "devices/dev1/messages/events/", 1, "before")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.HTTPURL()+"/_emulator/messages/stream?deviceId=dev1&from=1", nil)
	req.Header.Set("Authorization", h.ServiceToken(t, "service"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan d2c, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m d2c
				if json.Unmarshal([]byte(data), &m) == nil {
					events <- m
				}
			}
		}
		close(events)
	}()
	next := func() d2c {
		t.Helper()
		select {
		case m, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return d2c{}
	}
	if m := next(); m.Body != "before" {
		t.Errorf("replayed %+v", m)
	}
	c.publish(t, "devices/dev1/messages/events/a=1", 0, "after")
	if m := next(); m.Body != "after" || m.Properties["a"] != "1" {
		t.Errorf("live %+v", m)
	}

	// A registry-only policy may not read messages.
	req2, _ := http.NewRequest(http.MethodGet, h.HTTPURL()+"/_emulator/messages", nil)
	req2.Header.Set("Authorization", h.ServiceToken(t, "registryRead"))
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("registryRead reading messages: %d", resp2.StatusCode)
	}
}

var _ = errors.New
