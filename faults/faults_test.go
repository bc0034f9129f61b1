package faults_test

import (
	"sync"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/clock"
	"github.com/iothub-emulator/iothub-emulator/faults"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

type closer struct {
	mu     sync.Mutex
	closed []string
}

func (c *closer) Drop(deviceID, moduleID, op, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = append(c.closed, deviceID+"/"+moduleID+" "+op+" "+reason)
}

func (c *closer) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.closed) == 0 {
		return ""
	}
	return c.closed[len(c.closed)-1]
}

func (c *closer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.closed)
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newService(t *testing.T) (*faults.Service, *clock.Fake, *closer) {
	t.Helper()
	clk, c := clock.NewFake(epoch), &closer{}
	s, err := faults.NewService(faults.Deps{Connections: c}, faults.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk, c
}

func TestCreateRejects(t *testing.T) {
	s, _, _ := newService(t)
	for _, f := range []faults.Fault{
		{Action: "nope"},
		{Action: faults.DropConnection},
		{Action: faults.RefuseConnect},
		{Action: faults.DelayTwinUpdate, DeviceID: "d"},
		{Action: faults.Error, ErrorCode: 200000},
		{Action: faults.Error, ErrorCode: 42},
		{Action: faults.Error, Count: -1},
		{Action: faults.Error, Duration: -time.Second},
		{Action: faults.DropConnection, DeviceID: "d", Operation: "KillAmqpEverything"},
		{Action: faults.RefuseConnect, DeviceID: "d", Operation: faults.OpKillTcp},
	} {
		if _, err := s.Create(f); !iothub.Is(err, iothub.ArgumentInvalid) {
			t.Errorf("%+v: %v, want 400004", f, err)
		}
	}
}

func TestCallError(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fault         faults.Fault
		route, device string
		calls         int
		want          []bool // which calls fail
	}{
		{"counted", faults.Fault{Action: faults.Error, Route: "GET /x", Count: 2}, "GET /x", "", 3, []bool{true, true, false}},
		{"other route", faults.Fault{Action: faults.Error, Route: "GET /x"}, "GET /y", "", 1, []bool{false}},
		{"all routes", faults.Fault{Action: faults.Error}, "GET /y", "d", 2, []bool{true, true}},
		{"other device", faults.Fault{Action: faults.Error, DeviceID: "a"}, "GET /y", "b", 1, []bool{false}},
		{"delayed start", faults.Fault{Action: faults.Error, Delay: time.Second}, "GET /y", "", 1, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newService(t)
			if _, err := s.Create(tc.fault); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.calls; i++ {
				err := s.CallError(tc.route, tc.device)
				if (err != nil) != tc.want[i] {
					t.Fatalf("call %d: %v, want failure %v", i, err, tc.want[i])
				}
				if err != nil && !iothub.Is(err, iothub.ThrottlingException) {
					t.Errorf("call %d: %v, want the default 429001", i, err)
				}
			}
		})
	}
}

func TestDropAfterDelayThenRefuse(t *testing.T) {
	s, clk, c := newService(t)
	if _, err := s.Create(faults.Fault{Action: faults.DropConnection, DeviceID: "d", Delay: 2 * time.Second, Duration: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if c.count() != 0 || s.ConnectError("d", "") != nil {
		t.Fatal("dropped or refused before the delay")
	}
	clk.Advance(2 * time.Second)
	if c.count() != 1 || c.last() != "d/ KillTcp Injected fault "+s.List()[0].ID+": KillTcp." {
		t.Fatalf("closed %d times after the delay, last %q", c.count(), c.last())
	}
	if err := s.ConnectError("d", ""); !iothub.Is(err, iothub.ServiceUnavailable) {
		t.Errorf("reconnect during the duration: %v", err)
	}
	if s.ConnectError("other", "") != nil {
		t.Error("another device refused")
	}
	clk.Advance(5 * time.Second)
	if err := s.ConnectError("d", ""); err != nil {
		t.Errorf("after the duration: %v", err)
	}
	if l := s.List(); len(l) != 1 || l[0].Hits != 2 {
		t.Errorf("the drop is not listed with its drop and refusal: %+v", l)
	}
	clk.Advance(faults.DropListedFor)
	if l := s.List(); len(l) != 0 {
		t.Errorf("expired faults listed: %+v", l)
	}
}

func TestFromMessage(t *testing.T) {
	for _, tc := range []struct {
		props  map[string]string
		action faults.Action
		code   iothub.Code
		op     string
		ok     bool
		err    bool
	}{
		{map[string]string{"a": "b"}, "", 0, "", false, false},
		{map[string]string{faults.PropOperationType: "KillTcp", faults.PropDelayInSecs: "2"}, faults.DropConnection, 0, "KillTcp", true, false},
		{map[string]string{faults.PropOperationType: "ShutDownMqtt"}, faults.DropConnection, 0, "ShutDownMqtt", true, false},
		{map[string]string{faults.PropOperationType: "KillAmqpD2CLink"}, faults.DropConnection, 0, "KillAmqpD2CLink", true, false},
		{map[string]string{faults.PropOperationType: "KillAmqpMethodRespLink", faults.PropCloseReason: " boom "}, faults.DropConnection, 0, "KillAmqpMethodRespLink", true, false},
		{map[string]string{faults.PropOperationType: "InvokeThrottling"}, faults.Error, iothub.ThrottlingException, "", true, false},
		{map[string]string{faults.PropOperationType: "InvokeMaxMessageQuota"}, faults.Error, iothub.IotHubQuotaExceeded, "", true, false},
		{map[string]string{faults.PropOperationType: "InvokeAuthError"}, faults.Error, iothub.IotHubUnauthorizedAccess, "", true, false},
		{map[string]string{faults.PropOperationType: "Teleport"}, "", 0, "", true, true},
		{map[string]string{faults.PropOperationType: "KillAmqpLinks"}, "", 0, "", true, true},
		{map[string]string{faults.PropOperationType: "KillTcp", faults.PropDelayInSecs: "soon"}, "", 0, "", true, true},
	} {
		s, _, _ := newService(t)
		ok, err := s.FromMessage("d", "", tc.props)
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%v: ok %v err %v", tc.props, ok, err)
			continue
		}
		l := s.List()
		if tc.action == "" {
			if len(l) != 0 {
				t.Errorf("%v: created %+v", tc.props, l)
			}
			continue
		}
		if len(l) != 1 || l[0].Action != tc.action || l[0].ErrorCode != tc.code || l[0].Operation != tc.op || l[0].Source != "message" || l[0].DeviceID != "d" {
			t.Errorf("%v: faults %+v", tc.props, l)
		}
		if r := tc.props[faults.PropCloseReason]; r != "" && l[0].Reason != "boom" {
			t.Errorf("%v: reason %q", tc.props, l[0].Reason)
		}
	}
}

func TestHolds(t *testing.T) {
	s, clk, _ := newService(t)
	delivered := make(chan struct{}, 1)
	if s.HoldMethodResponse("d", "", func() { delivered <- struct{}{} }) {
		t.Fatal("held without a fault")
	}
	if _, err := s.Create(faults.Fault{Action: faults.DelayMethodResponse, DeviceID: "d", Delay: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if !s.HoldMethodResponse("d", "", func() { delivered <- struct{}{} }) {
		t.Fatal("not held under the fault")
	}
	clk.Advance(2 * time.Second)
	select {
	case <-delivered:
		t.Fatal("delivered before the delay")
	default:
	}
	clk.Advance(time.Second)
	select {
	case <-delivered:
	default:
		t.Fatal("not delivered after the delay")
	}
}
