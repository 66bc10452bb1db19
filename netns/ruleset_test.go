package netns

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var (
	testPool  = netip.MustParsePrefix("10.231.0.0/16")
	testPools = pools{V4: testPool, V6: netip.MustParsePrefix("fd77:6f72:6b00::/48")}
	// testRef has no IPv6; testRef6 has.
	testRef  = profileRef{Name: "p", HostIf: "wc-p", Subnet: netip.MustParsePrefix("10.231.0.4/30")}
	testRef6 = profileRef{Name: "p", HostIf: "wc-p", Subnet: netip.MustParsePrefix("10.231.0.4/30"), Subnet6: netip.MustParsePrefix("fd77:6f72:6b00:1::/64")}
	testHost = hostFacts{
		Uplinks:   []string{"wlan0"},
		Connected: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("::1/128")},
		Local:     []netip.Addr{netip.MustParseAddr("192.168.1.20"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("2001:db8:1::20"), netip.MustParseAddr("::1")},
		DNS:       []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fe80::1%wlan0"), netip.MustParseAddr("2001:db8:1::1")},
	}
)

func setStrings(ss []setSpec) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.String())
	}
	return out
}

// The exact rules each mode must produce.
func TestBuildProfileRules(t *testing.T) {
	tests := profileCases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := testRef
			if tt.ref != nil {
				ref = *tt.ref
			}
			got, err := buildProfile(ref, testPools, tt.s, testHost)
			if err != nil {
				t.Fatal(err)
			}
			inner := map[string]bool{}
			for _, st := range got.InnerSets {
				inner[st.Name] = true
			}
			for _, r := range slices.Concat(got.InnerOut, got.InnerIn) {
				if r.DaddrSet != "" && !inner[r.DaddrSet] || r.DaddrPPSet != "" && !inner[r.DaddrPPSet] {
					t.Errorf("inner rule %q names a set the inner table does not have", r)
				}
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"out", ruleStrings(got.Out), tt.out},
				{"in", ruleStrings(got.In), tt.in},
				{"sets", setStrings(got.Sets), tt.sets},
				{"inner out", ruleStrings(got.InnerOut), tt.innerOut},
				{"inner in", ruleStrings(got.InnerIn), tt.innerIn},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s:\n got %q\nwant %q", c.what, c.got, c.want)
				}
			}
			var dns []string
			for _, a := range got.DNS {
				dns = append(dns, a.String())
			}
			if !reflect.DeepEqual(dns, tt.dns) {
				t.Errorf("dns %v, want %v (never loopback)", dns, tt.dns)
			}
		})
	}
}

// profileCase is one settings-to-rules case of TestBuildProfileRules;
// the kernel tests load every case through both backends.
type profileCase struct {
	name                       string
	ref                        *profileRef // default testRef (no IPv6)
	s                          Settings
	out, in, innerOut, innerIn []string
	sets                       []string
	dns                        []string
}

