package netns

import (
	"encoding/binary"
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
	// Forwarding6Set records that we turned IPv6 forwarding on (it was
	// off), and AcceptRARaised the interfaces ("default" included) whose
	// accept_ra we raised from 1 to 2 first, so that they keep taking
	// router advertisements as a forwarding host: the last Remove puts
	// both back.
	Forwarding6Set bool     `json:"forwarding6_set,omitempty"`
	AcceptRARaised []string `json:"accept_ra_raised,omitempty"`
}

type profileState struct {
	Subnet netip.Prefix `json:"subnet"`
	// Subnet6 is the profile's /64 of the IPv6 pool; zero without IPv6.
	Subnet6  netip.Prefix `json:"subnet6,omitzero"`
	HostIf   string       `json:"host_if"`
	Settings *Settings    `json:"settings,omitempty"`
}

func loadState(path string, pool, pool6 netip.Prefix) (*state, error) {
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
		if p.Subnet6.IsValid() && (!pool6.IsValid() || !pool6.Contains(p.Subnet6.Addr()) || p.Subnet6.Bits() != subnet6Bits) {
			// IPv6 was turned off or its pool moved: the profile gets a
			// new /64 (or none) at its next Ensure.
			p.Subnet6 = netip.Prefix{}
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

// allocate6 gives the profile the lowest free /64 of pool6.
func (st *state) allocate6(pool6 netip.Prefix) (netip.Prefix, error) {
	used := map[netip.Prefix]bool{}
	for _, p := range st.Profiles {
		used[p.Subnet6] = true
	}
	base := pool6.Masked().Addr().As16()
	hi := binary.BigEndian.Uint64(base[:8])
	n := uint64(1) << min(subnet6Bits-pool6.Bits(), 20) // a million is plenty
	for i := uint64(0); i < n; i++ {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], hi+i)
		s := netip.PrefixFrom(netip.AddrFrom16(b), subnet6Bits)
		if !used[s] {
			return s, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("IPv6 address pool %s is exhausted (%d profiles)", pool6, len(st.Profiles))
}

// subnetAddrs are the host and work addresses of a profile subnet.
func subnetAddrs(s netip.Prefix) (gateway, work netip.Prefix) {
	base := s.Masked().Addr()
	gw := base.Next()
	return netip.PrefixFrom(gw, s.Bits()), netip.PrefixFrom(gw.Next(), s.Bits())
}

// subnet6Bits is the size of each profile's IPv6 subnet: host side ::1,
// work side ::2.
const subnet6Bits = 64

func validPool6(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" || p.Bits() > subnet6Bits-1 || p.Masked() != p {
		return fmt.Errorf("IPv6 address pool %q: want an IPv6 network of /%d or larger (a ULA such as fd00:1234:5678::/48): %w", p, subnet6Bits-1, ErrInvalid)
	}
	return nil
}

func validPool(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > subnetBits-1 || p.Masked() != p {
		return fmt.Errorf("address pool %q: want an IPv4 network of /%d or larger: %w", p, subnetBits-1, ErrInvalid)
	}
	return nil
}
