package query

import (
	"errors"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

func TestParse_OK(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical String() of the result
	}{
		{"SELECT * FROM devices", "SELECT * FROM devices"},
		{"select * from DEVICES", "SELECT * FROM devices"},
		{"SELECT TOP 5 * FROM devices.modules", "SELECT TOP 5 * FROM devices.modules"},
		{"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'",
			"SELECT * FROM devices.jobs WHERE (jobId = 'j1')"},
		{"SELECT * FROM devices.jobs WHERE devices.jobs.createdTimeUtc > '2016-09-01'",
			"SELECT * FROM devices.jobs WHERE (createdDateTimeUtc > '2016-09-01')"},
		{"SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'm'",
			"SELECT * FROM devices.modules WHERE (moduleId = 'm')"},
		{"SELECT DeviceId, LastActivityTime FROM devices",
			"SELECT deviceId, lastActivityTime FROM devices"},
		{"SELECT deviceId, properties.reported.fw AS fw FROM devices",
			"SELECT deviceId, properties.reported.fw AS fw FROM devices"},
		{"SELECT COUNT() AS n FROM devices", "SELECT COUNT() AS n FROM devices"},
		{"SELECT properties.reported.fw AS fw, count() AS c FROM devices GROUP BY properties.reported.fw",
			"SELECT properties.reported.fw AS fw, COUNT() AS c FROM devices GROUP BY properties.reported.fw"},
		{"SELECT tags.a, tags.b.c, COUNT() AS n FROM devices GROUP BY tags.a, tags.b.c",
			"SELECT tags.a, tags.b.c, COUNT() AS n FROM devices GROUP BY tags.a, tags.b.c"},
		{"SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
			"SELECT * FROM devices WHERE ((tags.location.region = 'US') AND (properties.reported.telemetryConfig.sendFrequencyInSecs >= 60))"},
		{"SELECT * FROM devices WHERE a = 1 OR b = 2 AND c = 3",
			"SELECT * FROM devices WHERE ((a = 1) OR ((b = 2) AND (c = 3)))"},
		{"SELECT * FROM devices WHERE (a = 1 OR b = 2) AND NOT c <> 3",
			"SELECT * FROM devices WHERE (((a = 1) OR (b = 2)) AND NOT (c != 3))"},
		{"SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']",
			"SELECT * FROM devices WHERE (properties.reported.connectivity IN ['wired', 'wifi'])"},
		{"SELECT * FROM devices WHERE x NIN (1, 'a', true, null)",
			"SELECT * FROM devices WHERE (x NIN [1, 'a', true, null])"},
		{"SELECT * FROM devices WHERE x IN []", "SELECT * FROM devices WHERE (x IN [])"},
		{"SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)",
			"SELECT * FROM devices WHERE IS_DEFINED(properties.reported.connectivity)"},
		{"SELECT * FROM devices WHERE StartsWith(deviceId, 'a') AND ENDSWITH(deviceId, \"z\")",
			"SELECT * FROM devices WHERE (STARTSWITH(deviceId, 'a') AND ENDSWITH(deviceId, 'z'))"},
		{"SELECT * FROM devices WHERE capabilities.IOTEDGE", "SELECT * FROM devices WHERE capabilities.iotEdge"},
		{"SELECT * FROM devices WHERE Properties.Desired.$Metadata.x.$lastUpdated > '2020'",
			"SELECT * FROM devices WHERE (properties.desired.$metadata.x.$lastUpdated > '2020')"},
		{"SELECT * FROM devices WHERE x = -1.5e3 AND y = 0x1F AND z = .5 AND w = -0.25",
			"SELECT * FROM devices WHERE ((x = -1500) AND (y = 31) AND (z = 0.5) AND (w = -0.25))"},
		{`SELECT * FROM devices WHERE x = 'it\'s' AND y = "say \"hi\"" AND z = 'back\\slash\u00e9'`,
			`SELECT * FROM devices WHERE ((x = 'it\'s') AND (y = 'say "hi"') AND (z = 'back\\slashé'))`},
		{"SELECT * FROM devices WHERE x=1 AND y!=2 AND z<3 AND u<=4 AND v>5 AND w>=6",
			"SELECT * FROM devices WHERE ((x = 1) AND (y != 2) AND (z < 3) AND (u <= 4) AND (v > 5) AND (w >= 6))"},
		{"SELECT * FROM devices WHERE x = TRUE AND y = False AND z = NULL",
			"SELECT * FROM devices WHERE ((x = true) AND (y = false) AND (z = null))"},
		{"SELECT * FROM devices WHERE devices.tags.a = 1", "SELECT * FROM devices WHERE (tags.a = 1)"},
		{"SELECT * FROM devices WHERE tags.group = 1", "SELECT * FROM devices WHERE (tags.group = 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			q, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := q.String(); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			// The canonical form parses back to itself.
			q2, err := Parse(q.String())
			if err != nil {
				t.Fatalf("reparse: %v", err)
			}
			if q2.String() != q.String() {
				t.Fatalf("reparse changed %s into %s", q, q2)
			}
		})
	}
}

