// Package configurations is the hub's automatic device and module management:
// configurations that put desired properties on every twin their target
// condition selects, by priority, with system and custom metrics computed by
// queries. It knows the rules; the twins service applies the content, the
// query language selects the twins, and a Store keeps configurations and the
// record of which one each twin carries.
package configurations

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Content is what a configuration writes. A device configuration has
// DeviceContent, a module configuration ModuleContent; ModulesContent is the
// IoT Edge form (module name → its content), which the emulator stores and
// applies only through ApplyOnDevice. Keys are "properties.desired" (an
// object merged into desired) or "properties.desired.<path>" (one value).
type Content struct {
	DeviceContent  map[string]any
	ModulesContent map[string]any
	ModuleContent  map[string]any
}

// Configuration is one automatic device or module configuration.
type Configuration struct {
	ID              string
	SchemaVersion   string
	Labels          map[string]string
	Content         Content
	TargetCondition string
	Priority        int
	CreatedTime     time.Time
	LastUpdatedTime time.Time
	// MetricQueries are the custom metrics (name → query), MetricResults their
	// latest counts.
	MetricQueries map[string]string
	MetricResults map[string]int64
	// SystemResults holds targetedCount and appliedCount of the latest run.
	SystemResults map[string]int64
	// ETag is the etag counter; it goes up by one on every write of the
	// definition (not on metric updates).
	ETag int64
}

// Names of the system metrics.
const (
	MetricTargeted = "targetedCount"
	MetricApplied  = "appliedCount"
)

// ForModules reports whether the configuration targets module twins.
func (c *Configuration) ForModules() bool { return len(c.Content.ModuleContent) > 0 }

// SystemQueries are the queries behind the system metrics, as the hub
// reports them.
func (c *Configuration) SystemQueries() map[string]string {
	from := "devices"
	cond := c.TargetCondition
	if c.ForModules() {
		from = "devices.modules"
		cond = moduleWhere(cond)
	}
	targeted := "select deviceId from " + from
	if strings.TrimSpace(cond) != "" {
		targeted += " where " + cond
	}
	return map[string]string{
		MetricTargeted: targeted,
		MetricApplied:  "select deviceId from " + from + " where configurations.[[" + c.ID + "]].status = 'Applied'",
	}
}

// content returns the section this configuration applies to twins.
func (c *Configuration) content() map[string]any {
	if c.ForModules() {
		return c.Content.ModuleContent
	}
	return c.Content.DeviceContent
}

// MaxIDLength is the longest configuration id the hub accepts.
const MaxIDLength = 128

// ValidateID checks a configuration id: lower-case ASCII letters, digits and
// the hub's punctuation, at most 128 characters.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return iothub.Errorf(iothub.ArgumentInvalid, "The configuration id must have 1 to %d characters.", MaxIDLength)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', strings.ContainsRune("-:+%_#*?!(),=@;$'.", r):
		default:
			return iothub.Errorf(iothub.ArgumentInvalid, "The configuration id '%s' is invalid: only lower-case letters, digits and -:+%%_#*?!(),=@;$'. are allowed.", id)
		}
	}
	return nil
}

// validate checks everything but the id.
func (c *Configuration) validate() error {
	if c.Priority < 0 {
		return iothub.Errorf(iothub.ArgumentInvalid, "The configuration priority must not be negative.")
	}
	n := 0
	for _, m := range []map[string]any{c.Content.DeviceContent, c.Content.ModuleContent, c.Content.ModulesContent} {
		if len(m) > 0 {
			n++
		}
	}
	if n > 1 {
		return iothub.Errorf(iothub.InvalidConfigurationContent, "A configuration has either deviceContent, moduleContent or modulesContent, not several.")
	}
	for _, sec := range []map[string]any{c.Content.DeviceContent, c.Content.ModuleContent} {
		if _, err := desiredPatch(sec); err != nil {
			return err
		}
	}
	for name, v := range c.Content.ModulesContent {
		m, ok := v.(map[string]any)
		if !ok {
			return iothub.Errorf(iothub.InvalidConfigurationContent, "modulesContent.%s must be an object.", name)
		}
		if _, err := desiredPatch(m); err != nil {
			return err
		}
	}
	if _, err := c.targetQuery(); err != nil {
		return err
	}
	for name, text := range c.MetricQueries {
		if _, err := metricQuery(text); err != nil {
			return iothub.Wrap(iothub.InvalidConfigurationCustomMetricsQuery, err, "The custom metric query '%s' is invalid: %s", name, iothub.MessageOf(err))
		}
	}
	return nil
}

