package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
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
