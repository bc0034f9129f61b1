package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iothub-emulator/iothub-emulator/hub"
	"github.com/iothub-emulator/iothub-emulator/hubtest"
)

// Throttling per tier (--sku S1) on the fake clock: the budget refills only
// when the test moves the clock, so counts are exact.

func s1(c *hub.Config) { c.SKU, c.Units = "S1", 1 }

func TestThrottling_S1RegistryCallsGet429(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	h.CreateDevice(t, "dev1") // one of the 100 per minute
	ok := 1
	var last *hubtest.Response
	for i := 0; i < 150; i++ {
		last = h.Do(t, http.MethodGet, "/devices/dev1", nil)
		if last.StatusCode != 200 {
			break
		}
		ok++
	}
	if ok != 100 {
		t.Fatalf("%d registry operations passed, want S1's 100 per minute", ok)
	}
	checkHubError(t, last, 429, "ThrottlingException")
	// Other classes have their own budgets.
	if r := h.Do(t, http.MethodGet, "/twins/dev1", nil); r.StatusCode != 200 {
		t.Errorf("twin read under a spent registry budget: %d", r.StatusCode)
	}
	// The budget refills with the clock.
	h.Advance(t, 600*time.Millisecond) // 1.67/s: one more call
	if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
		t.Errorf("after 0.6 s: %d %s", r.StatusCode, r.Body)
	}
	checkHubError(t, h.Do(t, http.MethodGet, "/devices/dev1", nil), 429, "ThrottlingException")
	h.Advance(t, time.Minute)
	for i := 0; i < 100; i++ {
		if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
			t.Fatalf("call %d after a minute: %d", i, r.StatusCode)
		}
	}
}

func TestThrottling_S1ShapesTheHundredAndFirstD2CInASecond(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart), hubtest.WithConfig(s1))
	d := h.CreateDevice(t, "dev1")
	c := mustDial(t, h, d, connOpts{})
	var toks []paho.Token
	for i := 0; i < 101; i++ {
		toks = append(toks, c.Publish("devices/dev1/messages/events/", 1, false, fmt.Sprintf("m%d", i)))
	}
	waitMessages(t, h, "deviceId=dev1", 100)
	if toks[100].WaitTimeout(200 * time.Millisecond) {
		t.Fatal("the 101st send of the second was acknowledged at once; S1 shapes past 100/s")
	}
	if n := len(listMessages(t, h, "deviceId=dev1")); n != 100 {
		t.Fatalf("%d stored while the clock stands, want 100", n)
	}
	h.Advance(t, 10*time.Millisecond) // one more send's worth at 100/s
	if !toks[100].WaitTimeout(10*time.Second) || toks[100].Error() != nil {
		t.Fatalf("the shaped send was not acknowledged: %v", toks[100].Error())
	}
	waitMessages(t, h, "deviceId=dev1", 101)
}

func TestThrottling_OffByDefault(t *testing.T) {
	t.Parallel()
	h := hubtest.Start(t, hubtest.WithClock(clockStart))
	h.CreateDevice(t, "dev1")
	for i := 0; i < 150; i++ {
		if r := h.Do(t, http.MethodGet, "/devices/dev1", nil); r.StatusCode != 200 {
			t.Fatalf("call %d without --sku: %d", i, r.StatusCode)
		}
	}
}