func profileCases() []profileCase {
	denyBase := "set p:deny {0.0.0.0/8, 10.231.0.0/16, 127.0.0.0/8, 169.254.0.0/16, 192.168.1.0/24, 224.0.0.0/3}"
	// IPv6: never reachable, the pool, the host's connected network.
	deny6Base := "set p:deny6 {::/127, ::ffff:0.0.0.0/96, 2001:db8:1::/64, fd77:6f72:6b00::/48, fe80::/10, ff00::/8}"
	ndOut := []string{`oifname "eth0" icmpv6 type 135 accept`, `oifname "eth0" icmpv6 type 136 accept`}
	ndIn := []string{`iifname "eth0" icmpv6 type 135 accept`, `iifname "eth0" icmpv6 type 136 accept`}
	return []profileCase{
		{
			name: "direct, empty allow-list: all public destinations",
			s:    Settings{Mode: ModeDirect},
			out: []string{
				"counter name p:out",
				"meta nfproto ipv6 drop",
				"ip saddr != 10.231.0.6/32 drop",
				"ct state established,related accept",
				"oifname != @p:up drop",
				"ip daddr . meta l4proto . th dport @p:dns accept",
				"ip6 daddr . meta l4proto . th dport @p:dns6 accept",
				"ip daddr @p:deny drop",
				"ip6 daddr @p:deny6 drop",
				"accept",
			},
			in: []string{"counter name p:in", "ct state established,related accept", "drop"},
			sets: []string{
				"set p:up {wlan0}",
				"set p:deny {0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, 198.18.0.0/15, 224.0.0.0/3}",
				// Not public: ULA (which holds the pool), site-local (merged with link-local), discard, local NAT64.
				"set p:deny6 {::/127, ::ffff:0.0.0.0/96, 64:ff9b:1::/48, 100::/64, 2001:db8:1::/64, fc00::/7, fe80::/9, ff00::/8}",
				"set p:dns {192.168.1.1/32 . tcp . 53, 192.168.1.1/32 . udp . 53}", "set p:dns6 {}",
				"set p:allow {}", "set p:allow6 {}", "set p:allowpp {}", "set p:allowpp6 {}",
				"set p:vpn {}", "set p:vpn6 {}", "set p:vpnpp {}", "set p:vpnpp6 {}",
			},
			innerOut: []string{}, innerIn: []string{},
			dns: []string{"192.168.1.1"},
		},
		{
			name: "direct with allow-list and own resolver",
			s: Settings{Mode: ModeDirect, Uplinks: []string{"rmnet0", "wlan0", "rmnet0"}, DNS: []netip.Addr{netip.MustParseAddr("9.9.9.9")},
				Allow: []Rule{mustRule("10.1.0.0/16"), mustRule("10.0.0.0/8"), mustRule("203.0.113.7/tcp:443"), mustRule("203.0.113.6/tcp:443"), mustRule("203.0.113.7/udp:443")}},
			out: []string{
				"counter name p:out",
				"meta nfproto ipv6 drop",
				"ip saddr != 10.231.0.6/32 drop",
				"ct state established,related accept",
				"oifname != @p:up drop",
				"ip daddr . meta l4proto . th dport @p:dns accept",
				"ip6 daddr . meta l4proto . th dport @p:dns6 accept",
				"ip daddr @p:deny drop",
				"ip6 daddr @p:deny6 drop",
				"ip daddr @p:allow accept",
				"ip6 daddr @p:allow6 accept",
				"ip daddr . meta l4proto . th dport @p:allowpp accept",
				"ip6 daddr . meta l4proto . th dport @p:allowpp6 accept",
				"drop",
			},
			in: []string{"counter name p:in", "ct state established,related accept", "drop"},
			sets: []string{
				"set p:up {rmnet0, wlan0}",
				denyBase, deny6Base,
				"set p:dns {9.9.9.9/32 . tcp . 53, 9.9.9.9/32 . udp . 53}", "set p:dns6 {}",
				"set p:allow {10.0.0.0/8}", "set p:allow6 {}",
				"set p:allowpp {203.0.113.6/31 . tcp . 443, 203.0.113.7/32 . udp . 443}", "set p:allowpp6 {}",
				"set p:vpn {}", "set p:vpn6 {}", "set p:vpnpp {}", "set p:vpnpp6 {}",
			},
			innerOut: []string{}, innerIn: []string{},
			dns: []string{"9.9.9.9"},
		},
		{
			name: "vpn-lockdown: eth0 to endpoints only, kill switch inside",
			s: Settings{Mode: ModeVPNLockdown, Allow: []Rule{mustRule("10.0.0.0/8")},
				VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:51820"), netip.MustParseAddrPort("198.51.100.9:0")}},
			out: []string{
				"counter name p:out",
				"meta nfproto ipv6 drop",
				"ip saddr != 10.231.0.6/32 drop",
				"ct state established,related accept",
				"oifname != @p:up drop",
				"ip daddr @p:deny drop",
				"ip6 daddr @p:deny6 drop",
				"ip daddr @p:vpn accept",
				"ip6 daddr @p:vpn6 accept",
				"ip daddr . meta l4proto . th dport @p:vpnpp accept",
				"ip6 daddr . meta l4proto . th dport @p:vpnpp6 accept",
				"drop",
			},
			in: []string{"counter name p:in", "ct state established,related accept", "drop"},
			sets: []string{
				"set p:up {wlan0}", denyBase, deny6Base, "set p:dns {}", "set p:dns6 {}",
				"set p:allow {}", "set p:allow6 {}", "set p:allowpp {}", "set p:allowpp6 {}",
				"set p:vpn {198.51.100.9/32}", "set p:vpn6 {}",
				"set p:vpnpp {203.0.113.1/32 . tcp . 51820, 203.0.113.1/32 . udp . 51820}", "set p:vpnpp6 {}",
			},
			innerOut: append(ndOut,
				`oifname "eth0" ip daddr @vpn accept`,
				`oifname "eth0" ip6 daddr @vpn6 accept`,
				`oifname "eth0" ip daddr . meta l4proto . th dport @vpnpp accept`,
				`oifname "eth0" ip6 daddr . meta l4proto . th dport @vpnpp6 accept`,
				`oifname "eth0" drop`,
			),
			innerIn: append(ndIn, `iifname "eth0" ct state established,related accept`, `iifname "eth0" drop`),
			dns:     []string{"192.168.1.1"},
		},
		{
			name: "offline: nothing in or out",
			s:    Settings{Mode: ModeOffline, Allow: []Rule{mustRule("10.0.0.0/8")}},
			out:  []string{"counter name p:out", "drop"},
			in:   []string{"counter name p:in", "drop"},
			sets: []string{"set p:up {wlan0}", denyBase, deny6Base, "set p:dns {}", "set p:dns6 {}", "set p:allow {}", "set p:allow6 {}",
				"set p:allowpp {}", "set p:allowpp6 {}", "set p:vpn {}", "set p:vpn6 {}", "set p:vpnpp {}", "set p:vpnpp6 {}"},
			innerOut: []string{`oifname "eth0" drop`},
			innerIn:  []string{`iifname "eth0" drop`},
			dns:      []string{"192.168.1.1"},
		},
		{
			name: "IPv6: own source only, IPv6 resolvers and allow entries in the ip6 sets",
			ref:  &testRef6,
			s: Settings{Mode: ModeDirect, Allow: []Rule{mustRule("2001:db8:ff::/48"), mustRule("2001:db8:ff:1::/64"), mustRule("2001:db8:aa::10/tcp:443"),
				mustRule("203.0.113.0/24")}},
			out: []string{
				"counter name p:out",
				"ip6 saddr != fd77:6f72:6b00:1::2/128 drop",
				"ip saddr != 10.231.0.6/32 drop",
				"ct state established,related accept",
				"oifname != @p:up drop",
				"ip daddr . meta l4proto . th dport @p:dns accept",
				"ip6 daddr . meta l4proto . th dport @p:dns6 accept",
				"ip daddr @p:deny drop",
				"ip6 daddr @p:deny6 drop",
				"ip daddr @p:allow accept",
				"ip6 daddr @p:allow6 accept",
				"ip daddr . meta l4proto . th dport @p:allowpp accept",
				"ip6 daddr . meta l4proto . th dport @p:allowpp6 accept",
				"drop",
			},
			in: []string{"counter name p:in", "ct state established,related accept", "drop"},
			sets: []string{
				"set p:up {wlan0}", denyBase, deny6Base,
				"set p:dns {192.168.1.1/32 . tcp . 53, 192.168.1.1/32 . udp . 53}",
				// The link-local resolver (fe80::1%wlan0) is not reachable from work.
				"set p:dns6 {2001:db8:1::1/128 . tcp . 53, 2001:db8:1::1/128 . udp . 53}",
				"set p:allow {203.0.113.0/24}", "set p:allow6 {2001:db8:ff::/48}",
				"set p:allowpp {}", "set p:allowpp6 {2001:db8:aa::10/128 . tcp . 443}",
				"set p:vpn {}", "set p:vpn6 {}", "set p:vpnpp {}", "set p:vpnpp6 {}",
			},
			innerOut: []string{}, innerIn: []string{},
			dns: []string{"192.168.1.1", "2001:db8:1::1"},
		},
		{
			name: "IPv6 vpn endpoint",
			ref:  &testRef6,
			s:    Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8:ff::1]:51820")}},
			out: []string{
				"counter name p:out",
				"ip6 saddr != fd77:6f72:6b00:1::2/128 drop",
				"ip saddr != 10.231.0.6/32 drop",
				"ct state established,related accept",
				"oifname != @p:up drop",
				"ip daddr @p:deny drop",
				"ip6 daddr @p:deny6 drop",
				"ip daddr @p:vpn accept",
				"ip6 daddr @p:vpn6 accept",
				"ip daddr . meta l4proto . th dport @p:vpnpp accept",
				"ip6 daddr . meta l4proto . th dport @p:vpnpp6 accept",
				"drop",
			},
			in: []string{"counter name p:in", "ct state established,related accept", "drop"},
			sets: []string{
				"set p:up {wlan0}", denyBase, deny6Base, "set p:dns {}", "set p:dns6 {}",
				"set p:allow {}", "set p:allow6 {}", "set p:allowpp {}", "set p:allowpp6 {}",
				"set p:vpn {}", "set p:vpn6 {}",
				"set p:vpnpp {}", "set p:vpnpp6 {2001:db8:ff::1/128 . tcp . 51820, 2001:db8:ff::1/128 . udp . 51820}",
			},
			innerOut: append(ndOut,
				`oifname "eth0" ip daddr @vpn accept`,
				`oifname "eth0" ip6 daddr @vpn6 accept`,
				`oifname "eth0" ip daddr . meta l4proto . th dport @vpnpp accept`,
				`oifname "eth0" ip6 daddr . meta l4proto . th dport @vpnpp6 accept`,
				`oifname "eth0" drop`,
			),
			innerIn: append(ndIn, `iifname "eth0" ct state established,related accept`, `iifname "eth0" drop`),
			dns:     []string{"192.168.1.1", "2001:db8:1::1"},
		},
	}
}

