package sandbox

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidSpec is wrapped by every refusal of Validate, LoadBundle and
	// Harden: the bundle or the options ask for something the sandbox does
	// not allow or cannot run.
	ErrInvalidSpec = errors.New("invalid container spec")
	// ErrNotExist is returned (wrapped) when a container is not present in
	// the runtime's state root.
	ErrNotExist = errors.New("container does not exist")
	// ErrRunning is returned (wrapped) by Remove when the container's init is
	// still alive.
	ErrRunning = errors.New("container is still running")
)

// FieldError names the config.json field that was refused and why.
type FieldError struct {
	Field  string // JSON path, e.g. "linux.namespaces[1].path"
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("config.json: %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) true for every refusal.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }
