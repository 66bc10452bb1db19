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

		// The attacks below passed the validator before issue 8.
		// Mounts: a second procfs off /proc escapes /proc's masked and
		// read-only paths (core_pattern), and so on for each type.
		{"proc at /hostproc", addMount(specs.Mount{Destination: "/hostproc", Type: "proc", Source: "proc"}), "mounts[7].destination"},
		{"proc at /proc/../hostproc", addMount(specs.Mount{Destination: "/proc/../hostproc", Type: "proc", Source: "proc"}), "mounts[7].destination"},
		{"second proc at /proc", addMount(specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}), "mounts[7].destination"},
		{"sysfs at /hostsys", addMount(specs.Mount{Destination: "/hostsys", Type: "sysfs", Source: "sysfs", Options: []string{"rw"}}), "mounts[7].destination"},
		{"second sysfs at /sys/", addMount(specs.Mount{Destination: "/sys/", Type: "sysfs", Source: "sysfs", Options: []string{"rw"}}), "mounts[7].destination"},
		{"cgroup at /hostcgroup", addMount(specs.Mount{Destination: "/hostcgroup", Type: "cgroup", Source: "cgroup", Options: []string{"rw"}}), "mounts[7].destination"},
		{"cgroup2 at /mnt", addMount(specs.Mount{Destination: "/mnt", Type: "cgroup2", Source: "cgroup2"}), "mounts[7].destination"},
		{"tmpfs at /run", addMount(specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"exec", "suid"}}), "mounts[7].destination"},
		{"tmpfs over /proc", func(s *specs.Spec) { s.Mounts[0] = specs.Mount{Destination: "/proc", Type: "tmpfs", Source: "tmpfs"} }, "mounts[0].destination"},
		{"devpts at /mnt/pts", addMount(specs.Mount{Destination: "/mnt/pts", Type: "devpts", Source: "devpts"}), "mounts[7].destination"},
		{"mqueue at /mq", addMount(specs.Mount{Destination: "/mq", Type: "mqueue", Source: "mqueue"}), "mounts[7].destination"},
		{"idmapped proc", func(s *specs.Spec) { s.Mounts[0].UIDMappings = []specs.LinuxIDMapping{{Size: 1}} }, "mounts[0].uidMappings"},
		{"/dev/shm of 100 GiB", func(s *specs.Spec) { s.Mounts[3].Options = []string{"nosuid", "size=100g"} }, "mounts[3].options[1]"},
		{"/dev/shm of half the host", func(s *specs.Spec) { s.Mounts[3].Options = []string{"size=50%"} }, "mounts[3].options[0]"},

		// Raw cgroup knobs.
		{"unified cgroup.procs", func(s *specs.Spec) { s.Linux.Resources.Unified = map[string]string{"cgroup.procs": "1"} }, "linux.resources.unified"},
		{"unified pids.max", func(s *specs.Spec) { s.Linux.Resources.Unified = map[string]string{"pids.max": "max"} }, "linux.resources.unified"},
		{"blockIO", func(s *specs.Spec) {
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: ptr(uint16(1000))}
		}, "linux.resources.blockIO"},
		{"hugepage limits", func(s *specs.Spec) {
			s.Linux.Resources.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 40}}
		}, "linux.resources.hugepageLimits"},
		{"rdma", func(s *specs.Spec) { s.Linux.Resources.Rdma = map[string]specs.LinuxRdma{"mlx5_0": {}} }, "linux.resources.rdma"},
		{"net_cls classid", func(s *specs.Spec) {
			s.Linux.Resources.Network = &specs.LinuxNetwork{ClassID: ptr(uint32(0x100001))}
		}, "linux.resources.network"},
		{"memory disableOOMKiller", func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{DisableOOMKiller: ptr(true)}
		}, "linux.resources.memory.disableOOMKiller"},
		{"memory kernel", func(s *specs.Spec) { s.Linux.Resources.Memory = &specs.LinuxMemory{Kernel: ptr(int64(-1))} }, "linux.resources.memory.kernel"},
		{"memory swappiness", func(s *specs.Spec) { s.Linux.Resources.Memory = &specs.LinuxMemory{Swappiness: ptr(uint64(0))} }, "linux.resources.memory.swappiness"},
		{"cpu burst", func(s *specs.Spec) { s.Linux.Resources.CPU = &specs.LinuxCPU{Burst: ptr(uint64(1 << 40))} }, "linux.resources.cpu.burst"},
		{"cpuset", func(s *specs.Spec) { s.Linux.Resources.CPU = &specs.LinuxCPU{Cpus: "0"} }, "linux.resources.cpu.cpus"},

		// Rlimits: the runtime sets them as root, above the daemon's own.
		{"rtprio 99", addRlimit("RLIMIT_RTPRIO", 99, 99), "process.rlimits[1].hard"},
		{"rttime", addRlimit("RLIMIT_RTTIME", 1, 1), "process.rlimits[1].hard"},
		{"unlimited memlock", addRlimit("RLIMIT_MEMLOCK", ^uint64(0), ^uint64(0)), "process.rlimits[1].hard"},
		{"nofile 2^30", func(s *specs.Spec) { s.Process.Rlimits[0].Hard = 1 << 30 }, "process.rlimits[0].hard"},
		{"nice 40", addRlimit("RLIMIT_NICE", 40, 40), "process.rlimits[1].hard"},
		{"msgqueue 1 GiB", addRlimit("RLIMIT_MSGQUEUE", 1<<30, 1<<30), "process.rlimits[1].hard"},
		{"unknown rlimit", addRlimit("RLIMIT_EVERYTHING", 1, 1), "process.rlimits[1].type"},
		{"duplicate nofile", addRlimit("RLIMIT_NOFILE", 1<<30, 1<<30), "process.rlimits[1].type"},
		{"soft above hard", addRlimit("RLIMIT_CORE", 2, 1), "process.rlimits[1].soft"},

		// Labels are the phone's, not the image's.
		{"selinux label", func(s *specs.Spec) { s.Process.SelinuxLabel = "u:r:su:s0" }, "process.selinuxLabel"},
		{"apparmor profile", func(s *specs.Spec) { s.Process.ApparmorProfile = "lax" }, "process.apparmorProfile"},
		{"mount label", func(s *specs.Spec) { s.Linux.MountLabel = "u:object_r:rootfs:s0" }, "linux.mountLabel"},

		// The rest of a bundle the runtime hands to the kernel.
		{"oom score above 1000", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(1001) }, "process.oomScoreAdj"},
		{"nice -20", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Nice: -20} }, "process.scheduler.nice"},
		{"util clamp flag", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{specs.SchedFlagUtilClampMin}}
		}, "process.scheduler.flags[0]"},
		{"systemd property annotation", func(s *specs.Spec) {
			s.Annotations = map[string]string{"org.systemd.property.Delegate": "true"}
		}, "annotations"},
		{"too many groups", func(s *specs.Spec) { s.Process.User.AdditionalGids = make([]uint32, 65537) }, "process.user.additionalGids"},
		{"time offsets", func(s *specs.Spec) {
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}}
		}, "linux.timeOffsets"},
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

