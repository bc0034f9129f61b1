package iothub

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestCodes_NamesAndStatuses(t *testing.T) {
	seen := map[string]Code{}
	for code, name := range codeNames {
		if other, dup := seen[name]; dup {
			t.Errorf("name %q used by %d and %d", name, code, other)
		}
		seen[name] = code
		if http.StatusText(code.Status()) == "" {
			t.Errorf("%v: status %d is not an HTTP status", code, code.Status())
		}
	}
	if got, want := PreconditionFailed.Status(), 412; got != want {
		t.Errorf("PreconditionFailed status = %d, want %d", got, want)
	}
	if got, want := DeviceNotOnline.Name(), "DeviceNotOnline"; got != want {
		t.Errorf("404103 name = %q, want %q", got, want)
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Code
	}{
		{"direct", Errorf(DeviceNotFound, "x"), DeviceNotFound},
		{"wrapped", fmt.Errorf("ctx: %w", Errorf(PreconditionFailed, "x")), PreconditionFailed},
		{"plain error", errors.New("disk on fire"), ServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeOf(tc.err); got != tc.want {
				t.Errorf("CodeOf = %v, want %v", got, tc.want)
			}
		})
	}
	if got := MessageOf(errors.New("secret path /etc")); got != "Internal server error." {
		t.Errorf("MessageOf leaked %q", got)
	}
}
