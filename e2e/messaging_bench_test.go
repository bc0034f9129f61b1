package e2e

// The telemetry benchmark of docs/benchmarks.md: the emulator (a separate
// process, SAS devices, durable log on disk) and Mosquitto side by side in
// one run, under the same load from this process. It needs mosquitto on
// PATH and runs only with IOTHUB_BENCH=1:
//
//	IOTHUB_BENCH=1 go test ./e2e -run TestMessagingBenchmark -v -timeout 30m
//
// BENCH_EMULATOR_BIN=path measures that binary instead of this tree.
//
// It reports figures and asserts none of them.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

const benchKey = "QmVuY2htYXJrRGV2aWNlS2V5Rm9yVGhlRW11bGF0b3I=" // every bench device's key

func TestMessagingBenchmark(t *testing.T) {
	if os.Getenv("IOTHUB_BENCH") == "" {
		t.Skip("set IOTHUB_BENCH=1 (and install mosquitto) to run the messaging benchmark")
	}
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("mosquitto is not installed")
	}
	publishers := envInt("BENCH_PUBLISHERS", 100)
	perPublisher := envInt("BENCH_MESSAGES", 500)
	idle := envInt("BENCH_IDLE", 10000)
	window := envInt("BENCH_WINDOW", 1)
	dir := t.TempDir()

	// BENCH_EMULATOR_BIN runs a given emulator binary instead of building
	// this tree: to compare two commits in turns on a shared machine.
	bin := os.Getenv("BENCH_EMULATOR_BIN")
	if bin == "" {
		bin = buildEmulator(t)
	}
	emuMQTT, emuHTTP := benchPort(t), benchPort(t)
	// BENCH_PROFILE=dir saves CPU profiles of the emulator's throughput
	// rounds and a heap profile with the idle devices connected, through its
	// diagnostic pprof listener.
	profDir, pprofAddr := os.Getenv("BENCH_PROFILE"), ""
	if profDir != "" {
		pprofAddr = "127.0.0.1:" + benchPort(t)
		os.Setenv("IOTHUB_EMULATOR_DEBUG_PPROF", pprofAddr)
		defer os.Unsetenv("IOTHUB_EMULATOR_DEBUG_PPROF")
	}
	emu := startProc(t, bin, "--data-dir", filepath.Join(dir, "data"), "--mqtt-port", emuMQTT, "--http-port", emuHTTP,
		"--mqtts-port", "0", "--https-port", "0", "--log-level", "warn")
	waitPort(t, "127.0.0.1:"+emuMQTT)
	mosqPort := benchPort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte("listener "+mosqPort+" 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\n"), 0o644)
	os.Unsetenv("IOTHUB_EMULATOR_DEBUG_PPROF")
	mq := startProc(t, mosq, "-c", conf)
	waitPort(t, "127.0.0.1:"+mosqPort)

	n := max(publishers, idle)
	createBenchDevices(t, "http://127.0.0.1:"+emuHTTP, n)
	t.Logf("created %d devices", n)

	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	type target struct {
		name   string
		addr   string
		pid    int
		sas    bool
		topics func(i int) string
	}
	targets := []target{
		{"emulator", "127.0.0.1:" + emuMQTT, emu.Process.Pid, true, func(i int) string {
			return "devices/bench" + strconv.Itoa(i) + "/messages/events/"
		}},
		{"mosquitto", "127.0.0.1:" + mosqPort, mq.Process.Pid, false, func(i int) string {
			return "devices/bench" + strconv.Itoa(i) + "/messages/events/"
		}},
	}
	for _, qos := range []byte{0, 1} {
		for round := range 2 { // alternate, so background load hits both alike
			for _, tg := range targets {
				var prof chan struct{}
				var before telemetryStats
				if pprofAddr != "" && tg.name == "emulator" {
					before = readTelemetryStats(pprofAddr)
					prof = saveProfile(t, pprofAddr, "profile?seconds="+strconv.Itoa(envInt("BENCH_PROFILE_SECONDS", 3)),
						filepath.Join(profDir, fmt.Sprintf("cpu-qos%d-round%d.pprof", qos, round+1)))
				}
				rate, err := throughput(tg.addr, tg.sas, publishers, perPublisher, window, qos, payload, tg.topics)
				if err != nil {
					t.Fatalf("%s QoS %d: %v", tg.name, qos, err)
				}
				t.Logf("RESULT throughput %-9s QoS %d round %d: %8.0f msg/s (%d publishers x %d msgs, 256 B, window %d)",
					tg.name, qos, round+1, rate, publishers, perPublisher, window)
				if prof != nil {
					<-prof
					d := readTelemetryStats(pprofAddr)
					d.Batches -= before.Batches
					d.Messages -= before.Messages
					d.CommitTime -= before.CommitTime
					if d.Batches > 0 {
						t.Logf("emulator writer: %d commits, %.1f messages each, %v per commit, %v committing in all",
							d.Batches, float64(d.Messages)/float64(d.Batches), d.CommitTime/time.Duration(d.Batches), d.CommitTime)
					}
				}
			}
		}
	}
	for _, tg := range targets {
		before := rssKB(t, tg.pid)
		conns, err := idleConnect(tg.addr, tg.sas, idle)
		if err != nil {
			t.Fatalf("%s idle connections: %v", tg.name, err)
		}
		time.Sleep(3 * time.Second)
		after := rssKB(t, tg.pid)
		if pprofAddr != "" && tg.name == "emulator" {
			<-saveProfile(t, pprofAddr, "heap?gc=1", filepath.Join(profDir, "heap-idle.pprof"))
			<-saveProfile(t, pprofAddr, "goroutine", filepath.Join(profDir, "goroutine-idle.pprof"))
			<-saveProfile(t, pprofAddr, "heap?debug=1", filepath.Join(profDir, "heap-idle.txt")) // with runtime.MemStats
		}
		t.Logf("RESULT idle %-9s %d connections: RSS %d -> %d KB, %.1f KB per connection", tg.name, len(conns), before, after,
			float64(after-before)/float64(len(conns)))
		for _, c := range conns {
			c.Close()
		}
	}
	if n, err := countStored("http://127.0.0.1:" + emuHTTP); err == nil {
		t.Logf("emulator: last sequence number %d (retention keeps the newest 100000)", n)
	}
}

