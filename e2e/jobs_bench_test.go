package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// cpuTime is the CPU time the emulator process has used so far (Linux).
// The benchmarks report it per operation next to the rate: on a shared
// machine the rate follows the load, the emulator's CPU time much less.
func (p *process) cpuTime(b *testing.B) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the parenthesized command name; utime and stime are the
	// 14th and 15th of the whole line, in clock ticks (100 per second).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func startProcess(b *testing.B, args ...string) *process {
	p := &process{bin: buildEmulator(b), dir: b.TempDir(), httpPort: freePort(b), mqttPort: freePort(b), args: args}
	p.start(b)
	b.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// Jobs benchmarks, recorded in docs/benchmarks.md ("Jobs"). Each run is one
// job end to end (PUT to completed), on the emulator binary with its
// database on disk, the simulated devices in the benchmark's own process
// (10,000 connections on each side would not fit one process's file limit).
// Run them with -benchtime 1x.

// seedDevices bulk-creates n devices named prefix-i, with tags.building 43.
func seedDevices(b *testing.B, h *process, prefix string, n int) {
	b.Helper()
	for start := 0; start < n; start += 100 {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := start; i < min(start+100, n); i++ {
			if i > start {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"id":"%s-%06d","importMode":"create","tags":{"building":43}}`, prefix, i)
		}
		sb.WriteByte(']')
		if st := h.do(b, http.MethodPost, "/devices", json.RawMessage(sb.String()), nil); st != 200 {
			b.Fatalf("seed: %d", st)
		}
	}
}

// connectDevices connects devices prefix-0..n-1 over plain MQTT; each
// subscribes to filter and handles messages with handle.
func connectDevices(b *testing.B, h *process, prefix string, n int, filter string, handle paho.MessageHandler) {
	b.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%06d", prefix, i)
		var dev struct {
			Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
		}
		h.do(b, http.MethodGet, "/devices/"+id, nil, &dev)
		tok, _ := sasauth.Sign("localhost/devices/"+id, dev.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
		opts := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", h.mqttPort)).SetClientID(id).
			SetUsername("localhost/" + id + "/?api-version=2021-04-12").SetPassword(tok).SetCleanSession(false).SetAutoReconnect(false)
		c := paho.NewClient(opts)
		if tk := c.Connect(); !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			b.Fatalf("connect %s: %v", id, tk.Error())
		}
		if tk := c.Subscribe(filter, 0, handle); !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			b.Fatalf("subscribe %s: %v", id, tk.Error())
		}
		b.Cleanup(func() { c.Disconnect(0) })
	}
}

func runJob(b *testing.B, h *process, id, body string, devices int) time.Duration {
	b.Helper()
	start := time.Now()
	if st := h.do(b, http.MethodPut, "/jobs/v2/"+id, json.RawMessage(body), nil); st != 200 {
		b.Fatalf("PUT job: %d", st)
	}
	for {
		var j jobDoc
		h.do(b, http.MethodGet, "/jobs/v2/"+id, nil, &j)
		if j.Status == "completed" || j.Status == "failed" {
			took := time.Since(start)
			if j.Stats.SucceededCount != devices {
				b.Fatalf("job %s: %+v", j.Status, j.Stats)
			}
			return took
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkJobs_Method10k: a scheduleDeviceMethod job over 10,000 connected
// devices that answer at once. Aim: under 2 s.
func BenchmarkJobs_Method10k(b *testing.B) {
	const n = 10000
	h := startProcess(b, "--job-workers", "256")
	seedDevices(b, h, "m", n)
	var answered atomic.Int64
	connectDevices(b, h, "m", n, "$iothub/methods/POST/#", func(c paho.Client, m paho.Message) {
		answered.Add(1)
		c.Publish("$iothub/methods/res/200/?$rid="+ridSuffix(m.Topic()), 0, false, `{"locked":true}`)
	})
	b.ResetTimer()
	cpu := h.cpuTime(b)
	took := runJob(b, h, "bench-method", `{"jobId":"bench-method","type":"scheduleDeviceMethod","queryCondition":"tags.building = 43",
		"cloudToDeviceMethod":{"methodName":"lockDoor","payload":{"lockTime":"10m"},"responseTimeoutInSeconds":30}}`, n)
	b.ReportMetric(took.Seconds(), "s/job")
	b.ReportMetric(float64(n)/took.Seconds(), "devices/s")
	b.ReportMetric((h.cpuTime(b) - cpu).Seconds(), "emulator-cpu-s/job")
	if answered.Load() < n {
		b.Fatalf("only %d devices answered", answered.Load())
	}
}

// BenchmarkJobs_Twin100k: a scheduleUpdateTwin job over 100,000 devices, of
// which 1,000 are connected and subscribed to desired-property updates.
// Aim: under 10 s.
func BenchmarkJobs_Twin100k(b *testing.B) {
	const n, connected = 100000, 1000
	h := startProcess(b, "--job-workers", "64")
	seedDevices(b, h, "t", n)
	var notified atomic.Int64
	connectDevices(b, h, "t", connected, "$iothub/twin/PATCH/properties/desired/#", func(paho.Client, paho.Message) { notified.Add(1) })
	b.ResetTimer()
	cpu := h.cpuTime(b)
	took := runJob(b, h, "bench-twin", `{"jobId":"bench-twin","type":"scheduleUpdateTwin","queryCondition":"tags.building = 43",
		"updateTwin":{"etag":"*","properties":{"desired":{"building":43,"floor":3}}}}`, n)
	b.ReportMetric(took.Seconds(), "s/job")
	b.ReportMetric(float64(n)/took.Seconds(), "devices/s")
	b.ReportMetric((h.cpuTime(b) - cpu).Seconds(), "emulator-cpu-s/job")
	deadline := time.Now().Add(10 * time.Second)
	for notified.Load() < connected && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if notified.Load() < connected {
		b.Fatalf("%d of %d connected devices notified", notified.Load(), connected)
	}
}
