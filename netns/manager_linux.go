package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultPool is the address pool when WithPool is not given.
var DefaultPool = netip.MustParsePrefix("10.231.0.0/16")

// DefaultPool6 is the IPv6 pool when WithPool6 is not given: a unique
// local /48 ("work" in its global ID), whose /64s go to the profiles. Work
// leaves with the uplink's address (masqueraded), so the prefix never
// shows outside; since its source is a ULA, work's programs prefer IPv4
// where a destination has both and use IPv6 where it has only that.
var DefaultPool6 = netip.MustParsePrefix("fd77:6f72:6b00::/48")

type options struct {
	pool       netip.Prefix
	pool6      netip.Prefix
	noIPv6     bool
	log        *slog.Logger
	hostNS     string
	resolvConf string
	onDNS      func(profile string, resolvConf []byte)
	maker      NSMaker
	backend    Backend
}

// NSMaker makes the network namespaces of profiles that must be owned by
// another user namespace than the Manager's (a profile whose root runs in
// a user namespace of its own administers its own network: its VPN client
// makes a tunnel there).
type NSMaker interface {
	// MakeNetNS pins a new network namespace for profile at path, which
	// holds none; handled false means: a plain one (unshare) will do.
	MakeNetNS(ctx context.Context, profile, path string) (handled bool, err error)
	// NetNSCurrent reports whether the namespace open as fd is one
	// MakeNetNS (or the plain way) would make for profile now; one that is
	// not is made again, with the same addresses.
	NetNSCurrent(profile string, fd int) bool
}

// WithNSMaker has the Manager make profile namespaces through mk.
func WithNSMaker(mk NSMaker) Option {
	return func(o *options) error { o.maker = mk; return nil }
}

// Option configures a Manager.
type Option func(*options) error

// WithPool sets the IPv4 pool profiles' /30 subnets come from (default
// DefaultPool). It must not overlap a network the host is connected to.
func WithPool(p netip.Prefix) Option {
	return func(o *options) error {
		if err := validPool(p); err != nil {
			return err
		}
		o.pool = p
		return nil
	}
}

// WithPool6 sets the IPv6 pool profiles' /64 subnets come from (default
// DefaultPool6). It must not overlap a network the host is connected to.
func WithPool6(p netip.Prefix) Option {
	return func(o *options) error {
		if err := validPool6(p); err != nil {
			return err
		}
		o.pool6 = p
		return nil
	}
}

// WithoutIPv6 gives profiles no IPv6 at all (all their IPv6 is dropped).
// Without it, profiles get IPv6 whenever the host namespace has it on.
func WithoutIPv6() Option {
	return func(o *options) error { o.noIPv6 = true; return nil }
}

// WithDNSChange names a function Refresh calls (with the Manager's lock
// held: it must not call the Manager) when a profile's resolvers changed
// with the host's network, handing it the profile's new resolv.conf.
func WithDNSChange(fn func(profile string, resolvConf []byte)) Option {
	return func(o *options) error { o.onDNS = fn; return nil }
}

// WithLogger sets where the Manager logs (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("nil logger: %w", ErrInvalid)
		}
		o.log = l
		return nil
	}
}

// WithHostNS makes the Manager work in the network namespace pinned at path
// instead of the calling thread's (default). Tests use it for a fake host.
func WithHostNS(path string) Option {
	return func(o *options) error { o.hostNS = path; return nil }
}

// WithResolvConf names the host's resolver file, where default upstream
// resolvers come from (default /etc/resolv.conf).
func WithResolvConf(path string) Option {
	return func(o *options) error { o.resolvConf = path; return nil }
}

