package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"

	"github.com/workcell/workcell/api"
)

// Addresses of the fake world the network tests build around the daemon's
// own namespace (the phone's "host" side). Nothing leaves the namespaces
// the test made.
const (
	hostUplinkAddr = "198.51.100.2" // the phone on its uplink
	routerAddr     = "198.51.100.1" // the uplink's gateway
	hostLANAddr    = "192.168.50.1"
	lanServer      = "192.168.50.2" // a host in the home LAN
	inetServer     = "203.0.113.10" // "the internet": ports 80 and 8080
	vpnEndpoint    = "203.0.113.20" // a VPN server: port 443
	dnsServer      = "203.0.113.53"

	// The same in IPv6 (documentation prefixes).
	hostUplink6 = "2001:db8:1::2"
	router6     = "2001:db8:1::1"
	hostLAN6    = "2001:db8:50::1"
	lanServer6  = "2001:db8:50::2"
	inetServer6 = "2001:db8:ff::10"
)

// world is a daemon in its namespace with an uplink into a router that
// plays the internet, a home LAN, and services on the host itself.
type world struct {
	*daemon
	host, router, lan string // namespace paths
	resolv            string // the host's resolver file the daemon reads
}

func newWorld(t *testing.T, opts ...daemonOpt) *world {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	// A loopback stub first: it must never reach the profile.
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\nnameserver "+dnsServer+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, append([]daemonOpt{withConfig("net_resolv_conf", resolv)}, opts...)...)
	w := &world{daemon: d, host: netnsPath(d.netns), resolv: resolv}
	h := d.netns
	rtr, lan := newNetNS(t, "wcit-r"), newNetNS(t, "wcit-l")
	w.router, w.lan = netnsPath(rtr), netnsPath(lan)

	ipIn(t, h, "link", "add", "up0", "type", "veth", "peer", "name", "r-up", "netns", rtr)
	ipIn(t, h, "addr", "add", hostUplinkAddr+"/24", "dev", "up0")
	ipIn(t, h, "link", "set", "up0", "up")
	ipIn(t, h, "route", "add", "default", "via", routerAddr)
	ipIn(t, rtr, "addr", "add", routerAddr+"/24", "dev", "r-up")
	ipIn(t, rtr, "link", "set", "r-up", "up")
	for _, a := range []string{inetServer, vpnEndpoint, dnsServer} {
		ipIn(t, rtr, "addr", "add", a+"/32", "dev", "lo")
	}
	// A hostile internet would try to reach work directly.
	ipIn(t, rtr, "route", "add", "10.231.0.0/16", "via", hostUplinkAddr)

	ipIn(t, h, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan)
	ipIn(t, h, "addr", "add", hostLANAddr+"/24", "dev", "lan0")
	ipIn(t, h, "link", "set", "lan0", "up")
	ipIn(t, lan, "addr", "add", lanServer+"/24", "dev", "eth0")
	ipIn(t, lan, "link", "set", "eth0", "up")
	ipIn(t, lan, "route", "add", "default", "via", hostLANAddr)

	// IPv6 beside it (nodad: usable at once); Go's 0.0.0.0 listeners below
	// are dual-stack, so every server answers on both.
	ipIn(t, h, "addr", "add", hostUplink6+"/64", "dev", "up0", "nodad")
	ipIn(t, h, "-6", "route", "add", "default", "via", router6)
	ipIn(t, rtr, "addr", "add", router6+"/64", "dev", "r-up", "nodad")
	ipIn(t, rtr, "addr", "add", inetServer6+"/128", "dev", "lo")
	ipIn(t, rtr, "-6", "route", "add", "fd77:6f72:6b00::/48", "via", hostUplink6)
	ipIn(t, h, "addr", "add", hostLAN6+"/64", "dev", "lan0", "nodad")
	ipIn(t, lan, "addr", "add", lanServer6+"/64", "dev", "eth0", "nodad")
	ipIn(t, lan, "-6", "route", "add", "default", "via", hostLAN6)

	w.serve(w.router, "0.0.0.0:80", "internet")
	w.serve(w.router, "0.0.0.0:8080", "internet-8080")
	w.serve(w.router, vpnEndpoint+":443", "vpn")
	w.serve(w.lan, "0.0.0.0:80", "lan")
	w.serve(w.host, "0.0.0.0:7000", "host-any")
	w.serve(w.host, "127.0.0.1:7001", "host-loopback")
	return w
}

