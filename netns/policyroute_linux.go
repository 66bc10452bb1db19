package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IIfRulePriority is the priority of the policy rule that sends a
// profile's forwarded traffic into the uplink's table ("iif wc-NAME lookup
// TABLE"). Android's netd puts its own rules between 10000 and 29000 (per
// network, VPN, tethering at 21000, the default network last) and ends
// with "32000: unreachable" before the kernel's main table. 31000 comes
// after every rule of netd's, so netd's own choices (a VPN's, a network's)
// always win, and before its unreachable rule, which would otherwise drop
// everything forwarded: netd's rules match "iif lo" (the phone's own
// traffic) or the tethering interfaces, never ours.
const IIfRulePriority = 31000

// familyRouting is what the host's policy routing means for one family.
type familyRouting struct {
	// Table is where a root process's unmarked traffic finds its default
	// route, walking the rules as the kernel does (0: nowhere).
	Table int
	// Uplinks are the interfaces of that table's default routes.
	Uplinks []string
	// NeedRule says forwarded traffic would not reach Table by the host's
	// rules alone (Android: the per-network tables are looked up for
	// "iif lo" only, and "unreachable" comes before main).
	NeedRule bool
}

// routing is the host's policy routing, both families.
type routing struct{ V4, V6 familyRouting }

// isDefaultDst reports whether a route's destination is a default route.
func isDefaultDst(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// ourRule reports whether a policy rule is one syncRules made.
func ourRule(r netlink.Rule) bool {
	_, ok := policyRuleKey(r)
	return ok
}

// ruleMatches reports whether a packet to the internet with mark 0, uid 0
// (what the kernel gives forwarded packets, and this daemon's own), of no
// particular protocol or port, coming in on lo (local) or on an interface
// no rule names (forwarded), matches r. Selectors it cannot know (source,
// a destination narrower than the internet, protocol, ports, tos, tunnel
// id, output interface: a route lookup for forwarding has none) count as
// not matching, as they would for most such packets.
func ruleMatches(r netlink.Rule, local bool) bool {
	ok := func() bool {
		switch {
		case r.IifName != "" && !(local && r.IifName == "lo"):
			return false
		case r.OifName != "":
			return false
		case r.Src != nil && !isDefaultDst(netlink.Route{Dst: r.Src}):
			return false
		case r.Dst != nil && !isDefaultDst(netlink.Route{Dst: r.Dst}):
			return false
		case r.UIDRange != nil && r.UIDRange.Start != 0:
			return false
		case r.IPProto != 0 || r.Dport != nil || r.Sport != nil || r.Tos != 0 || r.TunID != 0:
			return false
		}
		mask := uint32(0xffffffff)
		if r.Mask != nil {
			mask = *r.Mask
		}
		return r.Mark&mask == 0
	}()
	if r.Invert {
		return !ok
	}
	return ok
}

// lookupTable walks rules (sorted by priority) as the kernel's FIB rules
// do for such a packet and returns the first table with a default route
// it would find, 0 when an unreachable, blackhole or prohibit rule (or the
// end) comes first. Our own rules are left out: they are what is decided.
func lookupTable(rules []netlink.Rule, defaults map[int][]int, local bool) int {
	for i := 0; i < len(rules); i++ {
		r := rules[i]
		if ourRule(r) || !ruleMatches(r, local) {
			continue
		}
		switch {
		case r.Goto >= 0:
			j := sort.Search(len(rules), func(k int) bool { return rules[k].Priority >= r.Goto })
			if j <= i {
				return 0 // the kernel refuses loops; never follow one
			}
			i = j - 1
		case r.Table == 0:
			// The dump carries no action; a rule without table or goto
			// is unreachable, blackhole or prohibit (netd's "unreachable").
			return 0
		case r.SuppressPrefixlen >= 0:
			// "suppress_prefixlength N" ignores routes of length <= N: a
			// default route always.
		case len(defaults[r.Table]) > 0:
			return r.Table
		}
	}
	return 0
}

// routing reads the host's rules and every table's default routes.
func (m *Manager) routing() (routing, error) {
	var rt routing
	for _, f := range []struct {
		family int
		out    *familyRouting
	}{{netlink.FAMILY_V4, &rt.V4}, {netlink.FAMILY_V6, &rt.V6}} {
		rules, err := m.host.RuleList(f.family)
		if err != nil {
			if f.family == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue // a kernel without IPv6
			}
			return rt, fmt.Errorf("list host policy rules: %w", err)
		}
		sort.SliceStable(rules, func(i, j int) bool { return rules[i].Priority < rules[j].Priority })
		routes, err := m.host.RouteListFiltered(f.family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return rt, fmt.Errorf("list host routes: %w", err)
		}
		defaults := map[int][]int{}
		for _, r := range routes {
			if !isDefaultDst(r) || r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
				continue
			}
			if r.LinkIndex > 0 {
				defaults[r.Table] = append(defaults[r.Table], r.LinkIndex)
			}
			for _, nh := range r.MultiPath {
				defaults[r.Table] = append(defaults[r.Table], nh.LinkIndex)
			}
		}
		t := lookupTable(rules, defaults, true)
		f.out.Table = t
		f.out.NeedRule = t != 0 && lookupTable(rules, defaults, false) != t
		for _, i := range defaults[t] {
			l, err := m.host.LinkByIndex(i)
			if err == nil && !strings.HasPrefix(l.Attrs().Name, hostIfPrefix) && !slices.Contains(f.out.Uplinks, l.Attrs().Name) {
				f.out.Uplinks = append(f.out.Uplinks, l.Attrs().Name)
			}
		}
		slices.Sort(f.out.Uplinks)
	}
	return rt, nil
}

