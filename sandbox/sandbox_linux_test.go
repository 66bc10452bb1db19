package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/workcell/workcell/internal/testbundle"
)

// The test binary is re-executed by libcontainer as "<binary> init" inside
// the new namespaces, as the daemon's binary is.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

// testCgroupParent keeps this run's cgroups apart from a real daemon's and
// from concurrent runs.
var testCgroupParent = fmt.Sprintf("/workcell-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range cgroupDirs(testCgroupParent) {
		_ = os.Remove(d)
	}
	os.Exit(code)
}

// cgroupDirs lists where a cgroup path would live in every mounted hierarchy.
func cgroupDirs(path string) []string {
	if cgroups.IsCgroup2UnifiedMode() {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		out = append(out, filepath.Join("/sys/fs/cgroup", e.Name(), path))
	}
	return out
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (it starts real containers with namespaces and cgroups): run `go test -tags seccomp` as root")
	}
}

func newRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "state")
	rt, err := New(root, WithCgroupParent(testCgroupParent), WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	return rt, root
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var containerSeq int

func newID(t *testing.T) string {
	containerSeq++
	return fmt.Sprintf("t%d-%d", os.Getpid(), containerSeq)
}

// startContainer starts a busybox container and stops it at cleanup.
func startContainer(t *testing.T, rt *Runtime, limits Limits, args ...string) *Container {
	t.Helper()
	return startContainerWith(t, rt, testbundle.Busybox(t, args...), HardenOptions{Limits: limits})
}

// startContainerWith starts the bundle with h and stops it at cleanup.
func startContainerWith(t *testing.T, rt *Runtime, bundle string, h HardenOptions) *Container {
	t.Helper()
	id := newID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rt.Start(ctx, Spec{ID: id, BundleDir: bundle, Harden: h})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if st, _ := c.State(ctx); st != Stopped || existing(cgroupDirs(testCgroupParent+"/"+id)) != nil {
			if err := c.Stop(ctx, 0); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		c.Close()
	})
	return c
}

// run executes args in c and returns the exit code and stdout+stderr.
func run(t *testing.T, c *Container, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := c.Exec(ctx, ExecSpec{Args: args, Stdout: w, Stderr: w})
	w.Close()
	b := <-out
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return code, string(b)
}

// TestStartRunsIsolatedContainer runs the isolation checks on a container
// whose root is host root and on one in its own user namespace.
func TestStartRunsIsolatedContainer(t *testing.T) {
	rt, _ := newRuntime(t)
	t.Run("host ids", func(t *testing.T) {
		testIsolated(t, startContainer(t, rt, Limits{}))
	})
	t.Run("user namespace", func(t *testing.T) {
		bundle, ns := userNSBundle(t)
		c := startContainerWith(t, rt, bundle, HardenOptions{UserNS: ns})
		testIsolated(t, c)
		t.Run("uid_map is not the identity", func(t *testing.T) {
			_, out := run(t, c, "cat", "/proc/self/uid_map", "/proc/self/gid_map")
			want := fmt.Sprintf("0 %d %d", ns.IDs.HostID, ns.IDs.Size)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != want || strings.Join(strings.Fields(lines[1]), " ") != want {
				t.Fatalf("uid_map and gid_map = %q, want %q twice", out, want)
			}
		})
		t.Run("root's file is the mapped uid's on the host", func(t *testing.T) {
			if code, out := run(t, c, "sh", "-c", "echo x > /tmp/by-root && chown 1000:1000 /tmp/by-root && echo y > /tmp/root-owned"); code != 0 {
				t.Fatalf("write as root: exit %d: %s", code, out)
			}
			for _, f := range []struct {
				name string
				id   uint32
			}{{"by-root", ns.IDs.HostID + 1000}, {"root-owned", ns.IDs.HostID}} {
				fi, err := os.Stat(filepath.Join(bundle, "rootfs", "tmp", f.name))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != f.id || st.Gid != f.id {
					t.Fatalf("/tmp/%s on the host is %d:%d, want %d:%d", f.name, st.Uid, st.Gid, f.id, f.id)
				}
			}
		})
	})
}

// userNSBundle is a busybox bundle whose files are shifted into a fresh
// range, with folders above it that the range's root may traverse.
func userNSBundle(t *testing.T) (string, *UserNS) {
	t.Helper()
	if err := ProbeUserNS(context.Background()); err != nil {
		t.Fatalf("this test needs user namespaces: %v", err)
	}
	bundle := testbundle.Busybox(t)
	m := IDMap{HostID: 1_800_000_000 + uint32(os.Getpid()%1000)*65536, Size: 65536}
	if err := ShiftTree(context.Background(), filepath.Join(bundle, "rootfs"), m); err != nil {
		t.Fatal(err)
	}
	for d := bundle; d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o011 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	return bundle, &UserNS{IDs: m}
}