func addMount(m specs.Mount) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Mounts = append(s.Mounts, m) }
}

func addRlimit(typ string, soft, hard uint64) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
}

// The refusal of a mount off its path says where that type may go.
func TestValidateNamesTheMountsPlace(t *testing.T) {
	s := testbundle.Spec()
	s.Mounts = append(s.Mounts[:3], specs.Mount{Destination: "/hostproc", Type: "proc", Source: "proc"})
	err := Validate(s)
	if err == nil || err.Error() != "config.json: mounts[3].destination: proc only at /proc" {
		t.Fatalf("err = %v", err)
	}
}

// A refusal quotes an attacker-chosen name cut short: the line is logged.
func TestValidateBoundsQuotedNames(t *testing.T) {
	s := testbundle.Spec()
	long := strings.Repeat("x", 10000)
	s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: long})
	s.Linux.Resources.Unified = map[string]string{long: "1", "a": "1", "b": "1", "c": "1"}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: long})
	err := Validate(s)
	if err == nil || len(err.Error()) > 1000 {
		t.Fatalf("error of %d bytes: %.200v", len(err.Error()), err)
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
		{"cgroup2 at /sys/fs/cgroup", func(s *specs.Spec) {
			s.Mounts[6] = specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup2"}
		}},
		{"fewer mounts than runc's", func(s *specs.Spec) { s.Mounts = s.Mounts[:1] }},
		{"destination with a trailing slash", func(s *specs.Spec) { s.Mounts[0].Destination = "/proc/" }},
		{"bigger /dev/shm", func(s *specs.Spec) { s.Mounts[3].Options = []string{"size=512m"} }},
		{"rlimits within the caps", func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: MaxNofile}, {Type: "RLIMIT_MEMLOCK", Soft: 1 << 20, Hard: MaxMemlock},
				{Type: "RLIMIT_RTPRIO"}, {Type: "RLIMIT_CORE", Soft: 0, Hard: ^uint64(0)},
			}
		}},
		{"limits the daemon replaces", func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(1 << 30)), Swap: ptr(int64(1 << 30))}
			s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: ptr(uint64(1024)), Quota: ptr(int64(100000)), Period: ptr(uint64(100000))}
			s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(-1))}
		}},
		{"oom score above the default", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(1000) }},
		{"plain annotations", func(s *specs.Spec) { s.Annotations = map[string]string{"org.opencontainers.image.title": "work"} }},
		{"batch scheduling, nice 10", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch, Nice: 10, Flags: []specs.LinuxSchedulerFlag{specs.SchedFlagResetOnFork}}
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
		{"negative oom score", HardenOptions{ID: "c", OOMScoreAdj: -1000}, "oom_score_adj"},
		{"oom score above 1000", HardenOptions{ID: "c", OOMScoreAdj: 1001}, "oom_score_adj"},
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

