package configurations

import (
	"reflect"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

func TestDesiredPatch(t *testing.T) {
	tests := []struct {
		name    string
		content map[string]any
		want    map[string]any
		code    iothub.Code
	}{
		{"empty", nil, nil, 0},
		{"whole section", map[string]any{"properties.desired": map[string]any{"a": 1.0, "b": map[string]any{"c": "x"}}},
			map[string]any{"a": 1.0, "b": map[string]any{"c": "x"}}, 0},
		{"one path", map[string]any{"properties.desired.fw.version": "2.0"},
			map[string]any{"fw": map[string]any{"version": "2.0"}}, 0},
		{"two paths share a parent", map[string]any{"properties.desired.fw.version": "2.0", "properties.desired.fw.url": "u"},
			map[string]any{"fw": map[string]any{"version": "2.0", "url": "u"}}, 0},
		{"section then sub-path", map[string]any{"properties.desired": map[string]any{"a": 1.0}, "properties.desired.b": 2.0},
			map[string]any{"a": 1.0, "b": 2.0}, 0},
		{"tags are not content", map[string]any{"tags.x": 1.0}, nil, iothub.InvalidConfigurationContent},
		{"reported is not content", map[string]any{"properties.reported.x": 1.0}, nil, iothub.InvalidConfigurationContent},
		{"section must be an object", map[string]any{"properties.desired": 3.0}, nil, iothub.InvalidConfigurationContent},
		{"empty segment", map[string]any{"properties.desired.a..b": 3.0}, nil, iothub.InvalidConfigurationContent},
		{"prefix look-alike", map[string]any{"properties.desiredx": 3.0}, nil, iothub.InvalidConfigurationContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := desiredPatch(tt.content)
			if tt.code != 0 {
				if iothub.CodeOf(err) != tt.code {
					t.Fatalf("err = %v, want code %d", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("patch = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRemovalPatch(t *testing.T) {
	tests := []struct {
		name    string
		content map[string]any
		want    map[string]any
	}{
		{"section members", map[string]any{"properties.desired": map[string]any{"a": 1.0, "fw": map[string]any{"v": "2"}}},
			map[string]any{"a": nil, "fw": nil}},
		{"a path to an object", map[string]any{"properties.desired.fw": map[string]any{"v": "2", "url": "u"}},
			map[string]any{"fw": nil}},
		{"paths under one parent", map[string]any{"properties.desired.fw.v": "2", "properties.desired.fw.url": "u"},
			map[string]any{"fw": map[string]any{"v": nil, "url": nil}}},
		{"a path under a cleared member", map[string]any{"properties.desired": map[string]any{"fw": 1.0}, "properties.desired.fw.v": "2"},
			map[string]any{"fw": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := removalPatch(tt.content); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("removal = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"config1", true}, {"node_e2e_device_0b6f-11", true}, {"a:b+c%d#e*f?g!h(i)j,k=l@m;n$o'p.q", true},
		{"", false}, {"Upper", false}, {"white space", false}, {"slash/id", false}, {string(make([]byte, 129)), false},
	} {
		err := ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && iothub.CodeOf(err) != iothub.ArgumentInvalid {
			t.Errorf("ValidateID(%q) code = %d", tt.id, iothub.CodeOf(err))
		}
	}
}

func TestValidate(t *testing.T) {
	dev := Content{DeviceContent: map[string]any{"properties.desired.x": 1.0}}
	mod := Content{ModuleContent: map[string]any{"properties.desired.x": 1.0}}
	tests := []struct {
		name string
		c    Configuration
		code iothub.Code
	}{
		{"device, where clause", Configuration{Content: dev, TargetCondition: "tags.env='prod' AND NOT deviceId = 'x'"}, 0},
		{"device, no condition", Configuration{Content: dev}, 0},
		{"device, star", Configuration{Content: dev, TargetCondition: "*"}, 0},
		{"module with FROM", Configuration{Content: mod, TargetCondition: "from devices.modules where moduleId = 'm1'"}, 0},
		{"module without FROM", Configuration{Content: mod, TargetCondition: "moduleId = 'm1'"}, iothub.InvalidConfigurationTargetCondition},
		{"bad condition", Configuration{Content: dev, TargetCondition: "tags.x = "}, iothub.InvalidConfigurationTargetCondition},
		{"two kinds of content", Configuration{Content: Content{DeviceContent: dev.DeviceContent, ModuleContent: mod.ModuleContent}}, iothub.InvalidConfigurationContent},
		{"bad metric", Configuration{Content: dev, MetricQueries: map[string]string{"m": "SELECT FROM"}}, iothub.InvalidConfigurationCustomMetricsQuery},
		{"good metric", Configuration{Content: dev, MetricQueries: map[string]string{"m": "SELECT deviceId FROM devices WHERE properties.reported.x = 1"}}, 0},
		{"negative priority", Configuration{Content: dev, Priority: -1}, iothub.ArgumentInvalid},
		{"modulesContent must hold objects", Configuration{Content: Content{ModulesContent: map[string]any{"$edgeAgent": 1.0}}}, iothub.InvalidConfigurationContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.validate()
			if iothub.CodeOf(err) != tt.code && !(tt.code == 0 && err == nil) {
				t.Fatalf("validate = %v, want code %d", err, tt.code)
			}
			if tt.code == 0 && err != nil {
				t.Fatalf("validate = %v", err)
			}
		})
	}
}

func TestWins(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	low := &Configuration{ID: "low", Priority: 1, CreatedTime: t0.Add(time.Hour)}
	high := &Configuration{ID: "high", Priority: 5, CreatedTime: t0}
	newer := &Configuration{ID: "newer", Priority: 5, CreatedTime: t0.Add(time.Minute)}
	for _, tt := range []struct {
		a, b *Configuration
		want bool
	}{
		{high, low, true}, {low, high, false}, {newer, high, true}, {high, newer, false},
	} {
		if got := wins(tt.a, tt.b); got != tt.want {
			t.Errorf("wins(%s, %s) = %v, want %v", tt.a.ID, tt.b.ID, got, tt.want)
		}
	}
}

func TestSystemQueries(t *testing.T) {
	c := &Configuration{ID: "cfg", TargetCondition: "tags.env='prod'", Content: Content{DeviceContent: map[string]any{"properties.desired.x": 1.0}}}
	want := map[string]string{
		MetricTargeted: "select deviceId from devices where tags.env='prod'",
		MetricApplied:  "select deviceId from devices where configurations.[[cfg]].status = 'Applied'",
	}
	if got := c.SystemQueries(); !reflect.DeepEqual(got, want) {
		t.Fatalf("queries = %v, want %v", got, want)
	}
	m := &Configuration{ID: "m", TargetCondition: "FROM devices.modules WHERE moduleId='a'", Content: Content{ModuleContent: map[string]any{"properties.desired.x": 1.0}}}
	if got := m.SystemQueries()[MetricTargeted]; got != "select deviceId from devices.modules where moduleId='a'" {
		t.Fatalf("module targeted query = %q", got)
	}
}

func TestFormatETag(t *testing.T) {
	if got := FormatETag(1); got != "MQ==" {
		t.Fatalf("FormatETag(1) = %q", got)
	}
	if !iothub.MatchETag(`"MQ=="`, FormatETag(1)) || iothub.MatchETag("Mg==", FormatETag(1)) || !iothub.MatchETag("*", "x") {
		t.Fatal("MatchETag")
	}
}
