package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// twinJSON is a device twin as the hub renders it (digest §4.1).
const twinJSON = `{
  "deviceId": "dev1", "etag": "AAAAAAAAAAE=", "status": "enabled",
  "statusUpdateTime": "0001-01-01T00:00:00Z", "connectionState": "Disconnected",
  "lastActivityTime": "2024-05-28T11:04:38.4422737Z", "cloudToDeviceMessageCount": 0,
  "authenticationType": "sas", "modelId": "", "version": 4,
  "tags": {"location": {"region": "US", "plant": "Redmond43"}, "building": 43, "floor": 2.5,
           "flag": true, "off": false, "nothing": null, "list": [1, 2], "empty": "", "one": "1"},
  "properties": {
    "desired": {"fw": "1.2.0", "$metadata": {"$lastUpdated": "2024-05-28T11:04:38Z",
                "fw": {"$lastUpdated": "2024-05-28T11:04:38Z", "$lastUpdatedVersion": 3}}, "$version": 3},
    "reported": {"fw": "1.1.0", "connectivity": "wifi", "$metadata": {"$lastUpdated": "2024-05-28T11:04:38Z"}, "$version": 7}
  },
  "capabilities": {"iotEdge": false}
}`

func mustDoc(t testing.TB, s string, useNumber bool) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		dec.UseNumber()
	}
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMatch(t *testing.T) {
	tests := []struct {
		cond string
		want bool
	}{
		// Equality and same-type rules.
		{"tags.building = 43", true},
		{"tags.building = 43.0", true},
		{"tags.building = '43'", false},
		{"tags.building != '43'", false}, // mixed types: undefined, not true
		{"tags.building != 42", true},
		{"tags.building <> 42", true},
		{"tags.one = 1", false},
		{"tags.one = '1'", true},
		{"tags.flag = true", true},
		{"tags.flag = 1", false},
		{"tags.flag != false", true},
		{"tags.off = false", true},
		{"tags.nothing = null", true},
		{"tags.nothing != null", false},
		{"tags.building = null", false},
		{"tags.building != null", false},
		{"tags.missing = null", false},
		{"tags.missing != 1", false},
		{"tags.location = 'US'", false},
		{"tags.list = 1", false},
		{"tags.empty = ''", true},
		// Ordering.
		{"tags.floor > 2", true},
		{"tags.floor >= 2.5", true},
		{"tags.floor < 2.5", false},
		{"tags.floor <= 2.5", true},
		{"tags.building > -1", true},
		{"tags.location.region > 'UA'", true},
		{"tags.location.region < 'a'", true}, // bytes: 'U' < 'a'
		{"tags.flag > false", false},         // no ordering on bools
		{"tags.nothing <= null", false},
		{"properties.reported.fw < properties.desired.fw", true},
		{"properties.desired.$version = 3", true},
		{"properties.desired.$metadata.fw.$lastUpdatedVersion = 3", true},
		{"properties.reported.$version >= 7", true},
		// System properties and literal placement.
		{"deviceId = 'dev1'", true},
		{"DEVICEID = 'dev1'", true},
		{"'dev1' = deviceId", true},
		{"43 = tags.building", true},
		{"status = 'enabled' AND connectionState = 'Disconnected'", true},
		{"capabilities.iotEdge = false", true},
		{"version = 4", true},
		{"moduleId = 'x'", false},
		{"devices.deviceId = 'dev1'", true},
		// Logic: three-valued.
		{"NOT tags.building = 42", true},
		{"NOT tags.missing = 1", false},
		{"NOT NOT tags.building = 43", true},
		{"tags.missing = 1 OR tags.building = 43", true},
		{"tags.missing = 1 AND tags.building = 43", false},
		{"NOT (tags.missing = 1 AND tags.building = 42)", true}, // undefined AND false = false
		{"NOT (tags.missing = 1 OR tags.building = 42)", false}, // undefined OR false = undefined
		{"NOT (tags.missing = 1 OR tags.building = 43)", false},
		// IN / NIN.
		{"properties.reported.connectivity IN ['wired', 'wifi']", true},
		{"properties.reported.connectivity IN ['wired']", false},
		{"properties.reported.connectivity NIN ['wired']", true},
		{"properties.reported.connectivity NIN ['wifi']", false},
		{"tags.building IN ['43', 43]", true},
		{"tags.building NIN ['43']", true},
		{"tags.missing NIN ['43']", false},
		{"tags.location NIN ['43']", false},
		{"tags.nothing IN [null]", true},
		{"tags.nothing NIN [1]", true},
		{"tags.flag IN [true]", true},
		{"tags.flag IN [1]", false},
		{"tags.building IN []", false},
		{"tags.building NIN []", true},
		{"NOT tags.missing IN [1]", false},
		// Functions.
		{"IS_DEFINED(tags.nothing)", true},
		{"IS_DEFINED(tags.missing)", false},
		{"NOT IS_DEFINED(tags.missing)", true},
		{"IS_DEFINED(properties.desired.$metadata)", true},
		{"IS_NULL(tags.nothing)", true},
		{"IS_NULL(tags.missing)", false},
		{"NOT IS_NULL(tags.missing)", true},
		{"IS_BOOL(tags.flag)", true},
		{"IS_BOOL(tags.one)", false},
		{"IS_NUMBER(tags.floor)", true},
		{"IS_NUMBER(tags.one)", false},
		{"IS_STRING(tags.one)", true},
		{"IS_STRING(tags.building)", false},
		{"IS_OBJECT(tags.location)", true},
		{"IS_OBJECT(tags.list)", false},
		{"IS_OBJECT(properties)", true},
		{"IS_PRIMITIVE(tags.nothing)", true},
		{"IS_PRIMITIVE(tags.flag)", true},
		{"IS_PRIMITIVE(tags.location)", false},
		{"IS_PRIMITIVE(tags.list)", false},
		{"IS_PRIMITIVE(tags.missing)", false},
		{"STARTSWITH(tags.location.plant, 'Red')", true},
		{"STARTSWITH(tags.location.plant, 'red')", false},
		{"STARTSWITH(tags.location.plant, '')", true},
		{"NOT STARTSWITH(tags.location.plant, 'x')", true},
		{"NOT STARTSWITH(tags.building, 'x')", false},
		{"STARTSWITH(tags.building, '4')", false},
		{"ENDSWITH(tags.location.plant, '43')", true},
		{"ENDSWITH(tags.location.plant, 'Redmond43x')", false},
		{"ENDSWITH(deviceId, deviceId)", true},
		// Bare operands.
		{"tags.flag", true},
		{"tags.off", false},
		{"NOT tags.off", true},
		{"NOT tags.one", false},
		{"true", true},
		{"NOT false", true},
		{"null", false},
		{"*", true},
	}
	for _, useNumber := range []bool{false, true} {
		doc := mustDoc(t, twinJSON, useNumber)
		for _, tt := range tests {
			q, err := ParseCondition(tt.cond)
			if err != nil {
				t.Fatalf("%s: %v", tt.cond, err)
			}
			if got := q.Match(doc); got != tt.want {
				t.Errorf("useNumber=%v %s: got %v, want %v", useNumber, tt.cond, got, tt.want)
			}
		}
	}
}

