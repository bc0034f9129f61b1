package methods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// fakeTransport is a fake set of devices: tests switch them online and read
// what the Invoker published.
type fakeTransport struct {
	mu      sync.Mutex
	online  map[key]bool
	sendErr error
	block   chan struct{}
	sent    chan sentMsg
}

type sentMsg struct {
	key                  key
	method, rid, payload string
}

var _ Transport = (*fakeTransport)(nil)

func newFakeTransport() *fakeTransport {
	return &fakeTransport{online: map[key]bool{}, sent: make(chan sentMsg, 1000)}
}

func (f *fakeTransport) IsOnline(d, m string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.online[key{d, m}]
}

func (f *fakeTransport) SendMethod(d, m string, req DeviceRequest) error {
	f.mu.Lock()
	err := f.sendErr
	block := f.block
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if block != nil {
		<-block // a device that does not read
	}
	f.sent <- sentMsg{key{d, m}, req.MethodName, req.RID, string(req.Payload)}
	return nil
}

func (f *fakeTransport) set(d, m string, online bool) {
	f.mu.Lock()
	f.online[key{d, m}] = online
	f.mu.Unlock()
}

// next returns the next published request and its rid.
func (f *fakeTransport) next(t *testing.T) (sentMsg, string) {
	t.Helper()
	select {
	case s := <-f.sent:
		if s.rid == "" {
			t.Fatalf("request %+v has no rid", s)
		}
		return s, s.rid
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was published")
	}
	return sentMsg{}, ""
}

// fakeClock hands out timers the test fires by hand.
type fakeClock struct{ timers chan fakeTimer }

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{timers: make(chan fakeTimer, 1000)} }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.timers <- fakeTimer{d, ch}
	return ch
}

// timer waits for the Invoker to start a timer of length d.
func (c *fakeClock) timer(t *testing.T, d time.Duration) fakeTimer {
	t.Helper()
	for {
		select {
		case tm := <-c.timers:
			if tm.d == d {
				return tm
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s timer was started", d)
		}
	}
}

func (tm fakeTimer) fire() { tm.ch <- time.Time{} }

type fakeIdentities map[key]bool

func (f fakeIdentities) Exists(_ context.Context, d, m string) error {
	if f[key{d, m}] {
		return nil
	}
	if m != "" {
		return iothub.Errorf(iothub.ModuleNotFound, "Module %s on device %s not found.", m, d)
	}
	return iothub.Errorf(iothub.DeviceNotFound, "Device %s not found.", d)
}

type env struct {
	inv   *Invoker
	tr    *fakeTransport
	clock *fakeClock
}

func newEnv() *env {
	tr, clk := newFakeTransport(), newFakeClock()
	ids := fakeIdentities{{"dev1", ""}: true, {"dev2", ""}: true, {"dev1", "mod1"}: true}
	return &env{
		inv:   &Invoker{Transport: tr, Identities: ids, After: clk.After, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		tr:    tr,
		clock: clk,
	}
}

type outcome struct {
	resp Response
	err  error
}

func (e *env) invoke(req Request) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		r, err := e.inv.Invoke(context.Background(), req)
		out <- outcome{r, err}
	}()
	return out
}

func wait(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("Invoke did not return")
	}
	return outcome{}
}

func wantCode(t *testing.T, err error, code iothub.Code) *iothub.Error {
	t.Helper()
	var he *iothub.Error
	if !errors.As(err, &he) || he.Code != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	return he
}

