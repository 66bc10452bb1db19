package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"
)

// netdRules is a phone's netd, in short: OEM chains hooked first, and on
// a tethering phone a FORWARD chain that ends in DROP; plus a rule of
// someone else's in FORWARD and in oem_fwd, and netd's NAT chains.
const netdRules = `*filter
:oem_fwd - [0:0]
:oem_out - [0:0]
:fw_FORWARD - [0:0]
:tetherctrl_FORWARD - [0:0]
-A FORWARD -j oem_fwd
-A FORWARD -j fw_FORWARD
-A FORWARD -j tetherctrl_FORWARD
-A FORWARD -s %[1]s -j DROP
-A OUTPUT -j oem_out
-A oem_fwd -s %[2]s -j DROP
-A tetherctrl_FORWARD -j DROP
COMMIT
*nat
:oem_nat_pre - [0:0]
:tetherctrl_nat_POSTROUTING - [0:0]
-A PREROUTING -j oem_nat_pre
-A POSTROUTING -j tetherctrl_nat_POSTROUTING
COMMIT
`

// xtRuleLines lists the host's rules of both families without counters.
func (w *world) xtRuleLines() []string {
	w.t.Helper()
	var out []string
	for fam, tables := range w.xtSaveAll(w.host) {
		for tn, t := range tables {
			for _, c := range t.Chains {
				out = append(out, fmt.Sprintf("%s %s chain %s", fam, tn, c))
				for _, r := range t.Rules[c] {
					out = append(out, fmt.Sprintf("%s %s -A %s %s", fam, tn, c, r.Args))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestIPTablesGoesFirstInNetdsChainsAndLeavesTheirRules(t *testing.T) {
	w := newWorld(t, BackendIPTables)
	x, host := w.xt(), w.nsHandle(w.host)
	ctx := context.Background()
	_, err := xtRun(ctx, host, fmt.Sprintf(netdRules, "10.8.8.8/32", "10.9.9.9/32"), x.v4.Restore, "-w", "--noflush")
	must(t, err)
	_, err = xtRun(ctx, host, fmt.Sprintf(netdRules, "2001:db8:8::8/128", "2001:db8:9::9/128"), x.v6.Restore, "-w", "--noflush")
	must(t, err)
	before := w.xtRuleLines()

	a := w.ensure("p1", direct)
	b := w.ensure("p2", Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{mustAddrPort(vpnEndpoint + ":443")}})
	// Work gets out although tetherctrl_FORWARD drops all: our accept
	// comes first, from oem_fwd.
	check(t, slices.Concat(w.isolation(a, b), w.isolation6(a, b), []path{
		{name: "work to internet past netd's chains", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true},
		{name: "IPv6 work to internet past netd's chains", ns: a.NSPath, network: "tcp", addr: hp(inetServer6, 80), allowed: true},
		{name: "vpn-lockdown profile to its endpoint", ns: b.NSPath, network: "tcp", addr: vpnEndpoint + ":443", allowed: true},
		{name: "vpn-lockdown profile elsewhere", ns: b.NSPath, network: "tcp", addr: inetServer + ":80"},
	})...)
	for fam, tables := range w.xtSaveAll(w.host) {
		f := tables["filter"]
		for parent, chain := range map[string]string{"oem_fwd": "wc_forward", "oem_out": "wc_output", "INPUT": "wc_input"} {
			if rs := f.Rules[parent]; len(rs) == 0 || rs[0].Args != "-j "+chain {
				t.Errorf("%s: %s does not jump to %s first: %v", fam, parent, chain, rs)
			}
		}
		for _, r := range slices.Concat(f.Rules["FORWARD"], f.Rules["OUTPUT"]) {
			if strings.Contains(r.Args, xtPrefix) {
				t.Errorf("%s: a hook of ours in a built-in chain although netd's OEM chain is there: %s", fam, r.Args)
			}
		}
		if rs := tables["nat"].Rules["POSTROUTING"]; len(rs) == 0 || rs[0].Args != "-j wc_postrouting" {
			t.Errorf("%s: POSTROUTING does not jump to wc_postrouting first: %v", fam, rs)
		}
	}
	// Someone (netd restarting) deletes our hook: Ensure puts it back.
	_, err = xtRun(ctx, host, "*filter\n-D oem_fwd -j wc_forward\nCOMMIT\n", x.v4.Restore, "-w", "--noflush")
	must(t, err)
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Errorf("healthy without the hook in oem_fwd")
	}
	_, err = w.mgr.Ensure(ctx, "p1", direct)
	must(t, err)
	if !w.mgr.Healthy(ctx, "p1", direct) {
		t.Errorf("not healthy after Ensure put the hook back")
	}

	must(t, w.mgr.Remove(ctx, "p1"))
	must(t, w.mgr.Remove(ctx, "p2"))
	if after := w.xtRuleLines(); !reflect.DeepEqual(after, before) {
		t.Errorf("netd's rules changed:\nbefore %q\nafter  %q", before, after)
	}
}

// netdRestart is what netd does to the firewall when it starts: INPUT and
// FORWARD and its child chains (the oem_ ones too) emptied and hooked
// again, and POSTROUTING likewise.
const netdRestart = `*filter
:INPUT -
-F INPUT
:FORWARD -
-F FORWARD
:oem_fwd -
:fw_FORWARD -
:tetherctrl_FORWARD -
-A FORWARD -j oem_fwd
-A FORWARD -j fw_FORWARD
-A FORWARD -j tetherctrl_FORWARD
:oem_out -
COMMIT
*nat
:POSTROUTING -
-F POSTROUTING
:tetherctrl_nat_POSTROUTING -
-A POSTROUTING -j tetherctrl_nat_POSTROUTING
COMMIT
`

// netd restarts: it empties the chains our hooks are in, then flushes the
// policy rules and makes its own again. The rule events bring Watch, which
// finds our rules no longer whole and puts them back.
func TestNetdRestartIsRepairedOnItsRuleFlush(t *testing.T) {
	w := newWorld(t, BackendIPTables)
	x, host := w.xt(), w.nsHandle(w.host)
	ctx := context.Background()
	_, err := xtRun(ctx, host, fmt.Sprintf(netdRules, "10.8.8.8/32", "10.9.9.9/32"), x.v4.Restore, "-w", "--noflush")
	must(t, err)
	_, err = xtRun(ctx, host, fmt.Sprintf(netdRules, "2001:db8:8::8/128", "2001:db8:9::9/128"), x.v6.Restore, "-w", "--noflush")
	must(t, err)
	w.androidRouting(1003)
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- w.mgr.Watch(wctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	a := w.ensure("p1", direct)
	b := w.ensure("p2", direct)
	check(t, path{name: "internet before netd restarts", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true})
	// Let the events of the new veths pass (their IPv6 link-local
	// addresses finish duplicate address detection), so that what
	// follows is brought about by netd's rule flush alone.
	eventually(t, "no tentative addresses in the host", func() error {
		out, err := exec.Command("ip", "-n", w.hostName, "-6", "addr", "show", "tentative").CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	time.Sleep(4 * settleDelay)

	_, err = xtRun(ctx, host, netdRestart, x.v4.Restore, "-w", "--noflush")
	must(t, err)
	_, err = xtRun(ctx, host, netdRestart, x.v6.Restore, "-w", "--noflush")
	must(t, err)
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("healthy with netd's restart having emptied our hooks")
	}
	// The hole is real (control): nothing filters work now.
	check(t, path{name: "internet into work with our hooks gone (control)", ns: w.router, network: "tcp", addr: a.Addr.Addr().String() + ":9000", allowed: true})

	for _, fam := range []string{"-4", "-6"} {
		ipCmd(t, "-n", w.hostName, fam, "rule", "flush")
	}
	w.netdNetworkRules(1003)
	w.netdBaseRules(1003)
	eventually(t, "rules back after netd's restart", func() error {
		if !w.mgr.Healthy(ctx, "p1", direct) || !w.mgr.Healthy(ctx, "p2", direct) {
			return fmt.Errorf("not healthy")
		}
		if len(w.ourRules()) != 6 {
			return fmt.Errorf("policy rules %q", w.ourRules())
		}
		return nil
	})
	check(t, slices.Concat(w.isolation(a, b), w.isolation6(a, b), []path{
		{name: "internet after the repair", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true},
		{name: "IPv6 internet after the repair", ns: a.NSPath, network: "tcp", addr: hp(inetServer6, 80), allowed: true},
	})...)
}

// A GKI kernel has no ip6tables nat table: profiles then get no IPv6 (all
// of it dropped), and nothing asks the kernel for IPv6 NAT.
func TestIPTablesWithoutIPv6NATGivesNoIPv6(t *testing.T) {
	probeNAT6 = func(context.Context, *xtTools, vns.NsHandle) error {
		return errors.New("can't initialize ip6tables table `nat': Table does not exist")
	}
	t.Cleanup(func() {
		probeNAT6 = func(ctx context.Context, x *xtTools, ns vns.NsHandle) error {
			_, err := xtRun(ctx, ns, "", x.v6.Cmd, "-w", "-t", "nat", "-S")
			return err
		}
	})
	w := newWorld(t, BackendIPTables)
	a := w.ensure("p1", direct)
	b := w.ensure("p2", direct)
	if a.Addr6.IsValid() {
		t.Fatalf("profile got IPv6 %s without IPv6 NAT", a.Addr6)
	}
	check(t, append(w.isolation(a, b),
		path{name: "IPv4 internet", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true},
		path{name: "IPv6 internet", ns: a.NSPath, network: "tcp", addr: hp(inetServer6, 80)},
	)...)
	if nat := w.xtSaveAll(w.host)["IPv6"]["nat"]; nat != nil {
		for _, c := range nat.Chains {
			if strings.HasPrefix(c, xtPrefix) {
				t.Errorf("an IPv6 nat chain %s on a kernel said to have no IPv6 NAT", c)
			}
		}
	}
	if !w.mgr.Healthy(context.Background(), "p1", direct) {
		t.Errorf("not healthy without IPv6 NAT")
	}
}

// TestXTFingerprintFollowsTheTables: the quick health check's fingerprint
// of the host's legacy tables changes with a rule added, removed or a
// chain flushed in either family, and comes back with the same rules.
func TestXTFingerprintFollowsTheTables(t *testing.T) {
	w := newWorld(t, BackendIPTables)
	ctx := context.Background()
	host, x := w.nsHandle(w.host), w.xt()
	fp := func() xtFingerprint {
		t.Helper()
		f, err := xtReadFingerprint(host)
		must(t, err)
		return f
	}
	before := fp()
	if again := fp(); again != before {
		t.Fatalf("fingerprint moved with nothing done: %v, %v", before, again)
	}
	for _, tc := range []struct{ name, restore, add, del string }{
		{"IPv4 filter", x.v4.Restore, "*filter\n-A FORWARD -s 10.66.0.1/32 -j DROP\nCOMMIT\n", "*filter\n-D FORWARD -s 10.66.0.1/32 -j DROP\nCOMMIT\n"},
		{"IPv4 nat", x.v4.Restore, "*nat\n-A POSTROUTING -s 10.66.0.1/32 -j MASQUERADE\nCOMMIT\n", "*nat\n-D POSTROUTING -s 10.66.0.1/32 -j MASQUERADE\nCOMMIT\n"},
		{"IPv6 filter", x.v6.Restore, "*filter\n-A INPUT -s 2001:db8::1/128 -j DROP\nCOMMIT\n", "*filter\n-D INPUT -s 2001:db8::1/128 -j DROP\nCOMMIT\n"},
	} {
		_, err := xtRun(ctx, host, tc.add, tc.restore, "-w", "--noflush")
		must(t, err)
		if fp() == before {
			t.Errorf("%s: a rule added and the fingerprint is the same", tc.name)
		}
		_, err = xtRun(ctx, host, tc.del, tc.restore, "-w", "--noflush")
		must(t, err)
		if got := fp(); got != before {
			t.Errorf("%s: the rule removed, fingerprint %v, want %v", tc.name, got, before)
		}
	}
	// With a profile's rules applied, Healthy takes the quick path until
	// someone flushes a chain of ours; then the full check sees it.
	w.ensure("p1", direct)
	fw := w.mgr.fw.(*iptFirewall)
	if !fw.unchanged() || !w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatalf("fresh rules: unchanged %v, healthy %v", fw.unchanged(), w.mgr.Healthy(ctx, "p1", direct))
	}
	_, err := xtRun(ctx, host, "*filter\n-F wc_forward\nCOMMIT\n", x.v4.Restore, "-w", "--noflush")
	must(t, err)
	if fw.unchanged() || w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatalf("after a flush of wc_forward: unchanged %v, healthy %v", fw.unchanged(), w.mgr.Healthy(ctx, "p1", direct))
	}
}
