package broker

import (
	"reflect"
	"testing"
)

func TestRoute(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  Route
	}{
		{"devices/d1/messages/events/", Route{Kind: RouteTelemetry, DeviceID: "d1"}},
		{"devices/d1/messages/events", Route{Kind: RouteTelemetry, DeviceID: "d1"}},
		{"devices/d1/messages/events/%24.mid=1&a=b", Route{Kind: RouteTelemetry, DeviceID: "d1", PropertyBag: "%24.mid=1&a=b"}},
		{"devices/d1/modules/m1/messages/events/a=b/c", Route{Kind: RouteTelemetry, DeviceID: "d1", ModuleID: "m1", PropertyBag: "a=b/c"}},
		{"$iothub/twin/GET/?$rid=42", Route{Kind: RouteTwinGet, RID: "42"}},
		{"$iothub/twin/GET/?$rid=b33dadcb-4565", Route{Kind: RouteTwinGet, RID: "b33dadcb-4565"}},
		{"$iothub/twin/PATCH/properties/reported/?$rid=a&x=1", Route{Kind: RouteTwinPatchReported, RID: "a"}},
		{"$iothub/methods/res/200/?$rid=1a", Route{Kind: RouteMethodResponse, RID: "1a", Status: 200}},
		{"$iothub/methods/res/abc/?$rid=1a", Route{}},
		{"$iothub/twin/GET/", Route{}},
		{"$iothub/twin/GET/?$rid=", Route{}},
		{"devices/d1/messages/devicebound/x", Route{}},
		{"devices//messages/events/", Route{}},
		{"other/topic", Route{}},
	} {
		if got := route(tc.topic); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("route(%q) = %+v, want %+v", tc.topic, got, tc.want)
		}
	}
}

func FuzzRoute(f *testing.F) {
	for _, s := range []string{"devices/d/messages/events/a=b", "$iothub/twin/GET/?$rid=1", "$iothub/methods/res/200/?$rid=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		r := route(topic)
		if r.Kind == RouteTelemetry && r.DeviceID == "" {
			t.Fatalf("telemetry route without a device: %q", topic)
		}
		ParsePropertyBag(r.PropertyBag)
	})
}

func TestParsePropertyBag(t *testing.T) {
	got := ParsePropertyBag("%24.mid=m1&%24.ct=application%2Fjson&alert=hi%20there%2F%26%3D&plus=a+b&bad=100%&flag&empty=/")
	want := map[string]string{"$.mid": "m1", "$.ct": "application/json", "alert": "hi there/&=", "plus": "a+b", "bad": "100%", "flag": "", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestParseUsername(t *testing.T) {
	for _, tc := range []struct {
		user, client, path, api string
		ok                      bool
	}{
		{"localhost/dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4", "dev1", "dev1", "2021-04-12", true},
		{"localhost/godev1/api-version=2020-09-30", "godev1", "godev1", "2020-09-30", true},
		{"myhub.azure-devices.net/d1/m1/?api-version=2018-06-30", "d1/m1", "d1/m1", "2018-06-30", true},
		{"localhost:8883/dev1/?api-version=x", "dev1", "dev1", "x", true},
		{"localhost/dev2/?api-version=x", "dev1", "dev2", "x", false},
		{"dev1", "dev1", "", "", false},
	} {
		path, params, ok := parseUsername(tc.user, tc.client)
		if path != tc.path || ok != tc.ok || (ok && params.Get("api-version") != tc.api) {
			t.Errorf("parseUsername(%q) = %q %v %v", tc.user, path, params, ok)
		}
	}
}