// in runs fn on a thread inside the namespace at path.
func in(path string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := vns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := vns.Set(h); err != nil {
		return err
	}
	defer vns.Set(orig)
	return fn()
}

// serve answers every connection with "NAME REMOTEADDR\n".
func (w *world) serve(ns, addr, name string) {
	w.t.Helper()
	var l net.Listener
	if err := in(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		w.t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	w.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// probe is one connection attempt and whether it must work.
type probe struct {
	name    string
	addr    string // host:port
	allowed bool
	want    string // when allowed: the server's line contains this
}

// fromProfile tries every probe at once from inside the running profile
// (busybox nc through `workcell exec`) and reports each one that behaves
// wrongly.
func (w *world) fromProfile(t *testing.T, profile string, probes ...probe) {
	t.Helper()
	var sb strings.Builder
	for i, p := range probes {
		host, port, _ := net.SplitHostPort(p.addr)
		// A probe that must be blocked waits 1 s; one that must work may
		// take longer on a loaded machine and returns as soon as it works.
		wait := 1
		if p.allowed {
			wait = 4
		}
		fmt.Fprintf(&sb, "(echo \"%d|$(timeout %d nc -w %d %s %s </dev/null 2>/dev/null | head -n1)\") & ", i, wait+1, wait, host, port)
	}
	sb.WriteString("wait")
	out := w.with(t).ok("exec", profile, "--", "sh", "-c", sb.String())
	got := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		i, rest, ok := strings.Cut(line, "|")
		if n, err := strconv.Atoi(i); ok && err == nil {
			got[n] = strings.TrimSpace(rest)
		}
	}
	for i, p := range probes {
		line := got[i]
		switch {
		case p.allowed && line == "":
			t.Errorf("%s (%s) from %s: should work, got nothing", p.name, p.addr, profile)
		case p.allowed && !strings.Contains(line, p.want):
			t.Errorf("%s (%s) from %s: got %q, want it to contain %q", p.name, p.addr, profile, line, p.want)
		case !p.allowed && line != "":
			t.Errorf("%s (%s) from %s: should be blocked, got %q", p.name, p.addr, profile, line)
		}
	}
}

// intoWork tries to connect from the given namespaces to addr; each must fail.
func intoWork(t *testing.T, addr string, from map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, ns := range from {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			err := in(ns, func() (err error) { c, err = net.DialTimeout("tcp", addr, 800*time.Millisecond); return err })
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(800 * time.Millisecond))
			line, _ := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			t.Errorf("%s into work (%s): connected, got %q", name, addr, line)
			mu.Unlock()
		}()
	}
	wg.Wait()
}

func (w *world) network(t *testing.T, name string) api.Network {
	t.Helper()
	var n api.Network
	if err := json.Unmarshal([]byte(w.with(t).ok("net", "show", "--json", name)), &n); err != nil {
		t.Fatalf("net show --json: %v", err)
	}
	return n
}

func (w *world) stats(t *testing.T, name string) api.Stats {
	t.Helper()
	var s api.Stats
	if err := json.Unmarshal([]byte(w.with(t).ok("stats", "--json", name)), &s); err != nil {
		t.Fatalf("stats --json: %v", err)
	}
	return s
}

// TestNetworkThroughTheDaemon runs once per firewall backend (daemon
// config "firewall" set to it): every behaviour below must hold for both.
func TestNetworkThroughTheDaemon(t *testing.T) {
	eachFirewall(t, testNetworkThroughTheDaemon)
}

