package fileupload

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

type fakeStorage struct{ sizes map[string]int64 }

func (fakeStorage) HostName() string { return "127.0.0.1:10000/devstoreaccount1" }
func (fakeStorage) BlobURL(c, b string) string {
	return "https://127.0.0.1:10000/devstoreaccount1/" + c + "/" + b
}
func (fakeStorage) BlobSAS(c, b string, _ time.Time) string       { return "?sig=" + c + "/" + b }
func (fakeStorage) EnsureContainer(context.Context, string) error { return nil }
func (f fakeStorage) BlobSize(_ context.Context, c, b string) (int64, error) {
	n, ok := f.sizes[c+"/"+b]
	if !ok {
		return 0, errors.New("no blob")
	}
	return n, nil
}

type memStore struct {
	mu      sync.Mutex
	uploads map[string]Upload
	notes   []Notification
}

func (m *memStore) AddUpload(_ context.Context, u Upload, max int, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, p := range m.uploads {
		if !p.Expires.After(now) {
			delete(m.uploads, k)
		} else if p.DeviceID == u.DeviceID {
			n++
		}
	}
	if n >= max {
		return iothub.Errorf(iothub.IotHubQuotaExceeded, "too many")
	}
	m.uploads[u.CorrelationID] = u
	return nil
}

func (m *memStore) TakeUpload(_ context.Context, deviceID, id string) (*Upload, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.uploads[id]
	if !ok || u.DeviceID != deviceID {
		return nil, iothub.Errorf(iothub.ArgumentInvalid, "unknown")
	}
	delete(m.uploads, id)
	return &u, nil
}

func (m *memStore) AddNotification(_ context.Context, n *Notification, _ int, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n.Seq = int64(len(m.notes) + 1)
	m.notes = append(m.notes, *n)
	return nil
}

func (m *memStore) Notifications(_ context.Context, deviceID string, after int64, limit int) ([]Notification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Notification
	for _, n := range m.notes {
		if n.Seq > after && (deviceID == "" || n.DeviceID == deviceID) && len(out) < limit {
			out = append(out, n)
		}
	}
	return out, nil
}

func TestStartAndComplete(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	storage := fakeStorage{sizes: map[string]int64{"fileupload/d1/a.txt": 42}}
	s, err := NewService(Deps{Storage: storage, Store: &memStore{uploads: map[string]Upload{}}},
		Config{MaxPending: 2, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}

	info, err := s.Start(ctx, "d1", "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if info.BlobName != "d1/a.txt" || info.ContainerName != "fileupload" || info.HostName != storage.HostName() ||
		info.SASToken != "?sig=fileupload/d1/a.txt" || info.CorrelationID == "" {
		t.Fatalf("info = %+v", info)
	}
	// Another device cannot settle it.
	if err := s.Complete(ctx, "d2", Result{CorrelationID: info.CorrelationID, IsSuccess: true}); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Fatalf("foreign completion: %v", err)
	}
	changed := s.Changed()
	select {
	case <-changed:
		t.Fatal("Changed fired before any notification")
	default:
	}
	if err := s.Complete(ctx, "d1", Result{CorrelationID: info.CorrelationID, IsSuccess: true, StatusCode: 200}); err != nil {
		t.Fatal(err)
	}
	woken := 0
	select {
	case <-changed:
		woken = 1
	default:
	}
	notes, _ := s.Notifications(ctx, "d1", 0, 0)
	if len(notes) != 1 || notes[0].BlobSizeInBytes != 42 || notes[0].BlobName != "d1/a.txt" || !notes[0].EnqueuedTime.Equal(now) || woken != 1 {
		t.Fatalf("notifications = %+v, woken %d", notes, woken)
	}
	if err := s.Complete(ctx, "d1", Result{CorrelationID: info.CorrelationID, IsSuccess: true}); iothub.CodeOf(err) != iothub.ArgumentInvalid {
		t.Fatalf("second completion: %v", err)
	}

	// A failed upload settles without a notification.
	info2, _ := s.Start(ctx, "d1", "b.txt")
	if err := s.Complete(ctx, "d1", Result{CorrelationID: info2.CorrelationID, IsSuccess: false, StatusCode: 500}); err != nil {
		t.Fatal(err)
	}
	if notes, _ := s.Notifications(ctx, "", 1, 10); len(notes) != 0 {
		t.Fatalf("a failed upload notified: %+v", notes)
	}

	// At most MaxPending uploads per device; expired ones do not count.
	for range 2 {
		if _, err := s.Start(ctx, "d3", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Start(ctx, "d3", "x"); iothub.CodeOf(err) != iothub.IotHubQuotaExceeded {
		t.Fatalf("third pending upload: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if _, err := s.Start(ctx, "d3", "x"); err != nil {
		t.Fatalf("after the SAS expired: %v", err)
	}
}

func TestStartRules(t *testing.T) {
	ctx := context.Background()
	off, _ := NewService(Deps{Store: &memStore{uploads: map[string]Upload{}}}, Config{})
	if _, err := off.Start(ctx, "d1", "a"); iothub.CodeOf(err) != iothub.BlobContainerValidationError {
		t.Fatalf("without storage: %v", err)
	}
	s, _ := NewService(Deps{Storage: fakeStorage{}, Store: &memStore{uploads: map[string]Upload{}}}, Config{})
	for _, tt := range []struct {
		blob string
		code iothub.Code
	}{{"", iothub.ArgumentNull}, {"  ", iothub.ArgumentNull}, {string(make([]byte, 1100)), iothub.ArgumentInvalid}} {
		if _, err := s.Start(ctx, "d1", tt.blob); iothub.CodeOf(err) != tt.code {
			t.Errorf("blob %q: %v, want %d", tt.blob[:min(len(tt.blob), 5)], err, tt.code)
		}
	}
	if err := s.Complete(ctx, "d1", Result{}); iothub.CodeOf(err) != iothub.ArgumentNull {
		t.Fatalf("no correlation id: %v", err)
	}
}
