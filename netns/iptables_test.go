package netns

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestXtTagFitsAndNeverCollides(t *testing.T) {
	long := strings.Repeat("a", 64)
	names := []string{"p", "work", "abcdefghijklmnop", "abcdefghijklmnopq", long, long[:63] + "b", "abcdefg.1234567"}
	seen := map[string]string{}
	for _, n := range names {
		tag := xtTag(n)
		if len(n) <= 16 && tag != n {
			t.Errorf("xtTag(%q) = %q, want the name itself", n, tag)
		}
		if len(n) > 16 && !strings.Contains(tag, ".") {
			t.Errorf("xtTag(%q) = %q: a hashed tag must hold '.', which no profile name does", n, tag)
		}
		if o, ok := seen[tag]; ok {
			t.Errorf("%q and %q share the tag %q", n, o, tag)
		}
		seen[tag] = n
		for _, what := range []string{"out", "in", "allowpp6", "deny6"} {
			c := xtChain(objName(n, what))
			if len(c) > xtMaxChain {
				t.Errorf("chain %q is %d bytes, iptables takes %d", c, len(c), xtMaxChain)
			}
			if got, ok := xtTagOf(c); !ok || got != tag {
				t.Errorf("xtTagOf(%q) = %q, %v; want %q", c, got, ok, tag)
			}
		}
	}
	for _, shared := range []string{"wc_forward", "wc_postrouting", "FORWARD", "oem_fwd"} {
		if tag, ok := xtTagOf(shared); ok {
			t.Errorf("xtTagOf(%q) = %q: not a profile's chain", shared, tag)
		}
	}
}

func planLines(p *xtFamilyPlan, table string) []string {
	var out []string
	for _, r := range p.table(table).Rules {
		out = append(out, strings.TrimSpace("-A "+r.Chain+" "+r.Args))
	}
	return out
}