// A change that lets through less than before must cut running
// connections (the caller deletes the profile's conntrack entries); one
// that only adds may keep them.
func TestWidens(t *testing.T) {
	ep := func(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }
	allow := func(rs ...string) Settings {
		s := Settings{Mode: ModeDirect}
		for _, r := range rs {
			s.Allow = append(s.Allow, mustRule(r))
		}
		return s
	}
	tests := []struct {
		name       string
		prev, next Settings
		host       *hostFacts // of next; default testHost
		widens     bool
	}{
		{"same settings", allow("203.0.113.0/24"), allow("203.0.113.0/24"), nil, true},
		{"an entry added", allow("203.0.113.10/tcp:8080"), allow("203.0.113.10/tcp:8080", "203.0.113.10/tcp:80"), nil, true},
		{"a prefix grows", allow("203.0.113.10"), allow("203.0.113.0/24"), nil, true},
		{"split into adjacent halves", allow("203.0.113.0/24"), allow("203.0.113.0/25", "203.0.113.128/25"), nil, true},
		{"an entry removed", allow("203.0.113.10/tcp:8080", "203.0.113.10/tcp:80"), allow("203.0.113.10/tcp:80"), nil, false},
		{"a prefix shrinks", allow("203.0.113.0/24"), allow("203.0.113.0/25"), nil, false},
		{"port changes", allow("203.0.113.10/tcp:80"), allow("203.0.113.10/udp:80"), nil, false},
		{"allow-list to all public (198.18/15 is not public)", allow("198.18.0.0/15"), Settings{Mode: ModeDirect}, nil, false},
		{"all public to an allow-list", Settings{Mode: ModeDirect}, allow("203.0.113.0/24"), nil, false},
		{"direct to offline", Settings{Mode: ModeDirect}, Settings{Mode: ModeOffline}, nil, false},
		{"direct to vpn-lockdown", Settings{Mode: ModeDirect}, Settings{Mode: ModeVPNLockdown, VPNEndpoints: ep("203.0.113.1:51820")}, nil, false},
		{"vpn-lockdown to direct", Settings{Mode: ModeVPNLockdown, VPNEndpoints: ep("203.0.113.1:51820")}, Settings{Mode: ModeDirect}, nil, false},
		{"offline to direct: nothing ran", Settings{Mode: ModeOffline}, Settings{Mode: ModeDirect}, nil, true},
		{"endpoint added", Settings{Mode: ModeVPNLockdown, VPNEndpoints: ep("203.0.113.1:51820")},
			Settings{Mode: ModeVPNLockdown, VPNEndpoints: append(ep("203.0.113.1:51820"), netip.MustParseAddrPort("203.0.113.2:443"))}, nil, true},
		{"endpoint replaced", Settings{Mode: ModeVPNLockdown, VPNEndpoints: ep("203.0.113.1:51820")}, Settings{Mode: ModeVPNLockdown, VPNEndpoints: ep("203.0.113.2:51820")}, nil, false},
		{"uplink removed", Settings{Mode: ModeDirect, Uplinks: []string{"rmnet0", "wlan0"}}, Settings{Mode: ModeDirect, Uplinks: []string{"wlan0"}}, nil, false},
		{"resolver changed", Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("9.9.9.9")}}, Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1")}}, nil, false},
		{"an IPv6 entry added", allow("203.0.113.0/24"), allow("203.0.113.0/24", "2001:db8:ff::/48"), nil, true},
		{"an IPv6 prefix shrinks", allow("2001:db8:ff::/48"), allow("2001:db8:ff::/56"), nil, false},
		{"an IPv4 entry swapped for its IPv6 twin", allow("203.0.113.10/tcp:443"), allow("2001:db8::10/tcp:443"), nil, false},
		{"the host joined a network the allow-list covers", allow("192.168.0.0/16"), allow("192.168.0.0/16"),
			&hostFacts{Uplinks: testHost.Uplinks, Connected: append(testHost.Connected, netip.MustParsePrefix("192.168.7.0/24")), Local: testHost.Local, DNS: testHost.DNS}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, err := buildProfile(testRef, testPools, tt.prev, testHost)
			if err != nil {
				t.Fatal(err)
			}
			h := testHost
			if tt.host != nil {
				h = *tt.host
			}
			next, err := buildProfile(testRef, testPools, tt.next, h)
			if err != nil {
				t.Fatal(err)
			}
			if got := widens(prev, next); got != tt.widens {
				t.Errorf("widens = %v, want %v", got, tt.widens)
			}
		})
	}
}

