package query

import "strings"

// Kind is the JSON type a plain column holds.
type Kind int

// Column kinds. Bool columns store 0 or 1.
const (
	String Kind = iota
	Number
	Bool
)

// Absence says which stored value of a column means the property is missing
// from the document.
type Absence int

// Absence rules.
const (
	Present     Absence = iota // the property is always present
	AbsentNull                 // SQL NULL means the property is missing
	AbsentEmpty                // '' means the property is missing (moduleId on a device twin)
)

// Column is a plain SQL column holding one document property.
type Column struct {
	Name   string
	Kind   Kind
	Absent Absence
}

// Schema maps the document paths of one collection onto one SQL table. A
// path resolves, in this order, to: a plain column (exact match in Columns);
// a JSON column holding the subtree under the longest matching prefix in JSON;
// a synthesized object that always exists (Objects, e.g. properties.desired,
// whose parts live in several columns); or, when its first segment is in
// Unmapped, nothing the compiler can express (ErrNotCompilable). Every other
// path is missing from every document.
type Schema struct {
	// Table is the SQL table name.
	Table string
	// Filter is a SQL condition selecting the collection's rows, or "".
	Filter string
	// Key lists the columns that order rows stably, for keyset paging.
	Key []string
	// Columns maps a dotted document path to the column storing it.
	Columns map[string]Column
	// JSON maps a dotted document path prefix to the column holding that
	// subtree as JSON text (NULL meaning the subtree is missing).
	JSON map[string]string
	// Objects lists dotted paths that are always objects but are assembled
	// from several columns, so only their existence and type are known.
	Objects []string
	// Unmapped lists top-level properties present in documents but not
	// stored in a form the compiler can use (e.g. the twin etag, stored as a
	// counter but rendered in base64).
	Unmapped []string
	// InlinePaths renders JSON paths as SQL string literals instead of
	// binding them as parameters. Paths are escaped, so this is safe, and it
	// lets SQLite use expression indexes such as
	// json_extract(tags, '$."building"'), which a bound path never matches.
	InlinePaths bool
}

// TwinSchema returns the mapping of device twins (FROM devices) or module
// twins (FROM devices.modules) onto the identities table: one row per
// identity, module_id ” for devices. Module twins have no capabilities
// (digest §4.1).
func TwinSchema(c Collection) *Schema {
	s := &Schema{
		Table: "identities",
		Key:   []string{"device_id", "module_id"},
		Columns: map[string]Column{
			"deviceId":                     {"device_id", String, Present},
			"moduleId":                     {"module_id", String, AbsentEmpty},
			"status":                       {"status", String, Present},
			"statusReason":                 {"status_reason", String, AbsentEmpty},
			"statusUpdateTime":             {"status_updated_time", String, Present},
			"connectionState":              {"connection_state", String, Present},
			"lastActivityTime":             {"last_activity_time", String, Present},
			"cloudToDeviceMessageCount":    {"c2d_count", Number, Present},
			"authenticationType":           {"auth_type", String, Present},
			"modelId":                      {"model_id", String, Present},
			"version":                      {"twin_version", Number, Present},
			"properties.desired.$version":  {"desired_version", Number, Present},
			"properties.reported.$version": {"reported_version", Number, Present},
		},
		JSON: map[string]string{
			"tags":                          "tags",
			"properties.desired":            "desired",
			"properties.reported":           "reported",
			"properties.desired.$metadata":  "desired_meta",
			"properties.reported.$metadata": "reported_meta",
		},
		Objects:  []string{"properties", "properties.desired", "properties.reported"},
		Unmapped: []string{"etag", "deviceEtag", "x509Thumbprint", "deviceScope", "parentScopes"},
	}
	// The unary + keeps SQLite from scanning identities_status (whose
	// entries carry module_id) and looking every row up from it: a full
	// scan of the table is several times faster.
	if c == Modules {
		s.Filter = "+module_id <> ''"
	} else {
		s.Filter = "+module_id = ''"
		s.Columns["capabilities.iotEdge"] = Column{"iot_edge", Bool, Present}
		s.Objects = append(s.Objects, "capabilities")
	}
	return s
}

// JobSchema returns the mapping of device-job records (FROM devices.jobs)
// onto the device_jobs table (digest §3.8). outcome and error hold JSON text.
func JobSchema() *Schema {
	return &Schema{
		Table: "device_jobs",
		Key:   []string{"job_id", "device_id", "module_id"},
		Columns: map[string]Column{
			"deviceId":               {"device_id", String, Present},
			"moduleId":               {"module_id", String, AbsentEmpty},
			"jobId":                  {"job_id", String, Present},
			"jobType":                {"job_type", String, Present},
			"status":                 {"status", String, Present},
			"startTimeUtc":           {"start_time", String, AbsentNull},
			"endTimeUtc":             {"end_time", String, AbsentNull},
			"createdDateTimeUtc":     {"created_time", String, Present},
			"lastUpdatedDateTimeUtc": {"last_updated_time", String, Present},
		},
		JSON: map[string]string{"outcome": "outcome", "error": "error"},
	}
}

// SchemaFor returns the default schema of a collection.
func SchemaFor(c Collection) *Schema {
	if c == Jobs {
		return JobSchema()
	}
	return TwinSchema(c)
}

type targetKind int

const (
	targetMissing  targetKind = iota // in no document
	targetColumn                     // a plain column
	targetJSON                       // a path inside a JSON column
	targetObject                     // an always-present synthesized object
	targetUnmapped                   // not expressible
)

// target is where a path lives in the table.
type target struct {
	kind   targetKind
	col    Column
	json   string // JSON column
	inner  Path   // path inside the JSON column
	reason string // for targetUnmapped
}

func (s *Schema) resolve(p Path) target {
	// A dotted path segment would make two different paths join to the same
	// string; paths from the parser never contain dots, but guard anyway.
	for _, seg := range p {
		if strings.Contains(seg, ".") {
			return target{kind: targetUnmapped, reason: "path segment contains '.'"}
		}
	}
	full := p.String()
	if c, ok := s.Columns[full]; ok {
		return target{kind: targetColumn, col: c}
	}
	// Objects before JSON: properties.desired is more than the desired
	// column (it also has $metadata and $version).
	for _, o := range s.Objects {
		if o == full {
			return target{kind: targetObject}
		}
	}
	// Longest prefix first, so properties.desired.$metadata wins over
	// properties.desired.
	for n := len(p); n > 0; n-- {
		if col, ok := s.JSON[Path(p[:n]).String()]; ok {
			return target{kind: targetJSON, json: col, inner: p[n:]}
		}
	}
	for _, u := range s.Unmapped {
		if p[0] == u {
			return target{kind: targetUnmapped, reason: "'" + u + "' is not stored in a queryable form"}
		}
	}
	return target{kind: targetMissing}
}

// jsonPath renders a path for SQLite's JSON functions. Every key is quoted,
// and quotes, backslashes and control characters inside it are escaped, so a
// key can never end the quoted segment early.
func jsonPath(p Path) string {
	var b strings.Builder
	b.WriteByte('$')
	for _, seg := range p {
		b.WriteString(`."`)
		for _, r := range seg {
			switch {
			case r == '"':
				b.WriteString(`\u0022`)
			case r == '\\':
				b.WriteString(`\u005c`)
			case r < 0x20 || r == 0x7f:
				b.WriteString(`\u00`)
				b.WriteByte("0123456789abcdef"[r>>4])
				b.WriteByte("0123456789abcdef"[r&15])
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}
