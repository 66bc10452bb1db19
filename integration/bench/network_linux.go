package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/netns"
)

// The network section: issue 3's budget. The bench's workcelld runs in a
// network namespace of its own (its "host" side), with a fake uplink into
// a "router" namespace that plays the internet and runs iperf3 -s. Nothing
// touches the machine's own network.
func init() {
	Register(Row{Section: "network", Name: "net-throughput", Run: netThroughput})
	Register(Row{Section: "network", Name: "net-setup-teardown", Run: netSetupTeardown})
	Register(Row{Section: "network", Name: "net-allow-change", Run: netAllowChange})
	Register(Row{Section: "network", Name: "net-iptables", Run: netIPTables})
}

const (
	benchHostUplink = "198.51.100.2"
	benchRouter     = "198.51.100.1"
	benchInet       = "203.0.113.10" // the iperf3 server, "on the internet"
)

// benchNS are the namespaces this run made (`ip netns` names), deleted at
// the end whatever happens.
var (
	benchNSMu sync.Mutex
	benchNS   []string
)

func addBenchNS(suffix string) (string, error) {
	name := fmt.Sprintf("wcbench-%d-%s", os.Getpid(), suffix)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	benchNSMu.Lock()
	benchNS = append(benchNS, name)
	benchNSMu.Unlock()
	return name, ipn(name, "link", "set", "lo", "up")
}

// newDaemonNetNS makes the namespace the bench's workcelld runs in.
func newDaemonNetNS() (string, error) {
	name, err := addBenchNS("host")
	daemonNS = "/run/netns/" + name
	return daemonNS, err
}