func TestBuildProfileRefusesIPv6WhereTheProfileHasNone(t *testing.T) {
	for _, s := range []Settings{
		{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53")}},
		{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:51820")}},
	} {
		if _, err := buildProfile(testRef, testPools, s, testHost); err == nil || !strings.Contains(err.Error(), "2001:db8::") || !strings.Contains(err.Error(), "no IPv6") {
			t.Errorf("%+v on a profile without IPv6: %v", s, err)
		}
		if _, err := buildProfile(testRef6, testPools, s, testHost); err != nil {
			t.Errorf("%+v on a profile with IPv6: %v", s, err)
		}
	}
}

func TestBuildProfileRejectsHostResolver(t *testing.T) {
	_, err := buildProfile(testRef, testPools, Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("192.168.1.20")}}, testHost)
	if err == nil || !strings.Contains(err.Error(), "dns 192.168.1.20") {
		t.Errorf("resolver on the host itself: %v", err)
	}
}

func TestBaseRules(t *testing.T) {
	refs := []profileRef{
		{Name: "b", HostIf: "wc-b", Subnet: netip.MustParsePrefix("10.231.0.4/30")},
		{Name: "a", HostIf: "wc-a", Subnet: netip.MustParsePrefix("10.231.0.0/30")},
	}
	got := baseRules(refs, testPools)
	want := map[string][]string{
		chainForward: {
			`iifname "wc-a" jump a:out`, `oifname "wc-a" jump a:in`,
			`iifname "wc-b" jump b:out`, `oifname "wc-b" jump b:in`,
			`iifname "wc-*" drop`, `oifname "wc-*" drop`,
		},
		// Only neighbour discovery between work and the host.
		chainInput: {`iifname "wc-*" icmpv6 type 135 accept`, `iifname "wc-*" icmpv6 type 136 accept`, `iifname "wc-*" drop`},
		chainOutput: {`oifname "wc-*" icmpv6 type 135 accept`, `oifname "wc-*" icmpv6 type 136 accept`,
			`oifname "wc-*" ct state established,related accept`, `oifname "wc-*" drop`},
		chainPostrouting: {`oifname != "wc-*" ip saddr 10.231.0.0/16 masquerade`, `oifname != "wc-*" ip6 saddr fd77:6f72:6b00::/48 masquerade`},
	}
	for chain, w := range want {
		if g := ruleStrings(got[chain]); !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %q\nwant %q", chain, g, w)
		}
	}
}

