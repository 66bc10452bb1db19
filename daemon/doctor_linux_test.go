package daemon

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/binder"
	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/netns"
	"github.com/workcell/workcell/sandbox"
)

// fakeHost is a host root with every feature, as files under a folder,
// and probes that all succeed; a case takes one feature away.
type fakeHost struct {
	files   map[string]string
	cgroups sandbox.CgroupLayout
	env     doctorEnv
	facts   doctorFacts
}

// noController takes a controller out of the fake layout, as the
// sandbox's probe reports one the kernel lacks.
func (h *fakeHost) noController(name string) {
	for i, c := range h.cgroups.Controllers {
		if c.Name == name {
			h.cgroups.Controllers[i] = sandbox.CgroupController{Name: name, Use: sandbox.CgroupUseNone}
		}
	}
}

func newFakeHost() *fakeHost {
	h := &fakeHost{files: map[string]string{
		"proc/filesystems": "nodev\tsysfs\nnodev\toverlay\nnodev\tbinder\n\text4\n",
		"proc/cpuinfo":     "processor\t: 0\nFeatures\t: fp asimd aes pmull sha1\n",
		"config":           "CONFIG_VETH=y\nCONFIG_TUN=y\nCONFIG_OVERLAY_FS=y\n",
		"dev/loop-control": "",
		"dev/block/loop0":  "",
		"dev/net/tun":      "",
	}}
	ok := func(context.Context) error { return nil }
	// Android's split layout, but with a pids controller on cgroup2.
	h.cgroups = sandbox.CgroupLayout{V2Mount: "/sys/fs/cgroup", Unified: true, V2Controllers: []string{"pids"}, CPUQuotaV1: true,
		Controllers: []sandbox.CgroupController{
			{Name: sandbox.CgroupMemory, V1Mount: "/dev/memcg", Use: sandbox.CgroupUseV1},
			{Name: sandbox.CgroupCPU, V1Mount: "/dev/cpuctl", Use: sandbox.CgroupUseV1},
			{Name: sandbox.CgroupPids, V2: true, Use: sandbox.CgroupUseV2},
			{Name: sandbox.CgroupFreezer, V2: true, Use: sandbox.CgroupUseV2},
			{Name: sandbox.CgroupDevices, V2: true, Use: sandbox.CgroupUseV2},
		}}
	h.env = doctorEnv{
		probeCgroups: func(context.Context) (sandbox.CgroupLayout, error) { return h.cgroups, nil },
		goarch:       "arm64",
		lookPath:     func(p string) (string, error) { return "/system/bin/" + p, nil },
		probePIDNS:   ok, probeUserNS: ok, probeNFTables: ok, probeIPTablesLegacy: ok,
		probeSeccomp: func() error { return nil },
		probeCipher:  func(context.Context, fscrypt.Mode) error { return nil },
		routes:       func() (bool, []int, error) { return false, []int{1012}, nil },
	}
	h.facts = doctorFacts{
		ident: identity{mode: identityUserNS, why: "the kernel gives user namespaces", pid: pidPrivate, pidWhy: "the kernel gives pid namespaces"},
		mode:  fscrypt.ModeAES, modeWhy: "auto: the CPU has AES instructions",
		binderfs: "/run/workcell/binderfs",
		firewall: netns.BackendNFTables, firewallWhy: "auto: the kernel has nf_tables",
		dns: dnsDecision{source: dnsConfig, servers: []netip.Addr{netip.MustParseAddr("9.9.9.9")}, why: "the config's dns"},
	}
	return h
}

