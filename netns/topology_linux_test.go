package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"
)

// requireRoot fails (never skips) a test that needs root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, veth, nftables): run `go test` as root")
	}
}

// Addresses of the fake world every integration test builds.
const (
	hostUplinkAddr = "198.51.100.2" // the phone on its uplink
	routerAddr     = "198.51.100.1" // the uplink's gateway, a directly connected network
	hostLANAddr    = "192.168.50.1"
	lanServer      = "192.168.50.2" // a host in the home LAN
	inetServer     = "203.0.113.10" // "the internet": ports 80, 443, 8080 (echo)
	vpnEndpoint    = "203.0.113.20"
	dnsServer      = "203.0.113.53"

	// The same world in IPv6 (documentation prefixes: public to the rules).
	hostUplink6 = "2001:db8:1::2"
	router6     = "2001:db8:1::1"
	hostLAN6    = "2001:db8:50::1"
	lanServer6  = "2001:db8:50::2"
	inetServer6 = "2001:db8:ff::10"
	dnsServer6  = "2001:db8:ff::53"
)

// hp joins an address (either family) and a port.
func hp(addr string, port int) string { return net.JoinHostPort(addr, fmt.Sprint(port)) }

// world is a fake phone ("host" namespace) with an uplink into a router that
// plays the internet, a home LAN, and services on the host itself.
type world struct {
	t                 *testing.T
	host, router, lan string // namespace paths
	hostName, rtrName string
	mgr               *Manager
	runDir, stateFile string
	dnsFromTunnel     atomic.Int64 // queries the resolver saw from the tunnel
	dnsFromElsewhere  atomic.Int64 // queries the resolver saw from anywhere else
	resolvConfPath    string
	backend           Backend
}

var nsSeq atomic.Int64

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// backends are the firewall backends every kernel test runs against.
var backends = []Backend{BackendNFTables, BackendIPTables}

// eachBackend runs test once per backend, each in a fresh world.
func eachBackend(t *testing.T, test func(t *testing.T, w *world)) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) { test(t, newWorld(t, b)) })
	}
}

