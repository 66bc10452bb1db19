package binder

import (
	"context"
	"fmt"
)

// Clients of a context's service manager (handle 0), in the connection's
// release.

// CheckService looks name up without waiting for it. A found service comes
// back as a handle the connection holds a reference on; ok is false when
// the manager knows no such name.
func CheckService(ctx context.Context, c *Conn, name string) (handle uint32, ok bool, err error) {
	code, p := checkServiceCall(c.Release(), name)
	return lookupService(ctx, c, "check", name, code, p)
}

func lookupService(ctx context.Context, c *Conn, verb, name string, code uint32, p *Parcel) (handle uint32, ok bool, err error) {
	r, err := c.Transact(ctx, 0, code, p, 0)
	if err != nil {
		return 0, false, fmt.Errorf("binder: %s service %q: %w", verb, name, err)
	}
	defer r.CloseFDs() // a manager's answer has no business carrying fds
	if c.Release() == Android10 {
		if len(r.Offsets()) == 0 { // a bare 0: not found
			return 0, false, nil
		}
	} else if err := r.ReadException(); err != nil {
		return 0, false, fmt.Errorf("binder: %s service %q: %w", verb, name, err)
	}
	obj, err := r.ReadBinder()
	if err != nil {
		return 0, false, fmt.Errorf("binder: %s service %q: %w", verb, name, err)
	}
	switch {
	case obj.IsNull():
		return 0, false, nil
	case obj.Type != TypeHandle:
		return 0, false, fmt.Errorf("binder: %s service %q: answered by a node of this connection", verb, name)
	}
	return obj.Handle(), true, nil
}

// AddService registers n under name with the default dump priority.
func AddService(ctx context.Context, c *Conn, name string, n *Node) error {
	code, p := addServiceCall(c.Release(), name, n.WriteTo, false, DumpPriorityDefault)
	r, err := c.Transact(ctx, 0, code, p, 0)
	if err == nil {
		r.CloseFDs()
		err = r.ReadException() // Android 10's 0 reads as EX_NONE
	}
	if err != nil {
		return fmt.Errorf("binder: add service %q: %w", name, err)
	}
	return nil
}

// ListServices returns the names the manager lists for every dump priority.
func ListServices(ctx context.Context, c *Conn) ([]string, error) {
	if c.Release() == Android10 {
		var names []string
		for i := int32(0); ; i++ {
			code, p := listServicesCall(c.Release(), i, DumpPriorityAll)
			r, err := c.Transact(ctx, 0, code, p, 0)
			if _, isStatus := asStatus(err); isStatus {
				return names, nil // the end of the list
			}
			if err != nil {
				return nil, fmt.Errorf("binder: list services: %w", err)
			}
			r.CloseFDs()
			name, err := r.ReadString16()
			if err != nil {
				return nil, fmt.Errorf("binder: list services: %w", err)
			}
			names = append(names, name)
		}
	}
	code, p := listServicesCall(c.Release(), 0, DumpPriorityAll)
	r, err := c.Transact(ctx, 0, code, p, 0)
	if err == nil {
		r.CloseFDs()
		err = r.ReadException()
	}
	if err != nil {
		return nil, fmt.Errorf("binder: list services: %w", err)
	}
	n, err := r.ReadInt32()
	if err != nil {
		return nil, fmt.Errorf("binder: list services: %w", err)
	}
	if n < 0 || int(n) > r.Remaining()/4 {
		return nil, fmt.Errorf("binder: list services: %w: %d names", ErrBadParcel, n)
	}
	names := make([]string, 0, n)
	for range n {
		s, err := r.ReadString16()
		if err != nil {
			return nil, fmt.Errorf("binder: list services: %w", err)
		}
		names = append(names, s)
	}
	return names, nil
}
