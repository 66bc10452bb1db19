package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
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
	// ErrThrottled: too many tries (wrong passphrases, connections); the
	// error says when to try again (RetryAfter).
	ErrThrottled = errors.New("throttled")
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
	{ErrThrottled, "throttled", http.StatusTooManyRequests},
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfterMillis, for a throttled answer, is how long until a try
	// may succeed (also in the Retry-After header, in whole seconds).
	RetryAfterMillis int64 `json:"retry_after_ms,omitempty"`
}

// classError carries a message and the class it belongs to.
type classError struct {
	class error
	msg   string
	retry time.Duration
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

// Throttledf makes an ErrThrottled error: a try may succeed after retry.
func Throttledf(retry time.Duration, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &wrapped{classError: classError{class: ErrThrottled, msg: err.Error(), retry: retry}, inner: errors.Unwrap(err)}
}

// RetryAfter is how long a throttled error says to wait; false for other
// errors.
func RetryAfter(err error) (time.Duration, bool) {
	var ce *classError
	if errors.As(err, &ce) && ce.class == ErrThrottled {
		return ce.retry, true
	}
	var w *wrapped
	if errors.As(err, &w) && w.class == ErrThrottled {
		return w.retry, true
	}
	return 0, false
}

// ToBody maps err to its wire form and HTTP status. Errors of no class
// are internal.
func ToBody(err error) (ErrorBody, int) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			b := ErrorBody{Code: c.code, Message: err.Error()}
			if d, ok := RetryAfter(err); ok {
				b.RetryAfterMillis = d.Milliseconds()
			}
			return b, c.status
		}
	}
	return ErrorBody{Code: "internal", Message: err.Error()}, http.StatusInternalServerError
}

// FromBody maps a wire error back to an error of its class.
func FromBody(b ErrorBody, status int) error {
	for _, c := range classes {
		if c.code == b.Code {
			return &classError{class: c.err, msg: b.Message, retry: time.Duration(b.RetryAfterMillis) * time.Millisecond}
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
