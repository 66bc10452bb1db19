package api

import (
	"errors"
	"fmt"
	"net/http"
)

// The error classes. They survive the API boundary both ways: the server
// maps them to HTTP statuses and codes, the client maps those back, so
// errors.Is works on the CLI side as it does in the daemon.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrPermission      = errors.New("permission denied")
	ErrUnavailable     = errors.New("unavailable")
	ErrInternal        = errors.New("internal error")
)

var classes = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalidArgument, "invalid_argument", http.StatusBadRequest},
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrPermission, "permission_denied", http.StatusForbidden},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
	{ErrInternal, "internal", http.StatusInternalServerError},
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classError carries a message and the class it belongs to.
type classError struct {
	class error
	msg   string
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.class }
func (e *classError) Unwrap() error        { return nil }

// Errorf makes an error of class with a formatted message. Wrapped errors
// (%w) stay reachable with errors.Is/As.
func Errorf(class error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &wrapped{classError: classError{class: class, msg: err.Error()}, inner: errors.Unwrap(err)}
}

type wrapped struct {
	classError
	inner error
}

func (e *wrapped) Unwrap() error { return e.inner }

// ToBody maps err to its wire form and HTTP status. Errors of no class
// are internal.
func ToBody(err error) (ErrorBody, int) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return ErrorBody{Code: c.code, Message: err.Error()}, c.status
		}
	}
	return ErrorBody{Code: "internal", Message: err.Error()}, http.StatusInternalServerError
}

// FromBody maps a wire error back to an error of its class.
func FromBody(b ErrorBody, status int) error {
	for _, c := range classes {
		if c.code == b.Code {
			return &classError{class: c.err, msg: b.Message}
		}
	}
	for _, c := range classes {
		if c.status == status {
			return &classError{class: c.err, msg: b.Message}
		}
	}
	if b.Message == "" {
		b.Message = http.StatusText(status)
	}
	return &classError{class: ErrInternal, msg: b.Message}
}