// deleteBenchNetNS unpins what a failed run left under runDir/netns and
// deletes the run's namespaces.
func deleteBenchNetNS(runDir string) []error {
	var errs []error
	entries, _ := os.ReadDir(filepath.Join(runDir, "netns"))
	for _, e := range entries {
		p := filepath.Join(runDir, "netns", e.Name())
		for unix.Unmount(p, unix.MNT_DETACH) == nil {
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	benchNSMu.Lock()
	defer benchNSMu.Unlock()
	for _, n := range benchNS {
		if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", n, err, out))
		}
	}
	benchNS = nil
	return errs
}

func ipn(ns string, args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
	return nil
}

// netWorld is the topology the throughput rows share. Every path has the
// same hops: client namespace -> veth -> a forwarding "host" namespace ->
// veth uplink -> the router, where the iperf3 server is. The peers differ
// from the profile only in what the host does on the way:
//   - plainNS: a host namespace of its own with plain IPv4 forwarding and
//     routing, no nftables at all (so no conntrack either);
//   - natNS: a host namespace of its own with forwarding and one nftables
//     rule, masquerade out of its uplink (so conntrack + NAT, as the
//     profile pays), and no filter rules.
//
// The profile's host is the daemon's namespace: forwarding, conntrack,
// masquerade and workcell's rules.
type netWorld struct {
	profile string
	nsPath  string // the profile's pinned namespace
	plainNS string // peer: plain forwarding, no rules
	natNS   string // peer: forwarding + masquerade only
}

func netTopology(ctx context.Context, b *Bench) (*netWorld, error) {
	v, err := b.Fixture("networld", func() (any, error) {
		if _, err := exec.LookPath("iperf3"); err != nil {
			return nil, fmt.Errorf("iperf3 is missing (hack/install-deps installs it): %w", err)
		}
		host := strings.TrimPrefix(daemonNS, "/run/netns/")
		rtr, err := addBenchNS("router")
		if err != nil {
			return nil, err
		}
		cmds := [][]string{
			{host, "link", "add", "up0", "type", "veth", "peer", "name", "r-up", "netns", rtr},
			{host, "addr", "add", benchHostUplink + "/24", "dev", "up0"},
			{host, "link", "set", "up0", "up"},
			{host, "route", "add", "default", "via", benchRouter},
			{rtr, "addr", "add", benchRouter + "/24", "dev", "r-up"},
			{rtr, "link", "set", "r-up", "up"},
			{rtr, "addr", "add", benchInet + "/32", "dev", "lo"},
		}
		// The peers: a client namespace behind a host namespace of its own
		// with an uplink into the same router.
		var peerNS, peerHost [2]string
		for i, kind := range []string{"plain", "nat"} {
			if peerHost[i], err = addBenchNS(kind + "host"); err != nil {
				return nil, err
			}
			if peerNS[i], err = addBenchNS(kind + "peer"); err != nil {
				return nil, err
			}
			h, p := peerHost[i], peerNS[i]
			up := fmt.Sprintf("198.51.%d.", 101+i) // host uplink .2, router .1
			sub := fmt.Sprintf("10.232.0.%d", 4*i) // the client's /30
			gw, addr := fmt.Sprintf("10.232.0.%d", 4*i+1), fmt.Sprintf("10.232.0.%d", 4*i+2)
			cmds = append(cmds,
				[]string{h, "link", "add", "up0", "type", "veth", "peer", "name", "r-" + kind, "netns", rtr},
				[]string{h, "addr", "add", up + "2/24", "dev", "up0"},
				[]string{h, "link", "set", "up0", "up"},
				[]string{h, "route", "add", "default", "via", up + "1"},
				[]string{rtr, "addr", "add", up + "1/24", "dev", "r-" + kind},
				[]string{rtr, "link", "set", "r-" + kind, "up"},
				[]string{h, "link", "add", "pv0", "type", "veth", "peer", "name", "eth0", "netns", p},
				[]string{h, "addr", "add", gw + "/30", "dev", "pv0"},
				[]string{h, "link", "set", "pv0", "up"},
				[]string{p, "addr", "add", addr + "/30", "dev", "eth0"},
				[]string{p, "link", "set", "eth0", "up"},
				[]string{p, "route", "add", "default", "via", gw},
			)
			if kind == "plain" {
				// Routed back without NAT.
				cmds = append(cmds, []string{rtr, "route", "add", sub + "/30", "via", up + "2"})
			}
		}
		for _, c := range cmds {
			if err := ipn(c[0], c[1:]...); err != nil {
				return nil, err
			}
		}
		for _, h := range peerHost {
			if out, err := exec.Command("ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("ip_forward in %s: %v: %s", h, err, out)
			}
		}
		if err := netns.BenchMasquerade("/run/netns/"+peerHost[1], "up0"); err != nil {
			return nil, err
		}
		srv := exec.Command("ip", "netns", "exec", rtr, "iperf3", "-s", "-B", benchInet, "-p", "5201")
		srv.Stdout, srv.Stderr = b.DevNull, b.DevNull
		if err := srv.Start(); err != nil {
			return nil, fmt.Errorf("start iperf3 server: %w", err)
		}
		b.AtEnd("stop iperf3 server", func(context.Context) error { _ = srv.Process.Kill(); _ = srv.Wait(); return nil })

		w := &netWorld{profile: "netbench", plainNS: "/run/netns/" + peerNS[0], natNS: "/run/netns/" + peerNS[1]}
		bundle, err := b.Bundle("sleeper", sleeperArgs...)
		if err != nil {
			return nil, err
		}
		if err := b.Profile(ctx, w.profile, bundle); err != nil {
			return nil, err
		}
		if err := setAllow(ctx, b, w.profile, 10); err != nil {
			return nil, err
		}
		if _, err := b.Client.Start(ctx, w.profile); err != nil {
			return nil, fmt.Errorf("start profile %s: %w", w.profile, err)
		}
		w.nsPath = filepath.Join(b.Dir, "run", "netns", w.profile)
		// The server needs a moment to listen.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := iperf(ctx, w.plainNS, time.Second); err == nil {
				break
			} else if time.Now().After(deadline) {
				return nil, fmt.Errorf("iperf3 through the plain peer path: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// One warm-up transfer on each other path.
		for _, ns := range []string{w.natNS, w.nsPath} {
			if _, err := iperf(ctx, ns, time.Second); err != nil {
				return nil, err
			}
		}
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*netWorld), nil
}

// setAllow gives the profile an allow-list of n entries whose last one is
// the iperf3 server.
func setAllow(ctx context.Context, b *Bench, profile string, n int) error {
	s := api.NetworkSettings{Mode: api.NetworkDirect}
	for _, r := range netns.SyntheticAllowList(n - 1) {
		s.Allow = append(s.Allow, r.String())
	}
	s.Allow = append(s.Allow, benchInet+"/tcp:5201")
	if _, err := b.Client.SetNetwork(ctx, profile, s); err != nil {
		return fmt.Errorf("allow-list of %d entries: %w", n, err)
	}
	return nil
}

// iperf runs an iperf3 client in the namespace at ns (nsenter from the
// host: the busybox profile has no iperf3, and the kernel path measured is
// the same: namespace, veth, nftables, NAT) and returns Gbit/s received.
func iperf(ctx context.Context, ns string, d time.Duration) (float64, error) {
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+ns, "--", "iperf3", "-c", benchInet, "-p", "5201",
		"-t", fmt.Sprint(d.Seconds()), "-J").Output()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || err != nil {
		return 0, fmt.Errorf("iperf3 in %s: %v %s", ns, errors.Join(err, jerr), res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func gbits(v float64) Figure { return Figure{Value: v, Unit: "Gbit/s", Set: true} }

func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// below reports whether r, as printed (two decimals), is under limit.
func below(r, limit float64) bool { return math.Round(r*100)/100 < limit }

// pairedRatio is the median over rounds of a[i]/b[i] (samples taken in the
// same round).
func pairedRatio(a, b []float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return 0
	}
	return median(rs)
}

// rotate runs one sample of each fn per round, n rounds, starting each
// round one further along, so that no path always follows the same other.
func rotate(n int, fns ...func() error) error {
	for i := range n {
		for j := range fns {
			if err := fns[(i+j)%len(fns)](); err != nil {
				return err
			}
		}
	}
	return nil
}

// netThroughput: iperf3 from inside the profile to the fake internet host
// with 10 and with 10,000 allow-list entries, interleaved with the same
// transfer from the two peers of netWorld (same hops; plain forwarding, and
// forwarding + masquerade).
func netThroughput(ctx context.Context, b *Bench) ([]Line, error) {
	w, err := netTopology(ctx, b)
	if err != nil {
		return nil, err
	}
	// Many short samples, the paths in turn, compared round by round: the
	// speed of this shared machine's cores drifts by tens of percent within
	// seconds, so a ratio of medians taken apart wanders more than the
	// difference being measured; a ratio within one round does less so.
	n, dur := b.N(25, 1), time.Second
	run := func(ns string, into *[]float64) func() error {
		return func() error {
			v, err := iperf(ctx, ns, dur)
			*into = append(*into, v)
			return err
		}
	}
	measure := func(allow int) (wc, plain, nat []float64, err error) {
		if err := setAllow(ctx, b, w.profile, allow); err != nil {
			return nil, nil, nil, err
		}
		err = rotate(n, run(w.nsPath, &wc), run(w.plainNS, &plain), run(w.natNS, &nat))
		return wc, plain, nat, err
	}
	wc10, plain10, nat10, err := measure(10)
	if err != nil {
		return nil, err
	}
	wc10k, plain10k, _, err := measure(10000)
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("ratio: median of %d per-round ratios (figures: medians), 1 s each, the three paths in turn; iperf3 -c by nsenter in the profile's netns (busybox has none): same kernel path", n)
	r10 := pairedRatio(wc10, plain10)
	rNAT := pairedRatio(wc10, nat10)
	// Compare the two list sizes by their ratio to the peer measured beside
	// each, so that drift of the shared machine between the blocks cancels.
	rk := pairedRatio(wc10k, plain10k) / r10
	return []Line{
		{Name: "net-throughput", Workcell: gbits(median(wc10)), Peer: gbits(median(plain10)),
			PeerName: "same hops (client netns -> veth -> forwarding host netns -> uplink veth -> server netns), host with plain forwarding, no nftables, no conntrack, no NAT",
			Target:   ">= 0.95x", Over: below(r10, 0.95), Ratio: r10, Note: fmt.Sprintf("%.2fx; 10 allow entries, NAT (conntrack + masquerade alone cost ~5.5%% of the CPU here, a ~0.945x floor); %s", r10, note)},
		{Name: "net-throughput-vs-nat", Workcell: gbits(median(wc10)), Peer: gbits(median(nat10)),
			PeerName: "same hops, host with forwarding and one nftables masquerade rule (conntrack + NAT), no filter rules",
			Target:   ">= 0.95x", Over: below(rNAT, 0.95), Ratio: rNAT, Note: fmt.Sprintf("%.2fx: the cost of workcell's own rules over the NAT every profile needs", rNAT)},
		{Name: "net-throughput-10k", Workcell: gbits(median(wc10k)), Peer: gbits(median(wc10)), PeerName: "the same profile with 10 entries",
			Target: ">= 0.95x", Over: below(rk, 0.95), Ratio: rk, Note: fmt.Sprintf("10,000 allow entries; %.2fx after normalizing each block by its plain peer", rk)},
	}, nil
}

// netSetupTeardown: a profile's whole network made (namespace, veth,
// addresses, routes, rules) and removed by netns.Manager, in a namespace
// of its own, vs the same namespace and veth made and deleted with ip(8)
// and no rules.
func netSetupTeardown(ctx context.Context, b *Bench) ([]Line, error) {
	host, err := addBenchNS("setup")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.Dir, "netsetup")
	m, err := netns.NewManager(filepath.Join(dir, "run"), filepath.Join(dir, "network.json"), netns.WithHostNS("/run/netns/"+host))
	if err != nil {
		return nil, err
	}
	defer m.Close()
	rounds := b.N(20, 3)
	setup, teardown, err := netns.BenchSetupTeardown(ctx, m, "bench", netns.Settings{Mode: netns.ModeDirect}, rounds)
	if err != nil {
		return nil, err
	}
	var pSetup, pTeardown time.Duration
	for i := range rounds {
		name := fmt.Sprintf("wcbench-%d-ip%d", os.Getpid(), i)
		t0 := time.Now()
		for _, c := range [][]string{
			{"ip", "netns", "add", name},
			{"ip", "-n", host, "link", "add", "wc-ip", "type", "veth", "peer", "name", "eth0", "netns", name},
			{"ip", "-n", host, "addr", "add", "10.233.0.1/30", "dev", "wc-ip"},
			{"ip", "-n", host, "link", "set", "wc-ip", "up"},
			{"ip", "-n", name, "addr", "add", "10.233.0.2/30", "dev", "eth0"},
			{"ip", "-n", name, "link", "set", "eth0", "up"},
			{"ip", "-n", name, "link", "set", "lo", "up"},
			{"ip", "-n", name, "route", "add", "default", "via", "10.233.0.1"},
		} {
			if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
				exec.Command("ip", "netns", "del", name).Run()
				return nil, fmt.Errorf("%s: %v: %s", strings.Join(c, " "), err, out)
			}
		}
		t1 := time.Now()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip netns del: %v: %s", err, out)
		}
		if out, err := exec.CommandContext(ctx, "ip", "-n", host, "link", "del", "wc-ip").CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find") {
			return nil, fmt.Errorf("ip link del: %v: %s", err, out)
		}
		pSetup += t1.Sub(t0)
		pTeardown += time.Since(t1)
	}
	pSetup /= time.Duration(rounds)
	pTeardown /= time.Duration(rounds)
	return []Line{
		{Name: "net-setup", Workcell: Millis(setup), Peer: Millis(pSetup), PeerName: "ip(8): netns + veth + addresses + route, no rules",
			Target: "<= 100 ms", Over: setup > 100*time.Millisecond, Note: fmt.Sprintf("mean of %d; includes waiting until both ends are up", rounds)},
		{Name: "net-teardown", Workcell: Millis(teardown), Peer: Millis(pTeardown), PeerName: "ip netns del + link del",
			Target: "<= 100 ms", Over: teardown > 100*time.Millisecond, Note: fmt.Sprintf("mean of %d", rounds)},
	}, nil
}

