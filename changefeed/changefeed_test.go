package changefeed

import (
	"reflect"
	"testing"
)

func TestFeed(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		publish  []int
		cursor   uint64
		want     []int
		wantNext uint64
		wantLost bool
	}{
		{"empty", 4, nil, 0, nil, 0, false},
		{"all from the start", 4, []int{1, 2, 3}, 0, []int{1, 2, 3}, 3, false},
		{"from the middle", 4, []int{1, 2, 3}, 1, []int{2, 3}, 3, false},
		{"up to date", 4, []int{1, 2, 3}, 3, nil, 3, false},
		{"wrapped, reader in range", 3, []int{1, 2, 3, 4, 5}, 2, []int{3, 4, 5}, 5, false},
		{"wrapped, reader behind", 3, []int{1, 2, 3, 4, 5}, 0, []int{3, 4, 5}, 5, true},
		{"cursor from the future", 3, []int{1}, 9, nil, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New[int](tt.capacity)
			for _, v := range tt.publish {
				f.Publish(v)
			}
			got, next, lost, _ := f.Since(tt.cursor)
			if !reflect.DeepEqual(got, tt.want) || next != tt.wantNext || lost != tt.wantLost {
				t.Fatalf("Since(%d) = %v, %d, %v; want %v, %d, %v", tt.cursor, got, next, lost, tt.want, tt.wantNext, tt.wantLost)
			}
		})
	}
}

func TestPublishWakesReaders(t *testing.T) {
	f := New[string](2)
	cur, wake := f.Cursor()
	select {
	case <-wake:
		t.Fatal("woken before anything was published")
	default:
	}
	f.Publish("a")
	select {
	case <-wake:
	default:
		t.Fatal("not woken by Publish")
	}
	got, _, _, wake2 := f.Since(cur)
	if !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("got %v", got)
	}
	select {
	case <-wake2:
		t.Fatal("the new wake channel is already closed")
	default:
	}
}
