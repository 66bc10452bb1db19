package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/netns"
	"github.com/workcell/workcell/sandbox"
)

// The split network: one netns.Manager for all profiles. Each profile's
// settings live in its folder (profiles/<name>/network.json, written
// atomically; absent means direct mode). The Manager keeps which subnet
// each profile holds in <state-dir>/network.json and pins the namespaces
// under <run-dir>/netns; the resolv.conf each container sees is written
// under <run-dir>/resolv.
const (
	networkFile    = "network.json"
	netStateFile   = "network.json"
	resolvDir      = "resolv"
	resolvConfPath = "/etc/resolv.conf"
)

// tunDevice is what a VPN client inside the profile opens; tunCapability
// lets it make the tunnel interface and route through it. Both are
// confined to the profile's own network namespace, where only the kill
// switch lives: the host's rules, which the profile cannot touch, are the
// enforcement.
var tunDevice = specs.LinuxDevice{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: ptr(os.FileMode(0o666)), UID: ptr(uint32(0)), GID: ptr(uint32(0))}

const tunCapability = "CAP_NET_ADMIN"

func ptr[T any](v T) *T { return &v }

// defaultNetwork is what a profile without settings gets.
var defaultNetwork = netns.Settings{Mode: netns.ModeDirect}

// openNetwork makes the daemon's network manager; it runs once, at start.
// The firewall backend is chosen here, by probing the kernel.
func (d *Daemon) openNetwork(ctx context.Context) error {
	backend, why, err := netns.ChooseBackend(ctx, d.cfg.Firewall)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	d.firewall, d.firewallWhy = backend, why
	d.log.Info("firewall backend chosen", "backend", backend, "why", why)
	opts := []netns.Option{netns.WithLogger(d.log.With("concern", "network")), netns.WithDNSChange(d.resolversChanged), netns.WithNSMaker(nsMaker{d}), netns.WithBackend(backend)}
	if d.cfg.NetPool != "" {
		pool, err := netip.ParsePrefix(d.cfg.NetPool)
		if err != nil {
			return fmt.Errorf("net_pool %q: %w", d.cfg.NetPool, err)
		}
		opts = append(opts, netns.WithPool(pool))
	}
	switch d.cfg.NetPool6 {
	case "":
	case "off":
		opts = append(opts, netns.WithoutIPv6())
	default:
		pool6, err := netip.ParsePrefix(d.cfg.NetPool6)
		if err != nil {
			return fmt.Errorf("net_pool6 %q: %w", d.cfg.NetPool6, err)
		}
		opts = append(opts, netns.WithPool6(pool6))
	}
	// Where the profiles' default resolvers come from (network_dns_linux.go).
	if rc, err := d.hostResolvConf(ctx); err != nil {
		return err
	} else if rc != "" {
		opts = append(opts, netns.WithResolvConf(rc))
	}
	m, err := netns.NewManager(d.cfg.RunDir, filepath.Join(d.cfg.StateDir, netStateFile), opts...)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	d.net = m
	return nil
}

// networkUsable says why no profile network can be made (the kernel has
// neither nf_tables nor iptables-legacy), or nil.
func (d *Daemon) networkUsable() error {
	if d.net == nil {
		if d.netUnusable != nil {
			return d.netUnusable
		}
		return api.Errorf(api.ErrUnavailable, "profile networks are not open")
	}
	return nil
}

func (d *Daemon) closeNetwork() {
	if d.net != nil {
		d.net.Close()
	}
}

// networkUp gives a profile's container its network namespace, repairing
// whatever of it was lost (a deleted veth, a flushed table), its
// resolv.conf and, in vpn-lockdown mode, the tun device.
func (d *Daemon) networkUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	name := p.rec.Name
	if err := d.networkUsable(); err != nil {
		return fmt.Errorf("profile %s: %w", name, err)
	}
	s, err := d.loadNetwork(name)
	if err != nil {
		return err
	}
	info, err := d.net.Ensure(ctx, name, s)
	if err != nil {
		return netError(fmt.Errorf("network of profile %s: %w", name, err))
	}
	rc, err := d.writeResolvConf(name, info.ResolvConf)
	if err != nil {
		return err
	}
	h.NetNSPath = info.NSPath
	h.Mounts = append(h.Mounts, specs.Mount{
		Destination: resolvConfPath, Type: "bind", Source: rc,
		Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
	})
	p.tun = s.Mode == netns.ModeVPNLockdown
	if p.tun {
		h.Devices = append(h.Devices, tunDevice)
		// Only a user namespace confines CAP_NET_ADMIN to the profile's
		// network: without one it is the host user namespace's, and work
		// could create links in the phone's network namespace (named by
		// a pid) or move the phone's uplink into its own. The kill switch
		// holds either way; the VPN client cannot make its tunnel.
		if d.userns() {
			h.ExtraCapabilities = append(h.ExtraCapabilities, tunCapability)
		} else {
			d.log.Warn("vpn-lockdown without a user namespace: the profile's VPN client gets no CAP_NET_ADMIN, so it cannot make its tunnel; the kill switch holds", "profile", name)
		}
	}
	return nil
}