// netAllowChange: replacing a running profile's allow-list with 1,000
// entries through the API (one atomic nftables batch), vs the same call
// with 10 entries.
func netAllowChange(ctx context.Context, b *Bench) ([]Line, error) {
	w, err := netTopology(ctx, b)
	if err != nil {
		return nil, err
	}
	n := b.N(15, 3)
	var big, small Samples
	// Alternate sizes so that every call is a real change.
	err = interleave(n, n, func(int) error {
		return big.timed(func() error { return setAllow(ctx, b, w.profile, 1000) })
	}, func(int) error {
		return small.timed(func() error { return setAllow(ctx, b, w.profile, 10) })
	})
	if err != nil {
		return nil, err
	}
	wc := big.Median()
	return []Line{{Name: "net-allow-change", Workcell: wc, Peer: small.Median(), PeerName: "the same change to 10 entries",
		WorkcellP99: big.Quantile(0.99), PeerP99: small.Quantile(0.99),
		Target: "<= 100 ms", Over: wc.Value > 100, Note: "1,000 entries, live, through the API (PUT .../network)"}}, nil
}

// daemonNS is the namespace the bench's workcelld runs in.
var daemonNS string

// netIPTables: the iptables-legacy backend (GKI kernels: no nf_tables)
// beside the nftables one, each a netns.Manager in a namespace of its own,
// measured in turn in the same run: a profile's whole network made and
// removed, and its allow-list replaced by 1,000 entries (one
// iptables-restore run per family vs one nftables batch).
func netIPTables(ctx context.Context, b *Bench) ([]Line, error) {
	if err := netns.ProbeIPTablesLegacy(ctx); err != nil {
		return nil, fmt.Errorf("the iptables-legacy rows need it (hack/install-deps installs iptables): %w", err)
	}
	managers := map[netns.Backend]*netns.Manager{}
	for _, be := range []netns.Backend{netns.BackendIPTables, netns.BackendNFTables} {
		host, err := addBenchNS("fw-" + string(be)[:3])
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(b.Dir, "netfw-"+string(be))
		m, err := netns.NewManager(filepath.Join(dir, "run"), filepath.Join(dir, "network.json"), netns.WithHostNS("/run/netns/"+host), netns.WithBackend(be))
		if err != nil {
			return nil, err
		}
		defer m.Close()
		managers[be] = m
	}
	ipt, nft := managers[netns.BackendIPTables], managers[netns.BackendNFTables]
	rounds := b.N(20, 3)
	direct := netns.Settings{Mode: netns.ModeDirect}
	iSetup, iTeardown, err := netns.BenchSetupTeardown(ctx, ipt, "bench", direct, rounds)
	if err != nil {
		return nil, err
	}
	nSetup, nTeardown, err := netns.BenchSetupTeardown(ctx, nft, "bench", direct, rounds)
	if err != nil {
		return nil, err
	}
	for _, m := range []*netns.Manager{ipt, nft} {
		if _, err := m.Ensure(ctx, "bench", direct); err != nil {
			return nil, err
		}
	}
	n := b.N(15, 3)
	var iBig, nBig Samples
	// Each round changes the list twice per backend (1,000 entries, then
	// back to none), so that every timed call is a real change.
	for range n {
		for _, c := range []struct {
			m *netns.Manager
			s *Samples
		}{{ipt, &iBig}, {nft, &nBig}} {
			d, err := netns.BenchAllowListChange(ctx, c.m, "bench", 1000)
			if err != nil {
				return nil, err
			}
			*c.s = append(*c.s, d)
			if err := c.m.Apply(ctx, "bench", direct); err != nil {
				return nil, err
			}
		}
	}
	for _, m := range []*netns.Manager{ipt, nft} {
		if err := m.Remove(ctx, "bench"); err != nil {
			return nil, err
		}
	}
	peer := "the same with the nftables backend, same run"
	return []Line{
		{Name: "net-setup-iptables", Workcell: Millis(iSetup), Peer: Millis(nSetup), PeerName: peer,
			Target: "<= 100 ms", Over: iSetup > 100*time.Millisecond, Note: fmt.Sprintf("mean of %d; netns.Manager, not the API", rounds)},
		{Name: "net-teardown-iptables", Workcell: Millis(iTeardown), Peer: Millis(nTeardown), PeerName: peer,
			Target: "<= 100 ms", Over: iTeardown > 100*time.Millisecond, Note: fmt.Sprintf("mean of %d", rounds)},
		{Name: "net-allow-change-iptables", Workcell: iBig.Median(), Peer: nBig.Median(), PeerName: peer,
			WorkcellP99: iBig.Quantile(0.99), PeerP99: nBig.Quantile(0.99),
			Target: "<= 100 ms", Over: iBig.Median().Value > 100, Note: "1,000 entries through netns.Manager.Apply (no API): one iptables-restore run per family, one rule per entry (no ipset on GKI)"}}, nil
}
