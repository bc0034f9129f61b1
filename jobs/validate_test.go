package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
	"github.com/iothub-emulator/iothub-emulator/jobs"
	"github.com/iothub-emulator/iothub-emulator/methods"
)

// A method job's cloudToDeviceMethod obeys exactly the rules of a direct
// method call: each case is checked against methods.Validate too, so the
// two cannot drift apart again.
func TestEngine_MethodJobsFollowTheDirectMethodRules(t *testing.T) {
	db := openDB(t, "")
	e := newEngine(t, db, &fleet{})
	big := json.RawMessage(`"` + strings.Repeat("x", methods.MaxPayload) + `"`)
	for i, tc := range []struct {
		name string
		m    jobs.Method
		want iothub.Code // 0: accepted
	}{
		{"no name", jobs.Method{}, iothub.ArgumentNull},
		{"slash in the name", jobs.Method{MethodName: "a/b"}, iothub.ArgumentInvalid},
		{"NUL in the name", jobs.Method{MethodName: "a\x00b"}, iothub.ArgumentInvalid},
		{"response timeout 4 s", jobs.Method{MethodName: "m", ResponseTimeout: 4 * time.Second}, iothub.ArgumentInvalid},
		{"response timeout 301 s", jobs.Method{MethodName: "m", ResponseTimeout: 301 * time.Second}, iothub.ArgumentInvalid},
		{"connect timeout 301 s", jobs.Method{MethodName: "m", ConnectTimeout: 301 * time.Second}, iothub.ArgumentInvalid},
		{"payload over 128 KB", jobs.Method{MethodName: "m", Payload: big}, iothub.MessageTooLarge},
		{"defaults", jobs.Method{MethodName: "m"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := methods.Request{MethodName: tc.m.MethodName, Payload: tc.m.Payload, ResponseTimeout: tc.m.ResponseTimeout, ConnectTimeout: tc.m.ConnectTimeout}
			if got := iothub.CodeOf(methods.Validate(&req)); tc.want != 0 && got != tc.want {
				t.Fatalf("methods.Validate: %v, want %v (the table is wrong)", got, tc.want)
			}
			m := tc.m
			j, err := e.Create(context.Background(), &jobs.Job{ID: "v" + string(rune('a'+i)), Type: jobs.TypeDeviceMethod, QueryCondition: "*", Method: &m})
			if tc.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if j.Method.ResponseTimeout != methods.DefaultResponseTimeout || string(j.Method.Payload) != "null" {
					t.Fatalf("defaults not applied: %+v", j.Method)
				}
				return
			}
			if iothub.CodeOf(err) != tc.want {
				t.Fatalf("Create = %v, want %v", err, tc.want)
			}
		})
	}
}

// After Close, Create and Cancel answer ErrClosed.
func TestEngine_CallsAfterCloseReturnErrClosed(t *testing.T) {
	db := openDB(t, "")
	e := newEngine(t, db, &fleet{})
	e.Close()
	if _, err := e.Create(context.Background(), methodJob("late")); !errors.Is(err, iothub.ErrClosed) {
		t.Errorf("Create after Close = %v", err)
	}
	if _, err := e.Cancel(context.Background(), "late"); !errors.Is(err, iothub.ErrClosed) {
		t.Errorf("Cancel after Close = %v", err)
	}
}
