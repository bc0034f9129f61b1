package digitaltwins

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/methods"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

func jsonMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// temperatureController is a twin as the PnP temperature controller sample
// leaves it: a root property, a component with a reported property and an
// acknowledged writable property, and a desired value not acknowledged yet.
func temperatureController(t *testing.T) *twins.Twin {
	tw := &twins.Twin{Key: twins.Key{DeviceID: "tc1"}, ETag: 7}
	tw.ModelID = "dtmi:com:example:TemperatureController;2"
	tw.Reported.Data = jsonMap(t, `{"serialNumber":"SN-1",
		"thermostat1":{"__t":"c","maxTempSinceLastReboot":25.5,"targetTemperature":{"value":21,"ac":200,"av":4,"ad":"done"}}}`)
	tw.Reported.Metadata = jsonMap(t, `{"$lastUpdated":"2026-01-01T00:00:03Z",
		"serialNumber":{"$lastUpdated":"2026-01-01T00:00:01Z"},
		"thermostat1":{"$lastUpdated":"2026-01-01T00:00:03Z","maxTempSinceLastReboot":{"$lastUpdated":"2026-01-01T00:00:02Z"},
		"targetTemperature":{"$lastUpdated":"2026-01-01T00:00:03Z"}}}`)
	tw.Desired.Data = jsonMap(t, `{"thermostat1":{"__t":"c","targetTemperature":21},"thermostat2":{"__t":"c","targetTemperature":30}}`)
	tw.Desired.Metadata = jsonMap(t, `{"$lastUpdated":"2026-01-01T00:00:00Z",
		"thermostat1":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":4,"targetTemperature":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":4}},
		"thermostat2":{"$lastUpdated":"2026-01-01T00:00:05Z","$lastUpdatedVersion":5,"targetTemperature":{"$lastUpdated":"2026-01-01T00:00:05Z","$lastUpdatedVersion":5}}}`)
	return tw
}

func TestRender(t *testing.T) {
	got := Render(temperatureController(t))
	want := jsonMap(t, `{
		"$dtId": "tc1",
		"serialNumber": "SN-1",
		"thermostat1": {
			"maxTempSinceLastReboot": 25.5,
			"targetTemperature": 21,
			"$metadata": {
				"maxTempSinceLastReboot": {"lastUpdateTime": "2026-01-01T00:00:02Z"},
				"targetTemperature": {"desiredValue": 21, "desiredVersion": 4, "ackVersion": 4, "ackCode": 200,
					"ackDescription": "done", "lastUpdateTime": "2026-01-01T00:00:03Z"}
			}
		},
		"thermostat2": {
			"$metadata": {"targetTemperature": {"desiredValue": 30, "desiredVersion": 5, "lastUpdateTime": "2026-01-01T00:00:05Z"}}
		},
		"$metadata": {"$model": "dtmi:com:example:TemperatureController;2", "serialNumber": {"lastUpdateTime": "2026-01-01T00:00:01Z"}}
	}`)
	// Compare as JSON: Render keeps the twin's own number types.
	gb, _ := json.Marshal(got)
	if g := jsonMap(t, string(gb)); !reflect.DeepEqual(g, want) {
		t.Fatalf("digital twin =\n%s\nwant\n%v", gb, want)
	}
}

type fakeTwins struct {
	twin    *twins.Twin
	patch   map[string]any
	ifMatch string
}

func (f *fakeTwins) Get(context.Context, twins.Key) (*twins.Twin, error) { return f.twin, nil }

func (f *fakeTwins) PatchService(_ context.Context, _ twins.Key, ifMatch string, p twins.ServicePatch) (*twins.Twin, error) {
	f.patch, f.ifMatch = p.Desired, ifMatch
	out := *f.twin
	out.ETag++
	return &out, nil
}