func TestInvoker_Invoke_OK(t *testing.T) {
	for _, tc := range []struct {
		name        string
		module      string
		payload     string
		sentPayload string
		status      int
		body        string
		wantPayload string
	}{
		{"object", "", `{"delay":5}`, `{"delay":5}`, 200, `{"ok":true}`, `{"ok":true}`},
		{"module", "mod1", `[1,2]`, `[1,2]`, 200, `"done"`, `"done"`},
		{"null payload sent as null", "", `null`, `null`, 200, `null`, `null`},
		{"absent payload sent as null", "", ``, `null`, 200, `1`, `1`},
		{"empty string payload (Python)", "", `""`, `""`, 200, `{}`, `{}`},
		{"device 404 passes through", "", `{}`, `{}`, 404, `{"error":"no such method"}`, `{"error":"no such method"}`},
		{"device 500 passes through", "", `{}`, `{}`, 500, `"boom"`, `"boom"`},
		{"empty response is null", "", `{}`, `{}`, 200, ``, `null`},
		{"whitespace around response", "", `{}`, `{}`, 201, " {\"a\":1}\n", `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv()
			e.tr.set("dev1", tc.module, true)
			out := e.invoke(Request{DeviceID: "dev1", ModuleID: tc.module, MethodName: "reboot", Payload: json.RawMessage(tc.payload)})
			s, rid := e.tr.next(t)
			if s.method != "reboot" {
				t.Errorf("method = %q, want reboot", s.method)
			}
			if s.key != (key{"dev1", tc.module}) {
				t.Errorf("sent to %v", s.key)
			}
			if s.payload != tc.sentPayload {
				t.Errorf("payload sent = %q, want %q", s.payload, tc.sentPayload)
			}
			e.inv.Deliver("dev1", tc.module, rid, tc.status, []byte(tc.body))
			o := wait(t, out)
			if o.err != nil {
				t.Fatal(o.err)
			}
			if o.resp.Status != tc.status || string(o.resp.Payload) != tc.wantPayload {
				t.Errorf("response = %d %s, want %d %s", o.resp.Status, o.resp.Payload, tc.status, tc.wantPayload)
			}
			if n := e.inv.InFlight(); n != 0 {
				t.Errorf("%d calls still in flight", n)
			}
		})
	}
}

func TestInvoker_Invoke_BadDeviceResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"not JSON", `Successfully invoked`},
		{"single quotes", `{'filename': 'logs.zip'}`},
		{"too large", `"` + strings.Repeat("x", MaxPayload) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv()
			e.tr.set("dev1", "", true)
			out := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
			_, rid := e.tr.next(t)
			e.inv.Deliver("dev1", "", rid, 200, []byte(tc.body))
			wantCode(t, wait(t, out).err, iothub.InvalidResponseWhileProxying)
		})
	}
}

func TestInvoker_Invoke_ErrNotOnline(t *testing.T) {
	e := newEnv()
	_, err := e.inv.Invoke(context.Background(), Request{DeviceID: "dev1", MethodName: "m"})
	he := wantCode(t, err, iothub.DeviceNotOnline)
	if he.Message != "Timed out waiting for device to connect." {
		t.Errorf("message = %q", he.Message)
	}
	if got := he.Info["timeout"]; got != "00:00:00" {
		t.Errorf("info.timeout = %v, want 00:00:00", got)
	}
	select {
	case s := <-e.tr.sent:
		t.Errorf("published %q to an offline device", s.method)
	default:
	}
}

func TestInvoker_Invoke_ErrNotFound(t *testing.T) {
	e := newEnv()
	_, err := e.inv.Invoke(context.Background(), Request{DeviceID: "nope", MethodName: "m", ConnectTimeout: time.Minute})
	wantCode(t, err, iothub.DeviceNotFound)
	_, err = e.inv.Invoke(context.Background(), Request{DeviceID: "dev1", ModuleID: "nope", MethodName: "m"})
	wantCode(t, err, iothub.ModuleNotFound)
}

func TestInvoker_Invoke_ConnectWait(t *testing.T) {
	e := newEnv()
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m", ConnectTimeout: 10 * time.Second})
	e.clock.timer(t, 10*time.Second) // waiting for the device now
	// A session change that does not bring the device online keeps waiting.
	e.inv.SessionChanged("dev1", "")
	e.tr.set("dev1", "", true)
	e.inv.SessionChanged("dev1", "")
	_, rid := e.tr.next(t)
	e.inv.Deliver("dev1", "", rid, 200, []byte(`{}`))
	if o := wait(t, out); o.err != nil || o.resp.Status != 200 {
		t.Fatalf("got %+v", o)
	}
}

func TestInvoker_Invoke_ErrConnectTimeout(t *testing.T) {
	e := newEnv()
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m", ConnectTimeout: 75 * time.Second})
	e.clock.timer(t, 75*time.Second).fire()
	he := wantCode(t, wait(t, out).err, iothub.DeviceNotOnline)
	if got := he.Info["timeout"]; got != "00:01:15" {
		t.Errorf("info.timeout = %v, want 00:01:15", got)
	}
}