// Each mount the container gets is the default one at its destination,
// with the daemon's options, whatever the bundle wrote: before issue 8 a
// bundle's ["ro","rw"] kept sysfs writable (the kernel takes the last) and
// "rrw" (recursive rw) slipped past the check for "rw".
func TestHardenRebuildsMounts(t *testing.T) {
	in := testbundle.Spec()
	byDest := func(ms []specs.Mount, d string) *specs.Mount {
		for i := range ms {
			if ms[i].Destination == d {
				return &ms[i]
			}
		}
		t.Fatalf("no mount at %s in %+v", d, ms)
		return nil
	}
	byDest(in.Mounts, "/sys").Options = []string{"ro", "rw"}
	byDest(in.Mounts, "/sys/fs/cgroup").Options = []string{"rrw", "nosuid"}
	byDest(in.Mounts, "/proc").Options = []string{"suid", "exec", "dev"}
	shm := byDest(in.Mounts, "/dev/shm")
	shm.Options, shm.Source = []string{"exec", "suid", "size=256m", "mode=0777"}, "/etc"
	byDest(in.Mounts, "/dev").Options = []string{"size=100g", "exec"}
	byDest(in.Mounts, "/dev/mqueue").Destination = "/dev/mqueue/"
	slices.Reverse(in.Mounts) // a bundle cannot reorder them to shadow one with another
	daemonMount := specs.Mount{Destination: "/dev/binder", Type: "bind", Source: "/dev/binderfs/work", Options: []string{"bind"}}

	out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", Mounts: []specs.Mount{daemonMount}})
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=268435456"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		daemonMount,
	}
	if len(out.Mounts) != len(want) {
		t.Fatalf("mounts = %+v, want %+v", out.Mounts, want)
	}
	for i := range want {
		got, w := out.Mounts[i], want[i]
		if got.Destination != w.Destination || got.Type != w.Type || got.Source != w.Source || !slices.Equal(got.Options, w.Options) {
			t.Errorf("mounts[%d] = %+v, want %+v", i, got, w)
		}
	}
	sys := byDest(out.Mounts, "/sys")
	if !slices.Contains(sys.Options, "ro") || slices.Contains(sys.Options, "rw") {
		t.Errorf("sysfs options %v: want ro and no rw", sys.Options)
	}
	if cg := byDest(out.Mounts, "/sys/fs/cgroup"); slices.Contains(cg.Options, "rrw") || !slices.Contains(cg.Options, "ro") {
		t.Errorf("cgroup options %v: want ro and no rrw", cg.Options)
	}
}

// A bundle without rlimits of the capped types gets the defaults, not the
// daemon's own (init's may be unlimited); its own within the caps stay.
func TestHardenRlimits(t *testing.T) {
	in := testbundle.Spec()
	in.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 8192}, {Type: "RLIMIT_CORE"}}
	out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]specs.POSIXRlimit{}
	for _, r := range out.Process.Rlimits {
		if _, dup := got[r.Type]; dup {
			t.Errorf("%s twice", r.Type)
		}
		got[r.Type] = r
	}
	want := map[string][2]uint64{
		"RLIMIT_NOFILE": {4096, 8192}, "RLIMIT_CORE": {0, 0}, "RLIMIT_MEMLOCK": {8 << 20, 8 << 20},
		"RLIMIT_RTPRIO": {0, 0}, "RLIMIT_RTTIME": {0, 0}, "RLIMIT_NICE": {0, 0}, "RLIMIT_MSGQUEUE": {819200, 819200},
	}
	if len(got) != len(want) {
		t.Errorf("rlimits = %+v, want %v", out.Process.Rlimits, want)
	}
	for typ, w := range want {
		if r, ok := got[typ]; !ok || r.Soft != w[0] || r.Hard != w[1] {
			t.Errorf("%s = %+v, want soft %d hard %d", typ, r, w[0], w[1])
		}
	}
	for _, r := range out.Process.Rlimits {
		if r.Hard > rlimitCaps[r.Type] {
			t.Errorf("default %s %d above its own cap", r.Type, r.Hard)
		}
	}
}

