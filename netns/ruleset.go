package netns

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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
	if r.Saddr.IsValid() {
		op := ""
		if r.SaddrNeg {
			op = "!= "
		}
		p = append(p, "ip saddr "+op+r.Saddr.String())
	}
	if r.DaddrSet != "" {
		p = append(p, "ip daddr @"+r.DaddrSet)
	}
	if r.DaddrPPSet != "" {
		p = append(p, "ip daddr . meta l4proto . th dport @"+r.DaddrPPSet)
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
	Name   string
	HostIf string
	Subnet netip.Prefix
}

// hostFacts are what the rules need to know of the host, gathered at apply
// time.
type hostFacts struct {
	Uplinks   []string       // interfaces of the default routes (or as configured)
	Connected []netip.Prefix // the personal side's directly connected networks
	Local     []netip.Addr   // the host's own addresses
	DNS       []netip.Addr   // upstream resolvers from the host's resolv.conf
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
}

// notPublic are the destinations "all public destinations" leaves out.
var notPublic = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"224.0.0.0/4", "240.0.0.0/4",
)

// neverReachable are denied in every mode, whatever the allow-list says.
var neverReachable = mustPrefixes("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// effectiveDNS picks the profile's resolvers: its own, or else the host's
// upstream ones that work may reach (never loopback, never the host itself).
func effectiveDNS(s Settings, h hostFacts) []netip.Addr {
	if len(s.DNS) > 0 {
		return slices.Clone(s.DNS)
	}
	var out []netip.Addr
	for _, a := range h.DNS {
		if a.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !slices.Contains(h.Local, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// buildProfile is the pure heart of the package: from a profile, its
// settings and the host's facts to the exact rules that must be in place.
func buildProfile(p profileRef, pool netip.Prefix, s Settings, h hostFacts) (profileRules, error) {
	if err := s.Validate(); err != nil {
		return profileRules{}, err
	}
	dns := effectiveDNS(s, h)
	for _, a := range dns {
		if slices.Contains(h.Local, a) {
			return profileRules{}, fmt.Errorf("dns %s is an address of the host, which work may never reach: %w", a, ErrInvalid)
		}
	}
	n := func(what string) string { return objName(p.Name, what) }
	r := profileRules{Mode: s.Mode, DNS: dns}
	r.Counters = []string{n("in"), n("out")}

	uplinks := s.Uplinks
	if len(uplinks) == 0 {
		uplinks = h.Uplinks
	}
	uplinks = sortedUnique(uplinks)

	deny := append(slices.Clone(neverReachable), pool.Masked())
	for _, c := range h.Connected {
		if c.Addr().Is4() {
			deny = append(deny, c.Masked())
		}
	}
	var allow, allowPP []Rule
	if s.Mode == ModeDirect && len(s.Allow) == 0 {
		deny = append(deny, notPublic...)
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
			dnsPP = append(dnsPP, Rule{Prefix: netip.PrefixFrom(a, 32), Proto: proto, Port: 53})
		}
	}
	var vpn, vpnPP []Rule
	for _, ep := range s.VPNEndpoints {
		pfx := netip.PrefixFrom(ep.Addr(), 32)
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
	r.Sets = []setSpec{
		{Name: n("up"), Kind: setIfname, Ifnames: uplinks},
		{Name: n("deny"), Kind: setAddr, Elems: normalize(prefixRules(deny))},
		{Name: n("dns"), Kind: setAddrProtoPort, Elems: normalize(dnsPP)},
		{Name: n("allow"), Kind: setAddr, Elems: normalize(allow)},
		{Name: n("allowpp"), Kind: setAddrProtoPort, Elems: normalize(allowPP)},
		{Name: n("vpn"), Kind: setAddr, Elems: normalize(vpn)},
		{Name: n("vpnpp"), Kind: setAddrProtoPort, Elems: normalize(vpnPP)},
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
		r.Out = append(r.Out,
			ruleSpec{NFProtoIPv6: true, Verdict: "drop"},
			ruleSpec{Saddr: netip.PrefixFrom(workAddr.Addr(), 32), SaddrNeg: true, Verdict: "drop"},
			ruleSpec{CtState: []string{"established", "related"}, Verdict: "accept"},
			ruleSpec{OIfSet: n("up"), OIfSetNeg: true, Verdict: "drop"},
		)
		if s.Mode == ModeDirect {
			// Resolvers may sit in the home LAN (the router): port 53 to them only.
			r.Out = append(r.Out, ruleSpec{DaddrPPSet: n("dns"), Verdict: "accept"})
		}
		r.Out = append(r.Out, ruleSpec{DaddrSet: n("deny"), Verdict: "drop"})
		switch {
		case s.Mode == ModeVPNLockdown:
			r.Out = append(r.Out,
				ruleSpec{DaddrSet: n("vpn"), Verdict: "accept"},
				ruleSpec{DaddrPPSet: n("vpnpp"), Verdict: "accept"},
				ruleSpec{Verdict: "drop"})
		case len(s.Allow) == 0:
			r.Out = append(r.Out, ruleSpec{Verdict: "accept"})
		default:
			r.Out = append(r.Out,
				ruleSpec{DaddrSet: n("allow"), Verdict: "accept"},
				ruleSpec{DaddrPPSet: n("allowpp"), Verdict: "accept"},
				ruleSpec{Verdict: "drop"})
		}
		r.In = append(r.In,
			ruleSpec{CtState: []string{"established", "related"}, Verdict: "accept"},
			ruleSpec{Verdict: "drop"})
	}

	// Inside the profile: the kill switch. With the tunnel down, traffic falls
	// back to eth0 and dies here (DNS included); the host-side rules above
	// hold even if a process in the profile removes this table.
	r.InnerSets = []setSpec{
		{Name: "vpn", Kind: setAddr, Elems: normalize(vpn)},
		{Name: "vpnpp", Kind: setAddrProtoPort, Elems: normalize(vpnPP)},
	}
	switch s.Mode {
	case ModeOffline:
		r.InnerOut = []ruleSpec{{OIf: "eth0", Verdict: "drop"}}
		r.InnerIn = []ruleSpec{{IIf: "eth0", Verdict: "drop"}}
	case ModeVPNLockdown:
		r.InnerOut = []ruleSpec{
			{OIf: "eth0", DaddrSet: "vpn", Verdict: "accept"},
			{OIf: "eth0", DaddrPPSet: "vpnpp", Verdict: "accept"},
			{OIf: "eth0", Verdict: "drop"},
		}
		r.InnerIn = []ruleSpec{
			{IIf: "eth0", CtState: []string{"established", "related"}, Verdict: "accept"},
			{IIf: "eth0", Verdict: "drop"},
		}
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
		if strings.HasSuffix(s.Name, ":deny") {
			prevDeny = append(prevDeny, s)
		} else {
			prevRest = append(prevRest, s)
		}
	}
	for _, s := range next.Sets {
		if strings.HasSuffix(s.Name, ":deny") {
			nextDeny = append(nextDeny, s)
		} else {
			nextRest = append(nextRest, s)
		}
	}
	return covers(prevDeny, nextDeny) && covers(nextRest, prevRest) && covers(next.InnerSets, prev.InnerSets)
}

// rulesCover reports whether every range of inner lies within one merged
// range of outer with the same protocol and port.
func rulesCover(outer, inner []Rule) bool {
	merged := normalize(outer) // sorted, merged per (proto, port)
	type span struct{ lo, hi uint32 }
	type key struct {
		proto string
		port  uint16
	}
	spans := map[key][]span{}
	for _, r := range merged {
		lo, hi := v4Range(r.Prefix)
		k := key{r.Proto, r.Port}
		if l := spans[k]; len(l) > 0 && l[len(l)-1].hi != ^uint32(0) && l[len(l)-1].hi+1 == lo {
			l[len(l)-1].hi = hi // normalize splits one range into prefixes
			continue
		}
		spans[k] = append(spans[k], span{lo, hi})
	}
	for _, r := range inner {
		lo, hi := v4Range(r.Prefix)
		if !slices.ContainsFunc(spans[key{r.Proto, r.Port}], func(s span) bool { return s.lo <= lo && hi <= s.hi }) {
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
func baseRules(profiles []profileRef, pool netip.Prefix) map[string][]ruleSpec {
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
	return map[string][]ruleSpec{
		chainForward: fwd,
		// Work to any host address (0.0.0.0 services, the veth's own address,
		// the uplink's) is local delivery: the input hook, not forward.
		chainInput: {{IIf: hostIfPrefix + "*", Verdict: "drop"}},
		// The host opens nothing into work; ICMP errors about work's own
		// forwarded traffic (related) still reach it.
		chainOutput: {
			{OIf: hostIfPrefix + "*", CtState: []string{"established", "related"}, Verdict: "accept"},
			{OIf: hostIfPrefix + "*", Verdict: "drop"},
		},
		// The filter chains decide where work may go; whatever leaves the host
		// from the pool leaves with the uplink's address.
		chainPostrouting: {{Saddr: pool.Masked(), OIf: "!" + hostIfPrefix + "*", Verdict: "masquerade"}},
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

// normalize merges overlapping and adjacent IPv4 ranges per (proto, port),
// since the kernel refuses overlapping interval elements, and sorts the
// result. The returned Rules may hold ranges that are not one prefix: they
// are kept as prefix lists covering the merged ranges.
func normalize(rules []Rule) []Rule {
	type key struct {
		proto string
		port  uint16
	}
	groups := map[key][][2]uint32{}
	for _, r := range rules {
		lo, hi := v4Range(r.Prefix)
		k := key{r.Proto, r.Port}
		groups[k] = append(groups[k], [2]uint32{lo, hi})
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].proto != keys[j].proto {
			return keys[i].proto < keys[j].proto
		}
		return keys[i].port < keys[j].port
	})
	var out []Rule
	for _, k := range keys {
		rs := groups[k]
		sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
		merged := [][2]uint32{rs[0]}
		for _, r := range rs[1:] {
			last := &merged[len(merged)-1]
			if last[1] == ^uint32(0) || r[0] <= last[1]+1 {
				last[1] = max(last[1], r[1])
				continue
			}
			merged = append(merged, r)
		}
		for _, m := range merged {
			for _, p := range rangePrefixes(m[0], m[1]) {
				out = append(out, Rule{Prefix: p, Proto: k.proto, Port: k.port})
			}
		}
	}
	return out
}

func v4Range(p netip.Prefix) (lo, hi uint32) {
	a := p.Masked().Addr().As4()
	lo = binary.BigEndian.Uint32(a[:])
	hi = lo | (^uint32(0) >> p.Bits())
	if p.Bits() == 0 {
		hi = ^uint32(0)
	}
	return lo, hi
}

func u32Addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// rangePrefixes splits [lo, hi] into the fewest prefixes.
func rangePrefixes(lo, hi uint32) []netip.Prefix {
	var out []netip.Prefix
	for {
		bits := 32
		for bits > 0 {
			size := uint64(1) << (32 - (bits - 1))
			if uint64(lo)%size != 0 || uint64(lo)+size-1 > uint64(hi) {
				break
			}
			bits--
		}
		out = append(out, netip.PrefixFrom(u32Addr(lo), bits))
		end := uint64(lo) + (uint64(1) << (32 - bits)) - 1
		if end >= uint64(hi) {
			return out
		}
		lo = uint32(end + 1)
	}
}
