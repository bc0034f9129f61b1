package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// A kill -9 while devices stream QoS 1 telemetry, each with 16 messages
// awaiting their PUBACK (so PUBACKs are coalesced and the read loop runs
// ahead of the commits): after the restart, every message that was
// acknowledged is stored.
func TestTelemetry_AckedMessagesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the emulator binary")
	}
	t.Parallel()
	p := &process{bin: buildEmulator(t), dir: t.TempDir(), httpPort: freePort(t), mqttPort: freePort(t)}
	p.start(t)
	defer func() { p.cmd.Process.Kill(); p.cmd.Wait() }()
	const devices, window = 8, 16
	createBenchDevices(t, fmt.Sprintf("http://127.0.0.1:%d", p.httpPort), devices)

	var mu sync.Mutex
	acked := map[string]bool{}
	total := 0
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for i := range devices {
		c, err := rawDial(fmt.Sprintf("127.0.0.1:%d", p.mqttPort), i, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		topic := "devices/bench" + strconv.Itoa(i) + "/messages/events/"
		sent := make(chan string, 1<<16) // bodies by packet id order, read by the ack reader
		sem := make(chan struct{}, window)
		wg.Add(2)
		go func() { // PUBACKs come in the order of the publishes
			defer wg.Done()
			for body := range sent {
				h, _, err := c.read()
				if err != nil {
					return
				}
				if h&0xf0 != 0x40 {
					t.Errorf("packet %x, want a PUBACK", h)
					return
				}
				mu.Lock()
				acked[body] = true
				total++
				mu.Unlock()
				<-sem
			}
		}()
		go func() {
			defer wg.Done()
			defer close(sent)
			for k := 1; ; k++ {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				body := fmt.Sprintf("bench%d-%d", i, k)
				id := uint16(k%65535 + 1)
				vh := appendString(nil, topic)
				vh = append(vh, byte(id>>8), byte(id))
				sent <- body
				c.w.Write(appendPacket(nil, 0x32, append(vh, body...)))
				if len(sem) == window || k%5 == 0 {
					if c.w.Flush() != nil {
						return
					}
				}
			}
		}()
	}
	checkFor(t, 60*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if total < 3000 {
			return fmt.Errorf("%d messages acknowledged", total)
		}
		return nil
	})
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL while messages are in flight
		t.Fatal(err)
	}
	p.cmd.Wait()
	stop()
	wg.Wait()

	p.start(t)
	stored := map[string]bool{}
	for from := int64(1); ; {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/_emulator/messages?from=%d&limit=10000", p.httpPort, from), nil)
		req.Header.Set("Authorization", ownerToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page []struct {
			SequenceNumber int64
			Body           string
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			stored[m.Body] = true
		}
		from = page[len(page)-1].SequenceNumber + 1
	}
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for body := range acked {
		if !stored[body] {
			lost++
			if lost <= 5 {
				t.Errorf("message %s was acknowledged before the kill and is not stored", body)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", lost, len(acked))
	}
	t.Logf("%d messages acknowledged before the kill, %d stored", len(acked), len(stored))
}
