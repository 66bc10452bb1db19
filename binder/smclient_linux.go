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
	p := c.NewParcel()
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteString16(name)
	r, err := c.Transact(ctx, 0, c.Release().ServiceManager().CheckService, p, 0)
	if err != nil {
		return 0, false, fmt.Errorf("binder: check service %q: %w", name, err)
	}
	defer r.CloseFDs() // a manager's answer has no business carrying fds
	if c.Release() == Android10 {
		if len(r.Offsets()) == 0 { // a bare 0: not found
			return 0, false, nil
		}
	} else if err := r.ReadException(); err != nil {
		return 0, false, fmt.Errorf("binder: check service %q: %w", name, err)
	}
	obj, err := r.ReadBinder()
	if err != nil {
		return 0, false, fmt.Errorf("binder: check service %q: %w", name, err)
	}
	switch {
	case obj.IsNull():
		return 0, false, nil
	case obj.Type != TypeHandle:
		return 0, false, fmt.Errorf("binder: check service %q: answered by a node of this connection", name)
	}
	return obj.Handle(), true, nil
}

// AddService registers n under name with the default dump priority.
func AddService(ctx context.Context, c *Conn, name string, n *Node) error {
	p := c.NewParcel()
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteString16(name)
	n.WriteTo(p)
	p.WriteBool(false) // allowIsolated
	p.WriteInt32(DumpPriorityDefault)
	r, err := c.Transact(ctx, 0, c.Release().ServiceManager().AddService, p, 0)
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
	codes := c.Release().ServiceManager()
	if c.Release() == Android10 {
		var names []string
		for i := int32(0); ; i++ {
			p := c.NewParcel()
			p.WriteInterfaceToken(ServiceManagerDescriptor)
			p.WriteInt32(i)
			p.WriteInt32(DumpPriorityAll)
			r, err := c.Transact(ctx, 0, codes.ListServices, p, 0)
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
	p := c.NewParcel()
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteInt32(DumpPriorityAll)
	r, err := c.Transact(ctx, 0, codes.ListServices, p, 0)
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
