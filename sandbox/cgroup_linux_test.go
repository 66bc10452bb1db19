package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/workcell/workcell/internal/testbundle"
	"golang.org/x/sys/unix"
)

// procCgroups reads /proc/PID/cgroup: controller ("" for v2) -> path.
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			t.Fatalf("/proc/%d/cgroup line %q", pid, line)
		}
		for _, c := range strings.Split(f[1], ",") {
			out[c] = f[2]
		}
	}
	return out
}

func readTrim(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func waitFile(t *testing.T, name string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(name); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never written", name)
	return ""
}

// testLimitsHold starts a real container with memory, CPU and pids limits
// on the layout rt probes and checks that each limit holds where the layout
// has its controller, that the others are the warnings wantWarn (substrings,
// one each), that the device allow-list holds, that freeze and thaw work,
// and that nothing is left in any hierarchy after stop and after a failed
// start.
func testLimitsHold(t *testing.T, rt *Runtime, wantWarn []string) {
	layout, err := rt.probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", layout)
	lim := Limits{MemoryBytes: 32 << 20, CPUMillis: 500, Pids: 64}
	// init's own child allocates more than the limit: it must be
	// OOM-killed (137), as must a process started through exec.
	script := "dd if=/dev/zero of=/dev/null bs=48M count=1; echo $? > /tmp/init-dd; " +
		"i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.01; done"
	bundle := testbundle.Busybox(t, "sh", "-c", script)
	// A device node that the allow-list does not name (/dev/fuse): the
	// container may find it in its root but not open it.
	node := filepath.Join(bundle, "rootfs", "fuse-node")
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 229))); err != nil {
		t.Fatal(err)
	}
	c := startContainerWith(t, rt, bundle, HardenOptions{Limits: lim})

	t.Run("warnings name the limits the kernel cannot enforce", func(t *testing.T) {
		got := c.Warnings()
		if len(got) != len(wantWarn) {
			t.Fatalf("warnings %q, want %d matching %q", got, len(wantWarn), wantWarn)
		}
		for i, w := range wantWarn {
			if !strings.Contains(got[i], w) {
				t.Errorf("warning %q, want it to say %q", got[i], w)
			}
		}
	})

	cgs := procCgroups(t, c.Pid())
	var groups []string
	for _, name := range []string{CgroupMemory, CgroupCPU, CgroupPids} {
		if ctl := layout.Controller(name); ctl.V1Mount != "" {
			groups = append(groups, filepath.Join(ctl.V1Mount, cgs[name]))
		}
	}
	st, err := c.lc.State()
	if err != nil {
		t.Fatal(err)
	}
	if p := st.CgroupPaths[""]; p != "" {
		groups = append(groups, p)
	}

	t.Run("limits are in the groups init is in", func(t *testing.T) {
		if m := layout.Controller(CgroupMemory); m.V1Mount != "" {
			dir := filepath.Join(m.V1Mount, cgs[CgroupMemory])
			if !strings.Contains(dir, c.ID()) {
				t.Fatalf("init is in memory cgroup %s, not the container's", dir)
			}
			if got := readTrim(t, filepath.Join(dir, "memory.limit_in_bytes")); got != strconv.Itoa(32<<20) {
				t.Errorf("%s/memory.limit_in_bytes = %s", dir, got)
			}
		}
		if cpu := layout.Controller(CgroupCPU); cpu.V1Mount != "" {
			dir := filepath.Join(cpu.V1Mount, cgs[CgroupCPU])
			if got := readTrim(t, filepath.Join(dir, "cpu.cfs_quota_us")); got != "50000" {
				t.Errorf("%s/cpu.cfs_quota_us = %s, want 50000", dir, got)
			}
		}
		if p := layout.Controller(CgroupPids); p.V1Mount != "" {
			dir := filepath.Join(p.V1Mount, cgs[CgroupPids])
			if got := readTrim(t, filepath.Join(dir, "pids.max")); got != "64" {
				t.Errorf("%s/pids.max = %s, want 64", dir, got)
			}
		}
		// On a unified host (the VM's cgroup v2) libcontainer's own
		// cgroup holds them.
		v2 := st.CgroupPaths[""]
		for _, l := range []struct{ ctrl, file, want string }{
			{CgroupMemory, "memory.max", strconv.Itoa(32 << 20)},
			{CgroupCPU, "cpu.max", "50000 100000"},
			{CgroupPids, "pids.max", "64"},
		} {
			if layout.Controller(l.ctrl).Use == CgroupUseV2 {
				if got := readTrim(t, filepath.Join(v2, l.file)); got != l.want {
					t.Errorf("%s/%s = %s, want %s", v2, l.file, got, l.want)
				}
			}
		}
	})

	t.Run("memory limit OOM-kills init's child", func(t *testing.T) {
		if got := waitFile(t, filepath.Join(bundle, "rootfs", "tmp", "init-dd"), 10*time.Second); got != "137" {
			t.Fatalf("dd of 48 MiB under a 32 MiB limit exited %s, want 137 (SIGKILL by the OOM killer)", got)
		}
		file := filepath.Join(layout.Controller(CgroupMemory).V1Mount, cgs[CgroupMemory], "memory.oom_control")
		if layout.Controller(CgroupMemory).Use == CgroupUseV2 {
			file = filepath.Join(st.CgroupPaths[""], "memory.events")
		}
		if oc := readTrim(t, file); !strings.Contains(oc, "oom_kill 1") && !strings.Contains(oc, "oom_kill 2") {
			t.Errorf("%s = %q, want an OOM kill", file, oc)
		}
	})

	t.Run("memory limit OOM-kills an exec'd process's child", func(t *testing.T) {
		_, out := run(t, c, "sh", "-c", "sleep 0.2; dd if=/dev/zero of=/dev/null bs=48M count=1; echo rc=$?")
		if !strings.Contains(out, "rc=137") {
			t.Fatalf("exec'd dd of 48 MiB: %q, want rc=137", out)
		}
	})

	t.Run("device allow-list holds", func(t *testing.T) {
		if f, err := os.OpenFile(node, os.O_RDWR, 0); err == nil {
			f.Close()
		} else if errors.Is(err, os.ErrPermission) {
			t.Fatalf("the host itself may not open %s (%v): the check would prove nothing", node, err)
		}
		_, out := run(t, c, "sh", "-c", "cat /fuse-node; echo rc=$?")
		if !strings.Contains(out, "Operation not permitted") {
			t.Fatalf("open of a device outside the allow-list: %q, want EPERM", out)
		}
	})

	t.Run("stats read memory from where it is", func(t *testing.T) {
		s, err := c.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if s.MemoryLimitBytes != 32<<20 || s.MemoryBytes == 0 || s.CPUUsageNanos == 0 || s.Pids == 0 {
			t.Errorf("stats %+v, want a 32 MiB limit and non-zero usage", s)
		}
	})

	t.Run("freeze and thaw", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		counter := filepath.Join(bundle, "rootfs", "tmp", "counter")
		waitCounter(t, counter)
		if err := c.Freeze(ctx); err != nil {
			t.Fatal(err)
		}
		if s, _ := c.State(ctx); s != Paused {
			t.Errorf("state %s after freeze", s)
		}
		n := assertCounterFrozen(t, counter)
		if err := c.Thaw(ctx); err != nil {
			t.Fatal(err)
		}
		assertCounterMoves(t, counter, n)
	})

	t.Run("stop leaves no cgroup", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if left := existing(groups); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})

	t.Run("failed start leaves no cgroup", func(t *testing.T) {
		id := newID(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := rt.Start(ctx, Spec{ID: id, BundleDir: testbundle.Busybox(t, "/nonexistent"), Harden: HardenOptions{Limits: lim}}); err == nil {
			c.Stop(ctx, 0)
			t.Fatal("a bundle whose init does not exist started")
		}
		var dirs []string
		for _, ctl := range layout.Controllers {
			if ctl.V1Mount != "" {
				dirs = append(dirs, filepath.Join(ctl.V1Mount, testCgroupParent, id))
			}
		}
		if layout.V2Mount != "" {
			dirs = append(dirs, filepath.Join(layout.V2Mount, testCgroupParent, id))
		}
		if left := existing(dirs); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// TestCgroupLimitsHostLayout: (a) this host's layout, whatever it is.
func TestCgroupLimitsHostLayout(t *testing.T) {
	rt, _ := newRuntime(t)
	layout, err := ProbeCgroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range layout.Controllers {
		if c.Use == CgroupUseNone && c.Name != CgroupFreezer {
			want = append(want, c.Name+" limit")
		}
	}
	testLimitsHold(t, rt, want)
}

// TestCgroupNoPidsControllerWarns: (c) a layout without a pids controller
// (faked: this host has one) starts, with a warning, and no pids limit.
func TestCgroupNoPidsControllerWarns(t *testing.T) {
	rt, _ := newRuntime(t)
	rt.probe = func(ctx context.Context) (CgroupLayout, error) {
		l, err := ProbeCgroups(ctx)
		for i, c := range l.Controllers {
			if c.Name == CgroupPids {
				c.V1Mount, c.V2 = "", false
				c.Use, c.Note = l.use(c)
				l.Controllers[i] = c
			}
		}
		t.Logf("faked: %s (%v)", l, err)
		return l, err
	}
	c := startContainer(t, rt, Limits{MemoryBytes: 64 << 20, Pids: 20})
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "pids limit of 20 not enforced: the kernel has no pids cgroup controller") {
		t.Fatalf("warnings %q, want the pids limit's", w)
	}
	ctx := context.Background()
	if st, err := c.State(ctx); err != nil || st != Running {
		t.Fatalf("state %s %v, want running", st, err)
	}
	s, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.PidsLimit != 0 || s.MemoryLimitBytes != 64<<20 {
		t.Errorf("stats %+v: want no pids limit and the 64 MiB memory limit", s)
	}
	// An adopting daemon sees the same warnings.
	a, err := rt.Load(ctx, c.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.Warnings(); len(got) != 1 || got[0] != w[0] {
		t.Errorf("adopted container's warnings %q, want %q", got, w)
	}
}

const splitChildEnv = "WORKCELL_TEST_SPLIT_CGROUPS"

// TestCgroupSplitLayout: (b) Android's layout, built in a private mount
// namespace: cgroup2 at /sys/fs/cgroup with no controllers (this host's v1
// hierarchies hold them all) and the v1 memory and cpu hierarchies mounted
// again at /dev/memcg- and /dev/cpuctl-like places; no pids, no v1 devices.
// libcontainer sees a unified host, caches that per process, so the layout
// runs in a child test process under unshare(1).
func TestCgroupSplitLayout(t *testing.T) {
	requireRoot(t)
	if dir := os.Getenv(splitChildEnv); dir != "" {
		splitLayoutChild(t, dir)
		return
	}
	if CgroupV2() {
		// v1 memory can be mounted only while no cgroup2 holds the
		// controller. The CI host (v1 hybrid) runs this test; the real
		// split layout runs under the GKI-shaped kernel (TestDaemonOnGKIInVM).
		t.Skip("the split layout needs the memory controller free for a v1 mount, and this host binds it to cgroup v2; it runs on v1 and hybrid hosts")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("this test needs unshare(1) (util-linux) to build Android's cgroup layout in a private mount namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--mount", "--propagation", "private",
		os.Args[0], "-test.run", "^TestCgroupSplitLayout$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), splitChildEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestCgroupSplitLayout")) {
		t.Fatalf("split layout child: %v", err)
	}
	// The child's groups were made in this host's hierarchies.
	parent := "workcell-test-" + strconv.Itoa(cmd.Process.Pid)
	for _, d := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(d, parent)); err == nil {
			t.Errorf("the child left %s", filepath.Join(d, parent))
		}
	}
}

func splitLayoutChild(t *testing.T, dir string) {
	if err := unix.Unmount("/sys/fs/cgroup", unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount /sys/fs/cgroup: %v", err)
	}
	if err := unix.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2 at /sys/fs/cgroup: %v", err)
	}
	memcg, cpuctl := filepath.Join(dir, "memcg"), filepath.Join(dir, "cpuctl")
	for _, m := range []struct{ dir, ctl string }{{memcg, "memory"}, {cpuctl, "cpu"}} {
		if err := os.Mkdir(m.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("none", m.dir, "cgroup", 0, m.ctl); err != nil {
			t.Fatalf("mount the v1 %s hierarchy at %s: %v", m.ctl, m.dir, err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{memcg, cpuctl, "/sys/fs/cgroup"} {
			_ = os.Remove(filepath.Join(d, testCgroupParent))
		}
	})
	if !cgroups.IsCgroup2UnifiedMode() {
		t.Fatal("libcontainer does not see the cgroup2 at /sys/fs/cgroup")
	}
	layout, err := ProbeCgroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if layout.Mode() != "split" || layout.Controller(CgroupMemory).V1Mount != memcg || layout.Controller(CgroupCPU).V1Mount != cpuctl ||
		layout.Controller(CgroupFreezer).Use != CgroupUseV2 || layout.Controller(CgroupDevices).Use != CgroupUseV2 ||
		layout.Controller(CgroupPids).Use != CgroupUseNone {
		t.Fatalf("probe: %s", layout)
	}
	rt, _ := newRuntime(t)
	testLimitsHold(t, rt, []string{"pids limit of 64 not enforced"})
}
