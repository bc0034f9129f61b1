package sqlite

import (
	"context"
	"strings"
	"time"
)

// ConsumerGroupStore keeps the Event Hub-compatible endpoint's consumer
// groups (eventhub.GroupStore).
type ConsumerGroupStore struct{ DB *DB }

// ConsumerGroups lists the stored groups by name.
func (s *ConsumerGroupStore) ConsumerGroups(ctx context.Context) ([]string, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT name FROM eventhub_consumer_groups ORDER BY name_key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// AddConsumerGroup stores a group; created is false when one of that name
// (in any case) exists.
func (s *ConsumerGroupStore) AddConsumerGroup(ctx context.Context, name string, now time.Time) (created bool, err error) {
	res, err := s.DB.Writer().ExecContext(ctx, `INSERT INTO eventhub_consumer_groups (name_key, name, created_time) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		strings.ToLower(name), name, now.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
