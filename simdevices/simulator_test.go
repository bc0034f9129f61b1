package simdevices_test

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/hubtest"
	"github.com/iothub-emulator/iothub-emulator/simdevices"
)

// simulatorGoroutines returns the stacks of goroutines running simulator
// or MQTT client code.
func simulatorGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "iothub-emulator/simdevices.") || strings.Contains(g, "eclipse/paho.mqtt.golang") {
			out = append(out, g)
		}
	}
	return out
}

// Stop and Close end every goroutine of the simulated devices, also with a
// delayed method answer pending.
func TestSimulator_StopAndCloseEndGoroutines(t *testing.T) {
	h := hubtest.Start(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		_, err := h.Simulator.Start(ctx, simdevices.Spec{ID: id, Count: 3,
			Telemetry: &simdevices.Telemetry{Interval: "100ms", Fields: map[string]simdevices.Field{"x": {Min: 0, Max: 1}}},
			Methods:   []simdevices.Method{{Name: "slow", Delay: "5m"}}}, simdevices.OriginAPI)
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		st, err := h.Simulator.Get("a")
		return err == nil && st.ConnectedCount == 3
	})
	// A method call whose answer waits five minutes, in flight during Stop.
	go h.Do(t, http.MethodPost, "/twins/a-1/methods", map[string]any{"methodName": "slow", "responseTimeoutInSeconds": 60})
	waitFor(t, func() bool {
		st, _ := h.Simulator.Get("a")
		return st.MethodCalls == 1
	})
	if err := h.Simulator.Stop(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Simulator.Get("a"); err == nil {
		t.Fatal("a still listed after Stop")
	}
	h.Simulator.Close()
	if _, err := h.Simulator.Start(ctx, simdevices.Spec{ID: "c"}, simdevices.OriginAPI); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	var left []string
	waitFor(t, func() bool { left = simulatorGoroutines(); return len(left) == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met; simulator goroutines:\n%s", strings.Join(simulatorGoroutines(), "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