// Manager owns the networks of all profiles on one host. Its methods are
// safe for concurrent use; they are serialized.
type Manager struct {
	mu        sync.Mutex
	runDir    string
	stateFile string
	pool      netip.Prefix
	pool6     netip.Prefix // zero: no IPv6
	// noIPv6Why says why pool6 is zero ("" when profiles get IPv6).
	noIPv6Why  string
	log        *slog.Logger
	resolvConf string
	onDNS      func(profile string, resolvConf []byte)
	maker      NSMaker
	backend    Backend
	fw         firewall
	hostNS     vns.NsHandle
	host       *netlink.Handle
	st         *state
	// applied are the rules last put in place per profile, to tell whether
	// a change narrows them (see widens).
	applied map[string]profileRules
}

// NewManager opens the state in stateFile (creating none until needed) and
// pins namespaces under runDir/netns.
func NewManager(runDir, stateFile string, opts ...Option) (*Manager, error) {
	o := options{pool: DefaultPool, pool6: DefaultPool6, log: slog.New(slog.NewTextHandler(io.Discard, nil)), resolvConf: "/etc/resolv.conf", backend: BackendNFTables}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if runDir == "" || stateFile == "" {
		return nil, fmt.Errorf("run directory %q and state file %q must both be set: %w", runDir, stateFile, ErrInvalid)
	}
	var h vns.NsHandle
	var err error
	if o.hostNS != "" {
		h, err = vns.GetFromPath(o.hostNS)
	} else {
		h, err = vns.Get()
	}
	if err != nil {
		return nil, fmt.Errorf("open host network namespace %q: %w", o.hostNS, err)
	}
	m := &Manager{runDir: runDir, stateFile: stateFile, pool: o.pool, log: o.log, resolvConf: o.resolvConf, onDNS: o.onDNS, maker: o.maker, backend: o.backend, hostNS: h, applied: map[string]profileRules{}}
	if m.fw, err = newFirewall(o.backend, h); err != nil {
		h.Close()
		return nil, err
	}
	if m.host, err = netlink.NewHandleAt(h); err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink in host namespace: %w", err)
	}
	if !o.noIPv6 {
		if why := ipv6Off(h); why != "" {
			m.noIPv6Why = why
			m.log.Info("profiles get no IPv6", "reason", why)
		} else if why := m.fw.noNAT6(context.Background()); why != "" {
			// Work's IPv6 leaves masqueraded or not at all: without NAT
			// its unique-local source would go out as it is.
			m.noIPv6Why = why
			m.log.Info("profiles get no IPv6", "reason", why)
		} else {
			m.pool6 = o.pool6
		}
	}
	if o.noIPv6 {
		m.noIPv6Why = "net_pool6 is \"off\""
	}
	if m.st, err = loadState(stateFile, o.pool, m.pool6); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.checkPoolOverlap(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close releases the Manager's handles; the networks stay.
func (m *Manager) Close() error {
	if m.host != nil {
		m.host.Close()
	}
	return m.hostNS.Close()
}

// ipv6Off says why the host namespace behind h cannot carry IPv6 for
// work, or "" when it can.
func ipv6Off(h vns.NsHandle) string {
	var why string
	err := inNS(h, func() error {
		v, err := readSysctl("net/ipv6/conf/all/disable_ipv6")
		switch {
		case err != nil:
			why = "the kernel has no IPv6"
		case v != "0":
			why = "IPv6 is disabled on the host (net.ipv6.conf.all.disable_ipv6)"
		}
		return nil
	})
	if err != nil {
		return err.Error()
	}
	return why
}

func (m *Manager) pools() pools { return pools{V4: m.pool, V6: m.pool6} }

func (m *Manager) checkPoolOverlap() error {
	addrs, err := m.hostAddrs()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		for _, pool := range []netip.Prefix{m.pool, m.pool6} {
			if pool.IsValid() && a.prefix.Overlaps(pool) {
				return fmt.Errorf("address pool %s overlaps %s on %s: %w", pool, a.prefix.Masked(), a.link, ErrInvalid)
			}
		}
	}
	return nil
}

type hostAddr struct {
	link   string
	prefix netip.Prefix
}

