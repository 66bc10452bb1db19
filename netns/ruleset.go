package netns

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// HostIfName is the host side of a profile's veth: "wc-<profile>", or, when
// that passes the kernel's 15-byte limit, a prefix of the name and a stable
// hash of all of it.
func HostIfName(profile string) string {
	if n := hostIfPrefix + profile; len(n) <= 15 {
		return n
	}
	sum := sha256.Sum256([]byte(profile))
	return hostIfPrefix + profile[:4] + "-" + hex.EncodeToString(sum[:])[:7]
}

// tableName is the nftables table (family inet) in the host namespace and in
// every profile namespace.
const tableName = "workcell"

// Names of the shared base chains of the host table.
const (
	chainForward     = "forward"
	chainInput       = "input"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
)

// Per-profile object names use ':' which a profile name cannot hold, so no
// two profiles' names can collide.
func objName(profile, what string) string { return profile + ":" + what }

func profileOfObj(name string) (string, bool) {
	p, _, ok := strings.Cut(name, ":")
	return p, ok
}

type setKind int

const (
	setIfname        setKind = iota // ifname
	setAddr                         // ipv4_addr, interval
	setAddrProtoPort                // ipv4_addr . inet_proto . inet_service, interval
)

// setSpec is one named set and its elements.
type setSpec struct {
	Name    string
	Kind    setKind
	V6      bool     // ipv6_addr instead of ipv4_addr
	Ifnames []string // setIfname
	Elems   []Rule   // setAddr (Proto empty) and setAddrProtoPort
}

func (s setSpec) String() string {
	var el []string
	switch s.Kind {
	case setIfname:
		el = append(el, s.Ifnames...)
	case setAddr:
		for _, r := range s.Elems {
			el = append(el, r.Prefix.String())
		}
	case setAddrProtoPort:
		for _, r := range s.Elems {
			el = append(el, fmt.Sprintf("%s . %s . %d", r.Prefix, r.Proto, r.Port))
		}
	}
	return fmt.Sprintf("set %s {%s}", s.Name, strings.Join(el, ", "))
}

// ruleSpec is one nftables rule as data: the matches are ANDed in a fixed
// order, then the counter, then the verdict.
type ruleSpec struct {
	NFProtoIPv6 bool   // meta nfproto ipv6
	IP6         bool   // address matches read the IPv6 header (ip6 ...), not IPv4's
	ICMPv6Type  uint8  // icmpv6 type N (when not 0)
	IIf         string // iifname; a trailing '*' matches a prefix
	OIf         string // oifname; a trailing '*' matches a prefix, a leading '!' negates
	OIfSet      string // oifname @set
	OIfSetNeg   bool   // oifname != @set
	Saddr       netip.Prefix
	SaddrNeg    bool     // ip saddr != Saddr
	DaddrSet    string   // ip daddr @set
	DaddrPPSet  string   // ip daddr . meta l4proto . th dport @set
	CtState     []string // "established", "related"
	Counter     string   // counter name NAME
	Verdict     string   // "accept", "drop", "masquerade", "jump CHAIN" or ""
}

func (r ruleSpec) String() string {
	var p []string
	if r.NFProtoIPv6 {
		p = append(p, "meta nfproto ipv6")
	}
	ip := "ip"
	if r.IP6 {
		ip = "ip6"
	}
	if r.IIf != "" {
		p = append(p, fmt.Sprintf("iifname %q", r.IIf))
	}
	if r.OIf != "" {
		if neg, ok := strings.CutPrefix(r.OIf, "!"); ok {
			p = append(p, fmt.Sprintf("oifname != %q", neg))
		} else {
			p = append(p, fmt.Sprintf("oifname %q", r.OIf))
		}
	}
	if r.OIfSet != "" {
		op := ""
		if r.OIfSetNeg {
			op = "!= "
		}
		p = append(p, "oifname "+op+"@"+r.OIfSet)
	}
	if r.ICMPv6Type != 0 {
		p = append(p, fmt.Sprintf("icmpv6 type %d", r.ICMPv6Type))
	}
	if r.Saddr.IsValid() {
		op := ""
		if r.SaddrNeg {
			op = "!= "
		}
		p = append(p, ip+" saddr "+op+r.Saddr.String())
	}
	if r.DaddrSet != "" {
		p = append(p, ip+" daddr @"+r.DaddrSet)
	}
	if r.DaddrPPSet != "" {
		p = append(p, ip+" daddr . meta l4proto . th dport @"+r.DaddrPPSet)
	}
	if len(r.CtState) > 0 {
		p = append(p, "ct state "+strings.Join(r.CtState, ","))
	}
	if r.Counter != "" {
		p = append(p, "counter name "+r.Counter)
	}
	if r.Verdict != "" {
		p = append(p, r.Verdict)
	}
	return strings.Join(p, " ")
}

