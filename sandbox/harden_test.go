package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/workcell/workcell/internal/testbundle"
)

func ptr[T any](v T) *T { return &v }

func TestValidateRefusesEachWeakening(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(s *specs.Spec)
		field string
	}{
		{"host namespace path", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/net" }, "linux.namespaces[1].path"},
		{"user namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, "linux.namespaces[6].type"},
		{"time namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		}, "linux.namespaces[6].type"},
		{"uid mappings", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 0, ContainerID: 0, Size: 1}}
		}, "linux.uidMappings"},
		{"bounding SYS_ADMIN", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_SYS_ADMIN"}}
		}, "process.capabilities.bounding[1]"},
		{"effective NET_RAW", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Effective: []string{"CAP_NET_RAW"}}
		}, "process.capabilities.effective[0]"},
		{"permitted MKNOD", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Permitted: []string{"CAP_MKNOD"}}
		}, "process.capabilities.permitted[0]"},
		{"inheritable SYS_PTRACE", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Inheritable: []string{"CAP_SYS_PTRACE"}}
		}, "process.capabilities.inheritable[0]"},
		{"ambient SYS_MODULE", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Ambient: []string{"CAP_SYS_MODULE"}}
		}, "process.capabilities.ambient[0]"},
		{"linux devices", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8}} }, "linux.devices[0]"},
		{"device cgroup allow", func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
		}, "linux.resources.devices[1].allow"},
		{"bind mount type", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "bind", Source: "/"})
		}, "mounts[7].type"},
		{"rbind option", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "none", Source: "/", Options: []string{"ro", "rbind"}})
		}, "mounts[7].options[1]"},
		{"bind option on tmpfs", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/x", Type: "tmpfs", Source: "/etc", Options: []string{"bind"}})
		}, "mounts[7].options[0]"},
		{"ext4 mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "ext4", Source: "/dev/sda1"})
		}, "mounts[7].type"},
		{"relative destination", func(s *specs.Spec) { s.Mounts[0].Destination = "proc" }, "mounts[0].destination"},
		{"prestart hook", func(s *specs.Spec) { s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}}} }, "hooks"},
		{"custom seccomp", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow} }, "linux.seccomp"},
		{"host sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.panic": "1"} }, "linux.sysctl.kernel.panic"},
		{"vm sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.overcommit_memory": "1"} }, "linux.sysctl.vm.overcommit_memory"},
		{"absolute root", func(s *specs.Spec) { s.Root.Path = "/" }, "root.path"},
		{"escaping root", func(s *specs.Spec) { s.Root.Path = "../other" }, "root.path"},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root.path"},
		{"no process", func(s *specs.Spec) { s.Process = nil }, "process"},
		{"terminal", func(s *specs.Spec) { s.Process.Terminal = true }, "process.terminal"},
		{"apparmor unconfined", func(s *specs.Spec) { s.Process.ApparmorProfile = "unconfined" }, "process.apparmorProfile"},
		{"negative oom score", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-1000) }, "process.oomScoreAdj"},
		{"realtime scheduler", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 99} }, "process.scheduler.policy"},
		{"shared propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }, "linux.rootfsPropagation"},
		{"net devices", func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth0": {}} }, "linux.netDevices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testbundle.Spec()
			tt.edit(s)
			err := Validate(s)
			if err == nil {
				t.Fatalf("Validate accepted a spec with %s", tt.field)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v has no FieldError", err)
			}
			if !strings.Contains(err.Error(), "config.json: "+tt.field+": ") {
				t.Errorf("error %q does not name field %q", err, tt.field)
			}
		})
	}
}

func TestValidateReportsAllViolations(t *testing.T) {
	s := testbundle.Spec()
	s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
	s.Linux.Seccomp = &specs.LinuxSeccomp{}
	err := Validate(s)
	for _, f := range []string{"hooks", "linux.seccomp"} {
		if err == nil || !strings.Contains(err.Error(), "config.json: "+f+":") {
			t.Errorf("error %v does not name %s", err, f)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func(s *specs.Spec)
	}{
		{"runc default bundle", func(*specs.Spec) {}},
		{"allowed capabilities", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_CHOWN"}, Effective: []string{"CAP_KILL"}}
		}},
		{"extra masked and readonly paths", func(s *specs.Spec) {
			s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/secret")
			s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/etc")
		}},
		{"namespaced sysctls", func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "kernel.msgmax": "1", "kernel.sem": "1 1 1 1", "fs.mqueue.msg_max": "10"}
		}},
		{"deny device rules", func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: false, Type: "b", Access: "rwm"})
		}},
		{"no linux section", func(s *specs.Spec) { s.Linux = nil }},
		{"nested root path", func(s *specs.Spec) { s.Root.Path = "a/../rootfs" }},
		{"cgroup2 and tmpfs mounts", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs"}, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup2"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testbundle.Spec()
			tt.edit(s)
			if err := Validate(s); err != nil {
				t.Fatalf("Validate refused: %v", err)
			}
		})
	}
}

func hardenDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestHardenEnforcesDefaults(t *testing.T) {
	dir := hardenDir(t)
	in := testbundle.Spec()
	in.Linux.MaskedPaths = append(in.Linux.MaskedPaths, "/proc/extra")
	in.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(1) << 40)}
	in.Process.NoNewPrivileges = false
	before, _ := json.Marshal(in)

	opts := HardenOptions{
		ID:           "c1",
		Limits:       Limits{MemoryBytes: 64 << 20, CPUMillis: 500, Pids: 100},
		NetNSPath:    "/run/netns/work",
		CgroupParent: "/workcell-x",
		Mounts:       []specs.Mount{{Destination: "/etc/resolv.conf", Type: "bind", Source: "/run/workcell/resolv.conf", Options: []string{"rbind", "ro"}}},
		Devices:      []specs.LinuxDevice{{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200}},
	}
	out, err := Harden(in, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(in); string(after) != string(before) {
		t.Error("Harden modified its input")
	}

	caps := out.Process.Capabilities
	for name, set := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
		if !slices.Equal(set, AllowedCapabilities) {
			t.Errorf("%s = %v, want %v", name, set, AllowedCapabilities)
		}
	}
	if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("inheritable %v ambient %v, want none", caps.Inheritable, caps.Ambient)
	}
	if out.Linux.Seccomp == nil || len(out.Linux.Seccomp.Syscalls) == 0 {
		t.Error("no seccomp profile")
	}
	if !out.Process.NoNewPrivileges {
		t.Error("noNewPrivileges is false")
	}
	for _, p := range append(slices.Clone(defaultMaskedPaths), "/proc/extra") {
		if !slices.Contains(out.Linux.MaskedPaths, p) {
			t.Errorf("masked paths lack %s", p)
		}
	}
	for _, p := range defaultReadonlyPaths {
		if !slices.Contains(out.Linux.ReadonlyPaths, p) {
			t.Errorf("readonly paths lack %s", p)
		}
	}
	wantNS := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/work"}, {Type: specs.CgroupNamespace},
	}
	if !slices.Equal(out.Linux.Namespaces, wantNS) {
		t.Errorf("namespaces = %v, want %v", out.Linux.Namespaces, wantNS)
	}
	r := out.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 64<<20 {
		t.Errorf("memory = %+v, want 64 MiB", r.Memory)
	}
	if r.CPU == nil || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu = %+v, want 50000/100000", r.CPU)
	}
	if r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit != 100 {
		t.Errorf("pids = %+v, want 100", r.Pids)
	}
	if out.Linux.CgroupsPath != "/workcell-x/c1" {
		t.Errorf("cgroupsPath = %q", out.Linux.CgroupsPath)
	}
	if out.Hostname != "c1" {
		t.Errorf("hostname = %q, want the id", out.Hostname)
	}
	if want := filepath.Join(dir, "rootfs"); out.Root.Path != want {
		t.Errorf("root.path = %q, want %q", out.Root.Path, want)
	}
	if last := out.Mounts[len(out.Mounts)-1]; last.Destination != "/etc/resolv.conf" {
		t.Errorf("daemon mount not appended: %+v", last)
	}
	if len(out.Linux.Devices) != 1 || out.Linux.Devices[0].Path != "/dev/net/tun" {
		t.Errorf("devices = %+v, want only /dev/net/tun", out.Linux.Devices)
	}
	if d := r.Devices; len(d) != 2 || d[0].Allow || !d[1].Allow || *d[1].Major != 10 || *d[1].Minor != 200 {
		t.Errorf("device rules = %+v, want deny all + allow 10:200", d)
	}
}

