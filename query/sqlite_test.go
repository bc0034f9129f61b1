package query

import (
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// schemaSQL is the emulator's storage schema for twins and device jobs.
const schemaSQL = `
CREATE TABLE identities (
  device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL, status_reason TEXT NOT NULL DEFAULT '', status_updated_time TEXT NOT NULL,
  connection_state TEXT NOT NULL, last_activity_time TEXT NOT NULL,
  c2d_count INTEGER NOT NULL DEFAULT 0, auth_type TEXT NOT NULL, iot_edge INTEGER NOT NULL DEFAULT 0,
  model_id TEXT NOT NULL DEFAULT '',
  tags TEXT,
  desired TEXT NOT NULL,
  reported TEXT NOT NULL,
  desired_meta TEXT NOT NULL, reported_meta TEXT NOT NULL,
  desired_version INTEGER NOT NULL, reported_version INTEGER NOT NULL,
  twin_version INTEGER NOT NULL, twin_etag INTEGER NOT NULL,
  PRIMARY KEY (device_id, module_id));
CREATE TABLE device_jobs (job_id TEXT NOT NULL, device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
  job_type TEXT NOT NULL, status TEXT NOT NULL, start_time TEXT, end_time TEXT, created_time TEXT NOT NULL,
  last_updated_time TEXT NOT NULL, outcome TEXT, error TEXT, PRIMARY KEY (job_id, device_id, module_id));
`

func openDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	// Each pooled connection to :memory: is its own database; keep one.
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(schemaSQL); err != nil {
		t.Fatal(err)
	}
	return db
}

// twinRow is one row of identities, as the storage layer would keep it.
type twinRow struct {
	deviceID, moduleID, status, statusReason, statusUpdated string
	connState, lastActivity, auth, modelID                  string
	c2d                                                     int
	iotEdge                                                 bool
	tags                                                    map[string]any // nil: NULL
	desired, reported, desiredMeta, reportedMeta            map[string]any
	desiredVersion, reportedVersion, version, etag          int
}

func jsonText(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func insertTwin(t testing.TB, db *sql.DB, r twinRow) {
	t.Helper()
	var tags any
	if r.tags != nil {
		tags = jsonText(t, r.tags)
	}
	_, err := db.Exec(`INSERT INTO identities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		r.deviceID, r.moduleID, r.status, r.statusReason, r.statusUpdated, r.connState, r.lastActivity,
		r.c2d, r.auth, r.iotEdge, r.modelID, tags, jsonText(t, r.desired), jsonText(t, r.reported),
		jsonText(t, r.desiredMeta), jsonText(t, r.reportedMeta), r.desiredVersion, r.reportedVersion,
		r.version, r.etag)
	if err != nil {
		t.Fatal(err)
	}
}

// doc renders the row as the hub's twin JSON (digest §4.1), decoded the
// way the REST layer would decode it.
func (r twinRow) doc(t testing.TB, useNumber bool) map[string]any {
	etag := make([]byte, 8)
	binary.BigEndian.PutUint64(etag, uint64(r.etag))
	d := map[string]any{
		"deviceId": r.deviceID, "etag": base64.StdEncoding.EncodeToString(etag),
		"deviceEtag": "MA==", "status": r.status, "statusUpdateTime": r.statusUpdated,
		"connectionState": r.connState, "lastActivityTime": r.lastActivity,
		"cloudToDeviceMessageCount": r.c2d, "authenticationType": r.auth, "modelId": r.modelID,
		"x509Thumbprint": map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
		"version":        r.version,
		"properties": map[string]any{
			"desired":  withMeta(r.desired, r.desiredMeta, r.desiredVersion),
			"reported": withMeta(r.reported, r.reportedMeta, r.reportedVersion),
		},
	}
	if r.moduleID != "" {
		d["moduleId"] = r.moduleID
	} else {
		d["capabilities"] = map[string]any{"iotEdge": r.iotEdge}
	}
	if r.statusReason != "" {
		d["statusReason"] = r.statusReason
	}
	if r.tags != nil {
		d["tags"] = r.tags
	}
	return mustDoc(t, jsonText(t, d), useNumber)
}

func withMeta(props, meta map[string]any, version int) map[string]any {
	m := map[string]any{"$metadata": meta, "$version": version}
	for k, v := range props {
		m[k] = v
	}
	return m
}

// jobRow is one row of device_jobs.
type jobRow struct {
	jobID, deviceID, moduleID, jobType, status, created, updated string
	start, end                                                   *string
	outcome, errObj                                              map[string]any
}

func insertJob(t testing.TB, db *sql.DB, r jobRow) {
	t.Helper()
	var outcome, errObj any
	if r.outcome != nil {
		outcome = jsonText(t, r.outcome)
	}
	if r.errObj != nil {
		errObj = jsonText(t, r.errObj)
	}
	_, err := db.Exec(`INSERT INTO device_jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)`, r.jobID, r.deviceID,
		r.moduleID, r.jobType, r.status, r.start, r.end, r.created, r.updated, outcome, errObj)
	if err != nil {
		t.Fatal(err)
	}
}

// doc renders the row as a devices.jobs item (digest §3.8).
func (r jobRow) doc(t testing.TB) map[string]any {
	d := map[string]any{"deviceId": r.deviceID, "jobId": r.jobID, "jobType": r.jobType,
		"status": r.status, "createdDateTimeUtc": r.created, "lastUpdatedDateTimeUtc": r.updated}
	if r.moduleID != "" {
		d["moduleId"] = r.moduleID
	}
	if r.start != nil {
		d["startTimeUtc"] = *r.start
	}
	if r.end != nil {
		d["endTimeUtc"] = *r.end
	}
	if r.outcome != nil {
		d["outcome"] = r.outcome
	}
	if r.errObj != nil {
		d["error"] = r.errObj
	}
	return mustDoc(t, jsonText(t, d), false)
}

// selectKeys runs plan's WHERE and returns the matching rows' keys.
func selectKeys(t testing.TB, db *sql.DB, p *Plan, s *Schema) []string {
	t.Helper()
	keys := strings.Join(s.Key, " || '/' || ")
	rows, err := db.Query("SELECT "+keys+" FROM "+p.Table+" WHERE "+p.Where+
		" ORDER BY "+strings.Join(s.Key, ", "), p.WhereArgs...)
	if err != nil {
		t.Fatalf("%v\nWHERE %s %v", err, p.Where, p.WhereArgs)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runPlan runs a projection or aggregate plan (ordered by key when not
// aggregate) and renders its rows.
func runPlan(t testing.TB, db *sql.DB, p *Plan, s *Schema) []map[string]any {
	t.Helper()
	stmt, args := p.Statement()
	if !p.Aggregate {
		stmt += " ORDER BY " + strings.Join(s.Key, ", ")
	}
	if p.Top >= 0 && !p.Aggregate {
		stmt += " LIMIT ?"
		args = append(args, p.Top)
	}
	rows, err := db.Query(stmt, args...)
	if err != nil {
		t.Fatalf("%v\n%s %v", err, stmt, args)
	}
	defer rows.Close()
	var all [][]any
	for rows.Next() {
		vals := make([]any, p.Columns())
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		all = append(all, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out, err := p.Results(all)
	if err != nil {
		t.Fatal(err)
	}
	if p.Top >= 0 && len(out) > p.Top {
		out = out[:p.Top]
	}
	return out
}