func (h *fakeHost) write(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	for name, content := range h.files {
		p := filepath.Join(root, name)
		if name == "config" {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write([]byte(content))
			zw.Close()
			p, content = filepath.Join(root, "proc/config.gz"), buf.String()
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.env.root = root
}

func checkNamed(t *testing.T, r api.DoctorReport, name string) api.DoctorCheck {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return api.DoctorCheck{}
}

func TestDoctorAllFound(t *testing.T) {
	h := newFakeHost()
	h.write(t)
	r := runDoctor(t.Context(), &h.env, &h.facts)
	if len(r.Checks) != len(doctorChecks) {
		t.Fatalf("%d checks, want %d", len(r.Checks), len(doctorChecks))
	}
	for _, c := range r.Checks {
		if c.Status != api.DoctorFound || c.Cost != "" || c.Fix != "" {
			t.Errorf("%s: %+v; want found, without cost or fix", c.Name, c)
		}
	}
	for name, mode := range map[string]string{
		"cgroup memory": "v1 at /dev/memcg", "cgroup cpu": "v1 at /dev/cpuctl", "cgroup pids": "v2 at /sys/fs/cgroup",
		"cgroup freezer": "v2 at /sys/fs/cgroup", "cgroup devices": "v2 BPF device filter", "pid namespace": "pid-namespace", "policy routing": "per-network tables", "loop devices": "/dev/loop-control, nodes in /dev/block",
		"user namespace": "userns", "binder": "binderfs at /run/workcell/binderfs", "fscrypt contents": "AES-256-XTS", "dns": "config",
		"firewall": "nftables", "mkfs.ext4": "mkfs.ext4",
	} {
		if got := checkNamed(t, r, name).Mode; got != mode {
			t.Errorf("%s: mode %q, want %q", name, got, mode)
		}
	}
}

var errAbsent = errors.New("absent in this fake")

// TestDoctorReportsEachAbsenceWithItsFix takes each feature away in turn.
func TestDoctorReportsEachAbsenceWithItsFix(t *testing.T) {
	cases := []struct {
		check  string
		status string
		mut    func(h *fakeHost)
		mode   string
		fix    string
		cost   string
	}{
		{"pid namespace", api.DoctorMissing, func(h *fakeHost) {
			h.env.probePIDNS = func(context.Context) error { return errAbsent }
			h.facts.ident.pid, h.facts.ident.proc = pidShared, []string{"hidepid=invisible"}
		}, "shared-pid+hidepid", "CONFIG_PID_NS", "hidepid=invisible"},
		{"user namespace", api.DoctorMissing, func(h *fakeHost) {
			h.env.probeUserNS = func(context.Context) error { return errAbsent }
			h.facts.ident = identity{mode: identityUIDRange, why: "no user namespaces"}
		}, "uid-range", "CONFIG_USER_NS", "uid range"},
		{"cgroup memory", api.DoctorMissing, func(h *fakeHost) { h.noController(sandbox.CgroupMemory) }, "", "CONFIG_MEMCG", "memory limit"},
		{"cgroup cpu", api.DoctorMissing, func(h *fakeHost) { h.noController(sandbox.CgroupCPU) }, "", "CONFIG_CGROUP_SCHED", "CPU limit"},
		{"cgroup pids", api.DoctorMissing, func(h *fakeHost) { h.noController(sandbox.CgroupPids) }, "", "CONFIG_CGROUP_PIDS", "fork bomb"},
		{"cgroup devices", api.DoctorMissing, func(h *fakeHost) { h.noController(sandbox.CgroupDevices) }, "", "CONFIG_CGROUP_BPF", "no profile starts"},
		{"cgroup freezer", api.DoctorMissing, func(h *fakeHost) {
			h.noController(sandbox.CgroupFreezer)
		}, "", "CONFIG_CGROUP_FREEZER", "off"},
		{"overlayfs", api.DoctorMissing, func(h *fakeHost) {
			h.files["proc/filesystems"] = "nodev\tsysfs\n"
			h.files["config"] = "CONFIG_VETH=y\nCONFIG_TUN=y\n"
		}, "", "CONFIG_OVERLAY_FS", "no profile can start"},
		{"fscrypt v2", api.DoctorMissing, func(h *fakeHost) {
			h.facts.unusable = errors.New("/data/misc/workcell/profiles: /data/misc is encrypted with a version 2 policy")
		}, "", "--store-image", "own key"},
		{"fscrypt contents", api.DoctorMissing, func(h *fakeHost) {
			h.files["proc/cpuinfo"] = "Features\t: fp asimd\n"
			h.facts.mode, h.facts.modeWhy = fscrypt.ModeAdiantum, "auto: no AES"
			h.env.probeCipher = func(context.Context, fscrypt.Mode) error {
				return fmt.Errorf("no adiantum: %w", fscrypt.ErrCipherMissing)
			}
		}, "Adiantum", "CONFIG_CRYPTO_ADIANTUM", "cannot be unlocked"},
		{"firewall", api.DoctorPartial, func(h *fakeHost) {
			h.env.probeNFTables = func(context.Context) error { return errAbsent }
			h.facts.firewall, h.facts.firewallWhy = netns.BackendIPTables, "auto: no nf_tables; iptables-legacy works"
		},
			"iptables-legacy", "CONFIG_NF_TABLES", "iptables-restore"},
		{"firewall", api.DoctorMissing, func(h *fakeHost) {
			h.env.probeNFTables = func(context.Context) error { return errAbsent }
			h.env.probeIPTablesLegacy = func(context.Context) error { return errAbsent }
			h.facts.firewall, h.facts.firewallWhy = "", "" // the network manager could not open
		}, "none", "install iptables", "fails closed"},
		{"firewall", api.DoctorMissing, func(h *fakeHost) {
			// The kernel has nf_tables, but the config names iptables-legacy,
			// which this system lacks.
			h.facts.firewall, h.facts.firewallWhy = "", ""
			h.facts.netUnusable = errors.New(`firewall "iptables-legacy" (configured): no iptables-legacy iptables: not on PATH nor in /system/bin`)
		}, "none", `"auto"`, "fails closed"},
		{"veth", api.DoctorMissing, func(h *fakeHost) { h.files["config"] = "CONFIG_TUN=y\nCONFIG_OVERLAY_FS=y\n" }, "", "CONFIG_VETH", "eth0"},
		{"tun", api.DoctorMissing, func(h *fakeHost) {
			delete(h.files, "dev/net/tun")
			h.files["config"] = "CONFIG_VETH=y\nCONFIG_OVERLAY_FS=y\n"
		}, "", "CONFIG_TUN", "vpn-lockdown"},
		{"policy routing", api.DoctorMissing, func(h *fakeHost) { h.env.routes = func() (bool, []int, error) { return false, nil, nil } }, "", "connect", "no uplink"},
		{"dns", api.DoctorMissing, func(h *fakeHost) {
			h.facts.dns = decideDNS(context.Background(), dnsEnv{root: h.env.root}, DefaultConfig())
		}, "none", "\"dns\"", "no DNS resolver"},
		{"binder", api.DoctorMissing, func(h *fakeHost) {
			h.facts.binderfs, h.facts.binderNote = "", "no binder driver: the kernel has no binderfs and binder_devices is empty"
			h.files["proc/filesystems"] = "nodev\toverlay\n"
		}, "none", "insmod binder_linux", "does not start"},
		{"seccomp", api.DoctorMissing, func(h *fakeHost) { h.env.probeSeccomp = func() error { return errAbsent } }, "", "CONFIG_SECCOMP", "no profile can start"},
		{"loop devices", api.DoctorMissing, func(h *fakeHost) { delete(h.files, "dev/loop-control") }, "", "CONFIG_BLK_DEV_LOOP", "store image"},
		{"mqueue", api.DoctorMissing, func(h *fakeHost) {
			h.facts.ident.noMqueue = "the kernel has no mqueue filesystem (CONFIG_POSIX_MQUEUE); profiles get no /dev/mqueue"
		}, "no /dev/mqueue", "CONFIG_POSIX_MQUEUE", "mq_open"},
		{"mkfs.ext4", api.DoctorMissing, func(h *fakeHost) {
			h.env.lookPath = func(string) (string, error) { return "", exec.ErrNotFound }
		}, "", "e2fsprogs", "store image"},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.check] = true
		t.Run(tc.check+" "+tc.status, func(t *testing.T) {
			h := newFakeHost()
			h.write(t) // the root exists for mutations that read it
			tc.mut(h)
			h.write(t)
			c := checkNamed(t, runDoctor(t.Context(), &h.env, &h.facts), tc.check)
			if c.Status != tc.status || c.Mode != tc.mode {
				t.Fatalf("%+v: want status %s, mode %q", c, tc.status, tc.mode)
			}
			if !strings.Contains(c.Fix, tc.fix) || !strings.Contains(c.Cost, tc.cost) || c.Detail == "" {
				t.Fatalf("%+v: want a fix with %q, a cost with %q and a detail", c, tc.fix, tc.cost)
			}
		})
	}
	// Every row of the report has its absence faked above.
	h := newFakeHost()
	h.write(t)
	for _, c := range runDoctor(t.Context(), &h.env, &h.facts).Checks {
		if !covered[c.Name] {
			t.Errorf("check %q has no case that fakes its absence", c.Name)
		}
	}
}

func TestDoctorFoundVariants(t *testing.T) {
	h := newFakeHost()
	h.env.lookPath = func(p string) (string, error) {
		if p == "mke2fs" {
			return "/system/bin/mke2fs", nil
		}
		return "", exec.ErrNotFound
	}
	h.files["dev/loop0"] = ""
	delete(h.files, "dev/block/loop0")
	h.env.routes = func() (bool, []int, error) { return true, nil, nil }
	h.write(t)
	r := runDoctor(t.Context(), &h.env, &h.facts)
	for name, mode := range map[string]string{"mkfs.ext4": "mke2fs -t ext4", "loop devices": "/dev/loop-control, nodes in /dev", "policy routing": "main table"} {
		if c := checkNamed(t, r, name); c.Status != api.DoctorFound || c.Mode != mode {
			t.Errorf("%s: %+v, want found with mode %q", name, c, mode)
		}
	}
}

// TestStartHintNamesTheMissingFeature: a start that fails on a kernel
// without pid namespaces says so and points at workcell doctor.
func TestStartHintNamesTheMissingFeature(t *testing.T) {
	h := newFakeHost()
	h.write(t)
	h.env.probePIDNS = func(context.Context) error { return errAbsent }
	err := startHintWith(t.Context(), &h.env, &h.facts, errors.New("container failed to start"))
	for _, w := range []string{"container failed to start", "pid namespace", "CONFIG_PID_NS", "workcell doctor"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
}

func TestDecideDNS(t *testing.T) {
	props := func(m map[string]string) func(context.Context, string) (string, error) {
		return func(_ context.Context, n string) (string, error) { return m[n] + "\n", nil }
	}
	withResolv := t.TempDir()
	os.MkdirAll(filepath.Join(withResolv, "etc"), 0o755)
	os.WriteFile(filepath.Join(withResolv, "etc/resolv.conf"), []byte("nameserver 10.0.0.1\n"), 0o644)
	android := t.TempDir()
	cfgDNS := DefaultConfig()
	cfgDNS.DNS = []string{"9.9.9.9", "2620:fe::fe"}
	for _, tc := range []struct {
		name    string
		env     dnsEnv
		cfg     Config
		source  string
		servers string
	}{
		{"the host's resolv.conf", dnsEnv{root: withResolv, getprop: props(map[string]string{"net.dns1": "8.8.8.8"})}, cfgDNS, dnsResolvConf, ""},
		{"Android 9 properties", dnsEnv{root: android, getprop: props(map[string]string{"net.dns1": "192.168.1.1", "net.dns2": "fd00::1"})}, cfgDNS, dnsProperties, "192.168.1.1 fd00::1"},
		{"loopback properties are never used", dnsEnv{root: android, getprop: props(map[string]string{"net.dns1": "127.0.0.1", "net.dns2": "::1"})}, cfgDNS, dnsConfig, "9.9.9.9 2620:fe::fe"},
		{"Android 10+ empty properties: the config", dnsEnv{root: android, getprop: props(nil)}, cfgDNS, dnsConfig, "9.9.9.9 2620:fe::fe"},
		{"no getprop: the config", dnsEnv{root: android}, cfgDNS, dnsConfig, "9.9.9.9 2620:fe::fe"},
		{"nothing: none, with a warning", dnsEnv{root: android, getprop: props(nil)}, DefaultConfig(), dnsNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decideDNS(t.Context(), tc.env, tc.cfg)
			var got []string
			for _, a := range d.servers {
				got = append(got, a.String())
			}
			if d.source != tc.source || strings.Join(got, " ") != tc.servers {
				t.Fatalf("decideDNS = %s %v (%s); want %s %s", d.source, got, d.why, tc.source, tc.servers)
			}
			if (d.source == dnsNone) != (d.warning != "") {
				t.Fatalf("warning %q with source %s", d.warning, d.source)
			}
		})
	}
}

// TestDoctorProbesOnThisHost runs the real probes on this machine, whose
// kernel has pid namespaces, nf_tables, seccomp, overlay, veth, tun and
// loop devices (ENVIRONMENT.md), and no binder.
func TestDoctorProbesOnThisHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (clone with CLONE_NEWPID, nf_tables); running as euid %d", os.Geteuid())
	}
	env := hostDoctorEnv()
	f := newFakeHost().facts
	r := runDoctor(t.Context(), &env, &f)
	for _, c := range r.Checks {
		t.Logf("%-16s %-8s %-40s %s", c.Name, c.Status, c.Mode, c.Detail)
	}
	for _, name := range []string{"pid namespace", "user namespace", "seccomp", "overlayfs", "veth", "tun", "loop devices", "mkfs.ext4", "cgroup memory", "cgroup freezer"} {
		if c := checkNamed(t, r, name); c.Status != api.DoctorFound {
			t.Errorf("%s: %+v; this host has it", name, c)
		}
	}
	if c := checkNamed(t, r, "firewall"); c.Status == api.DoctorMissing || !strings.Contains(c.Detail, "nf_tables: found") {
		t.Errorf("firewall: %+v; this kernel has nf_tables", c)
	}
}

