package e2e

// The Event Hub-compatible endpoint's benchmark of docs/benchmarks.md: 100
// MQTT devices publish QoS 1 telemetry (each waits for its PUBACK before the
// next message) while one azeventhubs consumer reads all partitions over
// the development listener. It reports the ingest rate, the read rate and
// the latency from a message's PUBACK at the device to the consumer's
// receive, and asserts none of them:
//
//	go test ./e2e -run '^$' -bench EventHub_Read -benchtime 20000x
//
// BenchmarkEventHub_Read1Device measures the same with one device.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

func BenchmarkEventHub_Read100Devices(b *testing.B) { benchEventHub(b, 100) }

// BenchmarkEventHub_Read1Device is the latency of the path alone: one device
// publishing one message at a time, so nothing queues behind it.
func BenchmarkEventHub_Read1Device(b *testing.B) { benchEventHub(b, 1) }

func benchEventHub(b *testing.B, devices int) {
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))
	perDevice := max(1, b.N/devices)
	total := perDevice * devices
	clients := make([]paho.Client, devices)
	ids := make([]string, devices)
	for i := range clients {
		d := h.CreateDevice(b, fmt.Sprintf("bench-eh-%03d", i))
		ids[i] = d.ID
		opts := paho.NewClientOptions().AddBroker("tcp://" + h.MQTTAddr()).SetClientID(d.ClientID()).
			SetUsername(d.Username(h)).SetPassword(d.Token(b, h, time.Hour)).SetProtocolVersion(4).SetAutoReconnect(false)
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect %s: %v", d.ID, tok.Error())
		}
		defer c.Disconnect(0)
		clients[i] = c
	}

	// PUBACK and receive times, by message index (nanoseconds since start).
	pubacked := make([]atomic.Int64, total)
	received := make([]atomic.Int64, total)
	var got atomic.Int64
	allIn := make(chan struct{})

	consumer, err := azeventhubs.NewConsumerClientFromConnectionString(h.EventHubDevelopmentConnectionString(), "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var readers sync.WaitGroup
	for p := range h.EventHub.PartitionCount() {
		pc, err := consumer.NewPartitionClient(strconv.Itoa(p), &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Latest: ptr(true)}, Prefetch: 1000})
		if err != nil {
			b.Fatal(err)
		}
		defer pc.Close(context.Background())
		// The first receive attaches the link; wait for all four before the
		// devices start.
		readers.Add(1)
		go func() {
			attached := false
			for ctx.Err() == nil {
				// One event per call: ReceiveEvents returns when it has
				// count events, so the time taken is each event's own.
				rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				evs, _ := pc.ReceiveEvents(rctx, 1, nil)
				rcancel()
				if !attached {
					attached = true
					readers.Done()
				}
				now := int64(time.Since(start))
				for _, e := range evs {
					i, err := strconv.Atoi(strings.TrimPrefix(*e.MessageID, "m"))
					if err != nil || i >= total {
						continue
					}
					received[i].Store(now)
					if got.Add(1) == int64(total) {
						close(allIn)
					}
				}
			}
		}()
	}
	readers.Wait()
	for h.EventHub.Readers() < h.EventHub.PartitionCount() {
		time.Sleep(10 * time.Millisecond)
	}

	b.ResetTimer()
	start = time.Now()
	var pubs sync.WaitGroup
	for d, c := range clients {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			topic := "devices/" + ids[d] + "/messages/events/%24.mid=m"
			payload := strings.Repeat("x", 256)
			for k := range perDevice {
				i := d*perDevice + k
				tok := c.Publish(topic+strconv.Itoa(i), 1, false, payload)
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					b.Errorf("publish %d: %v", i, tok.Error())
					return
				}
				pubacked[i].Store(int64(time.Since(start)))
			}
		}()
	}
	pubs.Wait()
	ingest := time.Since(start)
	select {
	case <-allIn:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d events received", got.Load(), total)
	}
	read := time.Since(start)
	b.StopTimer()

	lat := make([]time.Duration, total)
	for i := range lat {
		lat[i] = max(0, time.Duration(received[i].Load()-pubacked[i].Load()))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(total)/ingest.Seconds(), "ingest-msgs/s")
	b.ReportMetric(float64(total)/read.Seconds(), "read-events/s")
	b.ReportMetric(float64(lat[total/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[total*99/100])/1e6, "p99-ms")
}