func TestHardenIntersectsCapabilities(t *testing.T) {
	in := testbundle.Spec()
	in.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: []string{"CAP_KILL", "CAP_CHOWN"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
	}
	out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if c := out.Process.Capabilities; !slices.Equal(c.Bounding, []string{"CAP_KILL", "CAP_CHOWN"}) || !slices.Equal(c.Effective, []string{"CAP_KILL"}) {
		t.Errorf("capabilities = %+v", c)
	}
	if out.Hostname != "h" || out.Linux.CgroupsPath != "/workcell/c" {
		t.Errorf("hostname %q cgroupsPath %q", out.Hostname, out.Linux.CgroupsPath)
	}
	if out.Linux.Resources.Memory != nil || out.Linux.Resources.CPU != nil || out.Linux.Resources.Pids != nil {
		t.Errorf("zero limits should be unlimited: %+v", out.Linux.Resources)
	}
}

// The daemon's extra capabilities come on top of what the bundle may ask
// for, even where the bundle's own request for them is refused.
func TestHardenGrantsDaemonExtraCapabilities(t *testing.T) {
	in := testbundle.Spec()
	in.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}
	out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", ExtraCapabilities: []string{"CAP_NET_ADMIN"}})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, []string{"CAP_KILL", "CAP_NET_ADMIN"}) {
			t.Errorf("%s = %v, want CAP_KILL and the daemon's CAP_NET_ADMIN", name, set)
		}
	}
	if len(c.Ambient) != 0 || len(c.Inheritable) != 0 {
		t.Errorf("ambient %v inheritable %v, want none", c.Ambient, c.Inheritable)
	}
	if slices.Contains(AllowedCapabilities, "CAP_NET_ADMIN") {
		t.Errorf("CAP_NET_ADMIN must stay out of what a bundle may ask for")
	}
	in.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_ADMIN"}}
	if _, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", ExtraCapabilities: []string{"CAP_NET_ADMIN"}}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("a bundle asking for CAP_NET_ADMIN itself: err = %v, want ErrInvalidSpec", err)
	}
	if out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c"}); err != nil || slices.Contains(out.Process.Capabilities.Bounding, "CAP_NET_ADMIN") {
		t.Errorf("without extras: %v, %v", out.Process.Capabilities, err)
	}
}

func TestHardenRootfsOverridesBundle(t *testing.T) {
	out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c", Rootfs: "/var/lib/workcell/p/merged"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Root.Path != "/var/lib/workcell/p/merged" {
		t.Fatalf("root.path = %q, want the daemon's rootfs", out.Root.Path)
	}
}

func TestHardenRefuses(t *testing.T) {
	tests := []struct {
		name string
		opts HardenOptions
		want string
	}{
		{"no id", HardenOptions{}, "no container id"},
		{"negative memory", HardenOptions{ID: "c", Limits: Limits{MemoryBytes: -1}}, "memory limit"},
		{"cpu below kernel minimum", HardenOptions{ID: "c", Limits: Limits{CPUMillis: 5}}, "cpu limit"},
		{"negative pids", HardenOptions{ID: "c", Limits: Limits{Pids: -1}}, "pids limit"},
		{"relative rootfs", HardenOptions{ID: "c", Rootfs: "overlay/merged"}, "not absolute"},
		{"extra capability that is not one", HardenOptions{ID: "c", ExtraCapabilities: []string{"net_admin"}}, "extra capability"},
		{"user namespace mapping host root", HardenOptions{ID: "c", UserNS: &UserNS{IDs: IDMap{HostID: 0, Size: 65536}}}, "host root"},
		{"user namespace without ids", HardenOptions{ID: "c", UserNS: &UserNS{IDs: IDMap{HostID: 100000}}}, "size 0"},
		{"user namespace range past the last uid", HardenOptions{ID: "c", UserNS: &UserNS{IDs: IDMap{HostID: 1<<32 - 10, Size: 65536}}}, "last uid"},
		{"device source not absolute", HardenOptions{ID: "c", UserNS: &UserNS{IDs: IDMap{HostID: 100000, Size: 65536}},
			Devices: []specs.LinuxDevice{{Path: "/dev/binder", Type: "c"}}, DeviceSources: map[string]string{"/dev/binder": "nodes/0"}}, "not an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Harden(testbundle.Spec(), hardenDir(t), tt.opts)
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidSpec mentioning %q", err, tt.want)
			}
		})
	}
}