// TestHostResolversFileFromConfig: without resolv.conf the profiles'
// upstream resolvers are written where netns reads them, and a decision
// of none writes a file without any (never the host's loopback).
func TestHostResolversFileFromConfig(t *testing.T) {
	android := t.TempDir()
	for _, tc := range []struct {
		name string
		dns  []string
		want []string
	}{
		{"config", []string{"9.9.9.9", "2620:fe::fe"}, []string{"nameserver 9.9.9.9", "nameserver 2620:fe::fe"}},
		{"none", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.RunDir, cfg.DNS = t.TempDir(), tc.dns
			d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler)}
			path, err := d.applyDNS(decideDNS(t.Context(), dnsEnv{root: android}, cfg))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "nameserver") {
					got = append(got, l)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || strings.Contains(string(b), "127.") || strings.Contains(string(b), "::1") {
				t.Fatalf("resolver file %s:\n%s\nwant %q", path, b, tc.want)
			}
		})
	}
}

// TestBinderlessKernelStartErrorPointsAtDoctor: a profile whose binder
// policy allows host services does not start on a kernel without binder,
// and the error says why and where to look.
func TestBinderlessKernelStartErrorPointsAtDoctor(t *testing.T) {
	if binder.BinderfsSupported() {
		t.Fatal("this kernel has binderfs: the test needs a kernel without binder (this machine's has none)")
	}
	cfg := DefaultConfig()
	d := binderDaemon(t, cfg, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if err := d.binderReconcile(ctx); err != nil {
		t.Fatal(err)
	}
	p := d.profiles["work"]
	var h sandbox.HardenOptions
	if err := d.binderUp(ctx, p, &h); err != nil {
		t.Fatalf("without host services the profile runs without binder: %v", err)
	}
	if _, err := d.SetBinderPolicy(ctx, "work", api.BinderPolicy{Services: []api.BinderService{{Name: "workcell.echo", Descriptor: "workcell.IEcho", Codes: []string{"1"}}}}); err != nil {
		t.Fatal(err)
	}
	err := d.binderUp(ctx, p, &h)
	for _, w := range []string{"no binder driver", "binderfs", "workcell doctor"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Fatalf("binderUp with host services and no driver: %v; want it to say %q", err, w)
		}
	}
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("%v: want a conflict", err)
	}
}

