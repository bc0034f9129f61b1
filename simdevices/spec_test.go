package simdevices

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

func TestCompile(t *testing.T) {
	two := 2
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"minimal", Spec{ID: "d"}, ""},
		{"full", Spec{ID: "d", Count: 3, EchoDesired: true,
			Telemetry: &Telemetry{Interval: "250ms", Fields: map[string]Field{"t": {Min: 1, Max: 2, Walk: 0.1, Decimals: &two}}, Properties: map[string]string{"a": "b"}},
			Methods:   []Method{{Name: "lockDoor"}, {Name: "x", Status: 404, Delay: "1s", Payload: map[string]any{"e": 1}}}}, ""},
		{"no id", Spec{Count: 2}, "id is required"},
		{"negative count", Spec{ID: "d", Count: -1}, "count"},
		{"count too large", Spec{ID: "d", Count: MaxCount + 1}, "count"},
		{"interval not a duration", Spec{ID: "d", Telemetry: &Telemetry{Interval: "often"}}, "interval"},
		{"interval too short", Spec{ID: "d", Telemetry: &Telemetry{Interval: "10ms"}}, "interval"},
		{"min above max", Spec{ID: "d", Telemetry: &Telemetry{Fields: map[string]Field{"t": {Min: 3, Max: 1}}}}, "min is above max"},
		{"negative walk", Spec{ID: "d", Telemetry: &Telemetry{Fields: map[string]Field{"t": {Walk: -1}}}}, "walk"},
		{"method without name", Spec{ID: "d", Methods: []Method{{Status: 200}}}, "needs a name"},
		{"method twice", Spec{ID: "d", Methods: []Method{{Name: "a"}, {Name: "a"}}}, "twice"},
		{"bad status", Spec{ID: "d", Methods: []Method{{Name: "a", Status: 42}}}, "status"},
		{"delay too long", Spec{ID: "d", Methods: []Method{{Name: "a", Delay: "1h"}}}, "delay"},
		{"payload too large", Spec{ID: "d", Methods: []Method{{Name: "a", Payload: strings.Repeat("x", maxPayload)}}}, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("compile: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || iothub.CodeOf(err) != iothub.ArgumentInvalid {
				t.Fatalf("compile: %v; want ArgumentInvalid with %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadyMadeLockDoor(t *testing.T) {
	c, err := compile(Spec{ID: "d", Methods: []Method{{Name: "lockDoor"}, {Name: "plain"}, {Name: "lockDoor2", Delay: "2s"}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := c.methods["lockDoor"]; m.Status != 200 || string(c.payloads["lockDoor"]) != `{"Response":"lockDoor called successfully"}` {
		t.Errorf("lockDoor: %+v %s", m, c.payloads["lockDoor"])
	}
	if m := c.methods["plain"]; m.Status != 200 || string(c.payloads["plain"]) != "null" {
		t.Errorf("plain: %+v %s", m, c.payloads["plain"])
	}
	if c.delays["lockDoor2"] != 2*time.Second || c.interval != defaultPeriod {
		t.Errorf("delays %v interval %v", c.delays, c.interval)
	}
}

func TestDeviceIDs(t *testing.T) {
	for _, c := range []struct {
		count int
		want  []string
	}{{0, []string{"s"}}, {1, []string{"s"}}, {3, []string{"s-1", "s-2", "s-3"}}} {
		spec := Spec{ID: "s", Count: c.count}
		if got := spec.DeviceIDs(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("count %d: %v", c.count, got)
		}
	}
}

func TestTelemetryBody(t *testing.T) {
	zero := 0
	c, err := compile(Spec{ID: "d", Telemetry: &Telemetry{
		Fields: map[string]Field{
			"walk":   {Min: 10, Max: 20, Walk: 0.5},
			"random": {Min: -1, Max: 1},
			"whole":  {Min: 0, Max: 100, Decimals: &zero},
			"mode":   {Values: []any{"a", "b", true}},
		},
		Properties: map[string]string{"z": "last", "a b": "x&y"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d := newDevice(Config{}, c, "d", "")
	if got := d.propertyBag(); got != "a+b=x%26y&z=last&%24.ct=application%2Fjson&%24.ce=utf-8" {
		t.Errorf("property bag %q", got)
	}
	prev := -1.0
	for i := range 200 {
		var body map[string]any
		if err := json.Unmarshal(d.nextBody(), &body); err != nil {
			t.Fatal(err)
		}
		w := body["walk"].(float64)
		if w < 10 || w > 20 {
			t.Fatalf("walk %v out of range", w)
		}
		if prev >= 0 && (w-prev > 0.51 || prev-w > 0.51) {
			t.Fatalf("walk stepped from %v to %v", prev, w)
		}
		prev = w
		if r := body["random"].(float64); r < -1 || r > 1 {
			t.Fatalf("random %v", r)
		}
		if v := body["whole"].(float64); v != float64(int(v)) {
			t.Fatalf("whole %v has decimals", v)
		}
		if want := []any{"a", "b", true}[i%3]; body["mode"] != want {
			t.Fatalf("message %d: mode %v, want %v", i, body["mode"], want)
		}
	}
}