// networkHealthy reports whether the profile's network is as wanted
// without rebuilding it (the quick check of a start from a prepared
// container; networkUp repairs when it is not).
func (d *Daemon) networkHealthy(ctx context.Context, p *profile) bool {
	if d.net == nil {
		return false
	}
	s, err := d.loadNetwork(p.rec.Name)
	return err == nil && d.net.Healthy(ctx, p.rec.Name, s)
}

// networkDown runs after the container stopped: the namespace, its
// address and its rules are kept for the next start.
func (d *Daemon) networkDown(ctx context.Context, p *profile) {}

// networkRemove deletes a removed profile's network: namespace, links,
// rules, sets, counters, pool entry and its resolv.conf.
func (d *Daemon) networkRemove(ctx context.Context, p *profile) error {
	name := p.rec.Name
	if d.net == nil {
		// Nothing of it can be in a firewall the kernel does not have;
		// its namespace and links went with the kernel it was made on.
		d.log.Warn("profile removed without its network", "profile", name, "why", d.netUnusable)
		return nil
	}
	if err := d.net.Remove(ctx, name); err != nil {
		return fmt.Errorf("network of profile %s: %w", name, err)
	}
	if err := os.Remove(d.resolvPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("network of profile %s: %w", name, err)
	}
	return nil
}

// networkReconcile opens the manager and repairs the networks at start:
// profiles that run, or that have a network already, get it as their
// settings say; networks of profiles that no longer exist are deleted. A
// broken profile network is logged, not fatal: the profile's next start
// repairs it or says why it cannot.
func (d *Daemon) networkReconcile(ctx context.Context) error {
	if err := d.openNetwork(ctx); err != nil {
		// The daemon still serves (status, doctor, lock, wipe); only
		// what needs a profile network is refused, saying why.
		d.netUnusable = api.Errorf(api.ErrUnavailable, "profile networks cannot be made on this kernel: %v%s", err, doctorHint)
		d.log.Error("no profile networks", "err", err)
		return nil
	}
	want := map[string]netns.Settings{}
	for name, p := range d.profiles {
		if p.installing {
			continue
		}
		if p.ctr == nil && !d.net.Has(name) {
			continue
		}
		s, err := d.loadNetwork(name)
		if err != nil {
			d.log.Error("network settings", "profile", name, "err", err)
			s = netns.Settings{Mode: netns.ModeOffline} // fail closed
		}
		want[name] = s
	}
	if err := d.net.Reconcile(ctx, want); err != nil {
		d.log.Error("repair profile networks", "err", err)
	}
	// From now on the rules follow the phone's networks (uplink changes,
	// networks joined) without waiting for a start or a change.
	d.wg.Go(func() {
		if err := d.net.Watch(d.ctx); err != nil {
			d.log.Error("host network watch ended", "err", err)
		}
	})
	// Temp files of a settings write cut short by a crash.
	tmps, _ := filepath.Glob(filepath.Join(d.store.root, "*", "."+networkFile+".tmp-*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	return nil
}

func (d *Daemon) networkPath(name string) string {
	return filepath.Join(d.store.dir(name), networkFile)
}
func (d *Daemon) resolvPath(name string) string {
	return filepath.Join(d.cfg.RunDir, resolvDir, name+".conf")
}

// loadNetwork reads a profile's network settings; none means direct.
func (d *Daemon) loadNetwork(name string) (netns.Settings, error) {
	b, err := os.ReadFile(d.networkPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return defaultNetwork, nil
	}
	if err != nil {
		return netns.Settings{}, fmt.Errorf("read network settings of %s: %w", name, err)
	}
	var s netns.Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return netns.Settings{}, fmt.Errorf("network settings %s are corrupt: %w", d.networkPath(name), err)
	}
	if err := s.Validate(); err != nil {
		return netns.Settings{}, fmt.Errorf("network settings %s: %w", d.networkPath(name), err)
	}
	return s, nil
}

func (d *Daemon) saveNetwork(name string, s netns.Settings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network settings of %s: %w", name, err)
	}
	return d.store.writeAtomic(d.networkPath(name), append(b, '\n'))
}