// targetQuery parses the target condition; nil means it targets nothing (an
// empty condition). Device conditions are a WHERE clause; module conditions
// start with "FROM devices.modules WHERE".
func (c *Configuration) targetQuery() (*query.Query, error) {
	cond := strings.TrimSpace(c.TargetCondition)
	if cond == "" {
		return nil, nil
	}
	var q *query.Query
	var err error
	if c.ForModules() {
		where := moduleWhere(cond)
		if where == cond {
			return nil, iothub.Errorf(iothub.InvalidConfigurationTargetCondition, "The target condition of a module configuration must start with 'FROM devices.modules WHERE'.")
		}
		q, err = query.Parse("SELECT * FROM devices.modules WHERE " + where)
	} else {
		q, err = query.ParseCondition(cond)
	}
	if err != nil {
		return nil, iothub.Wrap(iothub.InvalidConfigurationTargetCondition, err, "The target condition is invalid: %s", iothub.MessageOf(err))
	}
	return q, nil
}

// moduleWhere strips "FROM devices.modules WHERE" (any case, any spacing)
// from a module target condition; it returns cond unchanged without it.
func moduleWhere(cond string) string {
	f := strings.Fields(cond)
	if len(f) >= 3 && strings.EqualFold(f[0], "from") && strings.EqualFold(f[1], "devices.modules") && strings.EqualFold(f[2], "where") {
		rest := strings.TrimSpace(cond)
		for i := 0; i < 3; i++ {
			rest = strings.TrimSpace(rest[len(strings.Fields(rest)[0]):])
		}
		return rest
	}
	return cond
}

// metricQuery parses a custom metric query (a full SELECT).
func metricQuery(text string) (*query.Query, error) {
	return query.Parse(text)
}

const desiredPrefix = "properties.desired"

// desiredPatch turns a content section into the desired-properties patch it
// stands for: "properties.desired" merges its object, and
// "properties.desired.a.b" sets desired.a.b.
func desiredPatch(sec map[string]any) (map[string]any, error) {
	if len(sec) == 0 {
		return nil, nil
	}
	patch := map[string]any{}
	keys := make([]string, 0, len(sec))
	for k := range sec {
		keys = append(keys, k)
	}
	sort.Strings(keys) // "properties.desired" before its sub-paths
	for _, k := range keys {
		v := sec[k]
		if k == desiredPrefix {
			obj, ok := v.(map[string]any)
			if !ok {
				return nil, iothub.Errorf(iothub.InvalidConfigurationContent, "The value of '%s' must be an object.", k)
			}
			for name, val := range obj {
				setPath(patch, []string{name}, val)
			}
			continue
		}
		rest, ok := strings.CutPrefix(k, desiredPrefix+".")
		if !ok || rest == "" {
			return nil, iothub.Errorf(iothub.InvalidConfigurationContent, "Configuration content paths must start with 'properties.desired', got '%s'.", k)
		}
		path := strings.Split(rest, ".")
		for _, p := range path {
			if p == "" {
				return nil, iothub.Errorf(iothub.InvalidConfigurationContent, "The content path '%s' has an empty segment.", k)
			}
		}
		setPath(patch, path, v)
	}
	return patch, nil
}