func testIsolated(t *testing.T, c *Container) {
	ctx := context.Background()

	if st, err := c.State(ctx); err != nil || st != Running {
		t.Fatalf("state = %q, %v; want running", st, err)
	}
	if err := syscall.Kill(c.Pid(), 0); err != nil {
		t.Fatalf("init pid %d not alive on the host: %v", c.Pid(), err)
	}

	t.Run("pid 1 is init", func(t *testing.T) {
		code, out := run(t, c, "cat", "/proc/1/cmdline")
		if code != 0 || !strings.Contains(out, "trap") {
			t.Fatalf("pid 1 cmdline = %q (exit %d), want the init script", out, code)
		}
	})
	t.Run("host pids invisible", func(t *testing.T) {
		_, out := run(t, c, "ls", "/proc")
		var pids []int
		for _, f := range strings.Fields(out) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		if len(pids) == 0 || len(pids) > 5 {
			t.Fatalf("/proc shows pids %v, want only the container's few", pids)
		}
	})
	refused := []struct {
		name string
		args []string
	}{
		{"mount tmpfs", []string{"mount", "-t", "tmpfs", "none", "/mnt"}},
		{"mknod null", []string{"mknod", "/tmp/x", "c", "1", "3"}},
		{"sysrq trigger", []string{"sh", "-c", "echo h > /proc/sysrq-trigger"}},
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
	t.Run("no_new_privs and capabilities", func(t *testing.T) {
		_, out := run(t, c, "grep", "-E", "NoNewPrivs|CapBnd|Seccomp:", "/proc/self/status")
		if !strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "CapBnd:\t00000000a00405fb") {
			t.Fatalf("status = %q", out)
		}
	})
}

func TestExecExitCodes(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startContainer(t, rt, Limits{})
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"success with output", []string{"echo", "hello"}, 0, "hello\n"},
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -9 $$"}, 128 + 9, ""},
		{"default env", []string{"sh", "-c", "echo $PATH"}, 0, DefaultEnv[0][len("PATH="):] + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(t, c, tt.args...)
			if code != tt.code || out != tt.out {
				t.Fatalf("exit %d output %q, want %d %q", code, out, tt.code, tt.out)
			}
		})
	}
	t.Run("ctx cancel kills", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Exec(ctx, ExecSpec{Args: []string{"sleep", "100"}})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
	})
}

// waitCounter waits until the counter file at path has content and returns
// it. Comparisons use the raw content: a process frozen between truncate
// and write leaves an empty file, which is fine as long as it stays so.
func waitCounter(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("counter %s never written", path)
	return ""
}

