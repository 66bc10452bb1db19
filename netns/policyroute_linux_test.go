package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func rule(prio, table int, mod func(*netlink.Rule)) netlink.Rule {
	r := *netlink.NewRule()
	r.Priority, r.Table = prio, table
	if mod != nil {
		mod(&r)
	}
	return r
}

func mark(v, m uint32) func(*netlink.Rule) {
	return func(r *netlink.Rule) { r.Mark, r.Mask = v, &m }
}

// The FIB rules walk of lookupTable, against the rule sets of a desktop
// and of Android's netd.
func TestLookupTableWalksRulesAsTheKernel(t *testing.T) {
	linux := []netlink.Rule{rule(0, 255, nil), rule(32766, 254, nil), rule(32767, 253, nil)}
	android := []netlink.Rule{
		rule(0, 255, nil),
		rule(10000, 98, mark(0xc0000, 0xd0000)),
		rule(16000, 1003, func(r *netlink.Rule) { mark(0x10065, 0x1ffff)(r); r.IifName = "lo" }),
		rule(17000, 1003, func(r *netlink.Rule) { r.IifName, r.OifName = "lo", "wlan0" }),
		rule(18000, 98, mark(0, 0x10000)),
		rule(20000, 97, mark(0, 0x10000)),
		rule(21000, 1003, func(r *netlink.Rule) { r.IifName = "rndis0" }),
		rule(22000, 1004, func(r *netlink.Rule) { r.UIDRange = netlink.NewRuleUIDRange(10100, 10199) }),
		rule(29000, 1003, func(r *netlink.Rule) { mark(0, 0xffff)(r); r.IifName = "lo" }),
		rule(32000, 0, nil), // unreachable
	}
	withOurs := append(slices.Clone(android[:len(android)-1]),
		rule(IIfRulePriority, 1003, func(r *netlink.Rule) { r.IifName = "wc-p1" }), android[len(android)-1])
	tests := []struct {
		name           string
		rules          []netlink.Rule
		defaults       map[int][]int
		local, forward int
	}{
		{"desktop: main for both", linux, map[int][]int{254: {2}}, 254, 254},
		{"desktop without a default route", linux, map[int][]int{}, 0, 0},
		{"android: the default network's table for the phone, unreachable for forwarding", android, map[int][]int{1003: {5}, 1004: {6}}, 1003, 0},
		{"android with our rule: our own rule is not what decides", withOurs, map[int][]int{1003: {5}}, 1003, 0},
		{"android, default network without a default route yet", android, map[int][]int{1004: {6}}, 0, 0},
		{"a rule with a fwmark the packet lacks does not match", []netlink.Rule{rule(100, 1003, mark(0x65, 0xffff)), rule(200, 254, nil)}, map[int][]int{1003: {5}, 254: {2}}, 254, 254},
		{"suppress_prefixlength 0 skips default routes", []netlink.Rule{rule(100, 254, func(r *netlink.Rule) { r.SuppressPrefixlen = 0 }), rule(200, 1003, nil)}, map[int][]int{1003: {5}, 254: {2}}, 1003, 1003},
		{"goto skips ahead", []netlink.Rule{rule(100, 0, func(r *netlink.Rule) { r.Goto = 300 }), rule(200, 0, nil), rule(300, 1003, nil)}, map[int][]int{1003: {5}}, 1003, 1003},
		{"uid 0 matches a range holding it", []netlink.Rule{rule(100, 1004, func(r *netlink.Rule) { r.UIDRange = netlink.NewRuleUIDRange(0, 0) }), rule(200, 0, nil)}, map[int][]int{1004: {6}}, 1004, 1004},
		{"an inverted rule matches what it names not", []netlink.Rule{rule(100, 1003, func(r *netlink.Rule) { r.IifName, r.Invert = "lo", true }), rule(200, 254, nil)}, map[int][]int{1003: {5}, 254: {2}}, 254, 1003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lookupTable(tt.rules, tt.defaults, true); got != tt.local {
				t.Errorf("the host's own traffic: table %d, want %d", got, tt.local)
			}
			if got := lookupTable(tt.rules, tt.defaults, false); got != tt.forward {
				t.Errorf("forwarded traffic: table %d, want %d", got, tt.forward)
			}
		})
	}
}