// hostAddrs lists the addresses of the personal side's interfaces (not ours).
func (m *Manager) hostAddrs() ([]hostAddr, error) {
	links, err := m.host.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	var out []hostAddr
	for _, l := range links {
		name := l.Attrs().Name
		if strings.HasPrefix(name, hostIfPrefix) {
			continue
		}
		addrs, err := m.host.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			ip = ip.Unmap()
			if ip.Is6() && ip.IsLinkLocalUnicast() {
				continue // fe80::/10 is never reachable from work anyway
			}
			out = append(out, hostAddr{link: name, prefix: netip.PrefixFrom(ip, ones)})
		}
	}
	return out, nil
}

// facts gathers what the rules need to know of the host right now.
func (m *Manager) facts() (hostFacts, error) {
	var h hostFacts
	addrs, err := m.hostAddrs()
	if err != nil {
		return h, err
	}
	for _, a := range addrs {
		h.Local = append(h.Local, a.prefix.Addr())
		if !a.prefix.Addr().IsLoopback() {
			h.Connected = append(h.Connected, a.prefix.Masked())
		}
	}
	// Uplinks from the tables the kernel routes by, through its policy
	// rules (Android keeps no default route in the main table).
	if h.Routing, err = m.routing(); err != nil {
		return h, err
	}
	h.Uplinks = slices.Concat(h.Routing.V4.Uplinks, h.Routing.V6.Uplinks)
	h.Uplinks = sortedUnique(h.Uplinks)
	h.DNS = readResolvers(m.resolvConf)
	if allLoopback(h.DNS) && m.resolvConf == "/etc/resolv.conf" {
		// A local stub (systemd-resolved) forwards to these.
		h.DNS = append(h.DNS, readResolvers("/run/systemd/resolve/resolv.conf")...)
	}
	return h, nil
}

func allLoopback(as []netip.Addr) bool {
	for _, a := range as {
		if !a.IsLoopback() {
			return false
		}
	}
	return true
}

