package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// Twins benchmarks, recorded in docs/benchmarks.md ("Twins"). The emulator
// binary runs as its own process with its database on disk; 1,000 paho
// devices in the benchmark's process connect over plain MQTT and subscribe
// to $iothub/twin/res/# and $iothub/twin/PATCH/properties/desired/#.

const twinBenchDevices = 1000

// twinDevices connects devices prefix-0..n-1 and returns their clients;
// handle gets every message with the device's index.
func twinDevices(b *testing.B, h *process, prefix string, n int, handle func(i int, m paho.Message)) []paho.Client {
	b.Helper()
	clients := make([]paho.Client, n)
	for i := range n {
		id := fmt.Sprintf("%s-%06d", prefix, i)
		var dev struct {
			Authentication struct{ SymmetricKey struct{ PrimaryKey string } }
		}
		h.do(b, http.MethodGet, "/devices/"+id, nil, &dev)
		tok, _ := sasauth.Sign("localhost/devices/"+id, dev.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
		opts := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", h.mqttPort)).SetClientID(id).
			SetUsername("localhost/" + id + "/?api-version=2021-04-12").SetPassword(tok).SetAutoReconnect(false)
		c := paho.NewClient(opts)
		if tk := c.Connect(); !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			b.Fatalf("connect %s: %v", id, tk.Error())
		}
		i := i
		tk := c.SubscribeMultiple(map[string]byte{"$iothub/twin/res/#": 0, "$iothub/twin/PATCH/properties/desired/#": 0},
			func(_ paho.Client, m paho.Message) { handle(i, m) })
		if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			b.Fatalf("subscribe %s: %v", id, tk.Error())
		}
		clients[i] = c
		b.Cleanup(func() { c.Disconnect(0) })
	}
	return clients
}

// BenchmarkTwins_Reported: every one of 1,000 devices sends reported
// patches (QoS 1 on $iothub/twin/PATCH/properties/reported/?$rid=N), each
// waiting for its 204 before sending the next; b.N patches in all. Aim:
// ≥ 10,000 patches/s.
func BenchmarkTwins_Reported(b *testing.B) {
	h := startProcess(b)
	seedDevices(b, h, "rep", twinBenchDevices)
	done := make([]chan struct{}, twinBenchDevices)
	for i := range done {
		done[i] = make(chan struct{}, 1)
	}
	clients := twinDevices(b, h, "rep", twinBenchDevices, func(i int, m paho.Message) {
		if strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/") {
			done[i] <- struct{}{}
		} else if strings.HasPrefix(m.Topic(), "$iothub/twin/res/") {
			b.Errorf("device %d: %s %s", i, m.Topic(), m.Payload())
			done[i] <- struct{}{}
		}
	})
	per := max(b.N/twinBenchDevices, 1)
	b.ResetTimer()
	cpu := h.cpuTime(b)
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			for k := range per {
				topic := "$iothub/twin/PATCH/properties/reported/?$rid=" + strconv.Itoa(k+1)
				c.Publish(topic, 1, false, fmt.Sprintf(`{"temp":%d,"fw":"1.%d"}`, k, i%5))
				select {
				case <-done[i]:
				case <-time.After(30 * time.Second):
					b.Errorf("device %d: no response to patch %d", i, k)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(per*twinBenchDevices)/took.Seconds(), "patches/s")
	b.ReportMetric(float64((h.cpuTime(b)-cpu).Microseconds())/float64(per*twinBenchDevices), "emulator-cpu-µs/patch")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkTwins_DesiredFanout: b.N sequential PATCH /twins/{id} with a
// desired change, round-robin over 1,000 connected devices; the latency is
// from sending the request to the device receiving
// $iothub/twin/PATCH/properties/desired/?$version=N. Aim: p99 < 10 ms.
func BenchmarkTwins_DesiredFanout(b *testing.B) {
	h := startProcess(b)
	seedDevices(b, h, "des", twinBenchDevices)
	got := make(chan string, 16)
	twinDevices(b, h, "des", twinBenchDevices, func(i int, m paho.Message) {
		if strings.HasPrefix(m.Topic(), "$iothub/twin/PATCH/properties/desired/") {
			got <- string(m.Payload())
		}
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	tok, _ := sasauth.Sign("localhost", sasauth.DefaultOwnerKey, "iothubowner", time.Now().Add(24*time.Hour))
	var lat []time.Duration
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		id := fmt.Sprintf("des-%06d", n%twinBenchDevices)
		body := fmt.Sprintf(`{"properties":{"desired":{"setpoint":%d}}}`, n)
		req, _ := http.NewRequest(http.MethodPatch, fmt.Sprintf("http://127.0.0.1:%d/twins/%s?api-version=2021-04-12", h.httpPort, id), strings.NewReader(body))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("PATCH: %d", resp.StatusCode)
		}
		want := fmt.Sprintf(`"setpoint":%d`, n)
		for {
			select {
			case p := <-got:
				if !strings.Contains(p, want) {
					continue
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("device %s: no desired patch", id)
			}
			break
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
