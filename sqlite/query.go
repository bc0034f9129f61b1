package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/twins"
	"github.com/iothub-emulator/iothub-emulator/wire"
)

// QueryStore runs IoT Hub queries against the database: compiled to SQL
// when the query allows it, otherwise by scanning rows a page at a time
// through the reference evaluator. Either way memory does not grow with the
// fleet for a paged SELECT *.
type QueryStore struct{ DB *DB }

var _ query.Runner = (*QueryStore)(nil)

// cursor is where the next page starts: after the row Key, or at Offset in
// an aggregate's result; Served counts items already returned (for TOP).
type cursor struct {
	Key    []string `json:"k,omitempty"`
	Offset int      `json:"o,omitempty"`
	Served int      `json:"n,omitempty"`
}

func schemaFor(c query.Collection) *query.Schema {
	s := query.SchemaFor(c)
	// Paths as literals let SQLite use expression indexes on json_extract.
	s.InlinePaths = true
	return s
}

// Run executes q from the position in next (empty for the first page) and
// returns at most limit items.
func (s *QueryStore) Run(ctx context.Context, q *query.Query, next string, limit int) (*query.Page, error) {
	var cur cursor
	if next != "" {
		if err := json.Unmarshal([]byte(next), &cur); err != nil {
			return nil, errors.New("bad cursor")
		}
	}
	if q.Top >= 0 {
		limit = min(limit, q.Top-cur.Served)
		if limit <= 0 {
			return &query.Page{ItemType: itemType(q)}, nil
		}
	}
	schema := schemaFor(q.From)
	plan, err := query.Compile(q, schema)
	var page *query.Page
	switch {
	case errors.Is(err, query.ErrNotCompilable):
		page, err = s.runEvaluated(ctx, q, schema, cur, limit)
	case err != nil:
		return nil, err
	case q.Aggregate():
		s.DB.ensureIndexes(ctx, plan.Table, plan.Indexable)
		page, err = s.runAggregate(ctx, q, plan, cur, limit)
	default:
		s.DB.ensureIndexes(ctx, plan.Table, plan.Indexable)
		page, err = s.runRows(ctx, q, plan, schema, cur, limit)
	}
	if err != nil {
		return nil, err
	}
	if q.Top >= 0 && cur.Served+len(page.Items) >= q.Top {
		page.Next = ""
	}
	return page, nil
}

func itemType(q *query.Query) string {
	switch {
	case !q.Star || q.Aggregate():
		return "Raw"
	case q.From == query.Jobs:
		return "DeviceJob"
	}
	return "Twin"
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return string(b)
}

// keyset returns the condition and args that start after cur.Key.
func keyset(schema *query.Schema, cur cursor) (string, []any) {
	if len(cur.Key) != len(schema.Key) {
		return "1", nil
	}
	args := make([]any, len(cur.Key))
	for i, k := range cur.Key {
		args[i] = k
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(cur.Key)), ",")
	return "(" + strings.Join(schema.Key, ", ") + ") > (" + ph + ")", args
}

