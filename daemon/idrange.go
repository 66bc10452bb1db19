package daemon

import (
	"fmt"
	"sort"
)

// Each profile owns one host id range for its uids and gids (container ids
// 0..size-1), LXD's model of unprivileged containers. The ranges are
// slots of one size from a configured base; a profile's range is in its
// record, so the ranges in use are exactly those of the records on disk
// (and of installs under way): a crash between choosing a range and
// writing the record leaves the range free, never held twice. A range is
// free again once its profile's removal (which deletes every file the
// range owned) has completed.

// DefaultIDBase is above every uid Android gives (user n's apps are
// n*100000+appId, and far fewer than 10,000 users exist) and above the
// subordinate ranges distributions hand out from 100000. Without user
// namespaces these ids are work's real host uids, so a range may never
// hold root, the system's users (below sandbox.MinRangeHostID, Android's
// AID_APP_START) or a uid the control socket trusts (owner_uid,
// system_uid): the config and every recorded range are checked.
const DefaultIDBase = 1_000_000_000

// IDRangeSize is the ids of one profile: 0..65535, as LXD and runc's
// rootless defaults give a container.
const IDRangeSize = 65536

// DefaultIDRanges is how many profiles can hold a range at once.
const DefaultIDRanges = 1024

// idRange is the range part of a profile's record.
type idRange struct {
	HostID uint32 `json:"host_id"`
	Size   uint32 `json:"size"`
	// Shifted says the profile's files (bundle and upper layer) are owned
	// by the range on the host, as its user namespace needs them.
	Shifted bool `json:"shifted,omitempty"`
}

// idPool hands out ranges: slot i is [base+i*size, base+(i+1)*size).
type idPool struct {
	base, size, slots uint32
}

// allocate returns the lowest free slot, given the ranges in use (by
// profile name; ranges that are not slots of this pool, from an earlier
// configuration, block every slot they overlap).
func (p idPool) allocate(inUse map[string]idRange) (idRange, error) {
	type span struct{ lo, hi uint64 }
	var used []span
	for _, r := range inUse {
		used = append(used, span{uint64(r.HostID), uint64(r.HostID) + uint64(r.Size)})
	}
	sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
	for i := uint32(0); i < p.slots; i++ {
		lo := uint64(p.base) + uint64(i)*uint64(p.size)
		hi := lo + uint64(p.size)
		free := true
		for _, u := range used {
			if u.lo < hi && lo < u.hi {
				free = false
				break
			}
		}
		if free {
			return idRange{HostID: uint32(lo), Size: p.size}, nil
		}
	}
	return idRange{}, fmt.Errorf("no free id range: all %d ranges of %d ids from %d are held by profiles", p.slots, p.size, p.base)
}