// androidRouting turns the world's host into what netd makes of a phone on
// Wi-Fi: the default routes in the network's own table, looked up by rules
// for the phone's own traffic (iif lo), and "unreachable" before main.
func (w *world) androidRouting(table int) {
	w.t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		ipCmd(w.t, "-n", w.hostName, fam, "route", "del", "default")
	}
	w.androidNetwork(table)
	w.netdBaseRules(table)
}

// netdBaseRules are netd's rules that are not one network's.
func (w *world) netdBaseRules(table int) {
	w.t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "10000", "fwmark", "0xc0000/0xd0000", "lookup", "98")
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "21000", "iif", "rndis0", "lookup", fmt.Sprint(table))
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "32000", "unreachable")
	}
}

// androidNetwork gives the "Wi-Fi" network table: its routes and netd's
// rules for it.
func (w *world) androidNetwork(table int) {
	w.t.Helper()
	tb := fmt.Sprint(table)
	ipCmd(w.t, "-n", w.hostName, "route", "add", "198.51.100.0/24", "dev", "up0", "table", tb)
	ipCmd(w.t, "-n", w.hostName, "route", "add", "default", "via", routerAddr, "dev", "up0", "table", tb)
	ipCmd(w.t, "-n", w.hostName, "-6", "route", "add", "2001:db8:1::/64", "dev", "up0", "table", tb)
	ipCmd(w.t, "-n", w.hostName, "-6", "route", "add", "default", "via", router6, "dev", "up0", "table", tb)
	w.netdNetworkRules(table)
}

// netdNetworkRules are netd's rules for the network whose table is table.
func (w *world) netdNetworkRules(table int) {
	w.t.Helper()
	tb := fmt.Sprint(table)
	for _, fam := range []string{"-4", "-6"} {
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "16000", "fwmark", "0x10065/0x1ffff", "iif", "lo", "lookup", tb)
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "17000", "iif", "lo", "oif", "up0", "lookup", tb)
		ipCmd(w.t, "-n", w.hostName, fam, "rule", "add", "pref", "29000", "fwmark", "0x0/0xffff", "iif", "lo", "lookup", tb)
	}
}

// dropAndroidNetwork deletes the network's table and netd's rules for it.
func (w *world) dropAndroidNetwork(table int) {
	w.t.Helper()
	tb := fmt.Sprint(table)
	for _, fam := range []string{"-4", "-6"} {
		for _, pref := range []string{"16000", "17000", "29000"} {
			ipCmd(w.t, "-n", w.hostName, fam, "rule", "del", "pref", pref, "lookup", tb)
		}
		ipCmd(w.t, "-n", w.hostName, fam, "route", "flush", "table", tb)
	}
}

// ourRules lists the host's rules at IIfRulePriority, both families.
func (w *world) ourRules() []string {
	w.t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		b, err := exec.Command("ip", "-n", w.hostName, fam, "rule", "list", "pref", fmt.Sprint(IIfRulePriority)).CombinedOutput()
		if err != nil {
			w.t.Fatalf("ip rule list: %v\n%s", err, b)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out = append(out, fam+" "+strings.Join(strings.Fields(l), " "))
			}
		}
	}
	slices.Sort(out)
	return out
}

func (w *world) sysctl(key string) string {
	w.t.Helper()
	var b []byte
	must(w.t, in(w.host, func() (err error) { b, err = os.ReadFile("/proc/sys/net/" + key); return err }))
	return strings.TrimSpace(string(b))
}

func TestAndroidPolicyRoutingCarriesWorkAndStaysIsolated(t *testing.T) {
	eachBackend(t, testAndroidPolicyRouting)
}