func testNetworkThroughTheDaemon(t *testing.T, fw firewall) {
	w := newWorld(t, withArgs("--owner-uid", "4242"), withConfig("firewall", string(fw.backend)))
	w.install("work")
	w.install("other")
	// The network may already exist: a stopped profile's container is
	// prepared in its namespace.
	if n := w.network(t, "work"); n.Settings.Mode != "direct" {
		t.Fatalf("installed, never started: %+v, want direct mode", n)
	}
	w.with(t).ok("start", "work")
	w.with(t).ok("start", "other")

	work, other := w.network(t, "work"), w.network(t, "other")
	if !work.Present || work.HostInterface != "wc-work" || !strings.HasPrefix(work.Address, "10.231.") || work.Address == other.Address {
		t.Fatalf("net show: work %+v, other %+v", work, other)
	}
	if !strings.HasPrefix(work.Address6, "fd77:6f72:6b00:") || work.Address6 == other.Address6 || work.Gateway6 == "" {
		t.Fatalf("net show, IPv6: work %+v, other %+v", work, other)
	}
	workIP, _, _ := strings.Cut(work.Address, "/")
	gw6, _, _ := strings.Cut(work.Gateway6, "/")
	otherIP, _, _ := strings.Cut(other.Address, "/")
	gwIP, _, _ := strings.Cut(work.Gateway, "/")
	workNS := filepath.Join(w.run, "netns", "work")
	otherNS := filepath.Join(w.run, "netns", "other")
	// Servers inside the profiles' namespaces (the ones their containers joined).
	w.serve(workNS, "0.0.0.0:9000", "work")
	w.serve(otherNS, "0.0.0.0:9000", "other")

	if out := w.with(t).ok("net", "show", "work"); !strings.Contains(out, "mode") || !strings.Contains(out, "direct") || !strings.Contains(out, work.Address) ||
		!strings.Contains(out, work.Address6) || !strings.Contains(out, "every public address") {
		t.Errorf("net show (text):\n%s", out)
	}
	if rc := w.with(t).ok("exec", "work", "--", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver "+dnsServer) || strings.Contains(rc, "127.0.0.53") {
		t.Errorf("the profile's /etc/resolv.conf must name the upstream resolver, never the loopback stub:\n%s", rc)
	}
	if r := w.with(t).cli("exec", "work", "--", "sh", "-c", "echo x > /etc/resolv.conf"); r.code == 0 {
		t.Errorf("the profile could write its /etc/resolv.conf")
	}

	isolated := []probe{
		{name: "host service on 0.0.0.0 via the uplink address", addr: hostUplinkAddr + ":7000"},
		{name: "host service via the veth's host address", addr: gwIP + ":7000"},
		{name: "host loopback service via the gateway", addr: gwIP + ":7001"},
		{name: "host LAN address", addr: hostLANAddr + ":7000"},
		{name: "home LAN server", addr: lanServer + ":80"},
		{name: "uplink router (connected network)", addr: routerAddr + ":80"},
		{name: "other profile", addr: otherIP + ":9000"},
		{name: "IPv6: host service via the uplink address", addr: net.JoinHostPort(hostUplink6, "7000")},
		{name: "IPv6: host service via the veth's host address", addr: net.JoinHostPort(gw6, "7000")},
		{name: "IPv6: home LAN server", addr: net.JoinHostPort(lanServer6, "80")},
		{name: "IPv6: uplink router (connected network)", addr: net.JoinHostPort(router6, "80")},
	}
	inbound := map[string]string{"host": w.host, "home LAN": w.lan, "internet": w.router, "other profile": otherNS}

	t.Run("rules in the configured backend", func(t *testing.T) {
		for _, p := range []string{"work", "other"} {
			if !slices.ContainsFunc(fw.objects(t, w.host), func(o string) bool { return fw.ours(o, p) }) {
				t.Errorf("%s: no object of %s's in %v", fw.backend, p, fw.objects(t, w.host))
			}
		}
		for _, o := range fw.others(t) {
			if objs := o.objects(t, w.host); len(objs) != 0 {
				t.Errorf("firewall %s configured, yet %s holds %v", fw.backend, o.backend, objs)
			}
		}
	})

	t.Run("direct", func(t *testing.T) {
		w.fromProfile(t, "work", append(isolated,
			probe{name: "internet, masqueraded", addr: inetServer + ":80", allowed: true, want: "internet " + hostUplinkAddr},
			probe{name: "internet, other port", addr: inetServer + ":8080", allowed: true, want: "internet-8080"},
			probe{name: "IPv6 internet, masqueraded", addr: net.JoinHostPort(inetServer6, "80"), allowed: true, want: "internet " + hostUplink6},
		)...)
		intoWork(t, workIP+":9000", inbound)
		s := w.stats(t, "work")
		if s.NetOutPackets == 0 || s.NetInPackets == 0 || s.NetInBytes == 0 || s.NetOutBytes == 0 {
			t.Errorf("stats after traffic: %+v, want network counters", s)
		}
		if out := w.with(t).ok("stats", "work"); !strings.Contains(out, "network") {
			t.Errorf("stats (text) shows no network line:\n%s", out)
		}
	})

	t.Run("rules follow the phone's networks", func(t *testing.T) {
		// The phone joins another network: a new IPv6 prefix on its uplink
		// (public, so only the daemon's watch on the host can make it
		// personal), with a host of that network in the router, and a new
		// resolver.
		if err := os.WriteFile(w.resolv, []byte("nameserver 203.0.113.54\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ipIn(t, w.daemon.netns, "addr", "add", "2001:db8:61::2/64", "dev", "up0", "nodad")
		ipIn(t, filepath.Base(w.router), "addr", "add", "2001:db8:61::1/64", "dev", "r-up", "nodad")
		deadline := time.Now().Add(5 * time.Second)
		for {
			out := w.with(t).ok("exec", "work", "--", "sh", "-c", "timeout 2 nc -w 1 2001:db8:61::1 80 </dev/null 2>/dev/null | head -n1")
			if strings.TrimSpace(out) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("work still reaches a host of the network the phone joined 5s ago: %q", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The running container's resolv.conf (a bind mount) follows.
		if rc := w.with(t).ok("exec", "work", "--", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 203.0.113.54") || strings.Contains(rc, dnsServer) {
			t.Errorf("the profile's resolv.conf did not follow the phone's new resolver:\n%s", rc)
		}
	})

	t.Run("allow-list changes live", func(t *testing.T) {
		n := w.network(t, "work")
		before := n.Counters.OutPackets
		w.with(t).ok("net", "set", "work", "--mode", "direct", "--allow", inetServer+"/tcp:8080", "--allow", "198.18.0.0/15")
		if n := w.network(t, "work"); strings.Join(n.Settings.Allow, ",") != inetServer+"/tcp:8080,198.18.0.0/15" || n.Counters.OutPackets < before {
			t.Errorf("net show after set: %+v", n)
		}
		allowed8080 := append(isolated,
			probe{name: "allowed port", addr: inetServer + ":8080", allowed: true, want: "internet-8080"},
			probe{name: "same host, port not allowed", addr: inetServer + ":80"},
		)
		w.fromProfile(t, "work", allowed8080...)

		// Bad values are refused, naming the value; the rules stay.
		w.with(t).fails(2, "300.1.1.1/8", "net", "set", "work", "--mode", "direct", "--allow", "300.1.1.1/8")
		w.with(t).fails(2, "sideways", "net", "set", "work", "--mode", "sideways")
		w.with(t).fails(2, "tcp:99999", "net", "set", "work", "--mode", "direct", "--allow", "203.0.113.0/24/tcp:99999")
		w.with(t).fails(2, "vpn_endpoints", "net", "set", "work", "--mode", "vpn-lockdown")
		w.with(t).fails(2, hostUplinkAddr, "net", "set", "work", "--mode", "direct", "--dns", hostUplinkAddr)
		if n := w.network(t, "work"); len(n.Settings.Allow) != 2 {
			t.Errorf("settings after refused changes: %+v", n.Settings)
		}
		w.fromProfile(t, "work", allowed8080...)

		// Only root or the system uid may change the network; the owner may look.
		owner := []string{"setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups"}
		if r := w.with(t).cliAs(owner, "", "net", "set", "work", "--mode", "offline"); r.code != 4 || !strings.Contains(r.stderr, "uid 4242") {
			t.Errorf("net set as the owner: exit %d, %q; want 4 naming the uid", r.code, r.stderr)
		}
		if r := w.with(t).cliAs(owner, "", "net", "show", "work"); r.code != 0 {
			t.Errorf("net show as the owner: exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("offline", func(t *testing.T) {
		w.with(t).ok("net", "set", "work", "--mode", "offline")
		w.fromProfile(t, "work", append(isolated,
			probe{name: "internet", addr: inetServer + ":80"},
			probe{name: "internet 8080", addr: inetServer + ":8080"},
		)...)
		intoWork(t, workIP+":9000", inbound)
		// The other profile is untouched.
		w.fromProfile(t, "other", probe{name: "internet", addr: inetServer + ":80", allowed: true, want: "internet"})
	})

	t.Run("vpn-lockdown", func(t *testing.T) {
		// The rules change live; the tunnel's means wait for the next start,
		// and the answer says so.
		if out := w.with(t).ok("net", "set", "work", "--mode", "vpn-lockdown", "--vpn-endpoint", vpnEndpoint+":443"); !strings.Contains(out, "pending") || !strings.Contains(out, "next start") {
			t.Errorf("a live switch to vpn-lockdown must say the tunnel device comes at the next start:\n%s", out)
		}
		if r := w.with(t).cli("exec", "work", "--", "ip", "link", "add", "wcbr0", "type", "bridge"); r.code == 0 {
			t.Errorf("CAP_NET_ADMIN reached a container started in direct mode")
		}
		w.fromProfile(t, "work", append(isolated,
			probe{name: "VPN endpoint", addr: vpnEndpoint + ":443", allowed: true, want: "vpn"},
			probe{name: "internet outside the tunnel", addr: inetServer + ":80"},
		)...)
		// The tun device comes with the next start.
		w.with(t).ok("stop", "work")
		w.with(t).ok("start", "work")
		if out := w.with(t).ok("exec", "work", "--", "sh", "-c", "ls -l /dev/net/tun && exec 3<>/dev/net/tun && echo opened"); !strings.Contains(out, "10,") || !strings.Contains(out, "opened") {
			t.Errorf("/dev/net/tun in vpn-lockdown mode:\n%s", out)
		}
		if r := w.with(t).cli("exec", "other", "--", "ls", "/dev/net/tun"); r.code == 0 {
			t.Errorf("a direct-mode profile has /dev/net/tun")
		}
		// A VPN client can make its tunnel (TUNSETIFF needs CAP_NET_ADMIN in
		// the profile's namespace) and configure it; a direct-mode profile
		// can change nothing of its network.
		if r := w.with(t).cli("exec", "work", "--", "sh", "-c",
			"tunctl -t wctun0 && ip addr add 10.99.0.2/30 dev wctun0 && ip link set wctun0 up && ip link show wctun0"); r.code != 0 || !strings.Contains(r.stdout, "wctun0") {
			t.Errorf("vpn-lockdown: make a tun interface: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, cmd := range []string{"ip link add wcbr0 type bridge", "ip addr add 10.99.0.9/32 dev lo"} {
			if r := w.with(t).cli("exec", "other", "--", "sh", "-c", cmd); r.code == 0 {
				t.Errorf("direct mode: %q worked; the profile must not hold CAP_NET_ADMIN", cmd)
			}
		}
		w.fromProfile(t, "work", probe{name: "VPN endpoint after restart", addr: vpnEndpoint + ":443", allowed: true, want: "vpn"})
		if out := w.with(t).ok("net", "set", "work", "--mode", "direct"); !strings.Contains(out, "stay until") {
			t.Errorf("a live switch away from vpn-lockdown must say the tunnel device stays until the next start:\n%s", out)
		}
	})

	t.Run("repair after restart", func(t *testing.T) {
		// term and start change the daemon itself, not a copy.
		parent := w.t
		w.t = t
		defer func() { w.t = parent }()
		w.term()
		fw.wipe(t, w.host)
		ipIn(t, w.netns, "link", "del", "wc-work")
		w.start()
		objs := fw.objects(t, w.host)
		for _, p := range []string{"work", "other"} {
			if !slices.ContainsFunc(objs, func(o string) bool { return fw.ours(o, p) }) {
				t.Errorf("%s: %s's rules not repaired after restart: %v", fw.backend, p, objs)
			}
		}
		w.fromProfile(t, "work", append(isolated,
			probe{name: "internet after repair", addr: inetServer + ":80", allowed: true, want: "internet"},
		)...)
		w.fromProfile(t, "other", probe{name: "internet after repair", addr: inetServer + ":80", allowed: true, want: "internet"})
		intoWork(t, workIP+":9000", inbound)
	})

	t.Run("nothing left after remove", func(t *testing.T) {
		w.with(t).ok("remove", "work")
		if _, err := os.Stat(workNS); !os.IsNotExist(err) {
			t.Errorf("pinned namespace %s left: %v", workNS, err)
		}
		if err := in(w.host, func() error { _, err := net.InterfaceByName("wc-work"); return err }); err == nil {
			t.Errorf("link wc-work left after remove")
		}
		objs := fw.objects(t, w.host)
		for _, o := range objs {
			if fw.ours(o, "work") {
				t.Errorf("%s object left after remove: %s", fw.backend, o)
			}
		}
		// Not vacuous: the other profile's are still there.
		if !slices.ContainsFunc(objs, func(o string) bool { return fw.ours(o, "other") }) {
			t.Errorf("%s: no object of other's while it runs: %v", fw.backend, objs)
		}
		w.fromProfile(t, "other", probe{name: "internet", addr: inetServer + ":80", allowed: true, want: "internet"})
		w.with(t).ok("remove", "other")
		for _, f := range append([]firewall{fw}, fw.others(t)...) {
			if objs := f.objects(t, w.host); len(objs) != 0 {
				t.Errorf("%s objects left after the last remove: %v", f.backend, objs)
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(w.run, "netns")); len(ents) != 0 {
			t.Errorf("pinned namespaces left: %v", ents)
		}
	})
}
