package sandbox

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// IDMap is a profile's identity range: container uids and gids 0..Size-1
// are host ids HostID..HostID+Size-1. uids and gids share the range.
type IDMap struct {
	HostID uint32 `json:"host_id"`
	Size   uint32 `json:"size"`
}

// Contains reports whether host id id lies in the range.
func (m IDMap) Contains(id uint32) bool { return id >= m.HostID && id-m.HostID < m.Size }

// Validate refuses a range that maps host root or wraps around.
func (m IDMap) Validate() error {
	switch {
	case m.Size == 0:
		return fmt.Errorf("id map: size 0: %w", ErrInvalidSpec)
	case m.HostID == 0:
		return fmt.Errorf("id map: host id 0 would make work root host root: %w", ErrInvalidSpec)
	case uint64(m.HostID)+uint64(m.Size) > 1<<32-1:
		return fmt.Errorf("id map: %d+%d passes the last uid: %w", m.HostID, m.Size, ErrInvalidSpec)
	}
	return nil
}

// Shift maps a container id to its host id; ids outside the range (and
// ids already shifted) are returned as they are.
func (m IDMap) Shift(id uint32) uint32 {
	if id < m.Size && !m.Contains(id) {
		return id + m.HostID
	}
	return id
}

// UserNS is how a container gets its user namespace: it joins the one
// pinned at Path (the daemon made it, and the profile's network namespace
// in it, so that work's root administers its own network), whose mapping
// must be IDs.
type UserNS struct {
	IDs IDMap
	// Path is a pinned user namespace with the IDs mapping; empty means a
	// new one with that mapping.
	Path string
}

// MinRangeHostID is the lowest host id a range may start at: below it are
// root, the daemon and the system's own users (Android's AIDs end below
// AID_APP_START, 10000).
const MinRangeHostID = 10000

// ranged reports whether work runs under its id range without a user
// namespace.
func ranged(opts HardenOptions) bool { return opts.UIDRange != nil && opts.UserNS == nil }

// hardenUIDRange runs the process under its profile's id range without a
// user namespace: its ids are shifted into the range, and it holds no
// capability (a non-root uid would lose them at its exec anyway, unless
// ambient; and with none permitted, no_new_privs keeps a file's
// capabilities from adding any).
func hardenUIDRange(p *specs.Process, opts HardenOptions) error {
	if opts.UIDRange == nil {
		return nil
	}
	if opts.UserNS != nil {
		return fmt.Errorf("uid range: both a user namespace and a range without one: %w", ErrInvalidSpec)
	}
	m := *opts.UIDRange
	if err := m.Validate(); err != nil {
		return err
	}
	if m.HostID < MinRangeHostID {
		return fmt.Errorf("uid range %d+%d: starts below %d, among the host's own users: %w", m.HostID, m.Size, MinRangeHostID, ErrInvalidSpec)
	}
	shift := func(field string, id uint32) (uint32, error) {
		if id >= m.Size {
			return 0, &FieldError{field, fmt.Sprintf("id %d is outside the profile's %d ids", id, m.Size)}
		}
		return m.HostID + id, nil
	}
	var err error
	if p.User.UID, err = shift("process.user.uid", p.User.UID); err != nil {
		return err
	}
	if p.User.GID, err = shift("process.user.gid", p.User.GID); err != nil {
		return err
	}
	for i, g := range p.User.AdditionalGids {
		if p.User.AdditionalGids[i], err = shift(fmt.Sprintf("process.user.additionalGids[%d]", i), g); err != nil {
			return err
		}
	}
	c := p.Capabilities
	c.Effective, c.Permitted, c.Inheritable, c.Ambient = []string{}, []string{}, []string{}, []string{}
	return nil
}