func TestInvoker_Invoke_ErrResponseTimeout(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m", ResponseTimeout: 7 * time.Second})
	_, rid := e.tr.next(t)
	e.clock.timer(t, 7*time.Second).fire()
	he := wantCode(t, wait(t, out).err, iothub.GatewayTimeout)
	if he.Message != "Timed out waiting for the response from device." {
		t.Errorf("message = %q", he.Message)
	}
	// The late answer is dropped, and a later call does not get it.
	out2 := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	_, rid2 := e.tr.next(t)
	if rid2 == rid {
		t.Fatalf("rid %s reused", rid)
	}
	e.inv.Deliver("dev1", "", rid, 200, []byte(`"late"`))
	e.inv.Deliver("dev1", "", rid2, 200, []byte(`"mine"`))
	e.inv.Deliver("dev1", "", rid2, 200, []byte(`"duplicate"`))
	if o := wait(t, out2); o.err != nil || string(o.resp.Payload) != `"mine"` {
		t.Fatalf("got %+v", o)
	}
}

func TestInvoker_Invoke_DefaultResponseTimeout(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	e.tr.next(t)
	e.clock.timer(t, 30*time.Second).fire()
	wantCode(t, wait(t, out).err, iothub.GatewayTimeout)
}

func TestInvoker_Invoke_ErrDisconnected(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	e.tr.set("dev2", "", true)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	out2 := e.invoke(Request{DeviceID: "dev2", MethodName: "m"})
	e.tr.next(t)
	e.tr.next(t)
	e.tr.set("dev1", "", false)
	e.inv.SessionChanged("dev1", "")
	wantCode(t, wait(t, out).err, iothub.DeviceNotOnline)
	// dev2's call is untouched.
	select {
	case o := <-out2:
		t.Fatalf("dev2's call ended: %+v", o)
	default:
	}
	if n := e.inv.InFlight(); n != 1 {
		t.Errorf("in flight = %d, want 1", n)
	}
}

func TestInvoker_Invoke_ErrSendFails(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	e.tr.sendErr = errors.New("connection closed")
	_, err := e.inv.Invoke(context.Background(), Request{DeviceID: "dev1", MethodName: "m"})
	wantCode(t, err, iothub.DeviceNotOnline)
}

func TestInvoker_Deliver_OtherDeviceDropped(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	_, rid := e.tr.next(t)
	e.inv.Deliver("dev2", "", rid, 200, []byte(`"forged"`))
	e.inv.Deliver("dev1", "mod1", rid, 200, []byte(`"forged"`))
	e.inv.Deliver("dev1", "", rid, 200, []byte(`"real"`))
	if o := wait(t, out); o.err != nil || string(o.resp.Payload) != `"real"` {
		t.Fatalf("got %+v", o)
	}
}

func TestInvoker_Invoke_ContextCancelled(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan error, 1)
	go func() {
		_, err := e.inv.Invoke(ctx, Request{DeviceID: "dev1", MethodName: "m"})
		out <- err
	}()
	e.tr.next(t)
	cancel()
	if err := <-out; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if n := e.inv.InFlight(); n != 0 {
		t.Errorf("%d calls still in flight", n)
	}
}

func TestInvoker_Invoke_Concurrent(t *testing.T) {
	e := newEnv()
	const devices, perDevice = 2, 50
	ids := []string{"dev1", "dev2"}
	for _, d := range ids {
		e.tr.set(d, "", true)
	}
	// Each device answers every request by echoing its payload.
	var answering sync.WaitGroup
	answering.Add(1)
	go func() {
		defer answering.Done()
		seen := map[string]bool{}
		for i := 0; i < devices*perDevice; i++ {
			s, rid := e.tr.next(t)
			if seen[rid] {
				t.Errorf("rid %s used twice", rid)
			}
			seen[rid] = true
			e.inv.Deliver(s.key.deviceID, s.key.moduleID, rid, 200, []byte(s.payload))
		}
	}()
	var wg sync.WaitGroup
	for _, d := range ids {
		for i := 0; i < perDevice; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf(`{"device":%q,"n":%d}`, d, i)
				r, err := e.inv.Invoke(context.Background(), Request{DeviceID: d, MethodName: "echo", Payload: json.RawMessage(want)})
				if err != nil || string(r.Payload) != want {
					t.Errorf("%s/%d: got %s, %v", d, i, r.Payload, err)
				}
			}()
		}
	}
	wg.Wait()
	answering.Wait()
}