// resolversChanged rewrites a profile's resolv.conf when the phone's
// network brought other resolvers. Only a file that exists is rewritten:
// a profile removed meanwhile gets none back.
func (d *Daemon) resolversChanged(name string, content []byte) {
	f, err := os.OpenFile(d.resolvPath(name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Error("rewrite resolv.conf", "profile", name, "err", err)
		}
		return
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.log.Error("rewrite resolv.conf", "profile", name, "err", err)
		return
	}
	d.log.Info("profile resolvers follow the host's network", "profile", name)
}

// writeResolvConf writes the file bind-mounted as the profile's
// /etc/resolv.conf. It is rewritten in place, not renamed over: a running
// container's bind mount holds the inode, and a DNS change must reach it.
func (d *Daemon) writeResolvConf(name string, content []byte) (string, error) {
	path := d.resolvPath(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("resolv.conf of profile %s: %w", name, err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return "", fmt.Errorf("resolv.conf of profile %s: %w", name, err)
	}
	return path, nil
}

// Network reports a profile's network settings, addresses and counters.
func (d *Daemon) Network(ctx context.Context, name string) (api.Network, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Network{}, err
	}
	defer p.mu.Unlock()
	return d.networkLocked(ctx, name)
}

func (d *Daemon) networkLocked(ctx context.Context, name string) (api.Network, error) {
	s, err := d.loadNetwork(name)
	if err != nil {
		return api.Network{}, err
	}
	out := api.Network{Name: name, Settings: toWire(s)}
	if d.net == nil {
		return out, nil
	}
	st, err := d.net.Show(ctx, name)
	if errors.Is(err, netns.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("network of profile %s: %w", name, err)
	}
	out.Present = true
	out.Address, out.Gateway, out.HostInterface = st.Info.Addr.String(), st.Info.Gateway.String(), st.Info.HostIf
	if st.Info.Addr6.IsValid() {
		out.Address6, out.Gateway6 = st.Info.Addr6.String(), st.Info.Gateway6.String()
	}
	for _, a := range st.Info.DNS {
		out.DNS = append(out.DNS, a.String())
	}
	c := st.Counters
	out.Counters = api.NetworkCounters{InBytes: c.InBytes, InPackets: c.InPackets, OutBytes: c.OutBytes, OutPackets: c.OutPackets}
	return out, nil
}

// SetNetwork replaces a profile's network settings. A running or paused
// profile gets them at once, in one atomic batch; a stopped one at its
// next start. A value that cannot be applied is refused, naming it, and
// the rules and the stored settings stay as they were.
func (d *Daemon) SetNetwork(ctx context.Context, name string, w api.NetworkSettings) (api.Network, error) {
	s, err := fromWire(w)
	if err != nil {
		return api.Network{}, err
	}
	p, err := d.lookup(name)
	if err != nil {
		return api.Network{}, err
	}
	defer p.mu.Unlock()
	old, err := d.loadNetwork(name)
	if err != nil {
		old = netns.Settings{Mode: netns.ModeOffline}
	}
	live := p.ctr != nil
	if live {
		if err := d.applyNetwork(ctx, name, s); err != nil {
			return api.Network{}, err
		}
	}
	if err := d.saveNetwork(name, s); err != nil {
		if live {
			if rerr := d.applyNetwork(ctx, name, old); rerr != nil {
				d.log.Error("restore network settings", "profile", name, "err", rerr)
			}
		}
		return api.Network{}, err
	}
	// A prepared container was made with the old settings: prepare anew.
	if p.standby != nil {
		d.dropStandby(ctx, p)
		d.kickStandby(p)
	}
	// A running container's devices and capabilities are fixed at its
	// start: the rules change now, the tunnel's means at the next start.
	var pending string
	switch wantTun := s.Mode == netns.ModeVPNLockdown; {
	case live && wantTun && !p.tun:
		pending = "the tunnel device /dev/net/tun and CAP_NET_ADMIN arrive at the profile's next start (stop and start it to run a VPN client); until then nothing but the VPN endpoints is reachable"
	case live && !wantTun && p.tun:
		pending = "the tunnel device and CAP_NET_ADMIN stay until the profile's next start; the host's rules of the new mode hold meanwhile"
	}
	d.log.Info("network settings changed", "profile", name, "mode", s.Mode, "allow", len(s.Allow), "live", live)
	if pending != "" {
		d.log.Info("network change waits for the next start", "profile", name, "pending", pending)
	}
	n, err := d.networkLocked(ctx, name)
	n.Pending = pending
	return n, err
}

