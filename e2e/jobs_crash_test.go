package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// process is the emulator binary running as a child process, for crash
// tests: the in-process hub cannot be killed with SIGKILL.
type process struct {
	cmd                *exec.Cmd
	bin, dir           string
	httpPort, mqttPort int
	log                *bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func buildEmulator(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "iothub-emulator")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/iothub-emulator").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func (p *process) start(t *testing.T) {
	t.Helper()
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(p.bin, "--data-dir", p.dir, "--mqtts-port", "0", "--https-port", "0",
		"--mqtt-port", strconv.Itoa(p.mqttPort), "--http-port", strconv.Itoa(p.httpPort), "--job-workers", "4")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/_emulator/health", p.httpPort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (p *process) do(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s?api-version=2021-04-12", p.httpPort, path), rd)
	tok, _ := sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(time.Hour))
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, p.log)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// A kill -9 in the middle of a method job, then a restart: the job resumes,
// devices that had finished keep their outcome and are not called again,
// and the statistics add up.
func TestJobs_ResumeAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the emulator binary")
	}
	t.Parallel()
	p := &process{bin: buildEmulator(t), dir: t.TempDir(), httpPort: freePort(t), mqttPort: freePort(t)}
	p.start(t)
	defer func() { p.cmd.Process.Kill(); p.cmd.Wait() }()

	const n = 120
	for start := 0; start < n; start += 100 { // the hub takes 100 per bulk request
		var bulk []map[string]any
		for i := start; i < min(start+100, n); i++ {
			bulk = append(bulk, map[string]any{"id": fmt.Sprintf("lock%03d", i), "importMode": "create"})
		}
		if st := p.do(t, http.MethodPost, "/devices", bulk, nil); st != 200 {
			t.Fatalf("bulk create: %d", st)
		}
	}

	// Devices answer lockDoor slowly, so the job is still running when the
	// process dies. They reconnect on their own, as the SDKs do, and never
	// subscribe again: their persistent sessions must survive the crash.
	var calls [n]atomic.Int32
	var clients []paho.Client
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("lock%03d", i)
		var dev struct {
			Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
		}
		p.do(t, http.MethodGet, "/devices/"+id, nil, &dev)
		tok, _ := sasauth.Sign("localhost/devices/"+id, dev.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
		opts := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", p.mqttPort)).SetClientID(id).
			SetUsername("localhost/" + id + "/?api-version=2021-04-12").SetPassword(tok).SetCleanSession(false).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond)
		c := paho.NewClient(opts)
		if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("connect %s: %v", id, tk.Error())
		}
		idx := i
		handler := func(c paho.Client, m paho.Message) {
			calls[idx].Add(1)
			time.Sleep(20 * time.Millisecond)
			rid := m.Topic()[len(m.Topic())-len(ridSuffix(m.Topic())):]
			c.Publish("$iothub/methods/res/200/?$rid="+rid, 0, false, `{"locked":true}`)
		}
		if tk := c.Subscribe("$iothub/methods/POST/#", 0, handler); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe: %v", tk.Error())
		}
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
	}
	defer func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	}()

	job := map[string]any{"jobId": "crash1", "type": "scheduleDeviceMethod", "queryCondition": "STARTSWITH(deviceId, 'lock')",
		"cloudToDeviceMethod": map[string]any{"methodName": "lockDoor", "payload": map[string]any{"lockTime": "10m"},
			"responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 30}}
	if st := p.do(t, http.MethodPut, "/jobs/v2/crash1", job, nil); st != 200 {
		t.Fatalf("PUT job: %d", st)
	}
	checkFor(t, 30*time.Second, func() error {
		var j jobDoc
		p.do(t, http.MethodGet, "/jobs/v2/crash1", nil, &j)
		if j.Stats.SucceededCount < 20 {
			return fmt.Errorf("%d succeeded", j.Stats.SucceededCount)
		}
		return nil
	})
	// What the hub acknowledged as finished before the crash.
	var before []struct {
		DeviceID string `json:"deviceId"`
		Status   string `json:"status"`
	}
	p.do(t, http.MethodPost, "/devices/query", map[string]string{"query": "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'crash1' AND devices.jobs.status = 'completed'"}, &before)
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no clean shutdown
		t.Fatal(err)
	}
	p.cmd.Wait()
	if len(before) == 0 || len(before) >= n {
		t.Fatalf("%d devices finished before the kill; the test needs a job cut in the middle", len(before))
	}

	p.start(t)
	var j jobDoc
	checkFor(t, 60*time.Second, func() error {
		p.do(t, http.MethodGet, "/jobs/v2/crash1", nil, &j)
		if j.Status != "completed" {
			return fmt.Errorf("job %s %+v", j.Status, j.Stats)
		}
		return nil
	})
	if j.Stats.DeviceCount != n || j.Stats.SucceededCount != n || j.Stats.FailedCount != 0 || j.Stats.PendingCount != 0 {
		t.Errorf("stats after resume: %+v", j.Stats)
	}
	for _, b := range before {
		var i int
		fmt.Sscanf(b.DeviceID, "lock%03d", &i)
		if got := calls[i].Load(); got != 1 {
			t.Errorf("%s finished before the kill but was called %d times", b.DeviceID, got)
		}
	}
	for i := range calls {
		if calls[i].Load() == 0 {
			t.Errorf("lock%03d was never called", i)
		}
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "crash test: %d of %d devices finished before the kill\n", len(before), n)
	}
}

// ridSuffix returns the $rid value at the end of a method request topic.
func ridSuffix(topic string) string {
	const key = "?$rid="
	for i := len(topic) - len(key); i >= 0; i-- {
		if topic[i:i+len(key)] == key {
			return topic[i+len(key):]
		}
	}
	return ""
}