// The shared chains, as iptables says them: the nftables twins are in
// TestBaseRules.
func TestXtBaseChains(t *testing.T) {
	refs := []profileRef{
		{Name: "b", HostIf: "wc-b", Subnet: testPool},
		{Name: "a", HostIf: "wc-a", Subnet: testPool},
	}
	for _, tt := range []struct {
		v6          bool
		filter, nat []string
	}{
		{false, []string{
			"-A wc_forward -i wc-a -j wc_a_out", "-A wc_forward -o wc-a -j wc_a_in",
			"-A wc_forward -i wc-b -j wc_b_out", "-A wc_forward -o wc-b -j wc_b_in",
			"-A wc_forward -i wc-+ -j DROP", "-A wc_forward -o wc-+ -j DROP",
			"-A wc_input -i wc-+ -j DROP",
			"-A wc_output -o wc-+ -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A wc_output -o wc-+ -j DROP",
		}, []string{"-A wc_postrouting ! -o wc-+ -s 10.231.0.0/16 -j MASQUERADE"}},
		{true, []string{
			"-A wc_forward -i wc-a -j wc_a_out", "-A wc_forward -o wc-a -j wc_a_in",
			"-A wc_forward -i wc-b -j wc_b_out", "-A wc_forward -o wc-b -j wc_b_in",
			"-A wc_forward -i wc-+ -j DROP", "-A wc_forward -o wc-+ -j DROP",
			"-A wc_input -i wc-+ -p ipv6-icmp --icmpv6-type 135 -j ACCEPT", "-A wc_input -i wc-+ -p ipv6-icmp --icmpv6-type 136 -j ACCEPT",
			"-A wc_input -i wc-+ -j DROP",
			"-A wc_output -o wc-+ -p ipv6-icmp --icmpv6-type 135 -j ACCEPT", "-A wc_output -o wc-+ -p ipv6-icmp --icmpv6-type 136 -j ACCEPT",
			"-A wc_output -o wc-+ -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A wc_output -o wc-+ -j DROP",
		}, []string{"-A wc_postrouting ! -o wc-+ -s fd77:6f72:6b00::/48 -j MASQUERADE"}},
	} {
		t.Run(fmt.Sprintf("v6=%v", tt.v6), func(t *testing.T) {
			p, err := xtHostPlan(tt.v6, testPools, refs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := planLines(p, "filter"); !reflect.DeepEqual(got, tt.filter) {
				t.Errorf("filter:\n got %q\nwant %q", got, tt.filter)
			}
			if got := planLines(p, "nat"); !reflect.DeepEqual(got, tt.nat) {
				t.Errorf("nat:\n got %q\nwant %q", got, tt.nat)
			}
			// Profiles whose rules are not in this batch keep theirs.
			if e := p.table("filter").Ensure; !reflect.DeepEqual(e, []string{"wc_b_out", "wc_b_in", "wc_a_out", "wc_a_in"}) {
				t.Errorf("ensure %q", e)
			}
		})
	}
}

// A profile in vpn-lockdown, as iptables says it: sets become chains
// jumped to, a negated set match returns per element and drops last.
func TestXtProfileRules(t *testing.T) {
	s := Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{mustAddrPortT("198.51.100.9:51820"), mustAddrPortT("198.51.100.10:0")}}
	pr, err := buildProfile(testRef, testPools, s, testHost)
	if err != nil {
		t.Fatal(err)
	}
	p, err := xtHostPlan(false, testPools, []profileRef{testRef}, map[string]profileRules{"p": pr})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range planLines(p, "filter") {
		if strings.HasPrefix(l, "-A wc_p_") && !strings.HasPrefix(l, "-A wc_p_deny ") {
			got = append(got, l)
		}
	}
	want := []string{
		"-A wc_p_out",
		"-A wc_p_out ! -s 10.231.0.6/32 -j DROP",
		"-A wc_p_out -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-A wc_p_up -o wlan0 -j RETURN", "-A wc_p_up -j DROP", "-A wc_p_out -j wc_p_up",
		"-A wc_p_out -j wc_p_deny",
		"-A wc_p_vpn -d 198.51.100.10/32 -j ACCEPT", "-A wc_p_out -j wc_p_vpn",
		"-A wc_p_vpnpp -d 198.51.100.9/32 -p tcp --dport 51820 -j ACCEPT", "-A wc_p_vpnpp -d 198.51.100.9/32 -p udp --dport 51820 -j ACCEPT",
		"-A wc_p_out -j wc_p_vpnpp",
		"-A wc_p_out -j DROP",
		"-A wc_p_in", "-A wc_p_in -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A wc_p_in -j DROP",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("profile chains:\n got %q\nwant %q", got, want)
	}
	// The IPv6 table of a profile without IPv6 drops all it sends.
	p6, err := xtHostPlan(true, testPools, []profileRef{testRef}, map[string]profileRules{"p": pr})
	if err != nil {
		t.Fatal(err)
	}
	var out6 []string
	for _, l := range planLines(p6, "filter") {
		if strings.HasPrefix(l, "-A wc_p_out") {
			out6 = append(out6, l)
		}
	}
	if w := []string{"-A wc_p_out", "-A wc_p_out -j DROP"}; !reflect.DeepEqual(out6[:2], w) {
		t.Errorf("IPv6 out chain of a profile without IPv6 starts %q, want %q", out6, w)
	}
	inner, err := xtInnerPlan(false, pr)
	if err != nil {
		t.Fatal(err)
	}
	wantInner := []string{
		"-A wc_vpn -d 198.51.100.10/32 -j ACCEPT", "-A wc_output -o eth0 -j wc_vpn",
		"-A wc_vpnpp -d 198.51.100.9/32 -p tcp --dport 51820 -j ACCEPT", "-A wc_vpnpp -d 198.51.100.9/32 -p udp --dport 51820 -j ACCEPT",
		"-A wc_output -o eth0 -j wc_vpnpp",
		"-A wc_output -o eth0 -j DROP",
		"-A wc_input -i eth0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "-A wc_input -i eth0 -j DROP",
	}
	if got := planLines(inner, "filter"); !reflect.DeepEqual(got, wantInner) {
		t.Errorf("inner:\n got %q\nwant %q", got, wantInner)
	}
}

