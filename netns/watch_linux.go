package netns

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// settleDelay gathers a burst of netlink events (a network change brings
// several addresses and routes at once) into one refresh.
const settleDelay = 150 * time.Millisecond

// Watch follows the host's addresses, routes (of every table) and policy
// rules and, whenever the facts the rules rest on change (the phone moves
// from Wi-Fi to mobile data, joins another network, gains or loses an
// address, netd moves a network to another table), puts every profile's
// rules in line with them in one batch: work leaves through the uplinks of
// now, and a network the phone just joined is personal at once (an IPv6
// home LAN is a public prefix, which no fixed list could keep out). On
// every event it also checks that forwarding is still on (netd writes
// ip_forward whenever tethering changes; the kernel announces that as a
// netconf event, which Watch hears too). It is driven by netlink
// notifications, not by polling, and returns when ctx ends.
func (m *Manager) Watch(ctx context.Context) error {
	for {
		err := m.watchOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// A lost subscription (the socket overflowed) may have missed events:
		// look again, then subscribe anew.
		m.log.Warn("host network watch interrupted; refreshing and resubscribing", "err", err)
		if err := m.Refresh(ctx); err != nil {
			m.log.Error("refresh profile rules after a host network change", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (m *Manager) watchOnce(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	addrs := make(chan netlink.AddrUpdate, 256)
	routes := make(chan netlink.RouteUpdate, 256)
	lost := make(chan error, 2)
	onErr := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	ns := m.hostNS
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to host addresses: %w", err)
	}
	// ListExisting off, all tables: Android's default routes live in one
	// table per network.
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &ns, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to host routes: %w", err)
	}
	others, err := m.subscribeRulesAndNetconf(done, onErr)
	if err != nil {
		return err
	}
	// Whatever changed before the subscription began.
	if err := m.Refresh(ctx); err != nil {
		m.log.Error("refresh profile rules", "err", err)
	}
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			return err
		case u, ok := <-addrs:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
			if m.ownAddr(u.LinkAddress.IP) {
				continue // a profile's own veth
			}
			settle = time.After(settleDelay)
		case u, ok := <-routes:
			if !ok {
				return fmt.Errorf("route subscription closed")
			}
			if !isDefaultRoute(u.Route) {
				continue // connected routes come with their addresses
			}
			settle = time.After(settleDelay)
		case typ := <-others:
			// The kernel announces every write of ip_forward and of IPv6
			// forwarding as a netconf message: only those can undo it.
			if typ == unix.RTM_NEWNETCONF {
				m.reassertForwarding()
			}
			if typ == unix.RTM_NEWRULE || typ == unix.RTM_DELRULE {
				settle = time.After(settleDelay)
			}
		case <-settle:
			settle = nil
			if err := m.Refresh(ctx); err != nil {
				m.log.Error("refresh profile rules after a host network change", "err", err)
			}
		}
	}
}

// ownAddr reports whether ip is in one of the profiles' pools.
func (m *Manager) ownAddr(ip []byte) bool {
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	return ok && (m.pool.Contains(a) || m.pool6.IsValid() && m.pool6.Contains(a))
}

// isDefaultRoute reports whether r is a default route of any table but
// local: policy rules may route by any of them.
func isDefaultRoute(r netlink.Route) bool {
	return r.Table != unix.RT_TABLE_LOCAL && isDefaultDst(r)
}

