package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/iothub-emulator/iothub-emulator/configurations"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/query"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// ConfigurationStore keeps configurations and the twins that carry them.
type ConfigurationStore struct{ DB *DB }

var _ configurations.Store = (*ConfigurationStore)(nil)

const configurationColumns = `id, schema_version, labels, content, target_condition, priority, created_time,
	last_updated_time, metric_queries, metric_results, system_results, etag`

// contentJSON is how Content is stored; absent sections stay absent.
type contentJSON struct {
	DeviceContent  map[string]any `json:"deviceContent,omitempty"`
	ModulesContent map[string]any `json:"modulesContent,omitempty"`
	ModuleContent  map[string]any `json:"moduleContent,omitempty"`
}

func configurationNotFound(id string) error {
	return iothub.Errorf(iothub.ConfigurationNotFound, "Configuration '%s' was not found.", id)
}

func scanConfiguration(row scanner) (*configurations.Configuration, error) {
	var (
		c                                                       configurations.Configuration
		labels, content, queries, results, system, created, upd string
	)
	if err := row.Scan(&c.ID, &c.SchemaVersion, &labels, &content, &c.TargetCondition, &c.Priority, &created,
		&upd, &queries, &results, &system, &c.ETag); err != nil {
		return nil, err
	}
	var cj contentJSON
	for _, f := range []struct {
		s string
		v any
	}{{labels, &c.Labels}, {content, &cj}, {queries, &c.MetricQueries}, {results, &c.MetricResults}, {system, &c.SystemResults}} {
		if err := json.Unmarshal([]byte(f.s), f.v); err != nil {
			return nil, err
		}
	}
	c.Content = configurations.Content(cj)
	c.CreatedTime, c.LastUpdatedTime = parseTime(created), parseTime(upd)
	return &c, nil
}

func configurationArgs(c *configurations.Configuration) ([]any, error) {
	args := []any{c.ID, c.SchemaVersion}
	for _, v := range []any{nonNilLabels(c.Labels), contentJSON(c.Content)} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		args = append(args, string(b))
	}
	args = append(args, c.TargetCondition, c.Priority, formatTime(c.CreatedTime), formatTime(c.LastUpdatedTime))
	for _, v := range []any{nonNilMap(c.MetricQueries), nonNilMap(c.MetricResults), nonNilMap(c.SystemResults)} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		args = append(args, string(b))
	}
	return append(args, c.ETag), nil
}

func nonNilLabels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

func (s *ConfigurationStore) Get(ctx context.Context, id string) (*configurations.Configuration, error) {
	c, err := scanConfiguration(s.DB.Reader().QueryRowContext(ctx, `SELECT `+configurationColumns+` FROM configurations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, configurationNotFound(id)
	}
	return c, err
}

func (s *ConfigurationStore) List(ctx context.Context) ([]*configurations.Configuration, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT `+configurationColumns+` FROM configurations ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*configurations.Configuration
	for rows.Next() {
		c, err := scanConfiguration(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *ConfigurationStore) Create(ctx context.Context, c *configurations.Configuration, max int) error {
	args, err := configurationArgs(c)
	if err != nil {
		return err
	}
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		var n, exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE id = ?) FROM configurations`, c.ID).Scan(&n, &exists); err != nil {
			return err
		}
		if exists > 0 {
			return iothub.Errorf(iothub.ConfigurationAlreadyExists, "Configuration '%s' already exists.", c.ID)
		}
		if max > 0 && n >= max {
			return iothub.Errorf(iothub.IotHubQuotaExceeded, "The hub already has %d configurations, its maximum.", max)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO configurations (`+configurationColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`, args...)
		return err
	})
}

func (s *ConfigurationStore) Update(ctx context.Context, id string, fn func(*configurations.Configuration) error) (*configurations.Configuration, error) {
	var out *configurations.Configuration
	err := s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		c, err := scanConfiguration(tx.QueryRowContext(ctx, `SELECT `+configurationColumns+` FROM configurations WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return configurationNotFound(id)
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		args, err := configurationArgs(c)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE configurations SET schema_version = ?, labels = ?, content = ?, target_condition = ?,
			priority = ?, created_time = ?, last_updated_time = ?, metric_queries = ?, metric_results = ?, system_results = ?, etag = ?
			WHERE id = ?`, append(args[1:], id)...)
		out = c
		return err
	})
	return out, err
}

func (s *ConfigurationStore) Delete(ctx context.Context, id string) error {
	res, err := s.DB.Writer().ExecContext(ctx, `DELETE FROM configurations WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return configurationNotFound(id)
	}
	return nil
}

func (s *ConfigurationStore) SetMetrics(ctx context.Context, id string, system, custom map[string]int64) error {
	sj, err := json.Marshal(nonNilMap(system))
	if err != nil {
		return err
	}
	cj, err := json.Marshal(nonNilMap(custom))
	if err != nil {
		return err
	}
	res, err := s.DB.Writer().ExecContext(ctx, `UPDATE configurations SET system_results = ?, metric_results = ? WHERE id = ?`, string(sj), string(cj), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return configurationNotFound(id)
	}
	return nil
}

func (s *ConfigurationStore) Applied(ctx context.Context) (map[twins.Key]string, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT device_id, module_id, configuration_id FROM configuration_twins`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[twins.Key]string{}
	for rows.Next() {
		var k twins.Key
		var id string
		if err := rows.Scan(&k.DeviceID, &k.ModuleID, &id); err != nil {
			return nil, err
		}
		out[k] = id
	}
	return out, rows.Err()
}

func (s *ConfigurationStore) SetApplied(ctx context.Context, keys []twins.Key, id string) error {
	if len(keys) == 0 {
		return nil
	}
	return s.DB.WriteTx(ctx, func(tx *sql.Tx) error {
		stmt := `DELETE FROM configuration_twins WHERE device_id = ? AND module_id = ?`
		if id != "" {
			// A twin deleted since it was selected is skipped, not a failure.
			stmt = `INSERT INTO configuration_twins (device_id, module_id, configuration_id)
				SELECT device_id, module_id, ? FROM identities WHERE device_id = ? AND module_id = ?
				ON CONFLICT (device_id, module_id) DO UPDATE SET configuration_id = excluded.configuration_id`
		}
		st, err := tx.PrepareContext(ctx, stmt)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, k := range keys {
			args := []any{k.DeviceID, k.ModuleID}
			if id != "" {
				args = append([]any{id}, args...)
			}
			if _, err := st.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// ConfigurationTargets evaluates configurations' target conditions and
// metric queries.
type ConfigurationTargets struct{ DB *DB }

var _ configurations.Targets = ConfigurationTargets{}

// Select returns the keys of the twins q (SELECT * over devices or
// devices.modules) matches, in key order.
func (t ConfigurationTargets) Select(ctx context.Context, q *query.Query) ([]twins.Key, error) {
	return Selector(t).selectKeys(ctx, q)
}

// Count returns how many results q has.
func (t ConfigurationTargets) Count(ctx context.Context, q *query.Query) (int64, error) {
	qs := &QueryStore{DB: t.DB}
	var n int64
	next := ""
	for {
		page, err := qs.Run(ctx, q, next, 1000)
		if err != nil {
			return 0, err
		}
		n += int64(len(page.Items))
		if page.Next == "" {
			return n, nil
		}
		next = page.Next
	}
}