// applyNetwork changes a running profile's rules and its resolv.conf.
func (d *Daemon) applyNetwork(ctx context.Context, name string, s netns.Settings) error {
	if err := d.networkUsable(); err != nil {
		return err
	}
	err := d.net.Apply(ctx, name, s)
	if errors.Is(err, netns.ErrNotFound) {
		// Its namespace or state was lost: Ensure rebuilds it in place.
		_, err = d.net.Ensure(ctx, name, s)
	}
	if err != nil {
		return netError(fmt.Errorf("network of profile %s: %w", name, err))
	}
	st, err := d.net.Show(ctx, name)
	if err != nil {
		return fmt.Errorf("network of profile %s: %w", name, err)
	}
	_, err = d.writeResolvConf(name, st.Info.ResolvConf)
	return err
}

// networkStats adds the profile's traffic counters to its stats; a
// profile without a network has none.
func (d *Daemon) networkStats(ctx context.Context, name string, out *api.Stats) {
	if d.net == nil {
		return
	}
	c, err := d.net.Counters(ctx, name)
	if err != nil {
		if !errors.Is(err, netns.ErrNotFound) {
			d.log.Warn("network counters", "profile", name, "err", err)
		}
		return
	}
	out.NetInBytes, out.NetInPackets, out.NetOutBytes, out.NetOutPackets = c.InBytes, c.InPackets, c.OutBytes, c.OutPackets
}

// netError gives netns's error classes their API class.
func netError(err error) error {
	msg := strings.TrimSuffix(err.Error(), ": "+netns.ErrInvalid.Error())
	switch {
	case errors.Is(err, netns.ErrInvalid):
		return api.Errorf(api.ErrInvalidArgument, "%s", msg)
	case errors.Is(err, netns.ErrNotFound):
		return api.Errorf(api.ErrNotFound, "%s", strings.TrimSuffix(msg, ": "+netns.ErrNotFound.Error()))
	}
	return err
}

// fromWire parses the API's settings, naming the first bad value.
func fromWire(w api.NetworkSettings) (netns.Settings, error) {
	bad := func(format string, args ...any) (netns.Settings, error) {
		return netns.Settings{}, api.Errorf(api.ErrInvalidArgument, format, args...)
	}
	s := netns.Settings{Mode: netns.Mode(w.Mode), Uplinks: w.Uplinks}
	if w.Mode == "" {
		return bad("mode: required: want direct, vpn-lockdown or offline")
	}
	for i, a := range w.Allow {
		r, err := netns.ParseRule(a)
		if err != nil {
			return bad("allow[%d]: %s", i, strings.TrimSuffix(err.Error(), ": "+netns.ErrInvalid.Error()))
		}
		s.Allow = append(s.Allow, r)
	}
	for i, e := range w.VPNEndpoints {
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			a, aerr := netip.ParseAddr(e)
			if aerr != nil {
				return bad("vpn_endpoints[%d] %q: want IP:PORT or IP", i, e)
			}
			ap = netip.AddrPortFrom(a, 0)
		}
		s.VPNEndpoints = append(s.VPNEndpoints, ap)
	}
	for i, v := range w.DNS {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return bad("dns[%d] %q: not an IP address", i, v)
		}
		s.DNS = append(s.DNS, a)
	}
	if err := s.Validate(); err != nil {
		return netns.Settings{}, netError(err)
	}
	return s, nil
}

func toWire(s netns.Settings) api.NetworkSettings {
	w := api.NetworkSettings{Mode: string(s.Mode), Uplinks: s.Uplinks}
	for _, r := range s.Allow {
		w.Allow = append(w.Allow, r.String())
	}
	for _, e := range s.VPNEndpoints {
		if e.Port() == 0 {
			w.VPNEndpoints = append(w.VPNEndpoints, e.Addr().String())
		} else {
			w.VPNEndpoints = append(w.VPNEndpoints, e.String())
		}
	}
	for _, a := range s.DNS {
		w.DNS = append(w.DNS, a.String())
	}
	return w
}

// networkRoutes adds the network endpoints: anyone with the owner's
// rights may look, only root or the system uid may change.
func (s *Server) networkRoutes(h route) {
	v := "/" + api.Version
	h("GET "+v+"/profiles/{name}/network", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.d.Network(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, n)
	})
	set := func(w http.ResponseWriter, r *http.Request) error {
		var req api.NetworkSettings
		if err := decodeBody(r, &req, true); err != nil {
			return err
		}
		n, err := s.d.SetNetwork(r.Context(), r.PathValue("name"), req)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, n)
	}
	h("PUT "+v+"/profiles/{name}/network", roleAdmin, "change network settings", set)
	h("POST "+v+"/profiles/{name}/network", roleAdmin, "change network settings", set)
}