func TestParse_Err(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the message
	}{
		{"SELECT * FORM devices", "syntax error at position 10 near 'FORM'"},
		{"SELECT * FROM devices WHERE", "position 28: unexpected end of query"},
		{"SELECT * FROM things", "unknown collection 'things' at position 15"},
		{"SELECT * FROM devices.twins", "unknown collection 'devices.twins'"},
		{"SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')", "unknown function 'STARTS_WITH' at position 29"},
		{"SELECT * FROM devices WHERE IS_DEFINED(a, b)", "IS_DEFINED at position 29 takes 1 argument(s), not 2"},
		{"SELECT * FROM devices WHERE x = 'abc", "syntax error at position 33 near ''abc'"},
		{"SELECT * FROM devices WHERE x = 'a\\qb'", "syntax error at position 35 near '\\q'"},
		{"SELECT * FROM devices WHERE x = 12abc", "near '12a'"},
		{"SELECT * FROM devices WHERE x = 1e999", "near '1e999'"},
		{"SELECT * FROM devices WHERE x == 1", "position 32 near '='"},
		{"SELECT * FROM devices WHERE x = 1 AND", "unexpected end of query"},
		{"SELECT * FROM devices WHERE (x = 1", "unexpected end of query"},
		{"SELECT * FROM devices WHERE x IN ['a' 'b']", "near ''b''"},
		{"SELECT * FROM devices WHERE x IN [tags.a]", "near 'tags'"},
		{"SELECT * FROM devices WHERE x ~ 1", "position 31 near '~'"},
		{"SELECT * FROM devices WHERE x = - 1", "near '-'"},
		{"SELECT * FROM devices extra", "near 'extra'"},
		{"SELECT TOP -1 * FROM devices", "near '-1'"},
		{"SELECT TOP 1.5 * FROM devices", "near '1.5'"},
		{"SELECT AVG(x) FROM devices", "function 'AVG' at position 8 is not supported"},
		{"SELECT tags.a FROM devices GROUP BY tags.b", "neither aggregated nor in GROUP BY"},
		{"SELECT tags.a, COUNT() AS n FROM devices", "neither aggregated nor in GROUP BY"},
		{"SELECT * FROM devices GROUP BY tags.b", "SELECT * cannot be used with GROUP BY at position 23"},
		{"SELECT deviceId FROM devices.jobs", "only SELECT * is supported on devices.jobs"},
		{"SELECT tags.a, properties.desired.a FROM devices", "the name 'a' appears twice"},
		{"SELECT * FROM devices WHERE select = 1", "near 'select'"},
		{"SELECT * FROM devices WHERE x = 'é' AND ~", "syntax error at position 41 near '~'"},
		{"", "unexpected end of query"},
		{"SELECT * FROM devices WHERE x = '\xff'", "not valid UTF-8"},
		{"SELECT * FROM devices WHERE " + strings.Repeat("NOT ", 200) + "x", "nested too deeply"},
		{"SELECT * FROM devices WHERE x = '" + strings.Repeat("a", MaxLength) + "'", "the limit is 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 60)], func(t *testing.T) {
			_, err := Parse(tt.in)
			checkInvalid(t, err, tt.want)
		})
	}
}

func checkInvalid(t *testing.T, err error, want string) {
	t.Helper()
	var e *iothub.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *iothub.Error", err)
	}
	if e.Code != iothub.ArgumentInvalid {
		t.Fatalf("code = %v, want ArgumentInvalid", e.Code)
	}
	if !strings.HasPrefix(e.Message, "The query is invalid: ") || !strings.Contains(e.Message, want) {
		t.Fatalf("message = %q, want it to contain %q", e.Message, want)
	}
}

func TestParseCondition(t *testing.T) {
	tests := []struct{ in, want string }{
		{"*", "SELECT * FROM devices"},
		{" * ", "SELECT * FROM devices"},
		{"deviceId IN ['a','b']", "SELECT * FROM devices WHERE (deviceId IN ['a', 'b'])"},
		{"tags.building = 43", "SELECT * FROM devices WHERE (tags.building = 43)"},
		{"tags.environment='prod' AND NOT deviceId = 'linuxprod1'",
			"SELECT * FROM devices WHERE ((tags.environment = 'prod') AND NOT (deviceId = 'linuxprod1'))"},
	}
	for _, tt := range tests {
		q, err := ParseCondition(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if got := q.String(); got != tt.want {
			t.Errorf("%q: got %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{"", "* AND x = 1", "WHERE x = 1", "x = 1 GROUP BY x", "SELECT * FROM devices"} {
		_, err := ParseCondition(in)
		checkInvalid(t, err, "syntax error")
	}
}