// subscribeRulesAndNetconf listens in the host namespace for policy rule
// changes and netconf changes (forwarding switched on or off) and sends
// each message's type; it stops when done closes. The netlink package
// used for addresses and routes has no subscription for either.
func (m *Manager) subscribeRulesAndNetconf(done <-chan struct{}, onErr func(error)) (<-chan uint16, error) {
	group := func(g uint32) uint32 { return 1 << (g - 1) }
	c, err := mnl.Dial(unix.NETLINK_ROUTE, &mnl.Config{
		NetNS: int(m.hostNS),
		Groups: group(unix.RTNLGRP_IPV4_RULE) | group(unix.RTNLGRP_IPV6_RULE) |
			group(unix.RTNLGRP_IPV4_NETCONF) | group(unix.RTNLGRP_IPV6_NETCONF),
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to host policy rules and netconf: %w", err)
	}
	out := make(chan uint16, 64)
	go func() {
		<-done
		c.Close() // ends the Receive below
	}()
	go func() {
		for {
			msgs, err := c.Receive()
			if err != nil {
				select {
				case <-done:
				default:
					onErr(fmt.Errorf("policy rule and netconf subscription: %w", err))
				}
				return
			}
			for _, msg := range msgs {
				select {
				case out <- uint16(msg.Header.Type):
				case <-done:
					return
				}
			}
		}
	}()
	return out, nil
}

// reassertForwarding switches forwarding back on when something (netd,
// on every tethering change) switched it off while profiles that forward
// run.
func (m *Manager) reassertForwarding() {
	m.mu.Lock()
	defer m.mu.Unlock()
	online := false
	for _, pr := range m.applied {
		online = online || pr.Mode != ModeOffline
	}
	if !online {
		return
	}
	changed, err := m.enableForwarding()
	if err != nil {
		m.log.Error("re-enable forwarding", "err", err)
		return
	}
	if changed {
		m.log.Warn("forwarding had been switched off by someone else (netd does on tethering changes); switched on again")
	}
}

// Refresh re-reads the host's facts and, if they changed since the rules
// were last put in place or the rules are no longer whole, re-applies
// every such profile's host rules in one batch; running connections that
// the new rules narrow are cut, as with Apply. Watch calls it; it is safe
// to call at any time.
func (m *Manager) Refresh(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.applied) == 0 {
		return nil
	}
	facts, err := m.facts()
	if err != nil {
		return err
	}
	// The uplink's table may change with nothing else (the "Wi-Fi" network
	// came back as another netId): the iif rules follow at once.
	if err := m.syncRules(m.refs(), facts.Routing); err != nil {
		m.log.Error("policy rules cannot follow the host's routing", "err", err)
	}
	full := map[string]profileRules{}
	var cut []string
	for name, prev := range m.applied {
		ps := m.st.Profiles[name]
		if ps == nil || ps.Settings == nil {
			continue
		}
		// Rules someone else removed are put back too: on a phone, netd
		// flushes FORWARD, INPUT and the oem_ chains whenever it starts,
		// and flushes the policy rules right after, which brings us here.
		// While they were gone work may have opened anything: cut.
		if !m.fw.intact(ctx, name) {
			m.log.Warn("profile rules were removed by someone else; putting them back", "profile", name, "backend", m.backend)
			pr, err := buildProfile(profileRef{Name: name, HostIf: ps.HostIf, Subnet: ps.Subnet, Subnet6: ps.Subnet6}, m.pools(), *ps.Settings, facts)
			if err != nil {
				pr = prev // the host changed under them; the rules last applied still isolate
			}
			full[name] = pr
			cut = append(cut, name)
			continue
		}
		if reflect.DeepEqual(prev.facts, facts) {
			continue
		}
		ref := profileRef{Name: name, HostIf: ps.HostIf, Subnet: ps.Subnet, Subnet6: ps.Subnet6}
		pr, err := buildProfile(ref, m.pools(), *ps.Settings, facts)
		if err != nil {
			// The settings no longer fit the host (say, a resolver they name
			// became one of its addresses): keep the old rules, say so.
			m.log.Error("profile rules cannot follow the host's network change; kept as they were", "profile", name, "err", err)
			continue
		}
		full[name] = pr
		if !widens(prev, pr) {
			cut = append(cut, name)
		}
	}
	if len(full) == 0 {
		return nil
	}
	if err := m.fw.applyHost(ctx, m.pools(), m.refs(), full, nil); err != nil {
		return fmt.Errorf("apply %s rules after a host network change: %w", m.backend, err)
	}
	for name, pr := range full {
		if m.onDNS != nil && !slices.Equal(m.applied[name].DNS, pr.DNS) {
			m.onDNS(name, resolvConf(pr.DNS))
		}
		m.applied[name] = pr
	}
	m.log.Info("profile rules follow the host's network", "uplinks", facts.Uplinks, "profiles", len(full))
	for _, name := range cut {
		if err := m.cutConnections(m.st.Profiles[name]); err != nil {
			return fmt.Errorf("profile %s: rules applied, but running connections were not cut: %w", name, err)
		}
	}
	return nil
}
