package query

import (
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

var fuzzDB struct {
	once sync.Once
	db   *sql.DB
	rows []twinRow
	err  error
}

// fuzzFixture is a small SQLite database of twins shared by fuzz inputs.
func fuzzFixture(t *testing.T) (*sql.DB, []twinRow) {
	fuzzDB.once.Do(func() {
		db, err := sql.Open("sqlite", ":memory:")
		if err != nil {
			fuzzDB.err = err
			return
		}
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(schemaSQL); err != nil {
			fuzzDB.err = err
			return
		}
		fuzzDB.db = db
		for i, tags := range []map[string]any{nil, {"a": 1.0, "b": "x", "c": map[string]any{"d": true}}, {"a": "1", "b": nil}} {
			r := twinRow{deviceID: string(rune('a' + i)), status: "enabled", statusUpdated: "t", connState: "Connected",
				lastActivity: "t", auth: "sas", tags: tags, desired: map[string]any{"a": 2.5},
				reported: map[string]any{"fw": "1.0"}, desiredMeta: map[string]any{}, reportedMeta: map[string]any{},
				desiredVersion: 1, reportedVersion: 2, version: 3, etag: 1}
			if i == 2 {
				r.moduleID = "m"
			}
			fuzzDB.rows = append(fuzzDB.rows, r)
			insertTwin(t, db, r)
		}
	})
	if fuzzDB.err != nil {
		t.Fatal(fuzzDB.err)
	}
	return fuzzDB.db, fuzzDB.rows
}

// FuzzParse checks that any input parses or fails with ArgumentInvalid, that
// what parses prints to text that parses back the same, and that the SQL
// compiled from it runs and agrees with the evaluator.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM devices",
		"SELECT TOP 3 deviceId, tags.a AS a FROM devices.modules WHERE tags.a = 1 OR NOT tags.b != 'x'",
		"SELECT tags.a, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.c.d) GROUP BY tags.a",
		"SELECT * FROM devices.jobs WHERE devices.jobs.status IN ['completed', 'failed']",
		`SELECT * FROM devices WHERE STARTSWITH(reported.fw, "1.") AND tags.a NIN [0x10, -2.5e3, null, true]`,
		"SELECT * FROM devices WHERE ENDSWITH(deviceId, '') AND capabilities.iotEdge",
		`SELECT * FROM devices WHERE x = 'a\'b\"c\\d\u00e9\ud83d\ude00'`,
		"*", "deviceId IN ['a','b']", "tags.building = 43",
		// Long chains once compiled quadratically and overflowed SQLite's
		// expression depth (TestCompile_LargeQueries).
		strings.Repeat("tags.a = 1 AND ", 540) + "true",
		strings.Repeat("tags.a = tags.b OR ", 420) + "true",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		q, err := Parse(text)
		if err != nil {
			var e *iothub.Error
			if !errors.As(err, &e) || e.Code != iothub.ArgumentInvalid {
				t.Fatalf("Parse(%q) error %v is not ArgumentInvalid", text, err)
			}
			if q, err = ParseCondition(text); err != nil {
				return
			}
		}
		printed := q.String()
		if len(printed) > MaxLength { // the canonical form adds parentheses
			return
		}
		q2, err := Parse(printed)
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", text, printed, err)
		}
		if q2.String() != printed {
			t.Fatalf("%q printed as %q, which reparses as %q", text, printed, q2.String())
		}
		if q.From == Jobs {
			return
		}
		db, rows := fuzzFixture(t)
		var docs []map[string]any
		for _, r := range rows {
			if (r.moduleID == "") == (q.From == Devices) {
				docs = append(docs, r.doc(t, false))
			}
		}
		if _, err := q.Evaluate(docs); err != nil {
			t.Fatal(err)
		}
		s := TwinSchema(q.From)
		p, err := Compile(q, s)
		if errors.Is(err, ErrNotCompilable) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, d := range docs {
			if q.Match(d) {
				want = append(want, twinKey(d))
			}
		}
		if got := selectKeys(t, db, p, s); !slices.Equal(got, want) {
			t.Fatalf("%s\nWHERE %s %v\nSQL:       %v\nevaluator: %v", q, p.Where, p.WhereArgs, got, want)
		}
	})
}