func readResolvers(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

func (m *Manager) nsPath(profile string) string { return filepath.Join(m.runDir, "netns", profile) }

func (m *Manager) hostConn() (*nftables.Conn, error) { return (&nftFirewall{hostNS: m.hostNS}).conn() }

func (m *Manager) refs() []profileRef {
	var out []profileRef
	for _, name := range slices.Sorted(maps.Keys(m.st.Profiles)) {
		p := m.st.Profiles[name]
		out = append(out, profileRef{Name: name, HostIf: p.HostIf, Subnet: p.Subnet, Subnet6: p.Subnet6})
	}
	return out
}

// Ensure creates or repairs the profile's network so it matches s: pinned
// namespace, veth, addresses, routes, and its rules. It is idempotent.
func (m *Manager) Ensure(ctx context.Context, profile string, s Settings) (*Info, error) {
	if err := ValidProfile(profile); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", profile, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ensure(ctx, profile, s)
}

func (m *Manager) ensure(ctx context.Context, profile string, s Settings) (*Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hostIf := HostIfName(profile)
	for name, p := range m.st.Profiles {
		if name != profile && p.HostIf == hostIf {
			return nil, fmt.Errorf("profile %s: interface name %s already used by profile %s: %w", profile, hostIf, name, ErrInvalid)
		}
	}
	// Addresses the profile lacks are allocated together and saved once.
	ps, known := m.st.Profiles[profile]
	next := profileState{HostIf: hostIf}
	if known {
		next = *ps
	} else {
		sub, err := m.st.allocate()
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		next.Subnet = sub
	}
	if m.pool6.IsValid() && !next.Subnet6.IsValid() {
		sub6, err := m.st.allocate6(m.pool6)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		next.Subnet6 = sub6
	}
	if !known || next.Subnet6 != ps.Subnet6 {
		m.st.Profiles[profile] = &next
		if err := m.st.save(m.stateFile); err != nil {
			if known {
				m.st.Profiles[profile] = ps
			} else {
				delete(m.st.Profiles, profile)
			}
			return nil, err
		}
		ps = &next
		m.log.Info("allocated profile addresses", "profile", profile, "subnet", ps.Subnet, "subnet6", ps.Subnet6)
	}
	gw, work := subnetAddrs(ps.Subnet)
	var gw6, work6 netip.Prefix
	if ps.Subnet6.IsValid() {
		gw6, work6 = subnetAddrs(ps.Subnet6)
	}

	path := m.nsPath(profile)
	ns, ok := openPinned(path)
	if ok && m.maker != nil && !m.maker.NetNSCurrent(profile, int(ns)) {
		// Made for another owner (before user namespaces, or with them
		// switched off since): made again, its links with it.
		ns.Close()
		ok = false
		if err := unpin(path); err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		m.log.Info("profile namespace has another owner: making it again", "profile", profile)
	}
	if !ok {
		var err error
		if ns, err = m.pinNew(ctx, profile, path); err != nil {
			return nil, fmt.Errorf("profile %s: %w", profile, err)
		}
		m.log.Info("pinned profile namespace", "profile", profile, "path", path)
	}
	defer ns.Close()

	// Rules before links, so the interface never exists unfiltered.
	pr, err := m.applyRules(ctx, profile, ns, s)
	if err != nil {
		return nil, err
	}
	if err := ensureLink(ctx, m.host, ns, hostIf, [2]netip.Prefix{gw, work}, [2]netip.Prefix{gw6, work6}); err != nil {
		return nil, fmt.Errorf("profile %s: %w", profile, err)
	}
	return &Info{
		NSPath: path, Addr: work, Gateway: gw, Addr6: work6, Gateway6: gw6, HostIf: hostIf,
		DNS: pr.DNS, ResolvConf: resolvConf(pr.DNS),
	}, nil
}

// pinNew makes the profile's namespace, through the NSMaker if it takes it.
func (m *Manager) pinNew(ctx context.Context, profile, path string) (vns.NsHandle, error) {
	if m.maker != nil {
		handled, err := m.maker.MakeNetNS(ctx, profile, path)
		if err != nil {
			return vns.None(), err
		}
		if handled {
			h, ok := openPinned(path)
			if !ok {
				return vns.None(), fmt.Errorf("pin namespace at %s: not a namespace after it was made", path)
			}
			return h, nil
		}
	}
	return pinNewNS(path)
}

func resolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# written by workcell\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// applyRules computes and installs the profile's rules: first inside its
// namespace, then the host batch; if the host batch fails the inner table is
// put back as it was.
func (m *Manager) applyRules(ctx context.Context, profile string, ns vns.NsHandle, s Settings) (profileRules, error) {
	ps := m.st.Profiles[profile]
	facts, err := m.facts()
	if err != nil {
		return profileRules{}, fmt.Errorf("profile %s: %w", profile, err)
	}
	ref := profileRef{Name: profile, HostIf: ps.HostIf, Subnet: ps.Subnet, Subnet6: ps.Subnet6}
	pr, err := buildProfile(ref, m.pools(), s, facts)
	if err != nil {
		return profileRules{}, fmt.Errorf("profile %s: %w", profile, err)
	}
	if s.Mode != ModeOffline {
		if _, err := m.enableForwarding(); err != nil {
			return profileRules{}, err
		}
	}
	if err := m.fw.applyInner(ctx, ns, pr); err != nil {
		return profileRules{}, fmt.Errorf("profile %s: rules in profile namespace: %w", profile, err)
	}
	prev, known := m.applied[profile]
	if !known && ps.Settings != nil {
		prev, err = buildProfile(ref, m.pools(), *ps.Settings, facts)
		known = err == nil
	}
	// A chain found empty or missing was repaired: while it was gone, work
	// may have opened what the rules forbid.
	cut := !known || !widens(prev, pr) || !m.fw.intact(ctx, profile)
	if err := m.fw.applyHost(ctx, m.pools(), m.refs(), map[string]profileRules{profile: pr}, nil); err != nil {
		if ps.Settings != nil {
			if old, berr := buildProfile(ref, m.pools(), *ps.Settings, facts); berr == nil {
				if rerr := m.fw.applyInner(ctx, ns, old); rerr != nil {
					m.log.Error("restore profile namespace rules", "profile", profile, "err", rerr)
				}
			}
		}
		return profileRules{}, fmt.Errorf("profile %s: apply %s rules: %w", profile, m.backend, err)
	}
	m.applied[profile] = pr
	if err := m.syncRules(m.refs(), facts.Routing); err != nil {
		return profileRules{}, fmt.Errorf("profile %s: %w", profile, err)
	}
	// A repair or a start with the same settings has nothing new to save.
	if ps.Settings == nil || !reflect.DeepEqual(*ps.Settings, s) {
		saved := s
		ps.Settings = &saved
		if err := m.st.save(m.stateFile); err != nil {
			return profileRules{}, err
		}
	}
	if cut {
		// After the commit, so no entry the old rules admitted survives.
		if err := m.cutConnections(ps); err != nil {
			return profileRules{}, fmt.Errorf("profile %s: rules applied, but running connections were not cut: %w", profile, err)
		}
	}
	return pr, nil
}

// cutConnections deletes the host's conntrack entries of flows work opened
// (and, for good measure, any towards it): their next packet is new to the
// firewall and meets the rules now in place, so a narrowed allow-list or a
// stricter mode cuts running connections too.
func (m *Manager) cutConnections(ps *profileState) error {
	for _, sub := range []netip.Prefix{ps.Subnet, ps.Subnet6} {
		if !sub.IsValid() {
			continue
		}
		_, w := subnetAddrs(sub)
		work := w.Addr()
		from, to := &netlink.ConntrackFilter{}, &netlink.ConntrackFilter{}
		if err := from.AddIP(netlink.ConntrackOrigSrcIP, work.AsSlice()); err != nil {
			return err
		}
		if err := to.AddIP(netlink.ConntrackOrigDstIP, work.AsSlice()); err != nil {
			return err
		}
		family := netlink.InetFamily(unix.AF_INET)
		if work.Is6() {
			family = unix.AF_INET6
		}
		n, err := m.host.ConntrackDeleteFilters(netlink.ConntrackTable, family, from, to)
		if err != nil {
			return fmt.Errorf("delete conntrack entries of %s: %w", work, err)
		}
		m.log.Info("cut running connections", "addr", work, "entries", n)
	}
	return nil
}

// enableForwarding turns on IPv4 forwarding (and IPv6 forwarding, when
// profiles get IPv6) in the host namespace and remembers what it changed,
// so the last Remove can put it back; changed says it had to.
func (m *Manager) enableForwarding() (changed bool, err error) {
	err = inNS(m.hostNS, func() error {
		on, err := sysctlOn("net/ipv4/ip_forward")
		if err != nil {
			return err
		}
		if !on {
			if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
				return err
			}
			m.log.Info("enabled IPv4 forwarding")
			if !m.st.ForwardingSet {
				m.st.ForwardingSet, m.st.ForwardingWasOff = true, true
			}
			changed = true
		}
		if m.pool6.IsValid() {
			on, err := sysctlOn("net/ipv6/conf/all/forwarding")
			if err != nil {
				return err
			}
			if !on {
				if err := m.enableForwarding6(); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			return nil
		}
		return m.st.save(m.stateFile)
	})
	return changed, err
}

// enableForwarding6 turns IPv6 forwarding on. A forwarding host ignores
// router advertisements on interfaces whose accept_ra is 1, which would
// cost the phone its own IPv6 addresses and routes at the next renewal, so
// those (and the default for interfaces yet to come) are raised to 2
// first. Runs in the host namespace.
func (m *Manager) enableForwarding6() error {
	entries, err := os.ReadDir("/proc/sys/net/ipv6/conf")
	if err != nil {
		return fmt.Errorf("list IPv6 interface settings: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "all" || name == "lo" || strings.HasPrefix(name, hostIfPrefix) {
			continue
		}
		key := "net/ipv6/conf/" + name + "/accept_ra"
		if v, err := readSysctl(key); err != nil || v != "1" {
			continue
		}
		if err := writeSysctl(key, "2"); err != nil {
			return err
		}
		m.st.AcceptRARaised = append(m.st.AcceptRARaised, name)
	}
	if err := writeSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		return err
	}
	m.st.Forwarding6Set = true
	m.log.Info("enabled IPv6 forwarding", "accept_ra_raised", m.st.AcceptRARaised)
	return nil
}

