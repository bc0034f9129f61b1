package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// BenchmarkMethods measures direct-method round trips through the whole hub:
// a REST call (plain HTTP, keep-alive) → MQTT publish to a paho device that
// answers at once → REST answer. It reports the latency percentiles of one
// call and the invocations per second. Run it with
//
//	go test ./e2e -run '^$' -bench BenchmarkMethods -benchtime 20000x
//
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
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	errs := make(chan error, devices)
	for _, d := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := benchDevice(b, h, d); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: callers * 2, MaxIdleConnsPerHost: callers * 2}}
	token := h.ServiceToken(b, "")
	base := h.HTTPURL()
	body := []byte(`{"methodName":"echo","payload":{"n":1},"responseTimeoutInSeconds":30}`)
	call := func(d *hubtest.Device) error {
		req, _ := http.NewRequest(http.MethodPost, base+"/twins/"+d.ID+"/methods?api-version=2021-04-12", bytes.NewReader(body))
		req.Header.Set("Authorization", token)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(got) != `{"status":200,"payload":{"n":1}}` {
			return fmt.Errorf("%d %s", resp.StatusCode, got)
		}
		return nil
	}
	// Warm up the keep-alive connections and the devices.
	for i := 0; i < callers*2; i++ {
		if err := call(ids[i%devices]); err != nil {
			b.Fatal(err)
		}
	}

	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	var cw sync.WaitGroup
	for c := 0; c < callers; c++ {
		cw.Add(1)
		go func() {
			defer cw.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := call(ids[i%devices]); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	cw.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
}

// benchDevice connects d over plain MQTT and echoes every method request.
func benchDevice(tb testing.TB, h *hubtest.Hub, d *hubtest.Device) error {
	opts := paho.NewClientOptions()
	opts.AddBroker("tcp://" + h.MQTTAddr())
	opts.SetProtocolVersion(4)
	opts.SetClientID(d.ClientID())
	opts.SetUsername(d.Username(h))
	opts.SetPassword(d.Token(tb, h, time.Hour))
	opts.SetAutoReconnect(false)
	opts.SetOrderMatters(false)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect %s: %v", d.ID, tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe(methodsFilter, 0, func(cl paho.Client, m paho.Message) {
		if sm := methodTopic.FindStringSubmatch(m.Topic()); sm != nil {
			cl.Publish("$iothub/methods/res/200/?$rid="+sm[2], 0, false, m.Payload())
		}
	})
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe %s: %v", d.ID, tok.Error())
	}
	return nil
}