func readRaw(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// assertCounterFrozen checks the counter does not move for 100 ms.
func assertCounterFrozen(t *testing.T, path string) string {
	t.Helper()
	n1 := readRaw(path)
	time.Sleep(100 * time.Millisecond)
	if n2 := readRaw(path); n2 != n1 {
		t.Fatalf("counter advanced while frozen: %q -> %q", n1, n2)
	}
	return n1
}

// assertCounterMoves checks the counter changes from n1 within 5 s.
func assertCounterMoves(t *testing.T, path, n1 string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if readRaw(path) != n1 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("counter stuck at %q after thaw", n1)
}

func freezerState(t *testing.T, c *Container) string {
	t.Helper()
	st, err := c.lc.State()
	if err != nil {
		t.Fatal(err)
	}
	if cgroups.IsCgroup2UnifiedMode() {
		f, err := readFrozen(filepath.Join(st.CgroupPaths[""], "cgroup.events"))
		if err != nil {
			t.Fatal(err)
		}
		return map[byte]string{'0': "THAWED", '1': "FROZEN"}[f]
	}
	b, err := os.ReadFile(filepath.Join(st.CgroupPaths["freezer"], "freezer.state"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestFreezeThawHundredProcesses(t *testing.T) {
	rt, root := newRuntime(t)
	script := "trap 'exit 0' TERM; for i in $(seq 99); do sleep 3600 & done; i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; done"
	id := newID(t)
	bundle := testbundle.Busybox(t, "sh", "-c", script)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := rt.Start(ctx, Spec{ID: id, BundleDir: bundle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx, time.Second)
	counter := filepath.Join(bundle, "rootfs", "tmp", "counter")

	for {
		s, err := c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pids >= 100 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d pids", s.Pids)
		}
		time.Sleep(10 * time.Millisecond)
	}

	waitCounter(t, counter)
	if err := c.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if got := freezerState(t, c); got != "FROZEN" {
		t.Fatalf("freezer state = %s, want FROZEN", got)
	}
	if st, _ := c.State(ctx); st != Paused {
		t.Fatalf("state = %s, want paused", st)
	}
	// A fresh runtime (as after a daemon restart) sees it paused too.
	rt2, err := New(root, WithCgroupParent(testCgroupParent))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := rt2.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if st, _ := c2.State(ctx); st != Paused {
		t.Fatalf("adopted state = %s, want paused", st)
	}
	if _, err := c.Exec(ctx, ExecSpec{Args: []string{"true"}}); err == nil {
		t.Error("exec into a paused container succeeded")
	}
	n1 := assertCounterFrozen(t, counter)

	if err := c.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if got := freezerState(t, c); got != "THAWED" {
		t.Fatalf("freezer state = %s, want THAWED", got)
	}
	assertCounterMoves(t, counter, n1)
	if st, _ := c.State(ctx); st != Running {
		t.Fatalf("state = %s, want running", st)
	}

	// Figures for the record; tests do not assert timings.
	var d []time.Duration
	for range 30 {
		start := time.Now()
		if err := c.Freeze(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Thaw(ctx); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	t.Logf("freeze+thaw round trip, 100 processes, cgroup v2=%v: p50 %v p99 %v max %v",
		cgroups.IsCgroup2UnifiedMode(), d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
}

func TestStats(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startContainer(t, rt, Limits{MemoryBytes: 64 << 20, Pids: 50, CPUMillis: 500})
	s, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Pids == 0 || s.MemoryBytes == 0 || s.CPUUsageNanos == 0 {
		t.Errorf("stats = %+v, want non-zero pids, memory and cpu", s)
	}
	if s.MemoryLimitBytes != 64<<20 || s.PidsLimit != 50 {
		t.Errorf("limits = %d bytes %d pids, want 64 MiB and 50", s.MemoryLimitBytes, s.PidsLimit)
	}
}

func assertGone(t *testing.T, root, id string) {
	t.Helper()
	if left := existing(cgroupDirs(testCgroupParent + "/" + id)); len(left) > 0 {
		t.Errorf("cgroups left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s left behind (%v)", filepath.Join(root, id), err)
	}
}

// waitSigCaught waits until pid runs the init script and has a handler for
// sig: a signal sent to a pid-namespace init before its shell ran `trap` is
// dropped, and so is one caught by the Go runtime of `runc init` just before
// it execs the user process (Start returns at that point).
func waitSigCaught(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Contains(cmd, []byte("trap")) {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigCgt:\t"); ok {
				if mask, err := strconv.ParseUint(v, 16, 64); err == nil && mask&(1<<(sig-1)) != 0 {
					return
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("pid %d never installed a handler for %v", pid, sig)
}

func TestStop(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		freeze bool
		grace  time.Duration
	}{
		{"running, honours SIGTERM", nil, false, 5 * time.Second},
		{"paused, honours SIGTERM", nil, true, 5 * time.Second},
		{"running, ignores SIGTERM", []string{"sleep", "3600"}, false, 100 * time.Millisecond},
		{"paused, ignores SIGTERM", []string{"sleep", "3600"}, true, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, root := newRuntime(t)
			c := startContainer(t, rt, Limits{}, tt.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.args == nil {
				waitSigCaught(t, c.Pid(), syscall.SIGTERM)
			}
			if tt.freeze {
				if err := c.Freeze(ctx); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if err := c.Stop(ctx, tt.grace); err != nil {
				t.Fatal(err)
			}
			if tt.grace > time.Second && time.Since(start) > tt.grace {
				t.Errorf("stop waited the whole grace (%v) though init honours SIGTERM", time.Since(start))
			}
			if err := syscall.Kill(c.Pid(), 0); err == nil {
				// Reaped by then: the pid is gone or reused by someone else.
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid())); bytes.Contains(b, []byte(c.ID())) {
					t.Errorf("init %d still alive", c.Pid())
				}
			}
			if err := c.Wait(ctx); err != nil {
				t.Errorf("wait after stop: %v", err)
			}
			if st, _ := c.State(ctx); st != Stopped {
				t.Errorf("state = %s, want stopped", st)
			}
			assertGone(t, root, c.ID())
		})
	}
}

func TestAdoption(t *testing.T) {
	rt, root := newRuntime(t)
	a := startContainer(t, rt, Limits{})
	b := startContainer(t, rt, Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A new daemon: a new Runtime on the same state root.
	rt2, err := New(root, WithCgroupParent(testCgroupParent))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := rt2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	want := []string{a.ID(), b.ID()}
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("List = %v, want %v", ids, want)
	}
	if _, err := rt2.Load(ctx, "nope"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Load(nope) = %v, want ErrNotExist", err)
	}

	t.Run("drive an adopted container", func(t *testing.T) {
		a2, err := rt2.Load(ctx, a.ID())
		if err != nil {
			t.Fatal(err)
		}
		defer a2.Close()
		if a2.Pid() != a.Pid() {
			t.Fatalf("adopted pid %d, want %d", a2.Pid(), a.Pid())
		}
		if err := a2.Freeze(ctx); err != nil {
			t.Fatal(err)
		}
		if st, _ := a.State(ctx); st != Paused {
			t.Fatalf("original handle sees %s, want paused", st)
		}
		if err := a2.Thaw(ctx); err != nil {
			t.Fatal(err)
		}
		if code, out := run(t, a2, "hostname"); code != 0 || strings.TrimSpace(out) != a.ID() {
			t.Fatalf("exec in adopted: %d %q", code, out)
		}
		if err := rt2.Remove(ctx, a.ID()); !errors.Is(err, ErrRunning) {
			t.Fatalf("Remove of a running container = %v, want ErrRunning", err)
		}
		if err := a2.Stop(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		assertGone(t, root, a.ID())
	})

	t.Run("wait on an adopted init killed from outside", func(t *testing.T) {
		b2, err := rt2.Load(ctx, b.ID())
		if err != nil {
			t.Fatal(err)
		}
		defer b2.Close()
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		if err := b2.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait on a live init = %v, want deadline exceeded", err)
		}
		cancelShort()
		done := make(chan error, 1)
		go func() { done <- b2.Wait(ctx) }()
		if err := syscall.Kill(b2.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return after init was killed")
		}
		if st, _ := b2.State(ctx); st != Stopped {
			t.Errorf("state = %s, want stopped", st)
		}
		// Leftovers of a dead container, removed by yet another daemon.
		rt3, err := New(root, WithCgroupParent(testCgroupParent))
		if err != nil {
			t.Fatal(err)
		}
		if err := rt3.Remove(ctx, b.ID()); err != nil {
			t.Fatal(err)
		}
		if err := rt3.Remove(ctx, b.ID()); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
		assertGone(t, root, b.ID())
	})
}

func TestStartFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name   string
		bundle func(t *testing.T) string
		limits Limits
		// mustFail: Start itself must refuse; otherwise init may get going
		// before the limit bites, and must then die by itself.
		mustFail bool
	}{
		{"broken config.json", func(t *testing.T) string {
			dir := testbundle.Busybox(t)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir
		}, Limits{}, true},
		{"missing executable", func(t *testing.T) string { return testbundle.Busybox(t, "/no/such/binary") }, Limits{}, true},
		{"memory limit too low for init", func(t *testing.T) string { return testbundle.Busybox(t) }, Limits{MemoryBytes: 4096}, false},
		{"pids limit too low for init", func(t *testing.T) string {
			return testbundle.Busybox(t, "sh", "-c", "sleep 1 & sleep 1 & sleep 1 & wait")
		}, Limits{Pids: 1}, false},
		{"negative limit", func(t *testing.T) string { return testbundle.Busybox(t) }, Limits{CPUMillis: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, root := newRuntime(t)
			id := newID(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := rt.Start(ctx, Spec{ID: id, BundleDir: tt.bundle(t), Harden: HardenOptions{Limits: tt.limits}})
			if err == nil {
				if tt.mustFail {
					t.Errorf("start succeeded; want it refused")
				}
				// Init got going before the limit bit: then it must die;
				// either way nothing may remain after Stop.
				if werr := c.Wait(ctx); werr != nil {
					t.Errorf("init did not die under the limit: %v", werr)
				}
				if err := c.Stop(ctx, 0); err != nil {
					t.Fatal(err)
				}
			} else {
				t.Logf("start failed as expected: %v", err)
			}
			assertGone(t, root, id)
			if ids, _ := rt.List(ctx); len(ids) != 0 {
				t.Errorf("List = %v after a failed start", ids)
			}
		})
	}
}

func TestRemoveHalfCreated(t *testing.T) {
	rt, root := newRuntime(t)
	id := newID(t)
	ctx := context.Background()
	// What a create cut short by a crash leaves: a state dir without
	// state.json and an empty cgroup in every hierarchy.
	if err := os.MkdirAll(filepath.Join(root, id), 0o711); err != nil {
		t.Fatal(err)
	}
	dirs := cgroupDirs(testCgroupParent + "/" + id)
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertGone(t, root, id)
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatalf("Remove is not idempotent: %v", err)
	}
}
