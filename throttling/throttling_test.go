package throttling_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/throttling"
)

func TestQuotas(t *testing.T) {
	for _, tc := range []struct {
		sku   string
		units int
		op    throttling.Operation
		want  throttling.Quota
	}{
		{"S1", 1, throttling.DeviceToCloud, throttling.Quota{Count: 100, Per: time.Second}},
		{"S1", 9, throttling.DeviceToCloud, throttling.Quota{Count: 108, Per: time.Second}},
		{"S1", 2, throttling.RegistryOps, throttling.Quota{Count: 200, Per: time.Minute}},
		{"s2", 3, throttling.NewConnections, throttling.Quota{Count: 360, Per: time.Second}},
		{"S3", 1, throttling.Queries, throttling.Quota{Count: 1000, Per: time.Minute}},
		{"F1", 1, throttling.TwinUpdates, throttling.Quota{Count: 50, Per: time.Second}},
		// Twins: a flat 100/50 a second in S1 whatever the units, the
		// higher of that and 10/5 a unit in S2, 500/250 a unit in S3.
		{"S1", 4, throttling.TwinReads, throttling.Quota{Count: 100, Per: time.Second}},
		{"S2", 12, throttling.TwinReads, throttling.Quota{Count: 120, Per: time.Second}},
		{"S3", 2, throttling.TwinUpdates, throttling.Quota{Count: 500, Per: time.Second}},
		{"S1", 3, throttling.CloudToDevice, throttling.Quota{Count: 300, Per: time.Minute}},
		{"S3", 1, throttling.C2DReceives, throttling.Quota{Count: 50000, Per: time.Minute}},
		{"S2", 1, throttling.C2DReceives, throttling.Quota{Count: 1000, Per: time.Minute}},
		{"S1", 1, throttling.FileUploads, throttling.Quota{Count: 100, Per: time.Minute}},
		{"S3", 2, throttling.FileUploads, throttling.Quota{Count: 10000, Per: time.Minute}},
		// Direct methods in 4 KB meters: 160 KB/s a unit is 40 meters.
		{"S1", 1, throttling.DirectMethods, throttling.Quota{Count: 40, Per: time.Second, Bytes: true}},
		{"S2", 2, throttling.DirectMethods, throttling.Quota{Count: 240, Per: time.Second, Bytes: true}},
		{"S3", 1, throttling.DirectMethods, throttling.Quota{Count: 6144, Per: time.Second, Bytes: true}},
		{"F1", 1, throttling.JobDeviceOps, throttling.Quota{Count: 10, Per: time.Second}},
		{"S1", 5, throttling.JobDeviceOps, throttling.Quota{Count: 10, Per: time.Second}},
		{"S2", 30, throttling.JobDeviceOps, throttling.Quota{Count: 30, Per: time.Second}},
		{"S3", 2, throttling.JobDeviceOps, throttling.Quota{Count: 100, Per: time.Second}},
	} {
		q, err := throttling.Quotas(tc.sku, tc.units)
		if err != nil {
			t.Fatalf("%s×%d: %v", tc.sku, tc.units, err)
		}
		if q[tc.op] != tc.want {
			t.Errorf("%s×%d %s = %v, want %v", tc.sku, tc.units, tc.op, q[tc.op], tc.want)
		}
	}
	for _, bad := range []struct {
		sku   string
		units int
	}{{"S4", 1}, {"S1", 0}, {"F1", 2}} {
		if _, err := throttling.Quotas(bad.sku, bad.units); err == nil {
			t.Errorf("%s×%d accepted", bad.sku, bad.units)
		}
	}
}

func TestOffWhenNoSKU(t *testing.T) {
	l, err := throttling.New(throttling.Config{})
	if err != nil || l != nil {
		t.Fatalf("New without a SKU = %v, %v; want nil, nil", l, err)
	}
	if l.Allow(throttling.RegistryOps) != nil || l.Shape(context.Background(), throttling.DeviceToCloud) != nil {
		t.Fatal("a nil limiter throttled")
	}
}

