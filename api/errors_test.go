package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestErrorClassesSurviveTheWire(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		class  error
		status int
	}{
		{"invalid", Errorf(ErrInvalidArgument, "limits.pids -1: must not be negative"), ErrInvalidArgument, http.StatusBadRequest},
		{"not found", Errorf(ErrNotFound, "profile x does not exist"), ErrNotFound, http.StatusNotFound},
		{"conflict wrapped", fmt.Errorf("start: %w", Errorf(ErrConflict, "already running")), ErrConflict, http.StatusConflict},
		{"permission", Errorf(ErrPermission, "uid 1234 is not allowed"), ErrPermission, http.StatusForbidden},
		{"unavailable", Errorf(ErrUnavailable, "down"), ErrUnavailable, http.StatusServiceUnavailable},
		{"plain error is internal", errors.New("boom"), ErrInternal, http.StatusInternalServerError},
		{"throttled", Throttledf(30*time.Second, "profile work: too many wrong passphrases"), ErrThrottled, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, status := ToBody(tc.err)
			if status != tc.status {
				t.Fatalf("status = %d, want %d", status, tc.status)
			}
			if body.Message != tc.err.Error() {
				t.Fatalf("message = %q, want %q", body.Message, tc.err.Error())
			}
			back := FromBody(body, status)
			if !errors.Is(back, tc.class) {
				t.Fatalf("FromBody(%+v) = %v, not of class %v", body, back, tc.class)
			}
			if back.Error() != tc.err.Error() {
				t.Fatalf("round trip message = %q, want %q", back.Error(), tc.err.Error())
			}
		})
	}
}

func TestThrottledKeepsRetryAfter(t *testing.T) {
	body, status := ToBody(fmt.Errorf("unlock: %w", Throttledf(1500*time.Millisecond, "wait")))
	if status != http.StatusTooManyRequests || body.RetryAfterMillis != 1500 {
		t.Fatalf("body %+v status %d", body, status)
	}
	if d, ok := RetryAfter(FromBody(body, status)); !ok || d != 1500*time.Millisecond {
		t.Fatalf("retry after the wire: %v %v", d, ok)
	}
	if _, ok := RetryAfter(Errorf(ErrConflict, "x")); ok {
		t.Fatal("a conflict has a retry-after")
	}
}

func TestErrorfKeepsWrappedError(t *testing.T) {
	inner := errors.New("disk full")
	err := Errorf(ErrInternal, "save record: %w", inner)
	if !errors.Is(err, inner) || !errors.Is(err, ErrInternal) {
		t.Fatalf("errors.Is lost a link: %v", err)
	}
}

func TestFromBodyUnknownCodeFallsBackToStatus(t *testing.T) {
	err := FromBody(ErrorBody{Code: "teapot", Message: "x"}, http.StatusNotFound)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want not found from the status", err)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"work": true, "w": true, "work-2": true, "a234567890123456789012345678901": true,
		"": false, "Work": false, "2work": false, "-w": false, "wo_rk": false, "a2345678901234567890123456789012": false, "../x": false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		} else if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidName(%q) error is not invalid argument: %v", name, err)
		}
	}
}
