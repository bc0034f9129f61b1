package throttling_test

import (
	"context"
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