// profileRef is what the base chains need to know of a profile.
type profileRef struct {
	Name    string
	HostIf  string
	Subnet  netip.Prefix
	Subnet6 netip.Prefix // zero without IPv6
}

// pools are the address pools of all profiles; V6 is zero without IPv6.
type pools struct{ V4, V6 netip.Prefix }

// hostFacts are what the rules need to know of the host, gathered at apply
// time.
type hostFacts struct {
	Uplinks   []string       // interfaces of the default routes the kernel routes by
	Connected []netip.Prefix // the personal side's directly connected networks
	Local     []netip.Addr   // the host's own addresses
	DNS       []netip.Addr   // upstream resolvers from the host's resolv.conf
	Routing   routing        // where the uplinks were found (policy routing)
}

// profileRules is the wanted state of one profile: its objects in the host
// table and the table inside its own namespace.
type profileRules struct {
	Mode    Mode
	Sets    []setSpec
	Out, In []ruleSpec // host chains <p>:out (from work) and <p>:in (to work)
	// Inside the profile's namespace.
	InnerSets         []setSpec
	InnerOut, InnerIn []ruleSpec
	Counters          []string
	DNS               []netip.Addr
	// facts are the host's facts these rules were built on (Refresh
	// rebuilds them when the host's change).
	facts hostFacts
}

// notPublic are the destinations "all public destinations" leaves out.
var notPublic = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"224.0.0.0/4", "240.0.0.0/4",
)

// neverReachable are denied in every mode, whatever the allow-list says.
var neverReachable = mustPrefixes("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")

// notPublic6 and neverReachable6 are their IPv6 counterparts: unique
// local and site-local, discard-only and the local-use NAT64 prefix are not
// public; unspecified, loopback, IPv4-mapped, link-local and multicast are
// never reachable. (Documentation ranges, like their IPv4 twins, are left
// alone: the tests use them as "the internet".)
var (
	notPublic6      = mustPrefixes("fc00::/7", "fec0::/10", "100::/64", "64:ff9b:1::/48")
	neverReachable6 = mustPrefixes("::/128", "::1/128", "::ffff:0:0/96", "fe80::/10", "ff00::/8")
)

// ICMPv6 neighbour discovery: work and the host resolve each other's link
// addresses over the veth with these (IPv4's ARP is not IP, nftables' inet
// family never sees it).
const (
	icmpv6NeighborSolicit = 135
	icmpv6NeighborAdvert  = 136
)

// ndAccept accepts neighbour discovery on the interfaces that match ifname
// (iif when in, else oif).
func ndAccept(ifname string, in bool) []ruleSpec {
	var out []ruleSpec
	for _, t := range []uint8{icmpv6NeighborSolicit, icmpv6NeighborAdvert} {
		r := ruleSpec{ICMPv6Type: t, Verdict: "accept"}
		if in {
			r.IIf = ifname
		} else {
			r.OIf = ifname
		}
		out = append(out, r)
	}
	return out
}