// TestDoctorPolicyRoutingFromTheNetworkManager: what netns found (netd's
// per-network table, the iif rule, no IPv6 NAT) is what doctor says.
func TestDoctorPolicyRoutingFromTheNetworkManager(t *testing.T) {
	h := newFakeHost()
	h.write(t)
	h.env.routes = func() (bool, []int, error) { return false, nil, errAbsent }
	h.facts.routing = &netns.PolicyRouting{Table4: 1003, Uplinks4: []string{"wlan0"}, Rule4: true, Priority: netns.IIfRulePriority}
	h.facts.ipv6Why = "the kernel has no IPv6 NAT for iptables"
	c := checkNamed(t, runDoctor(t.Context(), &h.env, &h.facts), "policy routing")
	if c.Status != api.DoctorFound || c.Mode != "per-network tables" {
		t.Fatalf("policy routing: %+v", c)
	}
	for _, w := range []string{"IPv4: table 1003 via wlan0", "iif wc-NAME rules at priority 31000", "IPv6: no uplink", "no IPv6 NAT"} {
		if !strings.Contains(c.Detail, w) {
			t.Errorf("detail %q lacks %q", c.Detail, w)
		}
	}
	h.facts.routing = &netns.PolicyRouting{Table4: 254, Uplinks4: []string{"eth0"}}
	if c := checkNamed(t, runDoctor(t.Context(), &h.env, &h.facts), "policy routing"); c.Mode != "main table" {
		t.Fatalf("main-table host: %+v", c)
	}
}
