package e2e

// The AMQP figures of docs/benchmarks.md (issue 14):
//
//	go test ./e2e -run '^$' -bench 'AMQP_' -benchtime=1x -timeout 10m
//
// They report figures and assert none.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// BenchmarkAMQP_C2DToMQTTDevices sends C2D messages over one AMQPS
// connection (one sender link, BENCH_INFLIGHT sends in flight) to 1,000
// devices connected over MQTT, which acknowledge at QoS 1, and times the
// run until every message has been received by its device. The C2D queue
// is on disk. Reports device-received messages per second.
func BenchmarkAMQP_C2DToMQTTDevices(b *testing.B) {
	devices := envInt("BENCH_DEVICES", 1000)
	perDevice := envInt("BENCH_PER_DEVICE", 20) // under the queue limit of 50
	inflight := envInt("BENCH_INFLIGHT", 128)
	h := hubtest.Start(b, hubtest.WithDataDir(b.TempDir()))

	var received atomic.Int64
	for i := range devices {
		d := h.CreateDevice(b, fmt.Sprint("bench", i))
		opts := paho.NewClientOptions().AddBroker("tcp://" + h.MQTTAddr()).SetClientID(d.ClientID()).
			SetUsername(d.Username(h)).SetPassword(d.Token(b, h, time.Hour)).SetProtocolVersion(4).SetAutoReconnect(false).
			SetDefaultPublishHandler(func(paho.Client, paho.Message) { received.Add(1) })
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("connect device %d: %v", i, tok.Error())
		}
		if tok := c.Subscribe("devices/"+d.ID+"/messages/devicebound/#", 1, nil); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe device %d: %v", i, tok.Error())
		}
		b.Cleanup(func() { c.Disconnect(0) })
	}
	s := authorizedSession(b, h)
	snd, err := s.NewSender(ctxT(b), "/messages/devicebound", nil)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"command":"reboot","delay":5}`)
	b.ResetTimer()
	for range b.N {
		received.Store(0)
		total := devices * perDevice
		start := time.Now()
		next := atomic.Int64{}
		var wg sync.WaitGroup
		for range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(total) {
						return
					}
					if err := snd.Send(ctxT(b), c2dMessage(fmt.Sprint("bench", i%int64(devices)), fmt.Sprint("m", i), body, nil), nil); err != nil {
						b.Errorf("send %d: %v", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		accepted := time.Since(start)
		deadline := time.Now().Add(2 * time.Minute)
		for received.Load() < int64(total) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // poll the devices' counter
		}
		took := time.Since(start)
		if n := received.Load(); n != int64(total) {
			b.Fatalf("devices received %d of %d", n, total)
		}
		b.ReportMetric(float64(total)/took.Seconds(), "received-msgs/s")
		b.ReportMetric(float64(total)/accepted.Seconds(), "accepted-msgs/s")
	}
}

// BenchmarkAMQP_ConnectCBSSender times what a back end does before its
// first C2D send: TLS, SASL ANONYMOUS, open, a session, put-token on $cbs
// with its reply, and an attached sender on /messages/devicebound.
func BenchmarkAMQP_ConnectCBSSender(b *testing.B) {
	h := hubtest.Start(b)
	token := serviceToken(b, h, "service", time.Hour)
	b.ResetTimer()
	for range b.N {
		c, err := goamqp.Dial(ctxT(b), "amqps://"+h.AMQPSAddr(), amqpOpts(h, goamqp.SASLTypeAnonymous()))
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession(ctxT(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		if code, desc := putToken(b, s, token); code != 200 {
			b.Fatalf("put-token: %d %s", code, desc)
		}
		if _, err := s.NewSender(ctxT(b), "/messages/devicebound", nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = c.Close()
		b.StartTimer()
	}
}