// byFamily splits rules into IPv4 and IPv6 destinations.
func byFamily(rules []Rule) (v4, v6 []Rule) {
	for _, r := range rules {
		if r.Prefix.Addr().Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return v4, v6
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// effectiveDNS picks the profile's resolvers: its own, or else the host's
// upstream ones that work may reach (never loopback, never the host itself).
// IPv6 resolvers count only when the profile has IPv6.
func effectiveDNS(s Settings, h hostFacts, v6 bool) []netip.Addr {
	usable := func(a netip.Addr) bool { return a.Is4() || v6 }
	if len(s.DNS) > 0 {
		return slices.Clone(s.DNS) // buildProfile refuses IPv6 ones without IPv6
	}
	var out []netip.Addr
	for _, a := range h.DNS {
		if usable(a) && routableUnicast(a) && !slices.Contains(h.Local, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// buildProfile is the pure heart of the package: from a profile, its
// settings and the host's facts to the exact rules that must be in place.
func buildProfile(p profileRef, pl pools, s Settings, h hostFacts) (profileRules, error) {
	if err := s.Validate(); err != nil {
		return profileRules{}, err
	}
	v6 := p.Subnet6.IsValid()
	if !v6 {
		for i, a := range s.DNS {
			if a.Is6() {
				return profileRules{}, fmt.Errorf("dns[%d] %s: this profile has no IPv6 (IPv6 is off on the host or in the daemon): %w", i, a, ErrInvalid)
			}
		}
		for i, ep := range s.VPNEndpoints {
			if ep.Addr().Is6() {
				return profileRules{}, fmt.Errorf("vpn_endpoints[%d] %s: this profile has no IPv6 (IPv6 is off on the host or in the daemon): %w", i, ep, ErrInvalid)
			}
		}
	}
	dns := effectiveDNS(s, h, v6)
	for _, a := range dns {
		if slices.Contains(h.Local, a) {
			return profileRules{}, fmt.Errorf("dns %s is an address of the host, which work may never reach: %w", a, ErrInvalid)
		}
	}
	n := func(what string) string { return objName(p.Name, what) }
	r := profileRules{Mode: s.Mode, DNS: dns, facts: h}
	r.Counters = []string{n("in"), n("out")}

	uplinks := s.Uplinks
	if len(uplinks) == 0 {
		uplinks = h.Uplinks
	}
	uplinks = sortedUnique(uplinks)

	deny := slices.Concat(neverReachable, neverReachable6, []netip.Prefix{pl.V4.Masked()})
	if pl.V6.IsValid() {
		deny = append(deny, pl.V6.Masked())
	}
	for _, c := range h.Connected {
		if c.Addr().Zone() == "" && !c.Addr().Is4In6() {
			deny = append(deny, c.Masked())
		}
	}
	var allow, allowPP []Rule
	if s.Mode == ModeDirect && len(s.Allow) == 0 {
		deny = slices.Concat(deny, notPublic, notPublic6)
	}
	for _, a := range s.Allow {
		if a.Proto == "" {
			allow = append(allow, a)
		} else {
			allowPP = append(allowPP, a)
		}
	}
	var dnsPP []Rule
	for _, a := range dns {
		for _, proto := range []string{"tcp", "udp"} {
			dnsPP = append(dnsPP, Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), Proto: proto, Port: 53})
		}
	}
	var vpn, vpnPP []Rule
	for _, ep := range s.VPNEndpoints {
		pfx := netip.PrefixFrom(ep.Addr(), ep.Addr().BitLen())
		if ep.Port() == 0 {
			vpn = append(vpn, Rule{Prefix: pfx})
			continue
		}
		for _, proto := range []string{"tcp", "udp"} {
			vpnPP = append(vpnPP, Rule{Prefix: pfx, Proto: proto, Port: ep.Port()})
		}
	}
	if s.Mode != ModeVPNLockdown {
		vpn, vpnPP = nil, nil
	}
	if s.Mode != ModeDirect {
		allow, allowPP, dnsPP = nil, nil, nil
	}
	// Each list is a pair of sets, one per family: a set has one key type.
	pair := func(what string, kind setKind, elems []Rule) []setSpec {
		v4, v6 := byFamily(elems)
		return []setSpec{
			{Name: n(what), Kind: kind, Elems: normalize(v4)},
			{Name: n(what + "6"), Kind: kind, V6: true, Elems: normalize(v6)},
		}
	}
	r.Sets = slices.Concat(
		[]setSpec{{Name: n("up"), Kind: setIfname, Ifnames: uplinks}},
		pair("deny", setAddr, prefixRules(deny)),
		pair("dns", setAddrProtoPort, dnsPP),
		pair("allow", setAddr, allow),
		pair("allowpp", setAddrProtoPort, allowPP),
		pair("vpn", setAddr, vpn),
		pair("vpnpp", setAddrProtoPort, vpnPP),
	)
	// both matches a set pair: the IPv4 rule, then the IPv6 one.
	both := func(r ruleSpec) []ruleSpec {
		r6 := r
		r6.IP6 = true
		if r.DaddrSet != "" {
			r6.DaddrSet += "6"
		}
		if r.DaddrPPSet != "" {
			r6.DaddrPPSet += "6"
		}
		return []ruleSpec{r, r6}
	}

	// From work. Only a connection's first packet meets the sets: the
	// packets of established flows pass at the top, so the cost per packet
	// does not grow with the allow-list. Such a flow was judged by these
	// rules when it began, and Apply deletes the profile's conntrack entries
	// whenever the rules narrow (see widens), so running connections are
	// judged again. Work can own no established flow the rules did not let
	// it open: nothing may open into work (the "in" chain and the host's
	// output chain drop all but replies), and a packet claiming another
	// source (another profile's flow) is dropped before the early accept.
	_, workAddr := subnetAddrs(p.Subnet)
	r.Out = []ruleSpec{{Counter: n("out")}}
	r.In = []ruleSpec{{Counter: n("in")}}
	switch s.Mode {
	case ModeOffline:
		r.Out = append(r.Out, ruleSpec{Verdict: "drop"})
		r.In = append(r.In, ruleSpec{Verdict: "drop"})
	case ModeDirect, ModeVPNLockdown:
		if v6 {
			_, work6 := subnetAddrs(p.Subnet6)
			r.Out = append(r.Out, ruleSpec{IP6: true, Saddr: netip.PrefixFrom(work6.Addr(), 128), SaddrNeg: true, Verdict: "drop"})
		} else {
			r.Out = append(r.Out, ruleSpec{NFProtoIPv6: true, Verdict: "drop"})
		}
		r.Out = append(r.Out,
			ruleSpec{Saddr: netip.PrefixFrom(workAddr.Addr(), 32), SaddrNeg: true, Verdict: "drop"},
			ruleSpec{CtState: []string{"established", "related"}, Verdict: "accept"},
			ruleSpec{OIfSet: n("up"), OIfSetNeg: true, Verdict: "drop"},
		)
		if s.Mode == ModeDirect {
			// Resolvers may sit in the home LAN (the router): port 53 to them only.
			r.Out = append(r.Out, both(ruleSpec{DaddrPPSet: n("dns"), Verdict: "accept"})...)
		}
		r.Out = append(r.Out, both(ruleSpec{DaddrSet: n("deny"), Verdict: "drop"})...)
		switch {
		case s.Mode == ModeVPNLockdown:
			r.Out = slices.Concat(r.Out,
				both(ruleSpec{DaddrSet: n("vpn"), Verdict: "accept"}),
				both(ruleSpec{DaddrPPSet: n("vpnpp"), Verdict: "accept"}),
				[]ruleSpec{{Verdict: "drop"}})
		case len(s.Allow) == 0:
			r.Out = append(r.Out, ruleSpec{Verdict: "accept"})
		default:
			r.Out = slices.Concat(r.Out,
				both(ruleSpec{DaddrSet: n("allow"), Verdict: "accept"}),
				both(ruleSpec{DaddrPPSet: n("allowpp"), Verdict: "accept"}),
				[]ruleSpec{{Verdict: "drop"}})
		}
		r.In = append(r.In,
			ruleSpec{CtState: []string{"established", "related"}, Verdict: "accept"},
			ruleSpec{Verdict: "drop"})
	}

	// Inside the profile: the kill switch. With the tunnel down, traffic falls
	// back to eth0 and dies here (DNS included); the host-side rules above
	// hold even if a process in the profile removes this table.
	vpn4, vpn6 := byFamily(vpn)
	vpnPP4, vpnPP6 := byFamily(vpnPP)
	r.InnerSets = []setSpec{
		{Name: "vpn", Kind: setAddr, Elems: normalize(vpn4)},
		{Name: "vpnpp", Kind: setAddrProtoPort, Elems: normalize(vpnPP4)},
		{Name: "vpn6", Kind: setAddr, V6: true, Elems: normalize(vpn6)},
		{Name: "vpnpp6", Kind: setAddrProtoPort, V6: true, Elems: normalize(vpnPP6)},
	}
	switch s.Mode {
	case ModeOffline:
		r.InnerOut = []ruleSpec{{OIf: "eth0", Verdict: "drop"}}
		r.InnerIn = []ruleSpec{{IIf: "eth0", Verdict: "drop"}}
	case ModeVPNLockdown:
		// Neighbour discovery first: an IPv6 endpoint is reached through
		// the gateway, whose link address work must be able to learn.
		r.InnerOut = slices.Concat(ndAccept("eth0", false),
			both(ruleSpec{OIf: "eth0", DaddrSet: "vpn", Verdict: "accept"}),
			both(ruleSpec{OIf: "eth0", DaddrPPSet: "vpnpp", Verdict: "accept"}),
			[]ruleSpec{{OIf: "eth0", Verdict: "drop"}})
		r.InnerIn = slices.Concat(ndAccept("eth0", true), []ruleSpec{
			{IIf: "eth0", CtState: []string{"established", "related"}, Verdict: "accept"},
			{IIf: "eth0", Verdict: "drop"},
		})
	}
	return r, nil
}

// widens reports whether next lets through everything prev did, so that
// the connections prev admitted may keep running under next: the same
// chains, no more denied, no less accepted. Anything else (a narrower
// allow-list, another mode, an uplink fewer) returns false, and the caller
// deletes the profile's conntrack entries so that its running connections
// are judged again by next. It errs on the side of false.
func widens(prev, next profileRules) bool {
	if prev.Mode == ModeOffline {
		return true // nothing ran
	}
	same := func(a, b []ruleSpec) bool { return slices.Equal(ruleStrings(a), ruleStrings(b)) }
	if !same(prev.Out, next.Out) || !same(prev.In, next.In) || !same(prev.InnerOut, next.InnerOut) || !same(prev.InnerIn, next.InnerIn) {
		return false
	}
	covers := func(outer, inner []setSpec) bool {
		byName := map[string]setSpec{}
		for _, s := range outer {
			byName[s.Name] = s
		}
		for _, s := range inner {
			o, ok := byName[s.Name]
			if !ok || o.Kind != s.Kind {
				return false
			}
			for _, n := range s.Ifnames {
				if !slices.Contains(o.Ifnames, n) {
					return false
				}
			}
			if !rulesCover(o.Elems, s.Elems) {
				return false
			}
		}
		return true
	}
	var prevDeny, nextDeny, prevRest, nextRest []setSpec
	for _, s := range prev.Sets {
		if isDenySet(s.Name) {
			prevDeny = append(prevDeny, s)
		} else {
			prevRest = append(prevRest, s)
		}
	}
	for _, s := range next.Sets {
		if isDenySet(s.Name) {
			nextDeny = append(nextDeny, s)
		} else {
			nextRest = append(nextRest, s)
		}
	}
	return covers(prevDeny, nextDeny) && covers(nextRest, prevRest) && covers(next.InnerSets, prev.InnerSets)
}

func isDenySet(name string) bool {
	return strings.HasSuffix(name, ":deny") || strings.HasSuffix(name, ":deny6")
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// ruleKey groups rules that may merge: same family, protocol and port.
type ruleKey struct {
	v6    bool
	proto string
	port  uint16
}

func keyOf(r Rule) ruleKey { return ruleKey{r.Prefix.Addr().Is6(), r.Proto, r.Port} }

func rangeOf(p netip.Prefix) addrRange { return addrRange{p.Masked().Addr(), lastAddr(p)} }

// mergedRanges sorts and merges overlapping and adjacent ranges per key.
func mergedRanges(rules []Rule) map[ruleKey][]addrRange {
	groups := map[ruleKey][]addrRange{}
	for _, r := range rules {
		groups[keyOf(r)] = append(groups[keyOf(r)], rangeOf(r.Prefix))
	}
	for k, rs := range groups {
		slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
		merged := rs[:1]
		for _, r := range rs[1:] {
			last := &merged[len(merged)-1]
			if next := last.hi.Next(); !next.IsValid() || r.lo.Compare(next) <= 0 {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
			merged = append(merged, r)
		}
		groups[k] = merged
	}
	return groups
}

// rulesCover reports whether every range of inner lies within one merged
// range of outer with the same family, protocol and port.
func rulesCover(outer, inner []Rule) bool {
	spans := mergedRanges(outer)
	for _, r := range inner {
		in := rangeOf(r.Prefix)
		if !slices.ContainsFunc(spans[keyOf(r)], func(s addrRange) bool {
			return s.lo.Compare(in.lo) <= 0 && in.hi.Compare(s.hi) <= 0
		}) {
			return false
		}
	}
	return true
}

func ruleStrings(rs []ruleSpec) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// baseRules are the shared hooks of the host table, rebuilt whole from the
// list of profiles each time so no stale jump survives.
func baseRules(profiles []profileRef, pl pools) map[string][]ruleSpec {
	ps := slices.Clone(profiles)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	var fwd []ruleSpec
	for _, p := range ps {
		fwd = append(fwd,
			ruleSpec{IIf: p.HostIf, Verdict: "jump " + objName(p.Name, "out")},
			ruleSpec{OIf: p.HostIf, Verdict: "jump " + objName(p.Name, "in")})
	}
	// Fail closed: a profile whose chain lost its rules, or an interface of a
	// profile we no longer know, gets nothing through.
	fwd = append(fwd,
		ruleSpec{IIf: hostIfPrefix + "*", Verdict: "drop"},
		ruleSpec{OIf: hostIfPrefix + "*", Verdict: "drop"})
	// The filter chains decide where work may go; whatever leaves the host
	// from the pools leaves with the uplink's address.
	nat := []ruleSpec{{Saddr: pl.V4.Masked(), OIf: "!" + hostIfPrefix + "*", Verdict: "masquerade"}}
	if pl.V6.IsValid() {
		nat = append(nat, ruleSpec{IP6: true, Saddr: pl.V6.Masked(), OIf: "!" + hostIfPrefix + "*", Verdict: "masquerade"})
	}
	return map[string][]ruleSpec{
		chainForward: fwd,
		// Work to any host address (0.0.0.0 services, the veth's own address,
		// the uplink's) is local delivery: the input hook, not forward. Only
		// neighbour discovery, which the kernel answers itself, gets in.
		chainInput: append(ndAccept(hostIfPrefix+"*", true), ruleSpec{IIf: hostIfPrefix + "*", Verdict: "drop"}),
		// The host opens nothing into work; ICMP errors about work's own
		// forwarded traffic (related) still reach it, and so does the host's
		// neighbour discovery.
		chainOutput: append(ndAccept(hostIfPrefix+"*", false),
			ruleSpec{OIf: hostIfPrefix + "*", CtState: []string{"established", "related"}, Verdict: "accept"},
			ruleSpec{OIf: hostIfPrefix + "*", Verdict: "drop"},
		),
		chainPostrouting: nat,
	}
}

func prefixRules(ps []netip.Prefix) []Rule {
	out := make([]Rule, len(ps))
	for i, p := range ps {
		out[i] = Rule{Prefix: p}
	}
	return out
}

func sortedUnique(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// normalize merges overlapping and adjacent ranges per (family, proto,
// port), since the kernel refuses overlapping interval elements, and sorts
// the result (IPv4 first). The returned Rules may hold ranges that are not
// one prefix: they are kept as prefix lists covering the merged ranges.
func normalize(rules []Rule) []Rule {
	groups := mergedRanges(rules)
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b ruleKey) int {
		if a.v6 != b.v6 {
			if a.v6 {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		return int(a.port) - int(b.port)
	})
	var out []Rule
	for _, k := range keys {
		for _, m := range groups[k] {
			for _, p := range rangePrefixes(m.lo, m.hi) {
				out = append(out, Rule{Prefix: p, Proto: k.proto, Port: k.port})
			}
		}
	}
	return out
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func v4Range(p netip.Prefix) (lo, hi uint32) {
	a, z := p.Masked().Addr().As4(), lastAddr(p).As4()
	return binary.BigEndian.Uint32(a[:]), binary.BigEndian.Uint32(z[:])
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// rangePrefixes splits [lo, hi] (one family) into the fewest prefixes.
func rangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := lo.BitLen()
		for bits > 0 {
			wider := netip.PrefixFrom(lo, bits-1)
			if wider.Masked().Addr() != lo || lastAddr(wider).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		end := lastAddr(p)
		if end.Compare(hi) >= 0 {
			return out
		}
		lo = end.Next()
	}
}