// setPath sets patch[path...] = v, creating objects on the way.
func setPath(patch map[string]any, path []string, v any) {
	m := patch
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// removalPatch is the desired patch that takes a content section's values
// away again: null at the end of every path the content names (each member
// of a "properties.desired" object, or the "properties.desired.a.b" path),
// so what others wrote beside those paths survives. sec must be valid.
func removalPatch(sec map[string]any) map[string]any {
	patch := map[string]any{}
	for k, v := range sec {
		if k == desiredPrefix {
			for name := range v.(map[string]any) {
				setPath(patch, []string{name}, nil)
			}
			continue
		}
		rest, _ := strings.CutPrefix(k, desiredPrefix+".")
		path := strings.Split(rest, ".")
		if !pathCleared(patch, path) {
			setPath(patch, path, nil)
		}
	}
	return patch
}

// pathCleared reports whether a prefix of path is already null in patch.
func pathCleared(patch map[string]any, path []string) bool {
	m := patch
	for _, p := range path {
		v, ok := m[p]
		if !ok {
			return false
		}
		if v == nil {
			return true
		}
		if m, ok = v.(map[string]any); !ok {
			return false
		}
	}
	return false
}

// sameContent reports whether two contents are equal as JSON.
func sameContent(a, b Content) bool {
	norm := func(c Content) any {
		b, _ := json.Marshal([]map[string]any{c.DeviceContent, c.ModuleContent, c.ModulesContent})
		var v any
		_ = json.Unmarshal(b, &v)
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// wins reports whether a takes precedence over b on a twin both target: the
// higher priority, and on a tie the one created last (the hub's rule).
func wins(a, b *Configuration) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.CreatedTime.Equal(b.CreatedTime) {
		return a.CreatedTime.After(b.CreatedTime)
	}
	return a.ID > b.ID
}

// Store keeps configurations and which configuration each twin carries.
type Store interface {
	// Get returns one configuration; 404301 ConfigurationNotFound.
	Get(ctx context.Context, id string) (*Configuration, error)
	// List returns every configuration, in id order.
	List(ctx context.Context) ([]*Configuration, error)
	// Create adds c unless its id exists (409401 ConfigurationAlreadyExists)
	// or max configurations exist already (403002 IotHubQuotaExceeded).
	Create(ctx context.Context, c *Configuration, max int) error
	// Update runs fn on the stored configuration and saves it when fn
	// returns nil, in one transaction.
	Update(ctx context.Context, id string, fn func(*Configuration) error) (*Configuration, error)
	// Delete removes a configuration and its applied records.
	Delete(ctx context.Context, id string) error
	// SetMetrics stores the latest metric results without touching the etag.
	SetMetrics(ctx context.Context, id string, system, custom map[string]int64) error
	// Applied returns, for every twin that carries a configuration's
	// content, that configuration's id.
	Applied(ctx context.Context) (map[twins.Key]string, error)
	// SetApplied records that keys carry configuration id, or carry none
	// when id is "".
	SetApplied(ctx context.Context, keys []twins.Key, id string) error
}

// Targets evaluates queries for configurations.
type Targets interface {
	// Select returns the twins a SELECT * query over devices or
	// devices.modules matches.
	Select(ctx context.Context, q *query.Query) ([]twins.Key, error)
	// Count returns the number of results of a query.
	Count(ctx context.Context, q *query.Query) (int64, error)
}

// Twins applies desired patches; *twins.Service is one.
type Twins interface {
	PatchMany(ctx context.Context, keys []twins.Key, p twins.ServicePatch) ([]error, error)
	PatchService(ctx context.Context, key twins.Key, ifMatch string, p twins.ServicePatch) (*twins.Twin, error)
}

// FormatETag renders an etag counter as the hub writes configuration etags:
// the base64 of its decimal digits ("MQ==" for 1).
func FormatETag(counter int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(counter, 10)))
}
