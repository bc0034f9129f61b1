// Package memstore is an in-memory twins.Store for tests of packages that
// use twins (the Service itself, transports, jobs). It keeps deep copies, so
// callers can never alias its state.
package memstore

import (
	"context"
	"sync"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/twins"
)

// Store is an in-memory twins.Store. The zero value is not usable; call New.
type Store struct {
	mu    sync.Mutex
	twins map[twins.Key]*twins.Twin
}

var _ twins.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{twins: map[twins.Key]*twins.Twin{}}
}

// Put creates or overwrites a twin, the way the registry creates one with
// its identity (usually from twins.NewTwin).
func (s *Store) Put(t *twins.Twin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.twins[t.Key] = t.Clone()
}

// Delete removes a twin; absent keys are ignored.
func (s *Store) Delete(key twins.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.twins, key)
}

// Get implements twins.Store.
func (s *Store) Get(_ context.Context, key twins.Key) (*twins.Twin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.find(key)
	if err != nil {
		return nil, err
	}
	return t.Clone(), nil
}

// Update implements twins.Store. fn runs under the store's lock on a copy;
// only Tags, Desired, Reported, Version and ETag are kept from it.
func (s *Store) Update(_ context.Context, key twins.Key, fn func(*twins.Twin) error) (*twins.Twin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.find(key)
	if err != nil {
		return nil, err
	}
	work := cur.Clone()
	if err := fn(work); err != nil {
		return nil, err
	}
	saved := cur.Clone()
	saved.Tags, saved.Desired, saved.Reported = work.Tags, work.Desired, work.Reported
	saved.Version, saved.ETag = work.Version, work.ETag
	saved = saved.Clone() // drop any alias fn kept into work
	s.twins[key] = saved
	return saved.Clone(), nil
}

var _ twins.ReportedStore = (*Store)(nil)

// UpdateReported implements twins.ReportedStore: fn gets a twin holding
// only Key, Reported and Version, as the SQLite store loads it, so the
// Service's tests see what a device patch sees in production.
func (s *Store) UpdateReported(_ context.Context, key twins.Key, fn func(*twins.Twin) error) (*twins.Twin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.find(key)
	if err != nil {
		return nil, err
	}
	work := &twins.Twin{Key: key, Reported: cur.Clone().Reported, Version: cur.Version}
	if err := fn(work); err != nil {
		return nil, err
	}
	saved := cur.Clone()
	saved.Reported, saved.Version = work.Reported, work.Version
	saved = saved.Clone() // drop any alias fn kept into work
	s.twins[key] = saved
	out := saved.Clone()
	return &twins.Twin{Key: key, Reported: out.Reported, Version: out.Version}, nil
}

// find returns the stored twin or the hub's not-found error: 404010 when the
// device has a twin but the module has none, 404001 otherwise.
func (s *Store) find(key twins.Key) (*twins.Twin, error) {
	if t, ok := s.twins[key]; ok {
		return t, nil
	}
	if key.ModuleID != "" {
		if _, ok := s.twins[twins.Key{DeviceID: key.DeviceID}]; ok {
			return nil, iothub.Errorf(iothub.ModuleNotFound, "Module %s on device %s not found.", key.ModuleID, key.DeviceID)
		}
	}
	return nil, iothub.Errorf(iothub.DeviceNotFound, "Device %s not found.", key.DeviceID)
}