func newWorld(t *testing.T, b Backend) *world {
	requireRoot(t)
	requireBackend(t, b)
	id := fmt.Sprintf("wct%d-%d", os.Getpid()%10000, nsSeq.Add(1))
	w := &world{t: t, hostName: id + "-h", rtrName: id + "-r", backend: b}
	lanName := id + "-l"
	for _, n := range []string{w.hostName, w.rtrName, lanName} {
		ipCmd(t, "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		ipCmd(t, "-n", n, "link", "set", "lo", "up")
	}
	w.host, w.router, w.lan = "/run/netns/"+w.hostName, "/run/netns/"+w.rtrName, "/run/netns/"+lanName

	ipCmd(t, "-n", w.hostName, "link", "add", "up0", "type", "veth", "peer", "name", "r-up", "netns", w.rtrName)
	ipCmd(t, "-n", w.hostName, "addr", "add", hostUplinkAddr+"/24", "dev", "up0")
	ipCmd(t, "-n", w.hostName, "link", "set", "up0", "up")
	ipCmd(t, "-n", w.hostName, "route", "add", "default", "via", routerAddr)
	ipCmd(t, "-n", w.rtrName, "addr", "add", routerAddr+"/24", "dev", "r-up")
	ipCmd(t, "-n", w.rtrName, "link", "set", "r-up", "up")
	for _, a := range []string{inetServer, vpnEndpoint, dnsServer} {
		ipCmd(t, "-n", w.rtrName, "addr", "add", a+"/32", "dev", "lo")
	}
	// A hostile internet would try to reach work directly.
	ipCmd(t, "-n", w.rtrName, "route", "add", "10.231.0.0/16", "via", hostUplinkAddr)

	// IPv6 on the uplink and in the LAN; nodad: usable at once.
	ipCmd(t, "-n", w.hostName, "addr", "add", hostUplink6+"/64", "dev", "up0", "nodad")
	ipCmd(t, "-n", w.hostName, "-6", "route", "add", "default", "via", router6)
	ipCmd(t, "-n", w.rtrName, "addr", "add", router6+"/64", "dev", "r-up", "nodad")
	for _, a := range []string{inetServer6, dnsServer6} {
		ipCmd(t, "-n", w.rtrName, "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	ipCmd(t, "-n", w.rtrName, "-6", "route", "add", DefaultPool6.String(), "via", hostUplink6)

	ipCmd(t, "-n", w.hostName, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lanName)
	ipCmd(t, "-n", w.hostName, "addr", "add", hostLANAddr+"/24", "dev", "lan0")
	ipCmd(t, "-n", w.hostName, "link", "set", "lan0", "up")
	ipCmd(t, "-n", lanName, "addr", "add", lanServer+"/24", "dev", "eth0")
	ipCmd(t, "-n", lanName, "link", "set", "eth0", "up")
	ipCmd(t, "-n", lanName, "route", "add", "default", "via", hostLANAddr)
	ipCmd(t, "-n", w.hostName, "addr", "add", hostLAN6+"/64", "dev", "lan0", "nodad")
	ipCmd(t, "-n", lanName, "addr", "add", lanServer6+"/64", "dev", "eth0", "nodad")
	ipCmd(t, "-n", lanName, "-6", "route", "add", "default", "via", hostLAN6)

	for _, p := range []string{"80", "443"} {
		w.serve(w.router, "0.0.0.0:"+p, "internet")
		w.serve(w.router, "[::]:"+p, "internet")
	}
	w.echo(w.router, "0.0.0.0:8080")
	w.dns(w.router, dnsServer+":53")
	w.dns(w.router, hp(dnsServer6, 53))
	w.serve(w.lan, "0.0.0.0:80", "lan")
	w.serve(w.lan, "[::]:80", "lan")
	w.serve(w.host, "0.0.0.0:7000", "host-any")
	w.serve(w.host, "[::]:7000", "host-any")
	w.serve(w.host, "127.0.0.1:7001", "host-loopback")
	w.serve(w.host, "[::1]:7001", "host-loopback")

	dir := t.TempDir()
	w.runDir, w.stateFile = filepath.Join(dir, "run"), filepath.Join(dir, "state", "net.json")
	w.resolvConfPath = filepath.Join(dir, "resolv.conf")
	// A loopback stub first: it must never end up in the profile.
	// A link-local resolver (the router's) neither: work cannot reach it.
	os.WriteFile(w.resolvConfPath, []byte("nameserver 127.0.0.53\nnameserver "+dnsServer+"\nnameserver fe80::1%up0\nnameserver "+dnsServer6+"\n"), 0o644)
	t.Cleanup(func() {
		// Pins live outside the test's namespaces: unmount them.
		entries, _ := os.ReadDir(filepath.Join(w.runDir, "netns"))
		for _, e := range entries {
			unpin(filepath.Join(w.runDir, "netns", e.Name()))
		}
	})
	w.mgr = w.newManager()
	return w
}

func (w *world) newManager() *Manager {
	w.t.Helper()
	m, err := NewManager(w.runDir, w.stateFile, WithHostNS(w.host), WithResolvConf(w.resolvConfPath), WithBackend(w.backend))
	if err != nil {
		w.t.Fatalf("NewManager: %v", err)
	}
	w.t.Cleanup(func() { m.Close() })
	return m
}

// in runs fn on a thread inside the namespace at path.
func in(path string, fn func() error) error {
	h, err := vns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return inNS(h, fn)
}

// familyNetwork pins network to addr's family: Go would listen on a
// dual-stack socket for 0.0.0.0 under "tcp", which would also take IPv6.
func familyNetwork(network, addr string) string {
	if strings.HasPrefix(addr, "[") {
		return network + "6"
	}
	return network + "4"
}

// listenConfig makes a listener on an IPv6 address IPv6-only, so that it
// can sit beside the IPv4 listener of the same port (Go makes [::]
// dual-stack even for "tcp6").
func listenConfig(addr string) *net.ListenConfig {
	if !strings.HasPrefix(addr, "[") {
		return &net.ListenConfig{}
	}
	return &net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
}

// listen listens on addr; an IPv6 address listens on IPv6 alone.
func (w *world) listen(ns, network, addr string) net.Listener {
	w.t.Helper()
	network = familyNetwork(network, addr)
	var l net.Listener
	if err := in(ns, func() (err error) {
		l, err = listenConfig(addr).Listen(context.Background(), network, addr)
		return err
	}); err != nil {
		w.t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	w.t.Cleanup(func() { l.Close() })
	return l
}

// serve answers every connection with "NAME REMOTEADDR\n".
func (w *world) serve(ns, addr, name string) {
	l := w.listen(ns, "tcp", addr)
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

// echo echoes lines back.
func (w *world) echo(ns, addr string) {
	l := w.listen(ns, "tcp", addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "echo\n")
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s\n", sc.Text())
				}
			}()
		}
	}()
}

// dns answers any datagram with "dns SRC" and counts where queries came from.
func (w *world) dns(ns, addr string) {
	network := familyNetwork("udp", addr)
	var pc net.PacketConn
	if err := in(ns, func() (err error) {
		pc, err = listenConfig(addr).ListenPacket(context.Background(), network, addr)
		return err
	}); err != nil {
		w.t.Fatalf("listen udp %s: %v", addr, err)
	}
	w.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			src := from.(*net.UDPAddr).IP
			if src.Equal(net.ParseIP("10.99.0.2")) {
				w.dnsFromTunnel.Add(1)
			} else {
				w.dnsFromElsewhere.Add(1)
			}
			pc.WriteTo([]byte("dns "+src.String()+"\n"), from)
		}
	}()
}