// The restore input touches nothing that is not ours: netd's chains are
// never declared (declaring flushes), only our hooks in them are deleted
// and inserted one by one; stale chains of ours go, kept ones stay, and
// the profile's counters survive the reload.
func TestXtRestoreTextLeavesForeignRulesAlone(t *testing.T) {
	cur, err := parseXtSave(`# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:oem_fwd - [0:0]
:fw_FORWARD - [0:0]
:wc_forward - [0:0]
:wc_p_out - [0:0]
:wc_old_out - [0:0]
:wc_keep_out - [0:0]
[1:2] -A FORWARD -j oem_fwd
[3:4] -A FORWARD -j wc_forward
[0:0] -A FORWARD -j fw_FORWARD
[5:6] -A oem_fwd -s 10.9.9.9/32 -j DROP
[0:0] -A oem_fwd -j wc_forward
[7:8] -A INPUT -j wc_input_gone
[0:0] -A OUTPUT -j wc_output
[0:0] -A OUTPUT -j wc_output
[0:0] -A wc_forward -i wc-old -j wc_old_out
[42:4200] -A wc_p_out
[1:1] -A wc_keep_out
COMMIT
`)
	if err != nil {
		t.Fatal(err)
	}
	plan := &xtTablePlan{
		Name:   "filter",
		Chains: []string{"wc_forward", "wc_p_out"},
		Rules:  []xtRule{{Chain: "wc_p_out", Counts: true}, {Chain: "wc_p_out", Args: "-j ACCEPT"}, {Chain: "wc_forward", Args: "-i wc-p -j wc_p_out"}},
		Hooks:  []xtHook{{Parents: xtHookParents[chainForward], Chain: "wc_forward"}, {Parents: xtHookParents[chainOutput], Chain: "wc_output"}},
		Ensure: []string{"wc_keep_out", "wc_keep_in"},
		Keep:   func(c string) bool { return c == "wc_keep_out" },
	}
	got := strings.Split(strings.TrimSpace(plan.restoreText(cur["filter"])), "\n")
	want := []string{
		"*filter",
		":wc_forward - [0:0]", ":wc_p_out - [0:0]", ":wc_keep_in - [0:0]",
		// The hook in FORWARD goes (oem_fwd exists), as does the one in
		// oem_fwd that is not first, the one into a chain no longer wanted,
		// and both copies of a doubled one.
		"-D INPUT -j wc_input_gone", "-D FORWARD -j wc_forward",
		"-D OUTPUT -j wc_output", "-D OUTPUT -j wc_output", "-D oem_fwd -j wc_forward",
		"-F wc_old_out",
		"[42:4200] -A wc_p_out", "-A wc_p_out -j ACCEPT", "-A wc_forward -i wc-p -j wc_p_out",
		"-I oem_fwd 1 -j wc_forward", "-I OUTPUT 1 -j wc_output",
		"-X wc_old_out",
		"COMMIT",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restore input:\n got %q\nwant %q", got, want)
	}
	for _, l := range got {
		if strings.HasPrefix(l, ":") && !strings.HasPrefix(l, ":wc_") {
			t.Errorf("declares a chain that is not ours (iptables-restore would flush it): %s", l)
		}
	}
	// Nothing to do, nothing to run.
	if txt := xtClearPlan(false).restoreText(map[string]*xtTableState{}); txt != "" {
		t.Errorf("clearing an empty namespace: %q, want nothing", txt)
	}
}

func mustAddrPortT(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestXTSafeIfname: an interface name that iptables-restore would split,
// take as an option or a comment, or read as a wildcard never reaches the
// batch.
func TestXTSafeIfname(t *testing.T) {
	for name, want := range map[string]bool{
		"wlan0": true, "rmnet_data0": true, "wc-work": true, "eth0.100": true, "v4-rmnet0": true,
		"": false, "-j": false, "a b": false, "a\"b": false, "a'b": false, "a#b": false, "wlan+": false,
		"a*": false, "!x": false, "a\\b": false, "sixteen-chars-xx": false, "a\tb": false, "wl\u00e4n": false,
	} {
		if got := xtSafeIfname(name); got != want {
			t.Errorf("xtSafeIfname(%q) = %v, want %v", name, got, want)
		}
	}
}
