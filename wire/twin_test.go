package wire_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/twins/memstore"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

type obj = map[string]any

var created = time.Date(2024, 5, 28, 11, 4, 38, 442273700, time.UTC)

// freshDevice is the digest §4.1 capture's device.
func freshDevice() *twins.Twin {
	t := twins.NewTwin(twins.Key{DeviceID: "test"}, created)
	t.Identity = twins.Identity{
		Status:             "enabled",
		ConnectionState:    "Disconnected",
		AuthenticationType: "sas",
		DeviceEtag:         "MTQ1NzQ5NDU4",
	}
	return t
}

func TestTwin_Fresh(t *testing.T) {
	// The real hub's response for a fresh device, digest §4.1 (compacted).
	const want = `{"deviceId":"test","etag":"AAAAAAAAAAE=","deviceEtag":"MTQ1NzQ5NDU4","status":"enabled",` +
		`"statusUpdateTime":"0001-01-01T00:00:00Z","connectionState":"Disconnected",` +
		`"lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,"authenticationType":"sas",` +
		`"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"modelId":"","version":2,` +
		`"properties":{"desired":{"$metadata":{"$lastUpdated":"2024-05-28T11:04:38.4422737Z"},"$version":1},` +
		`"reported":{"$metadata":{"$lastUpdated":"2024-05-28T11:04:38.4422737Z"},"$version":1}},` +
		`"capabilities":{"iotEdge":false}}`
	if got := string(wire.TwinJSON(freshDevice())); got != want {
		t.Errorf("fresh twin\n got %s\nwant %s", got, want)
	}
	const device = `{"desired":{"$version":1},"reported":{"$version":1}}`
	if got := string(wire.TwinForDevice(freshDevice())); got != device {
		t.Errorf("MQTT GET body\n got %s\nwant %s", got, device)
	}
}

