package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/workcell/workcell/internal/testbundle"
)

func TestProbePIDNS(t *testing.T) {
	requireRoot(t)
	// This machine's kernel has pid namespaces (ENVIRONMENT.md): the probe
	// must say so, or the daemon would drop them needlessly.
	if err := ProbePIDNS(context.Background()); err != nil {
		t.Fatalf("ProbePIDNS on a kernel with pid namespaces: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ProbePIDNS(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ProbePIDNS with an ended context = %v", err)
	}
}

func TestProbeProcOptions(t *testing.T) {
	requireRoot(t)
	var u syscall.Utsname
	syscall.Uname(&u)
	got, err := ProbeProcOptions(context.Background())
	// The kernel here is 6.x: per-mount procfs options are there.
	if err != nil || !slices.Equal(got, ProcModern) {
		t.Fatalf("ProbeProcOptions on %s = %v, %v; want %v", utsString(u.Release), got, err, ProcModern)
	}
}

func utsString(b [65]int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// TestHardenRangeAndSharedPID: the spec a kernel without pid and user
// namespaces gets.
func TestHardenRangeAndSharedPID(t *testing.T) {
	bundle := testbundle.Busybox(t)
	base, err := LoadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	m := IDMap{HostID: 1_700_000_000, Size: 65536}
	ok := HardenOptions{ID: "x", UIDRange: &m, SharedPID: true, ProcOptions: ProcModern}
	tests := []struct {
		name  string
		edit  func(*specs.Spec)
		opts  func(*HardenOptions)
		want  string // error text; "" for success
		check func(*testing.T, *specs.Spec)
	}{
		{name: "ids shifted, no capabilities, no pid namespace, hidepid proc", edit: func(s *specs.Spec) {
			s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{5, 1002}}
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}, Ambient: []string{"CAP_CHOWN"}, Effective: []string{"CAP_CHOWN"}}
		}, check: func(t *testing.T, s *specs.Spec) {
			u := s.Process.User
			if u.UID != m.HostID+1000 || u.GID != m.HostID+1001 || !slices.Equal(u.AdditionalGids, []uint32{m.HostID + 5, m.HostID + 1002}) {
				t.Errorf("user = %+v, want shifted by %d", u, m.HostID)
			}
			c := s.Process.Capabilities
			if len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 || !slices.Equal(c.Bounding, []string{"CAP_CHOWN"}) {
				t.Errorf("capabilities = %+v, want only the bounding set", c)
			}
			if !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil {
				t.Error("no_new_privs or seccomp dropped")
			}
			if slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace }) {
				t.Errorf("namespaces %v include pid", s.Linux.Namespaces)
			}
			i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/proc" })
			if i < 0 || !slices.Contains(s.Mounts[i].Options, "hidepid=invisible") {
				t.Errorf("/proc mount = %+v", s.Mounts)
			}
		}},
		{name: "devices are bound, not made", opts: func(h *HardenOptions) {
			h.Devices = []specs.LinuxDevice{{Path: "/dev/binder", Type: "c", Major: 10, Minor: 60}}
			h.DeviceSources = map[string]string{"/dev/binder": "/run/x/dev/work/0"}
		}, check: func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.Devices) != 0 || !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/binder" && m.Source == "/run/x/dev/work/0" }) {
				t.Errorf("devices %v, mounts %v: want a bind mount of the profile's node", s.Linux.Devices, s.Mounts)
			}
		}},
		{name: "uid outside the range", edit: func(s *specs.Spec) { s.Process.User.UID = 70000 }, want: "process.user.uid"},
		{name: "additional gid outside the range", edit: func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{1 << 20} }, want: "process.user.additionalGids[0]"},
		{name: "range among system users", opts: func(h *HardenOptions) { h.UIDRange = &IDMap{HostID: 1000, Size: 65536} }, want: "below 10000"},
		{name: "range at host root", opts: func(h *HardenOptions) { h.UIDRange = &IDMap{Size: 65536} }, want: "host root"},
		{name: "shared pid as host root", opts: func(h *HardenOptions) { h.UIDRange = nil }, want: "host root"},
		{name: "shared pid without procfs options", opts: func(h *HardenOptions) { h.ProcOptions = nil }, want: "no procfs options"},
		{name: "odd procfs option", opts: func(h *HardenOptions) { h.ProcOptions = []string{"gid=0"} }, want: "not hidepid"},
		{name: "sysctl without /proc/sys", edit: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} },
			opts: func(h *HardenOptions) { h.ProcOptions = []string{"hidepid=invisible", "subset=pid"} }, want: "linux.sysctl.net.ipv4.ip_forward"},
		{name: "sysctl with /proc/sys", edit: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} },
			check: func(t *testing.T, s *specs.Spec) {}},
		{name: "shared pid in a user namespace", opts: func(h *HardenOptions) { h.UIDRange, h.UserNS = nil, &UserNS{IDs: m} }, want: "user namespace cannot mount"},
		{name: "both a user namespace and a range", opts: func(h *HardenOptions) { h.UserNS = &UserNS{IDs: m} }, want: "both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := deepCopy(base)
			if tt.edit != nil {
				tt.edit(s)
			}
			h := ok
			if tt.opts != nil {
				tt.opts(&h)
			}
			got, err := Harden(s, bundle, h)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Harden = %v, want an error with %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

// rangeBundle is a busybox bundle with args whose files are shifted into
// a fresh range.
func rangeBundle(t *testing.T, args ...string) (string, IDMap) {
	t.Helper()
	bundle := testbundle.Busybox(t, args...)
	m := IDMap{HostID: 1_600_000_000 + uint32(os.Getpid()%1000)*65536, Size: 65536}
	if err := ShiftTree(context.Background(), filepath.Join(bundle, "rootfs"), m); err != nil {
		t.Fatal(err)
	}
	return bundle, m
}

// TestSharedPIDContainerIsolated runs a container as a kernel without pid
// and user namespaces gets it, and checks the isolation probes from inside.
func TestSharedPIDContainerIsolated(t *testing.T) {
	rt, _ := newRuntime(t)
	bundle, m := rangeBundle(t)
	c := startContainerWith(t, rt, bundle, HardenOptions{UIDRange: &m, SharedPID: true, ProcOptions: ProcModern})
	self := os.Getpid()

	t.Run("init is not pid 1 and runs as the range's root", func(t *testing.T) {
		_, out := run(t, c, "sh", "-c", "echo $PPID; grep -E '^(Uid|Gid|CapEff|CapPrm|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
		if strings.Fields(out)[0] == "1" {
			t.Errorf("exec's parent is pid 1: %s", out)
		}
		for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d", m.HostID, m.HostID), "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("host processes invisible", func(t *testing.T) {
		_, out := run(t, c, "ls", "/proc")
		var pids []int
		for _, f := range strings.Fields(out) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		if len(pids) == 0 || len(pids) > 6 || slices.Contains(pids, self) || slices.Contains(pids, 1) {
			t.Fatalf("/proc shows pids %v, want only the container's few (not host init, not this test's %d)", pids, self)
		}
		if !slices.Contains(pids, c.Pid()) {
			t.Fatalf("/proc shows %v without init %d", pids, c.Pid())
		}
		// Masked (runc's masked paths: /dev/null over it) where the
		// kernel has it, absent where not: nothing of the kernel's memory.
		if code, out := run(t, c, "cat", "/proc/kcore"); code == 0 && out != "" {
			t.Errorf("/proc/kcore is readable: %d bytes", len(out))
		}
	})
	refused := []struct {
		name string
		args []string
	}{
		{"mount tmpfs", []string{"mount", "-t", "tmpfs", "none", "/mnt"}},
		{"mknod null", []string{"mknod", "/tmp/x", "c", "1", "3"}},
		{"sysrq trigger", []string{"sh", "-c", "echo h > /proc/sysrq-trigger"}},
		{"write /proc/sys", []string{"sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"}},
		{"signal a host process", []string{"kill", "-0", strconv.Itoa(self)}},
		{"signal host init", []string{"kill", "-0", "1"}},
		{"read a host process's root", []string{"ls", fmt.Sprintf("/proc/%d/root/", self)}},
		{"set the hostname", []string{"hostname", "evil"}},
	}
	for _, tt := range refused {
		t.Run(tt.name+" refused", func(t *testing.T) {
			if code, out := run(t, c, tt.args...); code == 0 {
				t.Fatalf("%v succeeded: %s", tt.args, out)
			}
		})
	}
	t.Run("hostname is the id", func(t *testing.T) {
		if _, out := run(t, c, "hostname"); strings.TrimSpace(out) != c.ID() {
			t.Fatalf("hostname = %q, want %q", out, c.ID())
		}
	})
	t.Run("exec as a user is shifted", func(t *testing.T) {
		r, w, _ := os.Pipe()
		defer r.Close()
		code, err := c.Exec(context.Background(), ExecSpec{Args: []string{"id", "-u"}, User: &User{UID: 1000, GID: 1000}, Stdout: w})
		w.Close()
		b := make([]byte, 64)
		n, _ := r.Read(b)
		if err != nil || code != 0 || strings.TrimSpace(string(b[:n])) != fmt.Sprint(m.HostID+1000) {
			t.Fatalf("id -u as 1000 = %q (exit %d, %v), want %d", b[:n], code, err, m.HostID+1000)
		}
		if _, err := c.Exec(context.Background(), ExecSpec{Args: []string{"true"}, User: &User{UID: 1 << 20}}); err == nil {
			t.Fatal("exec as a uid outside the range ran")
		}
	})
}

// cgroupPids reads the pids of a container's cgroup.
func cgroupPids(t *testing.T, c *Container) []int {
	t.Helper()
	m, err := cgroupManager(c.lc)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := m.GetAllPids()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return pids
}

// stubbornInit ignores SIGTERM and leaves children that do too: one in
// the background, one double-forked into its own session.
var stubbornInit = []string{"sh", "-c", "trap '' TERM; (trap '' TERM; while :; do sleep 1; done) & " +
	"sh -c 'setsid sh -c \"trap \\\"\\\" TERM; while :; do sleep 1; done\" &' ; while :; do sleep 1; done"}

func TestSharedPIDStopKillsByCgroup(t *testing.T) {
	rt, root := newRuntime(t)
	bundle, m := rangeBundle(t, stubbornInit...)
	c := startContainerWith(t, rt, bundle, HardenOptions{UIDRange: &m, SharedPID: true, ProcOptions: ProcModern})
	var pids []int
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// init, its loop's child, the subshell and the setsid'd loop, sleeps.
	waitFor("init's children", func() bool { pids = cgroupPids(t, c); return len(pids) >= 4 })
	// An exec'd process left behind joins too.
	if code, out := run(t, c, "sh", "-c", "(trap '' TERM; sleep 1000) >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("exec: %d %s", code, out)
	}
	waitFor("the exec's child", func() bool { pids = cgroupPids(t, c); return len(pids) >= 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("pid %d of the container outlived stop: %s", pid, b)
			}
		}
	}
	assertGone(t, root, c.ID())
}

// hiddenKill hides cgroup.kill, as a kernel before 5.14 or a v1-only
// hierarchy does, so killCgroup falls back to freeze, kill, thaw.
type hiddenKill struct{ cgroups.Manager }

func (hiddenKill) Path(string) string { return "" }

func TestKillCgroupWithoutCgroupKill(t *testing.T) {
	rt, _ := newRuntime(t)
	bundle, m := rangeBundle(t, stubbornInit...)
	c := startContainerWith(t, rt, bundle, HardenOptions{UIDRange: &m, SharedPID: true, ProcOptions: ProcModern})
	mgr, err := cgroupManager(c.lc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(cgroupPids(t, c)) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Paused first: killed tasks of a v1 freezer stay until thawed.
	if err := c.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := killCgroup(ctx, hiddenKill{mgr}); err != nil {
		t.Fatal(err)
	}
	if pids := cgroupPids(t, c); len(pids) != 0 {
		t.Fatalf("pids left after the kill: %v", pids)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("init did not end: %v", err)
	}
}

// TestRangeOpensItsDevicesAndIsRefusedAnyGrant: under a range without a
// user namespace, work's root opens a node the daemon made for it (0600,
// owned by the range's root, as identityDevices makes a binder or tun
// node) and holds no capability; a grant such as the VPN client's
// CAP_NET_ADMIN is refused, since it would be the host user namespace's
// (a link created with its peer in the phone's network namespace).
func TestRangeOpensItsDevicesAndIsRefusedAnyGrant(t *testing.T) {
	rt, _ := newRuntime(t)
	bundle, m := rangeBundle(t)
	tun := specs.LinuxDevice{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: ptr(os.FileMode(0o600))}
	srcs, err := MakeDeviceNodes(context.Background(), filepath.Join(t.TempDir(), "dev"), []specs.LinuxDevice{tun}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := HardenOptions{UIDRange: &m, SharedPID: true, ProcOptions: ProcModern, Devices: []specs.LinuxDevice{tun}, DeviceSources: srcs}
	c := startContainerWith(t, rt, bundle, opts)
	if code, out := run(t, c, "sh", "-c", "id -u; exec 3<>/dev/net/tun && echo opened"); code != 0 || !strings.HasPrefix(out, fmt.Sprint(m.HostID)) || !strings.Contains(out, "opened") {
		t.Fatalf("open the profile's tun node as %d: exit %d: %s", m.HostID, code, out)
	}
	if _, out := run(t, c, "grep", "-E", "Cap(Eff|Amb|Prm):", "/proc/self/status"); strings.Count(out, "0000000000000000") != 3 {
		t.Fatalf("capabilities %q, want none", out)
	}
	if code, out := run(t, c, "tunctl", "-t", "wctun0"); code == 0 {
		t.Fatalf("made a tun interface without CAP_NET_ADMIN: %s", out)
	}
	opts.ExtraCapabilities = []string{"CAP_NET_ADMIN"}
	spec, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var in specs.Spec
	if err := json.Unmarshal(spec, &in); err != nil {
		t.Fatal(err)
	}
	opts.ID = "grant"
	if _, err := Harden(&in, bundle, opts); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("Harden with CAP_NET_ADMIN under a range = %v, want it refused naming the capability", err)
	}
}
