package amqp_test

import (
	"context"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"

	"github.com/iothub-emulator/iothub-emulator/amqp"
)

// Engine micro-benchmarks over loopback TCP with go-amqp as the client (docs/benchmarks.md):
//
//	go test -run XXX -bench . -benchtime 3s ./amqp/

// acceptingHandler accepts every message sent to it.
func acceptingHandler() *testHandler {
	return &testHandler{onAttach: func(l *amqp.Link) error {
		if l.Role() == amqp.RoleReceiver {
			go func() {
				for {
					d, err := l.Receive(l.Conn().Context())
					if err != nil {
						return
					}
					d.Accept()
				}
			}()
		}
		return nil
	}}
}

func benchClientToServer(b *testing.B, mode goamqp.SenderSettleMode) {
	addr, _ := serve(b, acceptingHandler(), amqp.Config{})
	s := session(b, dial(b, addr, nil))
	ctx := context.Background()
	snd, err := s.NewSender(ctx, "q", &goamqp.SenderOptions{SettlementMode: &mode})
	if err != nil {
		b.Fatal(err)
	}
	msg := &goamqp.Message{Data: [][]byte{make([]byte, 256)}, ApplicationProperties: map[string]any{"k": "v"}}
	// Keep up to 256 deliveries in flight, as a pipelining client does.
	receipts := make(chan goamqp.SendReceipt, 256)
	done := make(chan error, 1)
	go func() {
		for r := range receipts {
			if _, err := r.Wait(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if mode == goamqp.SenderSettleModeSettled {
			if err := snd.Send(ctx, msg, nil); err != nil {
				b.Fatal(err)
			}
			continue
		}
		r, err := snd.SendWithReceipt(ctx, msg, nil)
		if err != nil {
			b.Fatal(err)
		}
		receipts <- r
	}
	close(receipts)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkClientToServerSettled(b *testing.B) {
	benchClientToServer(b, goamqp.SenderSettleModeSettled)
}

func BenchmarkClientToServerUnsettled(b *testing.B) {
	benchClientToServer(b, goamqp.SenderSettleModeUnsettled)
}

func benchServerToClient(b *testing.B, settled bool) {
	links := make(chan *amqp.Link, 1)
	addr, _ := serve(b, &testHandler{onAttach: func(l *amqp.Link) error { links <- l; return nil }}, amqp.Config{})
	s := session(b, dial(b, addr, nil))
	ctx := context.Background()
	rcv, err := s.NewReceiver(ctx, "q", &goamqp.ReceiverOptions{Credit: 1000})
	if err != nil {
		b.Fatal(err)
	}
	l := <-links
	go func() {
		for {
			m, err := rcv.Receive(ctx, nil)
			if err != nil {
				return
			}
			if !settled {
				rcv.AcceptMessage(ctx, m)
			}
		}
	}()
	msg := &amqp.Message{Data: [][]byte{make([]byte, 256)}, ApplicationProperties: map[string]any{"k": "v"}}
	b.ResetTimer()
	start := time.Now()
	if settled {
		for i := 0; i < b.N; i++ {
			if err := l.SendSettled(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// Send waits for each outcome, so pipeline with a few concurrent senders.
		const workers = 64
		errs := make(chan error, workers)
		work := make(chan struct{}, b.N)
		for i := 0; i < b.N; i++ {
			work <- struct{}{}
		}
		close(work)
		for w := 0; w < workers; w++ {
			go func() {
				for range work {
					if _, err := l.Send(ctx, msg); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for w := 0; w < workers; w++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkServerToClientSettled(b *testing.B)   { benchServerToClient(b, true) }
func BenchmarkServerToClientUnsettled(b *testing.B) { benchServerToClient(b, false) }

// BenchmarkConnectSASLAttach measures TCP connect, SASL PLAIN, open, begin and one sender
// attach, the set-up a back end pays before its first message.
func BenchmarkConnectSASLAttach(b *testing.B) {
	addr, _ := serve(b, acceptingHandler(), amqp.Config{Authenticate: func(_ context.Context, req *amqp.SASLRequest) (any, error) {
		return req.Username, nil
	}})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := goamqp.Dial(ctx, "amqp://"+addr, &goamqp.ConnOptions{SASLType: goamqp.SASLTypePlain("iothubowner", "key")})
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.NewSender(ctx, "q", nil); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// eventMessage is shaped like an Event Hubs event the hub sends: the iothub-* and x-opt-*
// annotations, properties, two application properties and a small body.
func eventMessage() *amqp.Message {
	now := time.UnixMilli(1764412800123)
	return &amqp.Message{
		Annotations: amqp.Annotations{
			"iothub-connection-device-id": "device-0042", "iothub-connection-auth-method": `{"scope":"device","type":"sas","issuer":"iothub"}`,
			"iothub-connection-auth-generation-id": "638000000000000000", "iothub-enqueuedtime": now, "iothub-message-source": "Telemetry",
			"x-opt-sequence-number": int64(123456), "x-opt-offset": "123456", "x-opt-enqueued-time": now,
		},
		Properties:            &amqp.Properties{MessageID: "msg-1", ContentType: "application/json", ContentEncoding: "utf-8"},
		ApplicationProperties: map[string]any{"temperatureAlert": "false", "seq": int64(7)},
		Data:                  [][]byte{[]byte(`{"temperature":21.5,"humidity":40.2,"deviceId":"device-0042","ts":"2026-11-29T12:00:00Z"}`)},
	}
}

func BenchmarkMarshalEvent(b *testing.B) {
	m := eventMessage()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := m.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalEvent(b *testing.B) {
	enc, err := eventMessage().MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for i := 0; i < b.N; i++ {
		var m amqp.Message
		if err := m.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}