// patched drives a module twin through the Service with a fixed clock and
// returns it with a full identity.
func patched(t *testing.T) *twins.Twin {
	t.Helper()
	ctx := context.Background()
	key := twins.Key{DeviceID: "edge1", ModuleID: "m1"}
	st := memstore.New()
	st.Put(twins.NewTwin(key, created))
	s, err := twins.NewService(twins.Deps{Store: st, Notifier: nopNotifier{}}, twins.Config{
		Now: func() time.Time { return time.Date(2024, 6, 1, 8, 0, 0, 123456700, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"deviceId":"edge1","etag":"*","tags":{"site":"<b&w>","floor":3},` +
		`"properties":{"desired":{"interval":60,"cfg":{"mode":"fast","list":[1,2.5,"x"]},"$version":9}}}`)
	p, err := wire.DecodeTwinPatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PatchService(ctx, key, `"AAAAAAAAAAE="`, p); err != nil {
		t.Fatal(err)
	}
	rep, err := wire.DecodeReportedPatch([]byte(`{"battery":55,"big":4503599627370495}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PatchReported(ctx, key, rep); err != nil {
		t.Fatal(err)
	}
	tw, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	tw.Identity = twins.Identity{
		Status:                    "disabled",
		StatusReason:              "maintenance",
		StatusUpdateTime:          time.Date(2024, 5, 30, 9, 0, 0, 0, time.UTC),
		LastActivityTime:          time.Date(2024, 6, 1, 7, 59, 59, 999999900, time.UTC),
		ConnectionState:           "Connected",
		CloudToDeviceMessageCount: 2,
		AuthenticationType:        "selfSigned",
		PrimaryThumbprint:         "AB12",
		ModelID:                   "dtmi:com:example:Thermostat;1",
		DeviceEtag:                "MzE4NzUxOTU1",
		DeviceScope:               "ms-azure-iot-edge://edge1-637131779299315265",
		ParentScopes:              []string{"ms-azure-iot-edge://parent-1"},
	}
	return tw
}

func TestTwin_Patched(t *testing.T) {
	const ts = "2024-06-01T08:00:00.1234567Z"
	const d = `{"$lastUpdated":"` + ts + `","$lastUpdatedVersion":2`
	const r = `{"$lastUpdated":"` + ts + `"}`
	const want = `{"deviceId":"edge1","moduleId":"m1","etag":"AAAAAAAAAAI=","deviceEtag":"MzE4NzUxOTU1",` +
		`"status":"disabled","statusReason":"maintenance","statusUpdateTime":"2024-05-30T09:00:00Z",` +
		`"connectionState":"Connected","lastActivityTime":"2024-06-01T07:59:59.9999999Z",` +
		`"cloudToDeviceMessageCount":2,"authenticationType":"selfSigned",` +
		`"x509Thumbprint":{"primaryThumbprint":"AB12","secondaryThumbprint":null},` +
		`"modelId":"dtmi:com:example:Thermostat;1","version":4,` +
		`"tags":{"floor":3,"site":"<b&w>"},` +
		`"properties":{"desired":{"cfg":{"list":[1,2.5,"x"],"mode":"fast"},"interval":60,` +
		`"$metadata":` + d + `,"cfg":` + d + `,"list":` + d + `},"mode":` + d + `}},"interval":` + d + `}},"$version":2},` +
		`"reported":{"battery":55,"big":4503599627370495,` +
		`"$metadata":{"$lastUpdated":"` + ts + `","battery":` + r + `,"big":` + r + `},"$version":2}},` +
		`"deviceScope":"ms-azure-iot-edge://edge1-637131779299315265","parentScopes":["ms-azure-iot-edge://parent-1"]}`
	tw := patched(t)
	if got := string(wire.TwinJSON(tw)); got != want {
		t.Errorf("patched twin\n got %s\nwant %s", got, want)
	}
	const device = `{"desired":{"cfg":{"list":[1,2.5,"x"],"mode":"fast"},"interval":60,"$version":2},` +
		`"reported":{"battery":55,"big":4503599627370495,"$version":2}}`
	if got := string(wire.TwinForDevice(tw)); got != device {
		t.Errorf("MQTT GET body\n got %s\nwant %s", got, device)
	}
	// The document must also survive a plain json.Marshal (HTML escaped).
	b, err := json.Marshal(wire.Twin(tw))
	if err != nil || !json.Valid(b) {
		t.Fatalf("json.Marshal: %v", err)
	}
}

func TestDesiredPatch(t *testing.T) {
	got := string(wire.DesiredPatch(obj{"telemetrySendFrequency": "5m", "route": nil, "n": obj{"a": int64(1)}}, 8))
	if want := `{"n":{"a":1},"route":null,"telemetrySendFrequency":"5m","$version":8}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if got, want := string(wire.DesiredPatch(nil, 2)), `{"$version":2}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestETag(t *testing.T) {
	for c, want := range map[int64]string{0: "AAAAAAAAAAA=", 1: "AAAAAAAAAAE=", 4: "AAAAAAAAAAQ=", 256: "AAAAAAAAAQA="} {
		if got := wire.ETag(c); got != want {
			t.Errorf("ETag(%d) = %s, want %s", c, got, want)
		}
	}
}

func TestDecodeTwinPatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want twins.ServicePatch
		code iothub.Code // 0: no error
	}{
		{
			name: "TagsAndDesired",
			body: `{"tags":{"building":43},"properties":{"desired":{"interval":60,"old":null}}}`,
			want: twins.ServicePatch{Tags: obj{"building": int64(43)}, Desired: obj{"interval": int64(60), "old": nil}},
		},
		{
			name: "DesiredOnly",
			body: `{"properties":{"desired":{"a":{"b":true}}}}`,
			want: twins.ServicePatch{Desired: obj{"a": obj{"b": true}}},
		},
		{
			name: "EmptyObjectsArePresent",
			body: `{"tags":{},"properties":{"desired":{}}}`,
			want: twins.ServicePatch{Tags: obj{}, Desired: obj{}},
		},
		{
			name: "FetchedTwinSentBack",
			body: `{"deviceId":"d","etag":"AAAAAAAAAAE=","version":3,"tags":null,"status":"enabled",` +
				`"properties":{"desired":{"a":1,"$metadata":{"$lastUpdated":"x"},"$version":2},"reported":{"$metadata":{},"$version":4}}}`,
			want: twins.ServicePatch{Desired: obj{"a": int64(1)}, Reported: obj{}},
		},
		{
			name: "ReportedPassedOn",
			body: `{"properties":{"reported":{"r":1,"$version":4}}}`,
			want: twins.ServicePatch{Reported: obj{"r": int64(1)}},
		},
		{
			name: "CaseInsensitiveNames",
			body: `{"Tags":{"a":1},"Properties":{"Desired":{"b":2}}}`,
			want: twins.ServicePatch{Tags: obj{"a": int64(1)}, Desired: obj{"b": int64(2)}},
		},
		{
			name: "ExactNameWins",
			body: `{"TAGS":{"a":1},"tags":{"b":2}}`,
			want: twins.ServicePatch{Tags: obj{"b": int64(2)}},
		},
		{
			name: "NumbersKeepPrecision",
			body: `{"properties":{"desired":{"max":4503599627370495,"neg":-4503599627370496,"f":0.1,"e":1e2,"huge":123456789012345678901}}}`,
			want: twins.ServicePatch{Desired: obj{"max": int64(4503599627370495), "neg": int64(-4503599627370496), "f": 0.1, "e": 100.0, "huge": json.Number("123456789012345678901")}},
		},
		{name: "NothingRelevant", body: `{"deviceId":"d"}`, want: twins.ServicePatch{}},
		{name: "PropertiesNull", body: `{"properties":null}`, want: twins.ServicePatch{}},
		{name: "ErrEmpty", body: ``, code: iothub.IotHubFormatError},
		{name: "ErrNotJSON", body: `{tags:`, code: iothub.IotHubFormatError},
		{name: "ErrTrailingData", body: `{} {}`, code: iothub.IotHubFormatError},
		{name: "ErrArray", body: `[1]`, code: iothub.ArgumentInvalid},
		{name: "ErrNull", body: `null`, code: iothub.ArgumentInvalid},
		{name: "ErrTagsNotObject", body: `{"tags":5}`, code: iothub.ArgumentInvalid},
		{name: "ErrPropertiesNotObject", body: `{"properties":[]}`, code: iothub.ArgumentInvalid},
		{name: "ErrDesiredNotObject", body: `{"properties":{"desired":"x"}}`, code: iothub.ArgumentInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.DecodeTwinPatch([]byte(tc.body))
			if tc.code != 0 {
				if iothub.CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want %v", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestDecodeReportedPatch(t *testing.T) {
	got, err := wire.DecodeReportedPatch([]byte(` {"battery":55,"fw":{"v":"1.0"},"old":null} `))
	if err != nil {
		t.Fatal(err)
	}
	if want := (obj{"battery": int64(55), "fw": obj{"v": "1.0"}, "old": nil}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
	for body, code := range map[string]iothub.Code{
		``:     iothub.IotHubFormatError,
		` `:    iothub.IotHubFormatError,
		`nul`:  iothub.IotHubFormatError,
		`null`: iothub.ArgumentInvalid,
		`[]`:   iothub.ArgumentInvalid,
		`"x"`:  iothub.ArgumentInvalid,
	} {
		if _, err := wire.DecodeReportedPatch([]byte(body)); iothub.CodeOf(err) != code {
			t.Errorf("%q: err = %v, want %v", body, err, code)
		}
	}
}

// nopNotifier ignores desired changes: nobody is connected here.
type nopNotifier struct{}

func (nopNotifier) DesiredChanged(twins.Key, map[string]any, int64) {}