// runRows pages a non-aggregate compiled query by keyset on the schema key.
func (s *QueryStore) runRows(ctx context.Context, q *query.Query, plan *query.Plan, schema *query.Schema, cur cursor, limit int) (*query.Page, error) {
	ks, ksArgs := keyset(schema, cur)
	cols := rowColumns(q.From)
	var args []any
	sel := cols
	if !q.Star {
		sel = plan.Select + ", " + strings.Join(schema.Key, ", ")
		args = append(args, plan.SelectArgs...)
	}
	args = append(args, plan.WhereArgs...)
	args = append(args, ksArgs...)
	args = append(args, limit+1)
	rows, err := s.DB.Reader().QueryContext(ctx, "SELECT "+sel+" FROM "+plan.Table+" WHERE ("+plan.Where+") AND "+ks+
		" ORDER BY "+strings.Join(schema.Key, ", ")+" LIMIT ?", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := &query.Page{ItemType: itemType(q)}
	var last []string
	for rows.Next() {
		if len(page.Items) == limit {
			page.Next = encodeCursor(cursor{Key: last, Served: cur.Served + limit})
			break
		}
		var item any
		if q.Star {
			item, last, err = scanDoc(q.From, rows)
		} else {
			item, last, err = scanProjection(plan, len(schema.Key), rows)
		}
		if err != nil {
			return nil, err
		}
		page.Items = append(page.Items, item)
	}
	return page, rows.Err()
}

func rowColumns(c query.Collection) string {
	if c == query.Jobs {
		return deviceJobColumns
	}
	return twinColumns
}

func scanDoc(c query.Collection, rows *sql.Rows) (any, []string, error) {
	if c == query.Jobs {
		doc, err := scanDeviceJob(rows)
		if err != nil {
			return nil, nil, err
		}
		mod, _ := doc["moduleId"].(string)
		return doc, []string{doc["jobId"].(string), doc["deviceId"].(string), mod}, nil
	}
	t, err := ScanTwin(rows)
	if err != nil {
		return nil, nil, err
	}
	return t, []string{t.DeviceID, t.ModuleID}, nil
}

func scanProjection(plan *query.Plan, nkey int, rows *sql.Rows) (any, []string, error) {
	n := plan.Columns()
	vals := make([]any, n+nkey)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, nil, err
	}
	row, err := plan.Row(vals[:n])
	if err != nil {
		return nil, nil, err
	}
	key := make([]string, nkey)
	for i := range key {
		key[i] = asString(vals[n+i])
	}
	return row, key, nil
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

// runAggregate computes every group, then pages over them by offset.
func (s *QueryStore) runAggregate(ctx context.Context, q *query.Query, plan *query.Plan, cur cursor, limit int) (*query.Page, error) {
	stmt, args := plan.Statement()
	rows, err := s.DB.Reader().QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var scanned [][]any
	for rows.Next() {
		vals := make([]any, plan.Columns())
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		scanned = append(scanned, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	results, err := plan.Results(scanned)
	if err != nil {
		return nil, err
	}
	all := make([]any, len(results))
	for i, r := range results {
		all[i] = r
	}
	return pageSlice(q, all, cur, limit), nil
}

func pageSlice(q *query.Query, all []any, cur cursor, limit int) *query.Page {
	page := &query.Page{ItemType: itemType(q)}
	start := min(cur.Offset, len(all))
	end := min(start+limit, len(all))
	page.Items = all[start:end]
	if end < len(all) {
		page.Next = encodeCursor(cursor{Offset: end, Served: cur.Served + len(page.Items)})
	}
	return page
}

// runEvaluated answers queries the compiler cannot express (e.g. on etag)
// by scanning the collection in key order and evaluating each document.
func (s *QueryStore) runEvaluated(ctx context.Context, q *query.Query, schema *query.Schema, cur cursor, limit int) (*query.Page, error) {
	filter := "1"
	if schema.Filter != "" {
		filter = schema.Filter
	}
	var matched []any
	var docs []map[string]any
	scan := cur
	scan.Offset = 0
	for {
		ks, args := keyset(schema, scan)
		rows, err := s.DB.Reader().QueryContext(ctx, "SELECT "+rowColumns(q.From)+" FROM "+schema.Table+" WHERE "+filter+" AND "+ks+
			" ORDER BY "+strings.Join(schema.Key, ", ")+" LIMIT 500", args...)
		if err != nil {
			return nil, err
		}
		n := 0
		for rows.Next() {
			n++
			item, key, err := scanDoc(q.From, rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			scan.Key = key
			doc := documentOf(item)
			if q.Aggregate() {
				docs = append(docs, doc)
				continue
			}
			if !q.Match(doc) {
				continue
			}
			if !q.Star {
				out, err := q.Evaluate([]map[string]any{doc})
				if err != nil {
					rows.Close()
					return nil, err
				}
				item = out[0]
			}
			matched = append(matched, item)
			if len(matched) == limit+1 {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(matched) > limit {
			page := &query.Page{ItemType: itemType(q), Items: matched[:limit]}
			page.Next = encodeCursor(cursor{Key: keyOf(q.From, matched[limit-1]), Served: cur.Served + limit})
			return page, nil
		}
		if n < 500 {
			break
		}
	}
	if q.Aggregate() {
		out, err := q.Evaluate(docs)
		if err != nil {
			return nil, err
		}
		all := make([]any, len(out))
		for i, o := range out {
			all[i] = o
		}
		return pageSlice(q, all, cur, limit), nil
	}
	return &query.Page{ItemType: itemType(q), Items: matched}, nil
}

func keyOf(c query.Collection, item any) []string {
	switch x := item.(type) {
	case *twins.Twin:
		return []string{x.DeviceID, x.ModuleID}
	case map[string]any:
		mod, _ := x["moduleId"].(string)
		if c == query.Jobs {
			return []string{asString(x["jobId"]), asString(x["deviceId"]), mod}
		}
		return []string{asString(x["deviceId"]), mod}
	}
	return nil
}

// documentOf gives the evaluator the document as the hub renders it.
func documentOf(item any) map[string]any {
	if t, ok := item.(*twins.Twin); ok {
		var doc map[string]any
		d := json.NewDecoder(strings.NewReader(string(wire.TwinJSON(t))))
		d.UseNumber()
		_ = d.Decode(&doc)
		return doc
	}
	return item.(map[string]any)
}

const deviceJobColumns = `job_id, device_id, module_id, job_type, status, start_time, end_time, created_time, last_updated_time, outcome, error`

// scanDeviceJob renders a device_jobs row as the hub's DeviceJob (digest §3.8).
func scanDeviceJob(rows *sql.Rows) (map[string]any, error) {
	var jobID, deviceID, moduleID, jobType, status, created, updated string
	var start, end, outcome, errJSON sql.NullString
	if err := rows.Scan(&jobID, &deviceID, &moduleID, &jobType, &status, &start, &end, &created, &updated, &outcome, &errJSON); err != nil {
		return nil, err
	}
	doc := map[string]any{"deviceId": deviceID, "jobId": jobID, "jobType": jobType, "status": status,
		"createdDateTimeUtc": created, "lastUpdatedDateTimeUtc": updated}
	if moduleID != "" {
		doc["moduleId"] = moduleID
	}
	// C# reads both as non-nullable DateTime: a device the job has not
	// reached yet shows .NET's zero time, never null or nothing.
	doc["startTimeUtc"], doc["endTimeUtc"] = zeroTime, zeroTime
	if start.Valid {
		doc["startTimeUtc"] = start.String
	}
	if end.Valid {
		doc["endTimeUtc"] = end.String
	}
	doc["outcome"] = map[string]any{"deviceMethodResponse": nil}
	if outcome.Valid {
		var o map[string]any
		if json.Unmarshal([]byte(outcome.String), &o) == nil {
			doc["outcome"] = o
		}
	}
	if errJSON.Valid {
		var e map[string]any
		if json.Unmarshal([]byte(errJSON.String), &e) == nil {
			doc["error"] = e
		}
	}
	return doc, nil
}

// Selector resolves jobs' query conditions to device ids.
type Selector struct{ DB *DB }

var _ jobs.Selector = Selector{}

// Validate parses a condition so a bad one fails the job's creation.
func (s Selector) Validate(cond string) error {
	_, err := query.ParseCondition(cond)
	return err
}

// Select returns every device whose twin matches cond, in id order.
func (s Selector) Select(ctx context.Context, cond string) ([]jobs.DeviceKey, error) {
	q, err := query.ParseCondition(cond)
	if err != nil {
		return nil, err
	}
	keys, err := s.selectKeys(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]jobs.DeviceKey, len(keys))
	for i, k := range keys {
		out[i] = jobs.DeviceKey{DeviceID: k.DeviceID, ModuleID: k.ModuleID}
	}
	return out, nil
}

// selectKeys returns the keys of the twins a SELECT * query matches, in key
// order.
func (s Selector) selectKeys(ctx context.Context, q *query.Query) ([]twins.Key, error) {
	var out []twins.Key
	if plan, err := query.Compile(q, schemaFor(q.From)); err == nil {
		// Only the ids: a job over 100,000 devices should not decode twins.
		s.DB.ensureIndexes(ctx, plan.Table, plan.Indexable)
		rows, err := s.DB.Reader().QueryContext(ctx, "SELECT device_id, module_id FROM "+plan.Table+" WHERE "+plan.Where+
			" ORDER BY device_id, module_id", plan.WhereArgs...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var k twins.Key
			if err := rows.Scan(&k.DeviceID, &k.ModuleID); err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, rows.Err()
	}
	qs := &QueryStore{DB: s.DB}
	next := ""
	for {
		page, err := qs.Run(ctx, q, next, 1000)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			t := it.(*twins.Twin)
			out = append(out, t.Key)
		}
		if page.Next == "" {
			return out, nil
		}
		next = page.Next
	}
}
