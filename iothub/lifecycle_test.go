package iothub_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

func TestCheckDeps(t *testing.T) {
	type deps struct {
		Store  fmt.Stringer
		Clock  func() int
		Log    *strings.Builder
		Limit  int // not a reference: never required
		Extra  fmt.Stringer
		Queues map[string]int
	}
	full := deps{Store: &strings.Builder{}, Clock: func() int { return 0 }, Log: &strings.Builder{}, Extra: &strings.Builder{}, Queues: map[string]int{}}
	for _, tc := range []struct {
		name     string
		d        any
		optional []string
		want     string // substring of the error; "" for none
	}{
		{"all set", full, nil, ""},
		{"pointer to struct", &full, nil, ""},
		{"one missing", func() deps { d := full; d.Store = nil; return d }(), nil, "missing required dependencies: Store"},
		{"several missing, in field order", deps{Log: &strings.Builder{}}, nil, "Store, Clock, Extra, Queues"},
		{"optional may be nil", func() deps { d := full; d.Extra = nil; return d }(), []string{"Extra"}, ""},
		{"not a struct", 3, nil, "must be a struct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := iothub.CheckDeps("thing", tc.d, tc.optional...)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckDeps = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "thing: ") {
				t.Fatalf("CheckDeps = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestErrClosedIsServiceUnavailable(t *testing.T) {
	err := fmt.Errorf("send: %w", iothub.ErrClosed)
	if !errors.Is(err, iothub.ErrClosed) || iothub.CodeOf(err) != iothub.ServiceUnavailable || iothub.CodeOf(err).Status() != 503 {
		t.Fatalf("ErrClosed wrapped: code %v", iothub.CodeOf(err))
	}
}
