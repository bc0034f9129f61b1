package iothub

import (
	"fmt"
	"reflect"
	"strings"
)

// ErrClosed is what every service and store returns for a call made after
// its Close: a 503001 ServiceUnavailable, which is what a client of a hub that
// is shutting down should see (and retry elsewhere or later). Compare with
// errors.Is.
var ErrClosed = &Error{Code: ServiceUnavailable, Message: "The hub is shutting down."}

// CheckDeps is how a constructor NewX(deps, cfg) checks its dependencies:
// deps is a struct, and every field that is an interface, pointer, map, func
// or channel must be set unless it is named in optional. The error names the
// component and the missing fields, so a wiring mistake fails at start-up
// instead of as a nil dereference on the first request.
func CheckDeps(component string, deps any, optional ...string) error {
	v := reflect.ValueOf(deps)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return fmt.Errorf("%s: dependencies must be a struct, not %s", component, v.Kind())
	}
	var missing []string
	for i := 0; i < v.NumField(); i++ {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice:
			if f.IsNil() && !contains(optional, name) {
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing required dependencies: %s", component, strings.Join(missing, ", "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