func TestUpdate(t *testing.T) {
	tests := []struct {
		name string
		ops  string
		want string
		code iothub.Code
	}{
		{"root property", `[{"op":"add","path":"/targetHumidity","value":40}]`, `{"targetHumidity":40}`, 0},
		{"component property", `[{"op":"replace","path":"/thermostat1/targetTemperature","value":22}]`,
			`{"thermostat1":{"__t":"c","targetTemperature":22}}`, 0},
		{"component not in the twin yet", `[{"op":"add","path":"/thermostat3/targetTemperature","value":18}]`,
			`{"thermostat3":{"__t":"c","targetTemperature":18}}`, 0},
		{"nested member of a root property", `[{"op":"add","path":"/serialNumber/x","value":1}]`, `{"serialNumber":{"x":1}}`, 0},
		{"remove", `[{"op":"remove","path":"/thermostat2/targetTemperature"}]`, `{"thermostat2":{"__t":"c","targetTemperature":null}}`, 0},
		{"whole component", `[{"op":"add","path":"/thermostat1","value":{"targetTemperature":19}}]`,
			`{"thermostat1":{"__t":"c","targetTemperature":19}}`, 0},
		{"two operations", `[{"op":"add","path":"/a","value":1},{"op":"add","path":"/thermostat1/b","value":2}]`,
			`{"a":1,"thermostat1":{"__t":"c","b":2}}`, 0},
		{"escaped pointer", `[{"op":"add","path":"/a~1b","value":1}]`, `{"a/b":1}`, 0},
		{"move is not supported", `[{"op":"move","from":"/a","path":"/b"}]`, "", iothub.ArgumentInvalid},
		{"no value", `[{"op":"add","path":"/a"}]`, "", iothub.ArgumentInvalid},
		{"root path", `[{"op":"add","path":"/","value":1}]`, "", iothub.ArgumentInvalid},
		{"metadata is read-only", `[{"op":"add","path":"/$metadata","value":1}]`, "", iothub.ArgumentInvalid},
		{"empty patch", `[]`, "", iothub.ArgumentInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ops []Op
			if err := json.Unmarshal([]byte(tt.ops), &ops); err != nil {
				t.Fatal(err)
			}
			f := &fakeTwins{twin: temperatureController(t)}
			s, _ := NewService(Deps{Twins: f, Methods: &fakeMethods{}}, Config{})
			etag, err := s.Update(context.Background(), "tc1", `"x"`, ops)
			if tt.code != 0 {
				if iothub.CodeOf(err) != tt.code {
					t.Fatalf("err = %v, want %d", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(f.patch)
			if !reflect.DeepEqual(jsonMap(t, string(gb)), jsonMap(t, tt.want)) {
				t.Fatalf("desired patch = %s, want %s", gb, tt.want)
			}
			if etag != 8 || f.ifMatch != `"x"` {
				t.Fatalf("etag %d, ifMatch %q", etag, f.ifMatch)
			}
		})
	}
}

type fakeMethods struct{ got methods.Request }

func (f *fakeMethods) Invoke(_ context.Context, r methods.Request) (methods.Response, error) {
	f.got = r
	return methods.Response{Status: 201, Payload: json.RawMessage(`{"ok":true}`)}, nil
}

func TestInvokeNamesTheMethod(t *testing.T) {
	for _, tt := range []struct {
		component, name, method string
	}{
		{"", "reboot", "reboot"},
		{"thermostat1", "getMaxMinReport", "thermostat1*getMaxMinReport"},
	} {
		m := &fakeMethods{}
		s, _ := NewService(Deps{Twins: &fakeTwins{}, Methods: m}, Config{})
		resp, err := s.Invoke(context.Background(), Command{DeviceID: "tc1", Component: tt.component, Name: tt.name, Payload: json.RawMessage(`5`)})
		if err != nil || resp.Status != 201 || m.got.MethodName != tt.method || string(m.got.Payload) != "5" {
			t.Fatalf("%s/%s: %+v %v, sent %+v", tt.component, tt.name, resp, err, m.got)
		}
	}
	s, _ := NewService(Deps{Twins: &fakeTwins{}, Methods: &fakeMethods{}}, Config{})
	if _, err := s.Invoke(context.Background(), Command{DeviceID: "d", Component: "a*b", Name: "c"}); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Fatalf("a '*' in a component name: %v", err)
	}
}
