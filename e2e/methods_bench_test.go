package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// BenchmarkMethods measures direct-method round trips through the whole hub:
// a REST call (plain HTTP/1.1, keep-alive) → MQTT publish to a device that
// answers at once → REST answer. It reports the latency percentiles of one
// call and the invocations per second. Run it with
//
//	go test ./e2e -run '^$' -bench BenchmarkMethods -benchtime 20000x
//
// The callers and the devices share the process and its CPUs with the hub,
// so both are minimal clients (one connection and one goroutine each, no
// client library; see methodCaller and methodDevice): with net/http's
// client and paho, about a third of the CPU went to the load generator.
// Figures are recorded in docs/benchmarks.md.
func BenchmarkMethods(b *testing.B) {
	for _, tc := range []struct {
		name             string
		devices, callers int
	}{
		{"devices=1/callers=1", 1, 1},
		{"devices=1/callers=100", 1, 100},
		{"devices=100/callers=100", 100, 100},
		{"devices=1000/callers=100", 1000, 100},
		{"devices=1000/callers=1000", 1000, 1000},
	} {
		b.Run(tc.name, func(b *testing.B) { benchMethods(b, tc.devices, tc.callers) })
	}
}

func benchMethods(b *testing.B, devices, callers int) {
	h := hubtest.Start(b)
	ids := make([]*hubtest.Device, devices)
	for i := range ids {
		ids[i] = h.CreateDevice(b, fmt.Sprintf("bench%04d", i))
	}
	// Connect the devices a few at a time; each answers every method.
	var deviceErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, devices)
	for _, d := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := startMethodDevice(b, h, d, &deviceErr); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}

	token := h.ServiceToken(b, "")
	body := `{"methodName":"echo","payload":{"n":1},"responseTimeoutInSeconds":30}`
	const want = `{"status":200,"payload":{"n":1}}`
	requests := make([][]byte, devices)
	for i, d := range ids {
		requests[i] = []byte("POST /twins/" + d.ID + "/methods?api-version=2021-04-12 HTTP/1.1\r\n" +
			"Host: " + h.Addr("http") + "\r\nAuthorization: " + token + "\r\n" +
			"Content-Type: application/json; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	}
	cs := make([]*methodCaller, callers)
	for i := range cs {
		c, err := dialMethodCaller(h.Addr("http"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.conn.Close() })
		cs[i] = c
	}
	// Warm up the connections and the devices.
	for i, c := range cs {
		for j := range 2 {
			if err := c.call(requests[(2*i+j)%devices], want); err != nil {
				b.Fatal(err)
			}
		}
	}

	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	stopProfile := profileTimedPart(b)
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	var cw sync.WaitGroup
	for _, c := range cs {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := c.call(requests[i%devices], want); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	cw.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	stopProfile()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if err, _ := deviceErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	// CPU time of the whole process (hub, callers and devices) per call:
	// less at the mercy of other load on a shared machine than calls/s.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/call")
}

// profileTimedPart writes a CPU profile of the timed part alone (no hub
// start, device creation or connects) to $METHODS_BENCH_CPUPROFILE, if
// set; each sub-benchmark's run overwrites the last one's.
func profileTimedPart(b *testing.B) (stop func()) {
	path := os.Getenv("METHODS_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// methodCaller is one back-end caller: one keep-alive HTTP/1.1 connection,
// one request at a time, the answer parsed by net/http's own reader.
type methodCaller struct {
	conn net.Conn
	r    *bufio.Reader
	buf  bytes.Buffer
}

func dialMethodCaller(addr string) (*methodCaller, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &methodCaller{conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

func (c *methodCaller) call(req []byte, want string) error {
	if err := c.conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return err
	}
	if _, err := c.conn.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || c.buf.String() != want {
		return fmt.Errorf("%d %s", resp.StatusCode, c.buf.Bytes())
	}
	return nil
}

// startMethodDevice connects d over plain MQTT 3.1.1, subscribes it to
// method requests and answers each at once with status 200 and the request
// payload, on one goroutine: it writes the answers to all the requests one
// read brought in with one write.
func startMethodDevice(tb testing.TB, h *hubtest.Hub, d *hubtest.Device, failed *atomic.Value) error {
	conn, err := net.Dial("tcp", h.MQTTAddr())
	if err != nil {
		return err
	}
	var payload []byte
	payload = appendString(payload, d.ClientID())
	payload = appendString(payload, d.Username(h))
	payload = appendString(payload, d.Token(tb, h, time.Hour))
	vh := appendString(nil, "MQTT")
	vh = append(vh, 4, 0xC2, 0x02, 0x58) // username, password, clean session; keep-alive 600 s
	sub := appendString([]byte{0, 1}, methodsFilter)
	sub = append(sub, 0)
	out := appendPacket(appendPacket(nil, 0x10, append(vh, payload...)), 0x82, sub)
	if _, err := conn.Write(out); err != nil {
		conn.Close()
		return err
	}
	c := &rawConn{Conn: conn, r: bufio.NewReaderSize(conn, 16<<10), w: bufio.NewWriterSize(conn, 16<<10)}
	for _, want := range []byte{0x20, 0x90} {
		if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			return err
		}
		hd, body, err := c.read()
		if err != nil || hd != want || body[len(body)-1] >= 0x80 || (hd == 0x20 && body[1] != 0) {
			conn.Close()
			return fmt.Errorf("%s: packet %x %x, want %x: %v", d.ID, hd, body, want, err)
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.answerMethods(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
			failed.CompareAndSwap(nil, fmt.Errorf("%s: %w", d.ID, err))
		}
	}()
	// Before the hub closes (cleanups run last first): hang up, and wait
	// until the hub has let the device go. mochi v2.7.9 can deadlock when
	// clients disconnect while it closes its listeners (Clients.GetByListener
	// read-locks twice; mochi-mqtt/server#488).
	tb.Cleanup(func() {
		conn.Close()
		<-done
		for deadline := time.Now().Add(10 * time.Second); h.IsSubscribed(d.ID, "", methodsFilter) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	})
	return nil
}

func (c *rawConn) answerMethods() error {
	var res []byte
	for {
		hd, body, err := c.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if hd&0xF0 != 0x30 || hd&0x06 != 0 || len(body) < 2 {
			return fmt.Errorf("unexpected packet %x", hd)
		}
		n := int(body[0])<<8 | int(body[1])
		topic, payload := string(body[2:2+n]), body[2+n:]
		i := strings.LastIndex(topic, "?$rid=")
		if !strings.HasPrefix(topic, "$iothub/methods/POST/") || i < 0 {
			return fmt.Errorf("unexpected topic %q", topic)
		}
		res = appendString(res[:0], "$iothub/methods/res/200/"+topic[i:])
		res = append(res, payload...)
		if _, err := c.w.Write(appendPacket(nil, 0x30, res)); err != nil {
			return err
		}
		if c.r.Buffered() == 0 {
			if err := c.w.Flush(); err != nil {
				return err
			}
		}
	}
}