type telemetryStats struct {
	Batches, Messages int64
	CommitTime        time.Duration
}

// readTelemetryStats reads the telemetry writer's counters from the
// emulator's /debug/vars.
func readTelemetryStats(addr string) telemetryStats {
	var v struct{ Telemetry telemetryStats }
	resp, err := http.Get("http://" + addr + "/debug/vars")
	if err == nil {
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
	}
	return v.Telemetry
}

// saveProfile fetches /debug/pprof/<what> into file in the background; the
// channel closes when it is saved.
func saveProfile(t *testing.T, addr, what, file string) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get("http://" + addr + "/debug/pprof/" + what)
		if err != nil {
			t.Logf("profile %s: %v", what, err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Logf("profile %s: %v", what, err)
		}
	}()
	return done
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchPort(t *testing.T) string { return strconv.Itoa(freePort(t)) }

func startProc(t *testing.T, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func waitPort(t *testing.T, addr string) {
	checkFor(t, 30*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func ownerToken() string {
	tok, _ := sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(time.Hour))
	return tok
}

func createBenchDevices(t *testing.T, base string, n int) {
	tok := ownerToken()
	var wg sync.WaitGroup
	ids := make(chan int)
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				id := "bench" + strconv.Itoa(i)
				body := `{"deviceId":"` + id + `","authentication":{"type":"sas","symmetricKey":{"primaryKey":"` + benchKey + `","secondaryKey":"` + benchKey + `"}}}`
				req, _ := http.NewRequest(http.MethodPut, base+"/devices/"+id+"?api-version=2021-04-12", strings.NewReader(body))
				req.Header.Set("Authorization", tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 409 {
					errs <- fmt.Errorf("create %s: %s", id, resp.Status)
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case ids <- i:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	close(ids)
	wg.Wait()
}

func countStored(base string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/_emulator/messages?limit=1", nil)
	req.Header.Set("Authorization", ownerToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	i := strings.Index(string(b), `"sequenceNumber":`)
	if i < 0 {
		return 0, errors.New("no messages")
	}
	s := string(b[i+len(`"sequenceNumber":`):])
	return strconv.Atoi(s[:strings.IndexAny(s, ",}")])
}

// rawConn is a minimal MQTT 3.1.1 client: the broker, not the client
// library, should be what is measured.
type rawConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendPacket(b []byte, header byte, body []byte) []byte {
	b = append(b, header)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

func rawDial(addr string, i int, sas bool) (*rawConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	id := "bench" + strconv.Itoa(i)
	flags := byte(0x02) // clean session
	var payload []byte
	payload = appendString(payload, id)
	if sas {
		flags |= 0xC0
		tok, _ := sasauth.Sign("localhost/devices/"+id, benchKey, "", time.Now().Add(24*time.Hour))
		payload = appendString(payload, "localhost/"+id+"/?api-version=2021-04-12")
		payload = appendString(payload, tok)
	}
	vh := appendString(nil, "MQTT")
	vh = append(vh, 4, flags, 0x02, 0x58) // keepalive 600 s
	pk := appendPacket(nil, 0x10, append(vh, payload...))
	if _, err := c.Write(pk); err != nil {
		c.Close()
		return nil, err
	}
	rc := &rawConn{Conn: c, r: bufio.NewReaderSize(c, 512), w: bufio.NewWriterSize(c, 4096)}
	h, body, err := rc.read()
	if err != nil || h != 0x20 || len(body) < 2 || body[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK %x %x: %v", h, body, err)
	}
	return rc, nil
}

func (c *rawConn) read() (byte, []byte, error) {
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return h, body, err
}

// throughput runs publishers connections, each sending perPublisher
// messages with up to window QoS 1 messages awaiting their PUBACK. At QoS
// 0 each connection ends with one QoS 1 message: brokers handle a
// connection's packets in order, so its PUBACK means all were taken in.
func throughput(addr string, sas bool, publishers, perPublisher, window int, qos byte, payload []byte, topic func(int) string) (float64, error) {
	conns := make([]*rawConn, publishers)
	for i := range conns {
		c, err := rawDial(addr, i, sas)
		if err != nil {
			return 0, err
		}
		conns[i] = c
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publishAll(ctx, c, topic(i), perPublisher, window, qos, payload); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(publishers*perPublisher) / el.Seconds(), nil
}

func publishAll(ctx context.Context, c *rawConn, topic string, n, window int, qos byte, payload []byte) error {
	acks := make(chan error, 1)
	sem := make(chan struct{}, window)
	pending := 0
	if qos == 1 {
		pending = n
	} else {
		pending = 1
	}
	go func() {
		for got := 0; got < pending; got++ {
			h, _, err := c.read()
			if err != nil {
				acks <- err
				return
			}
			if h&0xf0 != 0x40 {
				got--
				continue
			}
			<-sem
		}
		acks <- nil
	}()
	var buf []byte
	for i := range n {
		q := qos
		if qos == 0 && i == n-1 {
			q = 1
		}
		body := appendString(nil, topic)
		header := byte(0x30)
		if q == 1 {
			header = 0x32
			body = binary.BigEndian.AppendUint16(body, uint16(i%65535+1))
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		buf = appendPacket(buf[:0], header, append(body, payload...))
		if _, err := c.w.Write(buf); err != nil {
			return err
		}
		// Flush when this message must be acknowledged before the next, or
		// the buffer is full; QoS 0 streams.
		if q == 1 || c.w.Available() < len(buf) {
			if err := c.w.Flush(); err != nil {
				return err
			}
		}
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	select {
	case err := <-acks:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func idleConnect(addr string, sas bool, n int) ([]*rawConn, error) {
	conns := make([]*rawConn, n)
	var wg sync.WaitGroup
	idx := make(chan int)
	var mu sync.Mutex
	var first error
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				c, err := rawDial(addr, i, sas)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if first != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, first
	}
	return conns, nil
}

func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