func TestValidate(t *testing.T) {
	big := json.RawMessage(`"` + strings.Repeat("x", MaxPayload-2) + `"`)
	for _, tc := range []struct {
		name string
		req  Request
		code iothub.Code // 0: valid
	}{
		{"ok", Request{MethodName: "m"}, 0},
		{"no method name", Request{}, iothub.ArgumentNull},
		{"slash in name", Request{MethodName: "a/b"}, iothub.ArgumentInvalid},
		{"question mark in name", Request{MethodName: "a?b"}, iothub.ArgumentInvalid},
		{"hash in name", Request{MethodName: "a#"}, iothub.ArgumentInvalid},
		{"plus in name", Request{MethodName: "a+b"}, iothub.ArgumentInvalid},
		{"response timeout 5s", Request{MethodName: "m", ResponseTimeout: 5 * time.Second}, 0},
		{"response timeout 300s", Request{MethodName: "m", ResponseTimeout: 300 * time.Second}, 0},
		{"response timeout 4s", Request{MethodName: "m", ResponseTimeout: 4 * time.Second}, iothub.ArgumentInvalid},
		{"response timeout 301s", Request{MethodName: "m", ResponseTimeout: 301 * time.Second}, iothub.ArgumentInvalid},
		{"response timeout negative", Request{MethodName: "m", ResponseTimeout: -time.Second}, iothub.ArgumentInvalid},
		{"connect timeout 300s", Request{MethodName: "m", ConnectTimeout: 300 * time.Second}, 0},
		{"connect timeout 301s", Request{MethodName: "m", ConnectTimeout: 301 * time.Second}, iothub.ArgumentInvalid},
		{"connect timeout negative", Request{MethodName: "m", ConnectTimeout: -time.Second}, iothub.ArgumentInvalid},
		{"payload not JSON", Request{MethodName: "m", Payload: json.RawMessage(`{x}`)}, iothub.ArgumentInvalid},
		{"payload 128 KB", Request{MethodName: "m", Payload: big}, 0},
		{"payload over 128 KB", Request{MethodName: "m", Payload: append(big, ' ')}, iothub.MessageTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			err := Validate(&req)
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.code)
		})
	}
	req := Request{MethodName: "m"}
	if err := Validate(&req); err != nil {
		t.Fatal(err)
	}
	if req.ResponseTimeout != 30*time.Second || string(req.Payload) != "null" {
		t.Errorf("defaults: timeout %s, payload %s", req.ResponseTimeout, req.Payload)
	}
}

// A device that does not read must not hold its caller past the response
// timeout: the send may block, the wait may not (issue #13).
func TestInvoker_Invoke_SendBlocks(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	e.tr.block = make(chan struct{})
	defer close(e.tr.block)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m", ResponseTimeout: 5 * time.Second})
	e.clock.timer(t, 5*time.Second).fire()
	wantCode(t, wait(t, out).err, iothub.GatewayTimeout)
	if n := e.inv.InFlight(); n != 0 {
		t.Errorf("%d calls still in flight", n)
	}
}

// Calling devices that are offline leaves nothing behind in the Invoker.
func TestInvoker_Invoke_OfflineLeavesNoState(t *testing.T) {
	e := newEnv()
	for i := range 3 {
		_, err := e.inv.Invoke(context.Background(), Request{DeviceID: "dev1", MethodName: "m"})
		wantCode(t, err, iothub.DeviceNotOnline)
		out := e.invoke(Request{DeviceID: "dev2", MethodName: "m", ConnectTimeout: time.Duration(i+1) * time.Second})
		e.clock.timer(t, time.Duration(i+1)*time.Second).fire()
		wantCode(t, wait(t, out).err, iothub.DeviceNotOnline)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.inv.Invoke(ctx, Request{DeviceID: "dev1", MethodName: "m", ConnectTimeout: time.Minute}); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v", err)
		}
	}
	if n := e.inv.Waiting(); n != 0 {
		t.Errorf("%d devices still tracked as waited for", n)
	}
}