func testAndroidPolicyRouting(t *testing.T, w *world) {
	w.androidRouting(1003)
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- w.mgr.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	a := w.ensure("p1", direct)
	b := w.ensure("p2", direct)

	pr, err := w.mgr.PolicyRouting(context.Background())
	must(t, err)
	if pr.Table4 != 1003 || pr.Table6 != 1003 || !pr.Rule4 || !pr.Rule6 || !slices.Equal(pr.Uplinks4, []string{"up0"}) || !slices.Equal(pr.Uplinks6, []string{"up0"}) {
		t.Errorf("policy routing found: %+v; want table 1003 for both families, uplink up0, rules needed", pr)
	}
	want := func(table int) []string {
		tb := fmt.Sprint(table)
		return []string{
			"-4 31000: from all iif wc-p1 lookup " + tb, "-4 31000: from all iif wc-p2 lookup " + tb, "-4 31000: from all to 10.231.0.0/16 lookup main",
			"-6 31000: from all iif wc-p1 lookup " + tb, "-6 31000: from all iif wc-p2 lookup " + tb, "-6 31000: from all to fd77:6f72:6b00::/48 lookup main",
		}
	}
	if got := w.ourRules(); !slices.Equal(got, want(1003)) {
		t.Errorf("policy rules:\n got %q\nwant %q", got, want(1003))
	}
	check(t, slices.Concat(w.isolation(a, b), w.isolation6(a, b), []path{
		{name: "work to internet through the network's table", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true, wantContains: "internet " + hostUplinkAddr},
		{name: "work DNS", ns: a.NSPath, network: "udp", addr: dnsServer + ":53", allowed: true, wantContains: "dns"},
		{name: "IPv6 work to internet through the network's table", ns: a.NSPath, network: "tcp", addr: hp(inetServer6, 80), allowed: true, wantContains: "internet " + hostUplink6},
	})...)

	// The "Wi-Fi" network comes back in another table: the rules follow.
	w.androidNetwork(1004)
	w.dropAndroidNetwork(1003)
	eventually(t, "policy rules following the network to table 1004", func() error {
		if got := w.ourRules(); !slices.Equal(got, want(1004)) {
			return fmt.Errorf("rules %q", got)
		}
		return nil
	})
	check(t, slices.Concat(w.isolation(a, b), []path{
		{name: "work to internet through the new table", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true, wantContains: "internet " + hostUplinkAddr},
		{name: "IPv6 work to internet through the new table", ns: a.NSPath, network: "tcp", addr: hp(inetServer6, 80), allowed: true},
	})...)

	// netd switches forwarding off (it does on tethering changes): it
	// comes back, with no timer, on the kernel's own netconf event.
	for _, key := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
		must(t, in(w.host, func() error { return os.WriteFile("/proc/sys/net/"+key, []byte("0"), 0o644) }))
		eventually(t, key+" switched on again", func() error {
			if v := w.sysctl(key); v != "1" {
				return fmt.Errorf("%s is %s", key, v)
			}
			return nil
		})
	}
	check(t, path{name: "work to internet after forwarding came back", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true})

	// No network at all: the rules go, work reaches nothing.
	w.dropAndroidNetwork(1004)
	eventually(t, "policy rules gone with the network", func() error {
		if got := w.ourRules(); len(got) > 0 {
			return fmt.Errorf("rules %q", got)
		}
		return nil
	})
	check(t, path{name: "work to internet without a network", ns: a.NSPath, network: "tcp", addr: inetServer + ":80"})

	// A network again; then someone deletes a rule of ours: it is back
	// on the rule event.
	w.androidNetwork(1005)
	eventually(t, "policy rules for the network in table 1005", func() error {
		if got := w.ourRules(); !slices.Equal(got, want(1005)) {
			return fmt.Errorf("rules %q", got)
		}
		return nil
	})
	ipCmd(t, "-n", w.hostName, "-4", "rule", "del", "pref", fmt.Sprint(IIfRulePriority), "iif", "wc-p1")
	eventually(t, "a deleted policy rule put back", func() error {
		if got := w.ourRules(); !slices.Equal(got, want(1005)) {
			return fmt.Errorf("rules %q", got)
		}
		return nil
	})
	check(t, path{name: "work to internet through table 1005", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true})

	must(t, w.mgr.Remove(context.Background(), "p1"))
	if got := w.ourRules(); slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, "wc-p1") }) || len(got) != 4 {
		t.Errorf("after removing p1, rules %q; want p2's and the pools' only", got)
	}
	must(t, w.mgr.Remove(context.Background(), "p2"))
	if got := w.ourRules(); len(got) > 0 {
		t.Errorf("rules left after the last profile: %q", got)
	}
}