func TestMatch_Jobs(t *testing.T) {
	doc := mustDoc(t, `{"deviceId":"myDeviceId","jobId":"myJobId","jobType":"scheduleUpdateTwin",
		"status":"completed","startTimeUtc":"2016-09-29T18:18:52.7418462",
		"createdDateTimeUtc":"2016-09-29T18:18:56.7787107Z","outcome":{"deviceMethodResponse":null}}`, false)
	for cond, want := range map[string]bool{
		"devices.jobs.jobId = 'myJobId'":                          true,
		"devices.jobs.createdTimeUtc > '2016-09-01'":              true,
		"devices.jobs.JOBTYPE = 'scheduleUpdateTwin'":             true,
		"status IN ['completed', 'failed']":                       true,
		"IS_DEFINED(devices.jobs.endTimeUtc)":                     false,
		"IS_NULL(devices.jobs.outcome.deviceMethodResponse)":      true,
		"devices.jobs.deviceId = 'myDeviceId' AND tags.x = 'any'": false,
	} {
		q, err := Parse("SELECT * FROM devices.jobs WHERE " + cond)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.Match(doc); got != want {
			t.Errorf("%s: got %v, want %v", cond, got, want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	docs := []map[string]any{
		mustDoc(t, `{"deviceId":"a","properties":{"reported":{"fw":"1.0"}},"tags":{"n":1}}`, false),
		mustDoc(t, `{"deviceId":"b","properties":{"reported":{"fw":"2.0"}},"tags":{"n":true}}`, false),
		mustDoc(t, `{"deviceId":"c","properties":{"reported":{"fw":"1.0"}},"tags":{"n":null}}`, false),
		mustDoc(t, `{"deviceId":"d","properties":{"reported":{}},"tags":{"n":"1"}}`, false),
		mustDoc(t, `{"deviceId":"e","properties":{"reported":{"fw":1}}}`, false),
	}
	tests := []struct {
		query string
		want  string // JSON
	}{
		{"SELECT * FROM devices WHERE deviceId = 'a'", `[{"deviceId":"a","properties":{"reported":{"fw":"1.0"}},"tags":{"n":1}}]`},
		{"SELECT TOP 2 deviceId FROM devices", `[{"deviceId":"a"},{"deviceId":"b"}]`},
		{"SELECT deviceId, properties.reported.fw AS fw FROM devices WHERE deviceId >= 'c'",
			`[{"deviceId":"c","fw":"1.0"},{"deviceId":"d"},{"deviceId":"e","fw":1}]`},
		{"SELECT COUNT() AS n FROM devices", `[{"n":5}]`},
		{"SELECT COUNT() AS n FROM devices WHERE deviceId = 'zz'", `[{"n":0}]`},
		{"SELECT COUNT() FROM devices", `[{"$1":5}]`},
		{"SELECT properties.reported.fw AS fw, COUNT() AS c FROM devices GROUP BY properties.reported.fw",
			`[{"fw":"1.0","c":2},{"fw":"2.0","c":1},{"c":1},{"fw":1,"c":1}]`},
		{"SELECT tags.n, COUNT() AS c FROM devices GROUP BY tags.n",
			`[{"n":1,"c":1},{"n":true,"c":1},{"n":null,"c":1},{"n":"1","c":1},{"c":1}]`},
		{"SELECT TOP 1 properties.reported.fw AS fw FROM devices GROUP BY properties.reported.fw", `[{"fw":"1.0"}]`},
		{"SELECT COUNT() AS c FROM devices WHERE deviceId = 'q' GROUP BY tags.n", `null`},
	}
	for _, tt := range tests {
		q, err := Parse(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.Evaluate(docs)
		if err != nil {
			t.Fatal(err)
		}
		var want []map[string]any
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(t, got), normalize(t, want)) {
			gj, _ := json.Marshal(got)
			t.Errorf("%s:\n got %s\nwant %s", tt.query, gj, tt.want)
		}
	}
}

// normalize round-trips through JSON so ints and float64s compare equal.
func normalize(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
