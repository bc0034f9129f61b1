// Package iothub holds the vocabulary every other package shares: the hub's
// numeric error codes and the one error type that carries them. It imports
// nothing from this module, so domain packages, stores and transports can all
// speak it.
package iothub

import (
	"errors"
	"fmt"
)

// Code is one of the hub's six-digit error codes: the HTTP status times 1000
// plus a number (404001 is DeviceNotFound, a 404). See the protocol digest §7.2
// and the C# SDK's ErrorCode enum.
type Code int

// Status is the HTTP status the hub answers with for this code.
func (c Code) Status() int {
	if s, ok := statusExceptions[c]; ok {
		return s
	}
	return int(c) / 1000
}

// Name is the hub's name for the code, as it appears in "ErrorCode:<Name>" and
// in the iothub-errorcode header.
func (c Code) Name() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "ServerError"
}

func (c Code) String() string { return fmt.Sprintf("%d %s", int(c), c.Name()) }

// Error is the one error type that crosses package boundaries. Stores and
// services return it; httpapi and broker turn it into the hub's wire format in
// exactly one place each.
type Error struct {
	Code    Code
	Message string
	// Info is optional structured detail the hub puts in the "info" member of
	// its JSON error form (direct-method errors, digest §7.1 Format B).
	Info map[string]any
	// Err is the underlying cause, for logs only; it never reaches the wire.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code.Name(), e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code.Name(), e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error that keeps cause for the logs.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// CodeOf returns the hub code carried by err, or ServerError for anything that
// is not an *Error (a disk failure, a bug): such details are logged, never sent.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ServerError
}

// MessageOf returns the client-facing message of err. Errors that are not
// *Error give a generic text so internals never leak.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal server error."
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
