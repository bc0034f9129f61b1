package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/sasauth"
)

// TestAMQPDeviceTelemetryBenchmark measures telemetry from devices over
// AMQP (settled = stored) beside MQTT QoS 1 (PUBACK = stored) in the same
// emulator and run, alternating rounds. It is a measurement, not a check:
// it runs only with IOTHUB_BENCH=1 and logs RESULT lines (docs/benchmarks.md).
func TestAMQPDeviceTelemetryBenchmark(t *testing.T) {
	if os.Getenv("IOTHUB_BENCH") == "" {
		t.Skip("a benchmark: set IOTHUB_BENCH=1 (see docs/benchmarks.md)")
	}
	devices := envInt("BENCH_PUBLISHERS", 100)
	perDevice := envInt("BENCH_MESSAGES", 300)
	window := envInt("BENCH_WINDOW", 1)
	rounds := envInt("BENCH_ROUNDS", 3)
	h := hubtest.Start(t, hubtest.WithDataDir(t.TempDir()))
	createBenchDevices(t, h.HTTPURL(), devices)
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	topic := func(i int) string { return "devices/bench" + strconv.Itoa(i) + "/messages/events/" }
	for round := 1; round <= rounds; round++ {
		rate, err := throughput(h.MQTTAddr(), true, devices, perDevice, window, 1, payload, topic)
		if err != nil {
			t.Fatalf("MQTT: %v", err)
		}
		t.Logf("RESULT telemetry MQTT QoS 1 round %d: %8.0f msg/s (%d devices x %d msgs, 256 B, window %d)", round, rate, devices, perDevice, window)
		rate, err = amqpThroughput(t, h, devices, perDevice, window, payload)
		if err != nil {
			t.Fatalf("AMQP: %v", err)
		}
		t.Logf("RESULT telemetry AMQP       round %d: %8.0f msg/s (%d devices x %d msgs, 256 B, window %d)", round, rate, devices, perDevice, window)
	}
}

// amqpThroughput connects the devices (device put-token, one sender on
// /devices/{id}/messages/events each), then times their sends: window
// sends per device await their outcome at once.
func amqpThroughput(t *testing.T, h *hubtest.Hub, devices, perDevice, window int, payload []byte) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	senders := make([]*goamqp.Sender, devices)
	for i := range devices {
		c, err := goamqp.Dial(ctx, "amqps://"+h.AMQPSAddr(), amqpOpts(h, goamqp.SASLTypeAnonymous()))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		s, err := c.NewSession(ctx, nil)
		if err != nil {
			return 0, err
		}
		id := "bench" + strconv.Itoa(i)
		tok, _ := sasauth.Sign("localhost/devices/"+id, benchKey, "", time.Now().Add(time.Hour))
		if code, desc := putToken(t, s, tok); code != 200 {
			return 0, fmt.Errorf("put-token %s: %d %s", id, code, desc)
		}
		if senders[i], err = s.NewSender(ctx, "/devices/"+id+"/messages/events", nil); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, devices*window)
	for _, snd := range senders {
		for w := range window {
			n := perDevice / window
			if w < perDevice%window {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if err := snd.Send(ctx, goamqp.NewMessage(payload), nil); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(devices*perDevice) / elapsed.Seconds(), nil
}