// probeTimeout is how long a probe that must be blocked waits (every one
// waits it out); allowedTimeout bounds one that must work, which returns
// as soon as it does, so it can be generous for a loaded machine (a first
// IPv6 packet waits for neighbour discovery on two hops).
const (
	probeTimeout   = 800 * time.Millisecond
	allowedTimeout = 5 * time.Second
)

// fetch connects from namespace ns and returns the first line the server sends.
func fetch(ns, network, addr string) (string, error) {
	return fetchWithin(ns, network, addr, probeTimeout)
}

func fetchWithin(ns, network, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := in(ns, func() (err error) {
		c, err = (&net.Dialer{Timeout: timeout}).Dial(network, addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if network == "udp" {
		if _, err := c.Write([]byte("query")); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// path is one connection attempt and whether it must work.
type path struct {
	name         string
	ns           string
	network      string
	addr         string
	allowed      bool
	wantContains string // when allowed: the server's line must contain this
}

// blockedErr reports whether err is what a dropped or unroutable packet
// gives: a timeout, or unreachable/EPERM from the local stack. A refused
// connection (the packet got there) or a malformed probe is not.
func blockedErr(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

// check tries all paths at once and reports each one that behaves wrongly.
func check(t *testing.T, paths ...path) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(paths))
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := probeTimeout
			if p.allowed {
				timeout = allowedTimeout
			}
			line, err := fetchWithin(p.ns, p.network, p.addr, timeout)
			switch {
			case p.allowed && err != nil:
				errs[i] = fmt.Sprintf("%s (%s %s): should work, got %v", p.name, p.network, p.addr, err)
			case p.allowed && !strings.Contains(line, p.wantContains):
				errs[i] = fmt.Sprintf("%s (%s %s): got %q, want it to contain %q", p.name, p.network, p.addr, line, p.wantContains)
			case !p.allowed && err == nil:
				errs[i] = fmt.Sprintf("%s (%s %s): should be blocked, got %q", p.name, p.network, p.addr, line)
			case !p.allowed && !blockedErr(err):
				errs[i] = fmt.Sprintf("%s (%s %s): should be blocked, but failed otherwise (a probe that reached nothing proves nothing): %v", p.name, p.network, p.addr, err)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}

func (w *world) ensure(profile string, s Settings) *Info {
	w.t.Helper()
	info, err := w.mgr.Ensure(context.Background(), profile, s)
	if err != nil {
		w.t.Fatalf("Ensure %s: %v", profile, err)
	}
	w.serve(info.NSPath, "0.0.0.0:9000", "work-"+profile)
	if info.Addr6.IsValid() {
		w.serve(info.NSPath, "[::]:9000", "work-"+profile)
	}
	return info
}

func (w *world) apply(profile string, s Settings) {
	w.t.Helper()
	if err := w.mgr.Apply(context.Background(), profile, s); err != nil {
		w.t.Fatalf("Apply %s: %v", profile, err)
	}
}

// isolation are the paths that must be blocked in every mode, both ways,
// between profile a and everything personal (and profile b).
func (w *world) isolation(a, b *Info) []path {
	wa, wb := a.Addr.Addr().String(), b.Addr.Addr().String()
	return []path{
		{name: "work to host uplink address (0.0.0.0 service)", ns: a.NSPath, network: "tcp", addr: hostUplinkAddr + ":7000"},
		{name: "work to veth host address", ns: a.NSPath, network: "tcp", addr: a.Gateway.Addr().String() + ":7000"},
		{name: "work to host LAN address", ns: a.NSPath, network: "tcp", addr: hostLANAddr + ":7000"},
		{name: "work to host loopback service via gateway", ns: a.NSPath, network: "tcp", addr: a.Gateway.Addr().String() + ":7001"},
		{name: "work to home LAN server", ns: a.NSPath, network: "tcp", addr: lanServer + ":80"},
		{name: "work to uplink router (connected network)", ns: a.NSPath, network: "tcp", addr: routerAddr + ":80"},
		{name: "work to other profile", ns: a.NSPath, network: "tcp", addr: wb + ":9000"},
		{name: "work to other profile's gateway", ns: a.NSPath, network: "tcp", addr: b.Gateway.Addr().String() + ":7000"},
		{name: "host into work", ns: w.host, network: "tcp", addr: wa + ":9000"},
		{name: "home LAN into work", ns: w.lan, network: "tcp", addr: wa + ":9000"},
		{name: "internet into work", ns: w.router, network: "tcp", addr: wa + ":9000"},
		{name: "other profile into work", ns: b.NSPath, network: "tcp", addr: wa + ":9000"},
	}
}

// isolation6 are the IPv6 twins of isolation; both profiles must have
// IPv6.
func (w *world) isolation6(a, b *Info) []path {
	w.t.Helper()
	if !a.Addr6.IsValid() || !b.Addr6.IsValid() {
		w.t.Fatalf("profiles without IPv6: %s, %s", a.Addr6, b.Addr6)
	}
	wa, wb := a.Addr6.Addr().String(), b.Addr6.Addr().String()
	gw := a.Gateway6.Addr().String()
	return []path{
		{name: "IPv6: work to host uplink address ([::] service)", ns: a.NSPath, network: "tcp", addr: hp(hostUplink6, 7000)},
		{name: "IPv6: work to veth host address", ns: a.NSPath, network: "tcp", addr: hp(gw, 7000)},
		{name: "IPv6: work to host LAN address", ns: a.NSPath, network: "tcp", addr: hp(hostLAN6, 7000)},
		{name: "IPv6: work to home LAN server", ns: a.NSPath, network: "tcp", addr: hp(lanServer6, 80)},
		{name: "IPv6: work to uplink router (connected network)", ns: a.NSPath, network: "tcp", addr: hp(router6, 80)},
		{name: "IPv6: work to other profile", ns: a.NSPath, network: "tcp", addr: hp(wb, 9000)},
		{name: "IPv6: work to other profile's gateway", ns: a.NSPath, network: "tcp", addr: hp(b.Gateway6.Addr().String(), 7000)},
		{name: "IPv6: host into work", ns: w.host, network: "tcp", addr: hp(wa, 9000)},
		{name: "IPv6: home LAN into work", ns: w.lan, network: "tcp", addr: hp(wa, 9000)},
		{name: "IPv6: internet into work", ns: w.router, network: "tcp", addr: hp(wa, 9000)},
		{name: "IPv6: other profile into work", ns: b.NSPath, network: "tcp", addr: hp(wa, 9000)},
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