// Containers inherited the daemon's oom_score_adj, -1000 under Android's
// init: work would have outlived the personal side under memory pressure.
func TestHardenRaisesOOMScoreAdj(t *testing.T) {
	tests := []struct {
		name   string
		bundle *int
		daemon int
		want   int
	}{
		{"bundle silent", nil, 0, DefaultOOMScoreAdj},
		{"bundle 0", ptr(0), 0, DefaultOOMScoreAdj},
		{"bundle below the default", ptr(100), 0, DefaultOOMScoreAdj},
		{"bundle above the default", ptr(900), 0, 900},
		{"daemon's own", nil, 500, 500},
		{"bundle above the daemon's", ptr(600), 500, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testbundle.Spec()
			in.Process.OOMScoreAdj = tt.bundle
			out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", OOMScoreAdj: tt.daemon})
			if err != nil {
				t.Fatal(err)
			}
			if out.Process.OOMScoreAdj == nil || *out.Process.OOMScoreAdj != tt.want {
				t.Fatalf("oomScoreAdj = %v, want %d", out.Process.OOMScoreAdj, tt.want)
			}
		})
	}
	if DefaultOOMScoreAdj <= 0 {
		t.Fatalf("DefaultOOMScoreAdj %d must be positive", DefaultOOMScoreAdj)
	}
}

// Labels come from the daemon's options; a bundle has none (Validate
// refuses them).
func TestHardenLabelsFromDaemon(t *testing.T) {
	opts := HardenOptions{ID: "c", SELinuxLabel: "u:r:work_app:s0", SELinuxMountLabel: "u:object_r:work_file:s0", AppArmorProfile: "workcell-work"}
	out, err := Harden(testbundle.Spec(), hardenDir(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	if out.Process.SelinuxLabel != opts.SELinuxLabel || out.Process.ApparmorProfile != opts.AppArmorProfile || out.Linux.MountLabel != opts.SELinuxMountLabel {
		t.Fatalf("labels %q %q %q, want the daemon's", out.Process.SelinuxLabel, out.Process.ApparmorProfile, out.Linux.MountLabel)
	}
	out, err = Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c"})
	if err != nil || out.Process.SelinuxLabel != "" || out.Process.ApparmorProfile != "" || out.Linux.MountLabel != "" {
		t.Fatalf("without daemon labels: %q %q %q, %v", out.Process.SelinuxLabel, out.Process.ApparmorProfile, out.Linux.MountLabel, err)
	}
}

// The resources the container gets are the daemon's alone: a bundle's
// limits are replaced, not merged.
func TestHardenRebuildsResources(t *testing.T) {
	in := testbundle.Spec()
	in.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(-1)), Swap: ptr(int64(-1)), Reservation: ptr(int64(1 << 40))}
	in.Linux.Resources.CPU = &specs.LinuxCPU{Shares: ptr(uint64(262144)), Quota: ptr(int64(-1))}
	in.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(-1))}
	in.Linux.CgroupsPath = "/"
	out, err := Harden(in, hardenDir(t), HardenOptions{ID: "c", Limits: Limits{MemoryBytes: 64 << 20, Pids: 50}})
	if err != nil {
		t.Fatal(err)
	}
	r := out.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 64<<20 || r.Memory.Swap != nil || r.Memory.Reservation != nil {
		t.Errorf("memory = %+v, want only the daemon's limit", r.Memory)
	}
	if r.CPU != nil {
		t.Errorf("cpu = %+v, want none (no daemon CPU limit)", r.CPU)
	}
	if r.Pids == nil || *r.Pids.Limit != 50 {
		t.Errorf("pids = %+v, want 50", r.Pids)
	}
	if out.Linux.CgroupsPath != "/workcell/c" {
		t.Errorf("cgroupsPath = %q, want the daemon's", out.Linux.CgroupsPath)
	}
}

func TestLoadBundleRefusesHugeConfig(t *testing.T) {
	dir := hardenDir(t)
	s := testbundle.Spec()
	s.Process.Env = append(s.Process.Env, "PAD="+strings.Repeat("x", MaxConfigBytes))
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBundle(dir); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a refusal of the size", err)
	}
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

// TestHardenLeavesOutMqueueWithoutTheFilesystem: on a kernel without POSIX
// message queues (GKI) the bundle's /dev/mqueue mount would fail the start.
func TestHardenLeavesOutMqueueWithoutTheFilesystem(t *testing.T) {
	for _, noMq := range []bool{false, true} {
		out, err := Harden(testbundle.Spec(), hardenDir(t), HardenOptions{ID: "c", NoMqueue: noMq})
		if err != nil {
			t.Fatal(err)
		}
		has := slices.ContainsFunc(out.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/mqueue" })
		if has == noMq {
			t.Errorf("NoMqueue %v: /dev/mqueue mounted %v", noMq, has)
		}
	}
}
