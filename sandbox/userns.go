package sandbox

import "fmt"

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