// The ruleset is a function of the last settings only: whatever order the
// modes came in, the result equals building the last settings fresh.
func TestModeTransitionsInRandomOrder(t *testing.T) {
	all := []Settings{
		{Mode: ModeDirect},
		{Mode: ModeOffline},
		{Mode: ModeDirect, Allow: []Rule{mustRule("203.0.113.0/24/tcp:443")}},
		{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:51820")}},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		seq := shuffled(r, all)
		var last profileRules
		for _, s := range seq {
			var err error
			if last, err = buildProfile(testRef, testPools, s, testHost); err != nil {
				t.Fatal(err)
			}
		}
		fresh, _ := buildProfile(testRef, testPools, seq[len(seq)-1], testHost)
		if !reflect.DeepEqual(last, fresh) {
			t.Fatalf("sequence %v differs from fresh", modes(seq))
		}
	}
}

func TestNormalizeMergesOverlapsPerProtoPort(t *testing.T) {
	in := []Rule{
		mustRule("10.0.0.0/9"), mustRule("10.128.0.0/9"), mustRule("10.2.3.4"),
		mustRule("0.0.0.0/0/tcp:80"), mustRule("1.2.3.4/tcp:80"),
		mustRule("192.0.2.0/25/udp:53"), mustRule("192.0.2.129/udp:53"),
	}
	var got []string
	for _, r := range normalize(in) {
		got = append(got, r.String())
	}
	want := []string{"10.0.0.0/8", "0.0.0.0/0/tcp:80", "192.0.2.0/25/udp:53", "192.0.2.129/udp:53"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = nil
	for _, r := range normalize([]Rule{mustRule("2001:db8::/33"), mustRule("2001:db8:8000::/33"), mustRule("2001:db8::1"),
		mustRule("::/0/udp:53"), mustRule("2001:db8::53/udp:53"), mustRule("10.0.0.0/8")}) {
		got = append(got, r.String())
	}
	if want := []string{"10.0.0.0/8", "2001:db8::/32", "::/0/udp:53"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IPv6: got %q\nwant %q", got, want)
	}
	if p := rangePrefixes(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::6")); len(p) != 4 {
		t.Errorf("2001:db8::1-2001:db8::6 = %v", p)
	}
	if p := rangePrefixes(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.6")); len(p) != 4 {
		t.Errorf("10.0.0.1-10.0.0.6 = %v", p)
	}
}

func TestHostIfName(t *testing.T) {
	if got := HostIfName("work"); got != "wc-work" {
		t.Errorf("short: %q", got)
	}
	long := HostIfName("engineering-laptop-profile")
	if len(long) > 15 || !strings.HasPrefix(long, "wc-engi-") || long != HostIfName("engineering-laptop-profile") {
		t.Errorf("long: %q", long)
	}
	if HostIfName("engineering-a") == HostIfName("engineering-b") {
		t.Errorf("two long names share an interface name")
	}
	if got := HostIfName("abcdefghijkl"); got != "wc-abcdefghijkl" {
		t.Errorf("exactly 15 bytes: %q", got)
	}
}

func TestStatePersistsAllocations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "net.json")
	st, err := loadState(path, testPool, testPools.V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c"} {
		sub, err := st.allocate()
		if err != nil {
			t.Fatal(err)
		}
		st.Profiles[p] = &profileState{Subnet: sub, HostIf: HostIfName(p)}
	}
	delete(st.Profiles, "b")
	if sub, _ := st.allocate(); sub != netip.MustParsePrefix("10.231.0.4/30") {
		t.Errorf("freed subnet not reused: %s", sub)
	}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	back, err := loadState(path, testPool, testPools.V6)
	if err != nil || !reflect.DeepEqual(back.Profiles, st.Profiles) {
		t.Fatalf("reload: %+v, %v", back, err)
	}
	if _, err := loadState(path, netip.MustParsePrefix("10.232.0.0/16"), testPools.V6); err == nil || !strings.Contains(err.Error(), "outside pool 10.232.0.0/16") {
		t.Errorf("allocations outside a new pool: %v", err)
	}
	gw, work := subnetAddrs(netip.MustParsePrefix("10.231.0.8/30"))
	if gw.String() != "10.231.0.9/30" || work.String() != "10.231.0.10/30" {
		t.Errorf("addresses %s %s", gw, work)
	}
	small, _ := loadState(filepath.Join(t.TempDir(), "x"), netip.MustParsePrefix("10.9.0.0/29"), netip.Prefix{})
	for range 2 {
		sub, _ := small.allocate()
		small.Profiles[sub.String()] = &profileState{Subnet: sub}
	}
	if _, err := small.allocate(); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("full pool: %v", err)
	}
	st6, _ := loadState(filepath.Join(t.TempDir(), "y"), testPool, testPools.V6)
	for i, want := range []string{"fd77:6f72:6b00::/64", "fd77:6f72:6b00:1::/64", "fd77:6f72:6b00:2::/64"} {
		sub, err := st6.allocate6(testPools.V6)
		if err != nil || sub.String() != want {
			t.Fatalf("IPv6 allocation %d: %s, %v; want %s", i, sub, err, want)
		}
		st6.Profiles[want] = &profileState{Subnet6: sub}
	}
	if gw6, work6 := subnetAddrs(netip.MustParsePrefix("fd77:6f72:6b00:2::/64")); gw6.String() != "fd77:6f72:6b00:2::1/64" || work6.String() != "fd77:6f72:6b00:2::2/64" {
		t.Errorf("IPv6 addresses %s %s", gw6, work6)
	}
	// A state written with IPv6 loads without it (the daemon turned it off):
	// the /64s are let go, the IPv4 subnets kept.
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	st.Profiles["a"].Subnet6 = netip.MustParsePrefix("fd77:6f72:6b00::/64")
	st.save(path)
	if off, err := loadState(path, testPool, netip.Prefix{}); err != nil || off.Profiles["a"].Subnet6.IsValid() || off.Profiles["a"].Subnet != st.Profiles["a"].Subnet {
		t.Errorf("reload without IPv6: %+v, %v", off.Profiles["a"], err)
	}
	for _, bad := range []string{"fd00::/64", "10.0.0.0/8", "fd00::1/48"} {
		if err := validPool6(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("IPv6 pool %s accepted", bad)
		}
	}
	if err := validPool(netip.MustParsePrefix("10.0.0.0/30")); err == nil {
		t.Errorf("a /30 pool holds one profile at most and is refused")
	}
}
