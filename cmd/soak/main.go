// Command soak runs the emulator under sustained mixed load for a while and
// reports errors, the emulator's RSS over time and the latency of each
// operation. It is not a test: run it by hand and record what it prints in
// docs/benchmarks.md.
//
//	go run ./cmd/soak                                  # 10,000 devices, 10 minutes
//	go run ./cmd/soak -devices 2000 -duration 3m
//
// It builds the emulator (or runs -emulator), starts it on free ports with a
// fresh data directory, registers the devices, connects each over MQTT and
// then, until the duration ends: devices send telemetry and reported
// properties; the service side sends C2D messages, desired-property patches
// and direct methods to random devices; devices disconnect and reconnect
// (churn); and a handful of misbehaving clients never read their socket,
// dribble bytes (slowloris) or announce oversized packets.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// deviceKey is every soak device's key, so tokens are signed locally.
const deviceKey = "c29hay1kZXZpY2Uta2V5LTAxMjM0NTY3ODlhYmNkZWY="

type options struct {
	devices                          int
	duration, telemetryEvery         time.Duration
	reportedEvery, sample            time.Duration
	c2dRate, desiredRate, methodRate float64
	churnRate                        float64
	misbehaving                      int
	emulator                         string
}

func main() {
	var o options
	flag.IntVar(&o.devices, "devices", 10000, "devices connected over MQTT")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the load runs (after connecting)")
	flag.DurationVar(&o.telemetryEvery, "telemetry-every", 10*time.Second, "each device sends one QoS 1 telemetry message this often")
	flag.DurationVar(&o.reportedEvery, "reported-every", time.Minute, "each device patches its reported properties this often")
	flag.Float64Var(&o.c2dRate, "c2d-rate", 20, "C2D messages sent per second (to random devices)")
	flag.Float64Var(&o.desiredRate, "desired-rate", 20, "desired-property patches per second")
	flag.Float64Var(&o.methodRate, "method-rate", 20, "direct-method calls per second")
	flag.Float64Var(&o.churnRate, "churn-rate", 5, "device reconnects per second")
	flag.IntVar(&o.misbehaving, "misbehaving", 5, "clients of each kind: never reading, slowloris, oversized packets")
	flag.DurationVar(&o.sample, "sample", 15*time.Second, "RSS sampling interval")
	flag.StringVar(&o.emulator, "emulator", "", "emulator binary (default: go build ./cmd/iothub-emulator)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// stats collects latencies and errors per operation.
type stats struct {
	mu   sync.Mutex
	lat  map[string][]time.Duration
	errs map[string]int
	last map[string]string
}

func newStats() *stats {
	return &stats{lat: map[string][]time.Duration{}, errs: map[string]int{}, last: map[string]string{}}
}

func (s *stats) ok(op string, d time.Duration) {
	s.mu.Lock()
	s.lat[op] = append(s.lat[op], d)
	s.mu.Unlock()
}

func (s *stats) fail(op string, err error) {
	s.mu.Lock()
	s.errs[op]++
	s.last[op] = err.Error()
	s.mu.Unlock()
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func (s *stats) report(w io.Writer) (errors int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]string, 0, len(s.lat))
	for op := range s.lat {
		ops = append(ops, op)
	}
	for op := range s.errs {
		if _, ok := s.lat[op]; !ok {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	fmt.Fprintln(w, "| operation | count | errors | p50 | p99 | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, op := range ops {
		ds := s.lat[op]
		slices.Sort(ds)
		var mx time.Duration
		if len(ds) > 0 {
			mx = ds[len(ds)-1]
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s |\n", op, len(ds), s.errs[op], round(pct(ds, 0.5)), round(pct(ds, 0.99)), round(mx))
		errors += s.errs[op]
	}
	for op, e := range s.last {
		fmt.Fprintf(w, "\nlast %s error: %s\n", op, e)
	}
	return errors
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// emulator is the process under test.
type emulator struct {
	cmd            *exec.Cmd
	mqtt, httpBase string
	token          string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEmulator(ctx context.Context, bin, dir string) (*emulator, error) {
	if bin == "" {
		bin = filepath.Join(dir, "iothub-emulator")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/iothub-emulator")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build the emulator (run from the repository root): %w", err)
		}
	}
	mp, err := freePort()
	if err != nil {
		return nil, err
	}
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--mqtt-port", strconv.Itoa(mp), "--http-port", strconv.Itoa(hp),
		"--mqtts-port", "0", "--https-port", "0", "--log-level", "warn")
	logf, err := os.Create(filepath.Join(dir, "emulator.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	tok, _ := sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(24*time.Hour))
	e := &emulator{cmd: cmd, mqtt: net.JoinHostPort("127.0.0.1", strconv.Itoa(mp)), httpBase: "http://127.0.0.1:" + strconv.Itoa(hp), token: tok}
	for range 300 {
		if resp, err := http.Get(e.httpBase + "/_emulator/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return nil, errors.New("the emulator did not become healthy; see " + logf.Name())
}

// rssKB reads the emulator's resident set size.
func (e *emulator) rssKB() int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(e.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

var httpClient = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (e *emulator) do(method, path string, body []byte) (int, []byte, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, e.httpBase+path+sep+"api-version=2021-04-12", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (e *emulator) createDevices(n int) error {
	for start := 0; start < n; start += 100 {
		var batch []map[string]any
		for i := start; i < min(n, start+100); i++ {
			batch = append(batch, map[string]any{"id": devID(i), "importMode": "create",
				"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": deviceKey, "secondaryKey": deviceKey}}})
		}
		body, _ := json.Marshal(batch)
		st, b, err := e.do(http.MethodPost, "/devices", body)
		if err != nil {
			return err
		}
		if st != http.StatusOK {
			return fmt.Errorf("bulk create: %d %s", st, b)
		}
	}
	return nil
}

func devID(i int) string { return "soak" + strconv.Itoa(i) }

// device is one well-behaved simulated device.
type device struct {
	id string
	// op serializes the service's operations on the device with churn: a
	// reconnecting device is not sent anything, so every error counted is
	// the hub's.
	op sync.Mutex
	c  paho.Client

	mu      sync.Mutex
	waiters map[string]chan struct{} // by C2D body or desired seq
	rid     atomic.Int64
}

func (d *device) expect(key string) chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	d.waiters[key] = ch
	d.mu.Unlock()
	return ch
}

func (d *device) arrived(key string) {
	d.mu.Lock()
	ch, ok := d.waiters[key]
	delete(d.waiters, key)
	d.mu.Unlock()
	if ok {
		close(ch)
	}
}

func (d *device) forget(key string) {
	d.mu.Lock()
	delete(d.waiters, key)
	d.mu.Unlock()
}

func (d *device) connect(e *emulator, st *stats) error {
	tok, _ := sasauth.Sign("localhost/devices/"+d.id, deviceKey, "", time.Now().Add(24*time.Hour))
	o := paho.NewClientOptions().AddBroker("tcp://" + e.mqtt).SetClientID(d.id).SetUsername("localhost/" + d.id + "/?api-version=2021-04-12").
		SetPassword(tok).SetProtocolVersion(4).SetCleanSession(false).SetAutoReconnect(false).SetKeepAlive(60 * time.Second).
		SetConnectTimeout(30 * time.Second).SetOrderMatters(false)
	o.SetDefaultPublishHandler(func(cl paho.Client, m paho.Message) { d.handle(cl, m) })
	c := paho.NewClient(o)
	start := time.Now()
	t := c.Connect()
	if !t.WaitTimeout(60 * time.Second) {
		return errors.New("connect timed out")
	}
	if err := t.Error(); err != nil {
		return err
	}
	st.ok("mqtt connect", time.Since(start))
	s := c.SubscribeMultiple(map[string]byte{"devices/" + d.id + "/messages/devicebound/#": 1, "$iothub/twin/PATCH/properties/desired/#": 0,
		"$iothub/methods/POST/#": 0, "$iothub/twin/res/#": 0}, nil)
	if !s.WaitTimeout(60*time.Second) || s.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("subscribe: %v", s.Error())
	}
	d.c = c
	return nil
}

func (d *device) handle(cl paho.Client, m paho.Message) {
	t := m.Topic()
	switch {
	case strings.HasPrefix(t, "devices/"):
		d.arrived("c2d:" + string(m.Payload()))
	case strings.HasPrefix(t, "$iothub/methods/POST/"):
		_, rid, _ := strings.Cut(t, "?$rid=")
		cl.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, m.Payload())
	case strings.HasPrefix(t, "$iothub/twin/PATCH/properties/desired/"):
		var p struct{ Seq string }
		if json.Unmarshal(m.Payload(), &p) == nil && p.Seq != "" {
			d.arrived("desired:" + p.Seq)
		}
	case strings.HasPrefix(t, "$iothub/twin/res/"):
		rest := t[len("$iothub/twin/res/"):]
		if i := strings.Index(rest, "$rid="); i >= 0 {
			rid, _, _ := strings.Cut(rest[i+5:], "&")
			d.arrived("twin:" + rid)
		}
	}
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "iothub-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := startEmulator(ctx, o.emulator, dir)
	if err != nil {
		return err
	}
	defer func() { _ = e.cmd.Process.Kill(); _ = e.cmd.Wait() }()
	fmt.Printf("emulator pid %d, mqtt %s, http %s; RSS at start %d MB\n", e.cmd.Process.Pid, e.mqtt, e.httpBase, e.rssKB()/1024)
	if err := e.createDevices(o.devices); err != nil {
		return err
	}
	st := newStats()
	devs := make([]*device, o.devices)
	{
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range devs {
			d := &device{id: devID(i), waiters: map[string]chan struct{}{}}
			devs[i] = d
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := d.connect(e, st); err != nil {
					st.fail("mqtt connect", err)
				}
			}()
		}
		wg.Wait()
	}
	fmt.Printf("%d devices connected; RSS %d MB; running for %s\n", o.devices, e.rssKB()/1024, o.duration)

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	spawn := func(fn func()) { wg.Add(1); go func() { defer wg.Done(); fn() }() }

	// RSS over time.
	type sample struct {
		at  time.Duration
		rss int
	}
	var rss []sample
	var rssMu sync.Mutex
	begin := time.Now()
	spawn(func() {
		t := time.NewTicker(o.sample)
		defer t.Stop()
		for {
			rssMu.Lock()
			rss = append(rss, sample{time.Since(begin), e.rssKB()})
			rssMu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})

	// Device traffic: each device on its own schedule, spread over the period.
	for _, d := range devs {
		spawn(func() { deviceLoop(ctx, d, o, st) })
	}
	// Service traffic.
	spawn(func() { every(ctx, o.c2dRate, func() { go c2d(ctx, e, pick(devs), st) }) })
	spawn(func() { every(ctx, o.desiredRate, func() { go desired(ctx, e, pick(devs), st) }) })
	spawn(func() { every(ctx, o.methodRate, func() { go method(ctx, e, pick(devs), st) }) })
	spawn(func() { every(ctx, o.churnRate, func() { go churn(e, pick(devs), st) }) })
	// Misbehaving clients.
	for i := range o.misbehaving {
		spawn(func() { neverReads(ctx, e, i, st) })
		spawn(func() { slowloris(ctx, e, st) })
		spawn(func() { oversized(ctx, e, st) })
	}
	<-ctx.Done()
	wg.Wait()
	time.Sleep(2 * time.Second)
	rss = append(rss, sample{time.Since(begin), e.rssKB()})

	fmt.Printf("\n%d devices, %s, telemetry every %s, reported every %s, C2D %.0f/s, desired %.0f/s, methods %.0f/s, churn %.0f/s, %d misbehaving clients of each kind\n\n",
		o.devices, o.duration, o.telemetryEvery, o.reportedEvery, o.c2dRate, o.desiredRate, o.methodRate, o.churnRate, o.misbehaving)
	n := st.report(os.Stdout)
	fmt.Println("\n| time | RSS |")
	fmt.Println("|---:|---:|")
	for _, s := range rss {
		fmt.Printf("| %s | %d MB |\n", s.at.Round(time.Second), s.rss/1024)
	}
	fmt.Printf("\nerrors: %d\n", n)
	if n > 0 {
		return fmt.Errorf("%d errors", n)
	}
	return nil
}

func pick(devs []*device) *device { return devs[rand.IntN(len(devs))] }

// every calls fn rate times a second until ctx ends.
func every(ctx context.Context, rate float64, fn func()) {
	if rate <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// deadline bounds how long an operation may take before it counts as an
// error: generous, the hub's own timeouts are 30 s.
const deadline = 30 * time.Second

func deviceLoop(ctx context.Context, d *device, o options, st *stats) {
	// Random phase so devices do not send in lockstep.
	nextTel := time.Now().Add(rand.N(o.telemetryEvery))
	nextRep := time.Now().Add(rand.N(o.reportedEvery))
	for {
		wake := nextTel
		if nextRep.Before(wake) {
			wake = nextRep
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(wake)):
		}
		if !d.op.TryLock() {
			continue // reconnecting
		}
		c := d.c
		now := time.Now()
		if c != nil && !now.Before(nextTel) {
			nextTel = now.Add(o.telemetryEvery)
			start := time.Now()
			t := c.Publish("devices/"+d.id+"/messages/events/kind=soak", 1, false, `{"t":`+strconv.FormatInt(start.UnixNano(), 10)+`}`)
			if !t.WaitTimeout(deadline) {
				st.fail("telemetry (PUBACK)", errors.New("no PUBACK"))
			} else if t.Error() != nil {
				st.fail("telemetry (PUBACK)", t.Error())
			} else {
				st.ok("telemetry (PUBACK)", time.Since(start))
			}
		}
		if c != nil && !now.Before(nextRep) {
			nextRep = now.Add(o.reportedEvery)
			rid := strconv.FormatInt(d.rid.Add(1), 10)
			ch := d.expect("twin:" + rid)
			start := time.Now()
			c.Publish("$iothub/twin/PATCH/properties/reported/?$rid="+rid, 0, false, `{"soak":`+rid+`}`)
			select {
			case <-ch:
				st.ok("twin reported (MQTT)", time.Since(start))
			case <-time.After(deadline):
				d.forget("twin:" + rid)
				st.fail("twin reported (MQTT)", errors.New("no response"))
			}
		}
		d.op.Unlock()
	}
}

var seq atomic.Int64

// lock takes the device for a service operation, skipping it while it
// reconnects or is disconnected.
func lock(d *device) bool {
	if !d.op.TryLock() {
		return false
	}
	if d.c == nil || !d.c.IsConnectionOpen() {
		d.op.Unlock()
		return false
	}
	return true
}

func c2d(ctx context.Context, e *emulator, d *device, st *stats) {
	if !lock(d) {
		return
	}
	defer d.op.Unlock()
	body := "m" + strconv.FormatInt(seq.Add(1), 10)
	ch := d.expect("c2d:" + body)
	start := time.Now()
	code, b, err := e.do(http.MethodPost, "/_emulator/devices/"+d.id+"/messages/devicebound", []byte(`{"body":"`+body+`"}`))
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%d %s", code, b)
	}
	if err != nil {
		d.forget("c2d:" + body)
		st.fail("C2D send (REST)", err)
		return
	}
	st.ok("C2D send (REST)", time.Since(start))
	select {
	case <-ch:
		st.ok("C2D delivery (send to receipt)", time.Since(start))
	case <-time.After(deadline):
		d.forget("c2d:" + body)
		st.fail("C2D delivery (send to receipt)", errors.New("not received"))
	case <-ctx.Done():
		d.forget("c2d:" + body)
	}
}

func desired(ctx context.Context, e *emulator, d *device, st *stats) {
	if !lock(d) {
		return
	}
	defer d.op.Unlock()
	s := strconv.FormatInt(seq.Add(1), 10)
	ch := d.expect("desired:" + s)
	start := time.Now()
	code, b, err := e.do(http.MethodPatch, "/twins/"+d.id, []byte(`{"properties":{"desired":{"seq":"`+s+`"}}}`))
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%d %s", code, b)
	}
	if err != nil {
		d.forget("desired:" + s)
		st.fail("twin desired PATCH (REST)", err)
		return
	}
	st.ok("twin desired PATCH (REST)", time.Since(start))
	select {
	case <-ch:
		st.ok("desired notification (PATCH to receipt)", time.Since(start))
	case <-time.After(deadline):
		d.forget("desired:" + s)
		st.fail("desired notification (PATCH to receipt)", errors.New("not received"))
	case <-ctx.Done():
		d.forget("desired:" + s)
	}
}

func method(_ context.Context, e *emulator, d *device, st *stats) {
	if !lock(d) {
		return
	}
	defer d.op.Unlock()
	start := time.Now()
	code, b, err := e.do(http.MethodPost, "/twins/"+d.id+"/methods", []byte(`{"methodName":"soak","responseTimeoutInSeconds":30,"payload":{"x":1}}`))
	if err == nil && (code != http.StatusOK || !bytes.Contains(b, []byte(`"status":200`))) {
		err = fmt.Errorf("%d %s", code, b)
	}
	if err != nil {
		st.fail("direct method (REST round trip)", err)
		return
	}
	st.ok("direct method (REST round trip)", time.Since(start))
}

func churn(e *emulator, d *device, st *stats) {
	d.op.Lock()
	defer d.op.Unlock()
	if d.c != nil {
		d.c.Disconnect(0)
		d.c = nil
	}
	if err := d.connect(e, st); err != nil {
		st.fail("mqtt connect", err)
	}
}

// rawConn opens a TCP connection with a tiny receive buffer.
func rawConn(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return d.Dial("tcp", addr)
}

// neverReads connects a device, subscribes to desired properties, stops
// reading and has the service patch its twin twice a second with 24 KB
// patches. The hub must disconnect it without stalling anyone; it
// reconnects and does it again.
func neverReads(ctx context.Context, e *emulator, i int, st *stats) {
	id := "stuck" + strconv.Itoa(i)
	body, _ := json.Marshal([]map[string]any{{"id": id, "importMode": "createOrUpdate",
		"authentication": map[string]any{"type": "sas", "symmetricKey": map[string]any{"primaryKey": deviceKey, "secondaryKey": deviceKey}}}})
	if code, b, err := e.do(http.MethodPost, "/devices", body); err != nil || code != http.StatusOK {
		st.fail("misbehaving setup", fmt.Errorf("%d %s %v", code, b, err))
		return
	}
	var patch strings.Builder
	patch.WriteString(`{"properties":{"desired":{`)
	for k := range 6 {
		fmt.Fprintf(&patch, `"b%d":"%s",`, k, strings.Repeat("x", 4000))
	}
	for ctx.Err() == nil {
		c, err := rawConn(e.mqtt)
		if err != nil {
			st.fail("misbehaving setup", err)
			return
		}
		tok, _ := sasauth.Sign("localhost/devices/"+id, deviceKey, "", time.Now().Add(time.Hour))
		if err := rawHandshake(c, id, tok); err != nil {
			c.Close()
			st.fail("misbehaving setup", err)
			time.Sleep(time.Second)
			continue
		}
		disconnected := false
		for n := 0; ctx.Err() == nil && n < 400; n++ {
			code, b, err := e.do(http.MethodPatch, "/twins/"+id, []byte(patch.String()+`"n":`+strconv.Itoa(n)+`}}}`))
			if err != nil || code != http.StatusOK {
				st.fail("twin desired PATCH (REST)", fmt.Errorf("stuck device: %d %s %v", code, b, err))
			}
			time.Sleep(500 * time.Millisecond)
			if _, err := c.Write([]byte{0xc0, 0}); err != nil { // PINGREQ: fails once the hub hung up
				disconnected = true
				break
			}
		}
		if disconnected {
			st.ok("never-reading client disconnected by the hub", 0)
		}
		c.Close()
	}
}

// rawHandshake sends CONNECT (keep-alive 0) and a SUBSCRIBE to desired
// properties, and reads the CONNACK and SUBACK.
func rawHandshake(c net.Conn, id, tok string) error {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	user := "localhost/" + id + "/?api-version=2021-04-12"
	var v []byte
	v = append(v, str("MQTT")...)
	v = append(v, 4, 0xC2, 0, 0) // level 4; username, password, clean; keep-alive 0
	v = append(v, str(id)...)
	v = append(v, str(user)...)
	v = append(v, str(tok)...)
	if _, err := c.Write(append(append([]byte{0x10}, varint(len(v))...), v...)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return err
	}
	if ack[3] != 0 {
		return fmt.Errorf("CONNACK %d", ack[3])
	}
	f := "$iothub/twin/PATCH/properties/desired/#"
	sub := append([]byte{0, 1}, str(f)...)
	sub = append(sub, 0)
	if _, err := c.Write(append(append([]byte{0x82}, varint(len(sub))...), sub...)); err != nil {
		return err
	}
	sa := make([]byte, 5)
	_, err := io.ReadFull(c, sa)
	_ = c.SetReadDeadline(time.Time{})
	return err
}

func varint(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// slowloris opens a connection and dribbles a CONNECT one byte every few
// seconds; the hub's CONNECT deadline must end it.
func slowloris(ctx context.Context, e *emulator, st *stats) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", e.mqtt, 10*time.Second)
		if err != nil {
			st.fail("misbehaving setup", err)
			return
		}
		start := time.Now()
		for ctx.Err() == nil {
			if _, err := c.Write([]byte{0x10}); err != nil {
				break
			}
			time.Sleep(5 * time.Second)
		}
		if ctx.Err() == nil {
			st.ok("slowloris connection closed by the hub", time.Since(start))
		}
		c.Close()
	}
}

// oversized announces a 256 MB CONNECT; the hub must close the connection
// without reading (or allocating) it.
func oversized(ctx context.Context, e *emulator, st *stats) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", e.mqtt, 10*time.Second)
		if err != nil {
			st.fail("misbehaving setup", err)
			return
		}
		start := time.Now()
		_, _ = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
		_ = c.SetReadDeadline(time.Now().Add(deadline))
		_, err = io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			st.fail("oversized packet refused", errors.New("the connection stayed open"))
		} else {
			st.ok("oversized packet refused", time.Since(start))
		}
		c.Close()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
