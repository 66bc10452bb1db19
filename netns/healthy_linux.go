package netns

import (
	"context"
	"reflect"

	"github.com/vishvananda/netlink"
)

// Healthy reports whether profile's network is still as the last Ensure
// or Apply with settings s left it, reading only what is cheap: the pinned
// namespace, the host veth up, and rules present in the host table's base
// and profile chains. It lets a start skip a full Ensure (tens of
// milliseconds) when nothing was broken; false means: call Ensure. Host
// facts (uplinks, resolvers) are not read again.
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
	ns.Close()
	l, err := m.host.LinkByName(ps.HostIf)
	if err != nil || l.Attrs().OperState != netlink.OperUp {
		return false
	}
	c, err := m.hostConn()
	if err != nil {
		return false
	}
	for _, ch := range []string{chainForward, chainInput, chainOutput, objName(profile, "out"), objName(profile, "in")} {
		if !m.chainHasRules(c, ch) {
			return false
		}
	}
	return true
}
