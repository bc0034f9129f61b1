// Package sessions describes the persistent sessions of device connections:
// the subscriptions a client that connected without a clean session keeps
// across reconnects and restarts (the SDKs never subscribe again). A device
// transport stores them through Store; the SQLite store implements it. The
// package knows nothing of any transport.
package sessions

import "context"

// Subscription is a stored subscription of one client.
type Subscription struct {
	ClientID string
	Filter   string
	QoS      byte
}

// Store keeps the subscriptions of persistent sessions.
type Store interface {
	SaveSubscription(ctx context.Context, s Subscription) error
	DeleteSubscription(ctx context.Context, clientID, filter string) error
	DeleteSession(ctx context.Context, clientID string) error
	Subscriptions(ctx context.Context) ([]Subscription, error)
}