func TestAllowAndShape(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := throttling.New(throttling.Config{SKU: "S1", Clock: clk, MaxShaping: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := l.Allow(throttling.RegistryOps); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := l.Allow(throttling.RegistryOps); !iothub.Is(err, iothub.ThrottlingException) {
		t.Fatalf("101st registry call: %v", err)
	}
	for i := 0; i < 100; i++ {
		if err := l.Shape(context.Background(), throttling.DeviceToCloud); err != nil {
			t.Fatal(err)
		}
	}
	// Past the budget a send waits for its share of the refill...
	done := make(chan error, 1)
	go func() { done <- l.Shape(context.Background(), throttling.DeviceToCloud) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond) // until the shaped send waits on the clock
	}
	clk.Advance(10 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("shaped send: %v", err)
	}
	// ...and beyond the shaping bound (1 s = 100 sends owed) it gets 429.
	waiting := make(chan error, 100)
	for i := 0; i < 100; i++ {
		go func() { waiting <- l.Shape(context.Background(), throttling.DeviceToCloud) }()
	}
	for clk.Waiters() < 100 {
		time.Sleep(time.Millisecond) // until all wait on the clock
	}
	if err := l.Shape(context.Background(), throttling.DeviceToCloud); !iothub.Is(err, iothub.ThrottlingException) {
		t.Fatalf("send past the shaping bound: %v", err)
	}
	clk.Advance(time.Second)
	for i := 0; i < 100; i++ {
		if err := <-waiting; err != nil {
			t.Fatalf("a shaped send failed: %v", err)
		}
	}
}

func TestQuotaString(t *testing.T) {
	q, err := throttling.Quotas("S1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for op, want := range map[throttling.Operation]string{
		throttling.DirectMethods: "160KB/sec", throttling.RegistryOps: "100/min", throttling.DeviceToCloud: "100/sec",
	} {
		if got := q[op].String(); got != want {
			t.Errorf("%s = %q, want %q", op, got, want)
		}
	}
}

func TestMethodBlocks(t *testing.T) {
	for _, tc := range []struct{ bytes, want int }{
		{0, 1}, {1, 1}, {4096, 1}, {4097, 2}, {8192, 2}, {128 * 1024, 32},
	} {
		if got := throttling.MethodBlocks(tc.bytes); got != tc.want {
			t.Errorf("MethodBlocks(%d) = %d, want %d", tc.bytes, got, tc.want)
		}
	}
}

// The direct-method budget is bytes, metered in 4 KB blocks: S1 allows 40
// small calls a second, or 20 of 4-8 KB, and refuses the next with 429001.
func TestAllowDirectMethod(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		payload, calls int
	}{{10, 40}, {4096, 40}, {6000, 20}, {128 * 1024, 1}} {
		l, err := throttling.New(throttling.Config{SKU: "S1", Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < tc.calls; i++ {
			if err := l.AllowDirectMethod(tc.payload); err != nil {
				t.Fatalf("%d-byte payload, call %d: %v", tc.payload, i+1, err)
			}
		}
		err = l.AllowDirectMethod(tc.payload)
		if !iothub.Is(err, iothub.ThrottlingException) {
			t.Fatalf("%d-byte payload, call %d: %v, want 429001", tc.payload, tc.calls+1, err)
		}
		if !strings.Contains(iothub.MessageOf(err), "direct methods") || !strings.Contains(iothub.MessageOf(err), "160KB/sec") {
			t.Errorf("message %q names neither the class nor its quota", iothub.MessageOf(err))
		}
		// A second refills the whole budget, and no more: 40 small calls.
		clk.Advance(time.Second)
		for i := 0; i < 40; i++ {
			if err := l.AllowDirectMethod(1); err != nil {
				t.Fatalf("after the refill, call %d: %v", i+1, err)
			}
		}
		if err := l.AllowDirectMethod(1); err == nil {
			t.Fatal("the refill allowed more than it holds")
		}
	}
}

// A job's device operations wait for the budget however long it takes (on
// the hub's clock), and give their share back when the job stops waiting.
func TestPace(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := throttling.New(throttling.Config{SKU: "S1", Clock: clk, MaxShaping: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Pace(context.Background(), throttling.JobDeviceOps, 10); err != nil {
		t.Fatal(err)
	}
	// 128 more at 10 a second: 12.8 s, far past the shaping bound, and
	// still no error.
	done := make(chan error, 1)
	go func() { done <- l.Pace(context.Background(), throttling.JobDeviceOps, 128) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(12 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("paced before its time: %v", err)
	default:
	}
	clk.Advance(800 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("paced operations: %v", err)
	}
	// A cancelled wait gives its reservation back.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- l.Pace(ctx, throttling.JobDeviceOps, 5) }()
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled pace: %v", err)
	}
	clk.Advance(time.Second) // refills 10: all of them, since nothing is owed
	if err := l.Allow(throttling.JobDeviceOps); err != nil {
		t.Fatalf("after a cancelled pace: %v", err)
	}
}

func TestBurst(t *testing.T) {
	l, err := throttling.New(throttling.Config{SKU: "S1"})
	if err != nil {
		t.Fatal(err)
	}
	if b := l.Burst(throttling.JobDeviceOps); b != 10 {
		t.Errorf("S1 job device operations burst %d, want 10", b)
	}
	if b := (*throttling.Limiter)(nil).Burst(throttling.JobDeviceOps); b != 0 {
		t.Errorf("off: burst %d", b)
	}
}

func TestNilLimiterAllowsEverything(t *testing.T) {
	var l *throttling.Limiter
	if l.AllowDirectMethod(1<<20) != nil || l.Pace(context.Background(), throttling.JobDeviceOps, 1000) != nil {
		t.Fatal("a nil limiter throttled")
	}
}

func TestMaxActiveJobs(t *testing.T) {
	for sku, want := range map[string]int{"F1": 1, "s1": 1, "S2": 5, "S3": 10} {
		if n, ok := throttling.MaxActiveJobs(sku); !ok || n != want {
			t.Errorf("MaxActiveJobs(%s) = %d, %v; want %d", sku, n, ok, want)
		}
	}
	if _, ok := throttling.MaxActiveJobs("B1"); ok {
		t.Error("an unknown tier has a job limit")
	}
}
