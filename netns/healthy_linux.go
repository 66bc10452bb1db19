package netns

import (
	"context"
	"fmt"
	"reflect"

	"github.com/vishvananda/netlink"
)

// Healthy reports whether profile's network is still as the last Ensure
// or Apply with settings s left it, reading only what is cheap: the pinned
// namespace, the host veth up, and rules present in the host table's base
// and profile chains. It lets a start skip a full Ensure (tens of
// milliseconds) when nothing was broken; false means: call Ensure. Host
// facts (uplinks, resolvers) are not read again: Watch keeps the rules in
// line with them.
func (m *Manager) Healthy(ctx context.Context, profile string, s Settings) bool {
	if ctx.Err() != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ps, ok := m.st.Profiles[profile]
	if !ok || ps.Settings == nil || !reflect.DeepEqual(*ps.Settings, s) {
		return false
	}
	if _, ok := m.applied[profile]; !ok {
		return false
	}
	ns, ok := openPinned(m.nsPath(profile))
	if !ok {
		return false
	}
	current := m.maker == nil || m.maker.NetNSCurrent(profile, int(ns))
	ns.Close()
	if !current {
		return false
	}
	l, err := m.host.LinkByName(ps.HostIf)
	if err != nil || l.Attrs().OperState != netlink.OperUp {
		return false
	}
	return m.fw.intact(ctx, profile)
}

// Counters reads only the profile's traffic counters (Show also gathers
// the host's facts, which stats do not need).
func (m *Manager) Counters(ctx context.Context, profile string) (Counters, error) {
	if err := ctx.Err(); err != nil {
		return Counters{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.st.Profiles[profile]; !ok {
		return Counters{}, fmt.Errorf("profile %s has no network: %w", profile, ErrNotFound)
	}
	return m.counters(ctx, profile)
}

// counters reads the profile's traffic counters; m.mu is held.
func (m *Manager) counters(ctx context.Context, profile string) (Counters, error) {
	return m.fw.counters(ctx, profile)
}

// Has reports whether the profile has a network (a subnet and state).
func (m *Manager) Has(profile string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.st.Profiles[profile]
	return ok
}