// readSysctl reads a sysctl of the calling thread's network namespace,
// key as a path under /proc/sys.
func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func sysctlOn(key string) (bool, error) {
	v, err := readSysctl(key)
	return v != "0" && err == nil, err
}

func writeSysctl(key, v string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", strings.ReplaceAll(key, "/", "."), v, err)
	}
	return nil
}

func (m *Manager) restoreForwarding() error {
	if !m.st.ForwardingWasOff && !m.st.Forwarding6Set {
		return nil
	}
	err := inNS(m.hostNS, func() error {
		var errs []error
		if m.st.ForwardingSet && m.st.ForwardingWasOff {
			errs = append(errs, writeSysctl("net/ipv4/ip_forward", "0"))
		}
		if m.st.Forwarding6Set {
			errs = append(errs, writeSysctl("net/ipv6/conf/all/forwarding", "0"))
			for _, name := range m.st.AcceptRARaised {
				key := "net/ipv6/conf/" + name + "/accept_ra"
				if _, err := os.Stat("/proc/sys/" + key); err == nil {
					errs = append(errs, writeSysctl(key, "1"))
				}
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("restore forwarding: %w", err)
	}
	m.st.ForwardingSet, m.st.ForwardingWasOff = false, false
	m.st.Forwarding6Set, m.st.AcceptRARaised = false, nil
	m.log.Info("restored forwarding settings")
	return m.st.save(m.stateFile)
}

// Apply changes a running profile's mode and allow-list live. The host side
// is one atomic nftables batch: on error the previous rules stay.
func (m *Manager) Apply(ctx context.Context, profile string, s Settings) error {
	if err := ValidProfile(profile); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("profile %s: %w", profile, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.st.Profiles[profile]; !ok {
		return fmt.Errorf("profile %s has no network: %w", profile, ErrNotFound)
	}
	ns, ok := openPinned(m.nsPath(profile))
	if !ok {
		return fmt.Errorf("profile %s: namespace %s is gone; Ensure repairs it: %w", profile, m.nsPath(profile), ErrNotFound)
	}
	defer ns.Close()
	_, err := m.applyRules(ctx, profile, ns, s)
	return err
}

// Remove deletes everything of the profile's network: namespace, links,
// rules, sets, counters and its pool entry. Removing an absent profile is
// not an error.
func (m *Manager) Remove(ctx context.Context, profile string) error {
	if err := ValidProfile(profile); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(ctx, []string{profile})
}

func (m *Manager) remove(ctx context.Context, profiles []string) error {
	var errs []error
	gone := map[string]bool{}
	for _, p := range profiles {
		gone[p] = true
	}
	var keep []profileRef
	for _, r := range m.refs() {
		if !gone[r.Name] {
			keep = append(keep, r)
		}
	}
	var err error
	if len(keep) == 0 {
		// The last profile takes everything with it.
		err = m.fw.clearHost(ctx)
	} else {
		err = m.fw.applyHost(ctx, m.pools(), keep, nil, profiles)
	}
	if err != nil {
		return fmt.Errorf("remove rules of %s: %w", strings.Join(profiles, ", "), err)
	}
	for _, p := range profiles {
		delete(m.st.Profiles, p)
		delete(m.applied, p)
	}
	// The rules of profiles still here follow the routing of now; the
	// removed ones' go whatever it is.
	rt, rerr := m.routing()
	if rerr != nil {
		errs = append(errs, rerr)
	}
	if err := m.syncRules(m.refs(), rt); err != nil {
		errs = append(errs, err)
	}
	for _, p := range profiles {
		if l, err := m.host.LinkByName(HostIfName(p)); err == nil {
			if err := m.host.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("profile %s: delete %s: %w", p, HostIfName(p), err))
			}
		}
		if err := unpin(m.nsPath(p)); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: %w", p, err))
		}
		m.log.Info("removed profile network", "profile", p)
	}
	if err := m.st.save(m.stateFile); err != nil {
		errs = append(errs, err)
	}
	if len(m.st.Profiles) == 0 {
		if err := m.restoreForwarding(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Show reports the profile's addresses, settings and counters.
func (m *Manager) Show(ctx context.Context, profile string) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ps, ok := m.st.Profiles[profile]
	if !ok {
		return Status{}, fmt.Errorf("profile %s has no network: %w", profile, ErrNotFound)
	}
	gw, work := subnetAddrs(ps.Subnet)
	st := Status{Profile: profile, Info: Info{NSPath: m.nsPath(profile), Addr: work, Gateway: gw, HostIf: ps.HostIf}}
	if ps.Subnet6.IsValid() {
		st.Info.Gateway6, st.Info.Addr6 = subnetAddrs(ps.Subnet6)
	}
	if ps.Settings != nil {
		st.Settings = *ps.Settings
		if facts, err := m.facts(); err == nil {
			st.Info.DNS = effectiveDNS(*ps.Settings, facts, ps.Subnet6.IsValid())
			st.Info.ResolvConf = resolvConf(st.Info.DNS)
		}
	}
	ctrs, err := m.counters(ctx, profile)
	st.Counters = ctrs
	return st, err
}

// Reconcile makes the host match want: every wanted profile is ensured, and
// the namespaces, links and rules of any other profile are deleted. It goes
// on past a failing profile and reports all failures.
func (m *Manager) Reconcile(ctx context.Context, want map[string]Settings) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if err := ValidProfile(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := want[name].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: %w", name, err))
			continue
		}
		if _, err := m.ensure(ctx, name, want[name]); err != nil {
			errs = append(errs, err)
		}
	}
	stale := map[string]bool{}
	for name := range m.st.Profiles {
		if _, ok := want[name]; !ok {
			stale[name] = true
		}
	}
	if entries, err := os.ReadDir(filepath.Join(m.runDir, "netns")); err == nil {
		for _, e := range entries {
			if _, ok := want[e.Name()]; !ok && ValidProfile(e.Name()) == nil {
				stale[e.Name()] = true
			}
		}
	}
	if objs, err := m.fw.profiles(ctx); err == nil {
		wantTags := map[string]bool{}
		for name := range want {
			wantTags[m.fw.tag(name)] = true
		}
		for p := range objs {
			if !wantTags[p] {
				stale[p] = true
			}
		}
	}
	if len(stale) > 0 {
		if err := m.remove(ctx, slices.Sorted(maps.Keys(stale))); err != nil {
			errs = append(errs, err)
		}
	}
	// Links of profiles we know nothing about (e.g. a lost state file).
	wantIf := map[string]bool{}
	for name := range want {
		wantIf[HostIfName(name)] = true
	}
	if links, err := m.host.LinkList(); err == nil {
		for _, l := range links {
			n := l.Attrs().Name
			if strings.HasPrefix(n, hostIfPrefix) && !wantIf[n] {
				if err := m.host.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete stray link %s: %w", n, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
