package sqlite

import (
	"context"

	"github.com/iothub-emulator/iothub-emulator/sessions"
)

// SessionStore implements sessions.Store.
type SessionStore struct{ DB *DB }

var _ sessions.Store = (*SessionStore)(nil)

func (s *SessionStore) SaveSubscription(ctx context.Context, sub sessions.Subscription) error {
	_, err := s.DB.Writer().ExecContext(ctx, `INSERT INTO mqtt_subscriptions (client_id, filter, qos) VALUES (?, ?, ?)
		ON CONFLICT(client_id, filter) DO UPDATE SET qos = excluded.qos`, sub.ClientID, sub.Filter, sub.QoS)
	return err
}

func (s *SessionStore) DeleteSubscription(ctx context.Context, clientID, filter string) error {
	_, err := s.DB.Writer().ExecContext(ctx, `DELETE FROM mqtt_subscriptions WHERE client_id = ? AND filter = ?`, clientID, filter)
	return err
}

func (s *SessionStore) DeleteSession(ctx context.Context, clientID string) error {
	_, err := s.DB.Writer().ExecContext(ctx, `DELETE FROM mqtt_subscriptions WHERE client_id = ?`, clientID)
	return err
}

func (s *SessionStore) Subscriptions(ctx context.Context) ([]sessions.Subscription, error) {
	rows, err := s.DB.Reader().QueryContext(ctx, `SELECT client_id, filter, qos FROM mqtt_subscriptions ORDER BY client_id, filter`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sessions.Subscription
	for rows.Next() {
		var sub sessions.Subscription
		if err := rows.Scan(&sub.ClientID, &sub.Filter, &sub.QoS); err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}
