package groupcommit_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/groupcommit"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// gatedCommits records batches; each commit waits for a token on gate when
// gate is not nil, and reports on started that it began.
type gatedCommits struct {
	gate    chan struct{}
	started chan int
	mu      sync.Mutex
	batches [][]int
}

func (g *gatedCommits) commit(batch []int) {
	if g.started != nil {
		g.started <- len(batch)
	}
	if g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	g.batches = append(g.batches, append([]int(nil), batch...))
	g.mu.Unlock()
}

func (g *gatedCommits) all() (items []int, sizes []int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.batches {
		items = append(items, b...)
		sizes = append(sizes, len(b))
	}
	return items, sizes
}

func TestItemsQueuedDuringACommitShareTheNext(t *testing.T) {
	g := &gatedCommits{gate: make(chan struct{}), started: make(chan int, 10)}
	b := groupcommit.New(g.commit, groupcommit.Config{MaxBatch: 4, QueueLen: 16})
	ctx := context.Background()
	if err := b.Add(ctx, 0); err != nil {
		t.Fatal(err)
	}
	<-g.started // the writer holds item 0 in a commit
	for i := 1; i <= 6; i++ {
		if err := b.Add(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		g.gate <- struct{}{}
	}
	b.Close()
	items, sizes := g.all()
	if len(items) != 7 {
		t.Fatalf("committed %v", items)
	}
	for i, it := range items {
		if it != i {
			t.Fatalf("committed out of order: %v", items)
		}
	}
	// MaxBatch 4 splits the six queued items into 4 + 2.
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 4 || sizes[2] != 2 {
		t.Fatalf("batch sizes %v, want [1 4 2]", sizes)
	}
}

func TestCloseCommitsWhatIsQueuedThenRefuses(t *testing.T) {
	g := &gatedCommits{gate: make(chan struct{}), started: make(chan int, 10)}
	b := groupcommit.New(g.commit, groupcommit.Config{MaxBatch: 8})
	ctx := context.Background()
	_ = b.Add(ctx, 0)
	<-g.started
	for i := 1; i < 4; i++ {
		_ = b.Add(ctx, i)
	}
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	g.gate <- struct{}{} // finish the first commit; Close's drain commits 1..3
	g.gate <- struct{}{}
	<-closed
	if items, _ := g.all(); len(items) != 4 {
		t.Fatalf("committed %v, want all 4 queued before Close", items)
	}
	if err := b.Add(ctx, 9); !errors.Is(err, iothub.ErrClosed) {
		t.Fatalf("Add after Close = %v, want ErrClosed", err)
	}
	b.Close() // a second Close returns at once
}

func TestAddOnAFullQueueEndsWithItsContext(t *testing.T) {
	g := &gatedCommits{gate: make(chan struct{}), started: make(chan int, 10)}
	b := groupcommit.New(g.commit, groupcommit.Config{MaxBatch: 1, QueueLen: 2})
	_ = b.Add(context.Background(), 0)
	<-g.started
	for i := 1; i <= 2; i++ { // fills the queue
		if err := b.Add(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Add(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add on a full queue with an ended context = %v", err)
	}
	close(g.gate)
	b.Close()
	if items, _ := g.all(); len(items) != 3 {
		t.Fatalf("committed %v, want the 3 accepted items", items)
	}
}

// Every item Add accepted is committed exactly once, however Add and Close
// interleave; refused items are not.
func TestAcceptedMeansCommittedUnderConcurrentClose(t *testing.T) {
	for round := range 20 {
		g := &gatedCommits{}
		b := groupcommit.New(g.commit, groupcommit.Config{MaxBatch: 16, QueueLen: 8, Yields: 2})
		var mu sync.Mutex
		accepted := map[int]bool{}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					it := w*1000 + i
					if err := b.Add(context.Background(), it); err == nil {
						mu.Lock()
						accepted[it] = true
						mu.Unlock()
					} else if !errors.Is(err, iothub.ErrClosed) {
						t.Errorf("Add: %v", err)
						return
					}
				}
			}()
		}
		b.Close()
		wg.Wait()
		items, _ := g.all()
		seen := map[int]bool{}
		for _, it := range items {
			if seen[it] || !accepted[it] {
				t.Fatalf("round %d: item %d committed twice or without being accepted", round, it)
			}
			seen[it] = true
		}
		if len(seen) != len(accepted) {
			t.Fatalf("round %d: %d accepted, %d committed", round, len(accepted), len(seen))
		}
	}
}
