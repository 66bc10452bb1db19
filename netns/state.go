package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/workcell/workcell/internal/atomicfile"
)

// subnetBits is the size of each profile's subnet: network, host side, work
// side, broadcast.
const subnetBits = 30

// stateVersion is bumped when the file's meaning changes.
const stateVersion = 1

// state is what survives a daemon restart: which subnet each profile holds
// (so no two ever share one and addresses stay put), its last settings, and
// whether we turned IPv4 forwarding on.
type state struct {
	Version  int                      `json:"version"`
	Pool     netip.Prefix             `json:"pool"`
	Profiles map[string]*profileState `json:"profiles"`
	// ForwardingWasOff records that ip_forward was 0 before we set it, so the
	// last Remove can put it back.
	ForwardingWasOff bool `json:"forwarding_was_off,omitempty"`
	ForwardingSet    bool `json:"forwarding_set,omitempty"`
}

type profileState struct {
	Subnet   netip.Prefix `json:"subnet"`
	HostIf   string       `json:"host_if"`
	Settings *Settings    `json:"settings,omitempty"`
}

func loadState(path string, pool netip.Prefix) (*state, error) {
	st := &state{Version: stateVersion, Pool: pool, Profiles: map[string]*profileState{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read network state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parse network state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("network state %s: version %d, want %d: %w", path, st.Version, stateVersion, ErrInvalid)
	}
	if st.Profiles == nil {
		st.Profiles = map[string]*profileState{}
	}
	for name, p := range st.Profiles {
		if !pool.Contains(p.Subnet.Addr()) || p.Subnet.Bits() != subnetBits {
			return nil, fmt.Errorf("network state %s: profile %q holds %s, outside pool %s (release it or keep the old pool): %w",
				path, name, p.Subnet, pool, ErrInvalid)
		}
	}
	st.Pool = pool
	return st, nil
}

// save writes the state atomically: temp file, fsync, rename, fsync folder.
func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save network state: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("save network state: %w", err)
	}
	return nil
}

// allocate gives the profile the lowest free subnet of the pool.
func (st *state) allocate() (netip.Prefix, error) {
	used := map[netip.Prefix]bool{}
	for _, p := range st.Profiles {
		used[p.Subnet] = true
	}
	lo, _ := v4Range(st.Pool)
	n := uint64(1) << (subnetBits - st.Pool.Bits())
	for i := uint64(0); i < n; i++ {
		s := netip.PrefixFrom(u32Addr(lo+uint32(i<<(32-subnetBits))), subnetBits)
		if !used[s] {
			return s, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("address pool %s is exhausted (%d profiles)", st.Pool, len(st.Profiles))
}

// subnetAddrs are the host and work addresses of a profile subnet.
func subnetAddrs(s netip.Prefix) (gateway, work netip.Prefix) {
	base := s.Masked().Addr()
	gw := base.Next()
	return netip.PrefixFrom(gw, s.Bits()), netip.PrefixFrom(gw.Next(), s.Bits())
}

func validPool(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > subnetBits-1 || p.Masked() != p {
		return fmt.Errorf("address pool %q: want an IPv4 network of /%d or larger: %w", p, subnetBits-1, ErrInvalid)
	}
	return nil
}