// queueingTransport is a fakeTransport that declares it never blocks, so
// the Invoker sends on the caller's goroutine and recycles its calls.
type queueingTransport struct{ *fakeTransport }

func (queueingTransport) SendMethodNeverBlocks() {}

// The direct send path (NonBlockingTransport) and recycled calls keep every
// rule of the goroutine path: answers reach only their caller, late and
// duplicate answers are dropped, timeouts, send errors and disconnects end
// the right call, and nothing is left behind.
func TestInvoker_NonBlockingTransport(t *testing.T) {
	e := newEnv()
	e.inv.Transport = queueingTransport{e.tr}
	e.tr.set("dev1", "", true)
	e.tr.set("dev2", "", true)

	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m", ResponseTimeout: 6 * time.Second})
	_, rid := e.tr.next(t)
	e.clock.timer(t, 6*time.Second).fire()
	wantCode(t, wait(t, out).err, iothub.GatewayTimeout)

	// The recycled call must not take the late answer to the first.
	out = e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	_, rid2 := e.tr.next(t)
	e.inv.Deliver("dev1", "", rid, 200, []byte(`"late"`))
	e.inv.Deliver("dev2", "", rid2, 200, []byte(`"forged"`))
	e.inv.Deliver("dev1", "", rid2, 200, []byte(`"mine"`))
	e.inv.Deliver("dev1", "", rid2, 200, []byte(`"duplicate"`))
	if o := wait(t, out); o.err != nil || string(o.resp.Payload) != `"mine"` {
		t.Fatalf("got %+v", o)
	}

	out = e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	out2 := e.invoke(Request{DeviceID: "dev2", MethodName: "m"})
	e.tr.next(t)
	e.tr.next(t)
	e.tr.set("dev1", "", false)
	e.inv.SessionChanged("dev1", "")
	wantCode(t, wait(t, out).err, iothub.DeviceNotOnline)
	if n := e.inv.InFlight(); n != 1 {
		t.Errorf("in flight = %d, want 1 (dev2's call)", n)
	}
	e.tr.set("dev2", "", false)
	e.inv.SessionChanged("dev2", "")
	wantCode(t, wait(t, out2).err, iothub.DeviceNotOnline)

	e.tr.set("dev1", "", true)
	e.tr.mu.Lock()
	e.tr.sendErr = errors.New("connection closed")
	e.tr.mu.Unlock()
	_, err := e.inv.Invoke(context.Background(), Request{DeviceID: "dev1", MethodName: "m"})
	wantCode(t, err, iothub.DeviceNotOnline)
	if n := e.inv.InFlight(); n != 0 {
		t.Errorf("%d calls still in flight", n)
	}
}

// Only the rid as the Invoker wrote it finds its call: "007" or "+7" for
// rid 7 are someone else's answers.
func TestInvoker_Deliver_RidSpelling(t *testing.T) {
	e := newEnv()
	e.tr.set("dev1", "", true)
	out := e.invoke(Request{DeviceID: "dev1", MethodName: "m"})
	_, rid := e.tr.next(t)
	for _, bad := range []string{"0" + rid, "+" + rid, rid + " ", "", "x"} {
		e.inv.Deliver("dev1", "", bad, 200, []byte(`"wrong"`))
	}
	e.inv.Deliver("dev1", "", rid, 200, []byte(`"right"`))
	if o := wait(t, out); o.err != nil || string(o.resp.Payload) != `"right"` {
		t.Fatalf("got %+v", o)
	}
}

// Many callers through the direct path and the shards: each gets its own
// answer (payloads are unique per call).
func TestInvoker_NonBlockingTransport_Concurrent(t *testing.T) {
	tr := &echoTransport{ch: make(chan [3]string, 1024)}
	inv := &Invoker{Transport: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tr.inv = inv
	for range 4 {
		go tr.serve()
	}
	defer close(tr.ch)
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				want := fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)
				r, err := inv.Invoke(context.Background(), Request{DeviceID: fmt.Sprintf("dev%d", i%7), MethodName: "echo", Payload: json.RawMessage(want)})
				if err != nil || string(r.Payload) != want {
					t.Errorf("got %s, %v; want %s", r.Payload, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := inv.InFlight(); n != 0 {
		t.Errorf("%d calls still in flight", n)
	}
}