func TestLoadBundleErrors(t *testing.T) {
	write := func(t *testing.T, config string) string {
		dir := hardenDir(t)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	valid, _ := json.Marshal(testbundle.Spec())
	t.Run("missing config", func(t *testing.T) {
		_, err := LoadBundle(hardenDir(t))
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "config.json") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("broken json names file and offset", func(t *testing.T) {
		dir := write(t, `{"ociVersion": "1.0.2", "process": {`)
		_, err := LoadBundle(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) || !strings.Contains(err.Error(), "offset") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("syntax error offset", func(t *testing.T) {
		dir := write(t, `{"ociVersion": x}`)
		_, err := LoadBundle(dir)
		if err == nil || !strings.Contains(err.Error(), "offset 16") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		dir := write(t, `{"ociVersion": "1.0.2", "privileged": true}`)
		_, err := LoadBundle(dir)
		if err == nil || !strings.Contains(err.Error(), "privileged") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("root symlink escapes bundle", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("/", filepath.Join(dir, "rootfs")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), valid, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadBundle(dir)
		if err == nil || !strings.Contains(err.Error(), "root.path") || !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("root dotdot", func(t *testing.T) {
		s := testbundle.Spec()
		s.Root.Path = "../rootfs"
		data, _ := json.Marshal(s)
		_, err := LoadBundle(write(t, string(data)))
		if err == nil || !strings.Contains(err.Error(), "root.path") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing rootfs", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), valid, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadBundle(dir)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "root.path") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("valid", func(t *testing.T) {
		if _, err := LoadBundle(write(t, string(valid))); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHardenUserNS: the daemon's user namespace is added (new with the
// mapping, or joined by path without one), and the daemon's devices become
// bind mounts of their host nodes, because a user namespace cannot mknod
// and libcontainer would bind the container path's host node, which for
// the binder context is the host's own /dev/binder.
func TestHardenUserNS(t *testing.T) {
	ids := IDMap{HostID: 1_000_000_000, Size: 65536}
	devs := []specs.LinuxDevice{{Path: "/dev/binder", Type: "c", Major: 10, Minor: 60}, {Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200}}
	t.Run("new namespace", func(t *testing.T) {
		out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c", UserNS: &UserNS{IDs: ids}, Devices: devs,
			DeviceSources: map[string]string{"/dev/binder": "/run/workcell/dev/c/0"}})
		if err != nil {
			t.Fatal(err)
		}
		l := out.Linux
		if !slices.Contains(l.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace}) {
			t.Fatalf("namespaces %v lack a new user namespace", l.Namespaces)
		}
		want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: ids.HostID, Size: ids.Size}}
		if !slices.Equal(l.UIDMappings, want) || !slices.Equal(l.GIDMappings, want) {
			t.Fatalf("mappings uid %v gid %v, want %v", l.UIDMappings, l.GIDMappings, want)
		}
		if len(l.Devices) != 0 {
			t.Fatalf("devices %v would be made by libcontainer from their container path", l.Devices)
		}
		binds := map[string]string{}
		for _, m := range out.Mounts {
			if m.Type == "bind" {
				binds[m.Destination] = m.Source
			}
		}
		if binds["/dev/binder"] != "/run/workcell/dev/c/0" || binds["/dev/net/tun"] != "/dev/net/tun" {
			t.Fatalf("device binds %v, want /dev/binder from the daemon's node and /dev/net/tun from the host's", binds)
		}
		for _, d := range devs {
			if !slices.ContainsFunc(l.Resources.Devices, func(r specs.LinuxDeviceCgroup) bool {
				return r.Allow && r.Major != nil && *r.Major == d.Major && *r.Minor == d.Minor
			}) {
				t.Errorf("no cgroup rule allows %s", d.Path)
			}
		}
	})
	t.Run("joined by path", func(t *testing.T) {
		out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c", UserNS: &UserNS{IDs: ids, Path: "/run/workcell/userns/c-1000000000"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(out.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/run/workcell/userns/c-1000000000"}) {
			t.Fatalf("namespaces %v do not join the pinned user namespace", out.Linux.Namespaces)
		}
		if out.Linux.UIDMappings != nil || out.Linux.GIDMappings != nil {
			t.Fatalf("a joined user namespace with mappings too: libcontainer refuses that")
		}
	})
	t.Run("without it, no user namespace", func(t *testing.T) {
		out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c", Devices: devs})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(out.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) || len(out.Linux.Devices) != 2 {
			t.Fatalf("namespaces %v devices %v", out.Linux.Namespaces, out.Linux.Devices)
		}
	})
}

func TestIDMapShift(t *testing.T) {
	m := IDMap{HostID: 1_000_000_000, Size: 65536}
	for in, want := range map[uint32]uint32{0: 1_000_000_000, 1000: 1_000_001_000, 65535: 1_000_065_535, 65536: 65536, 1_000_000_005: 1_000_000_005, 4294967294: 4294967294} {
		if got := m.Shift(in); got != want {
			t.Errorf("Shift(%d) = %d, want %d", in, got, want)
		}
	}
}