// wantRule is one policy rule of ours: "iif IIF lookup TABLE" for what
// work sends, or "to DST lookup main" for what comes back to it.
type wantRule struct {
	IIf   string
	Dst   netip.Prefix
	Table int
}

func policyRuleKey(r netlink.Rule) (wantRule, bool) {
	if r.Priority != IIfRulePriority {
		return wantRule{}, false
	}
	if strings.HasPrefix(r.IifName, hostIfPrefix) && r.Dst == nil {
		return wantRule{IIf: r.IifName, Table: r.Table}, true
	}
	if r.IifName == "" && r.Dst != nil && r.Table == unix.RT_TABLE_MAIN {
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok {
			return wantRule{Dst: netip.PrefixFrom(ip.Unmap(), ones), Table: r.Table}, true
		}
	}
	return wantRule{}, false
}

// syncRules makes the host's policy rules of ours exactly those refs need
// under rt, per family where forwarded traffic needs them: "iif wc-NAME
// lookup TABLE" per profile, and "to POOL lookup main" once, since the
// replies coming back to work (de-NATed to a pool address) would meet the
// same "unreachable" before the main table, which holds the veths'
// connected routes. Rules of profiles, pools or tables no longer wanted
// go.
func (m *Manager) syncRules(refs []profileRef, rt routing) error {
	var errs []error
	for _, f := range []struct {
		family int
		fr     familyRouting
		pool   netip.Prefix
	}{{netlink.FAMILY_V4, rt.V4, m.pool}, {netlink.FAMILY_V6, rt.V6, m.pool6}} {
		want := map[wantRule]bool{}
		if f.fr.NeedRule && f.pool.IsValid() && len(refs) > 0 {
			want[wantRule{Dst: f.pool.Masked(), Table: unix.RT_TABLE_MAIN}] = true
			for _, r := range refs {
				if f.family == netlink.FAMILY_V4 || r.Subnet6.IsValid() {
					want[wantRule{IIf: r.HostIf, Table: f.fr.Table}] = true
				}
			}
		}
		rules, err := m.host.RuleList(f.family)
		if err != nil {
			if f.family == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			errs = append(errs, fmt.Errorf("list host policy rules: %w", err))
			continue
		}
		have := map[wantRule]bool{}
		for _, r := range rules {
			k, ours := policyRuleKey(r)
			if !ours {
				continue
			}
			if want[k] && !have[k] {
				have[k] = true
				continue
			}
			if err := m.host.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete policy rule %s: %w", r, err))
			}
		}
		for k := range want {
			if have[k] {
				continue
			}
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table = f.family, IIfRulePriority, k.Table
			if k.IIf != "" {
				r.IifName = k.IIf
			} else {
				r.Dst = toIPNet(k.Dst)
			}
			if err := m.host.RuleAdd(r); err != nil {
				errs = append(errs, fmt.Errorf("add policy rule %s: %w", r, err))
				continue
			}
			m.log.Info("policy rule for work's traffic", "iif", k.IIf, "to", k.Dst, "table", k.Table, "priority", IIfRulePriority)
		}
	}
	return errors.Join(errs...)
}

// IPv6 says whether profiles get IPv6 and, when they do not, why (the
// host has it off, the firewall has no IPv6 NAT, or the config).
func (m *Manager) IPv6() (bool, string) { return m.noIPv6Why == "", m.noIPv6Why }

// PolicyRouting reports how profiles' traffic is routed on this host: per
// family, the table the uplinks were found in, their interfaces, and
// whether an "iif wc-NAME lookup TABLE" rule (at IIfRulePriority) is
// needed and so in place; for `workcell doctor`.
func (m *Manager) PolicyRouting(ctx context.Context) (PolicyRouting, error) {
	if err := ctx.Err(); err != nil {
		return PolicyRouting{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rt, err := m.routing()
	if err != nil {
		return PolicyRouting{}, err
	}
	return PolicyRouting{
		Table4: rt.V4.Table, Uplinks4: rt.V4.Uplinks, Rule4: rt.V4.NeedRule,
		Table6: rt.V6.Table, Uplinks6: rt.V6.Uplinks, Rule6: rt.V6.NeedRule,
		Priority: IIfRulePriority,
	}, nil
}
