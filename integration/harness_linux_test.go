package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/testbundle"
)

var (
	binDir   string
	daemonNo atomic.Int32
)

func TestMain(m *testing.M) {
	if helperMain() { // the test binary re-executed as another uid
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests need root (namespaces, cgroups, mounts): run `make test` as root")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "workcell-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, b := range []struct{ out, pkg, tags string }{
		{"workcelld", "../cmd/workcelld", "seccomp"},
		{"workcell", "../cmd/workcell", ""},
	} {
		cmd := exec.Command("go", "build", "-tags", b.tags, "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one workcelld process under test, with its own folders and
// cgroup parent.
type daemon struct {
	t        *testing.T
	dir      string
	state    string
	run      string
	socket   string
	cgParent string
	cfgFile  string
	netns    string // its own network namespace (`ip netns` name): see newNetNS
	args     []string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	client   *api.Client
	// storage is the storage flags: by default its own store image
	// (storage_linux_test.go).
	storage []string
	// wrap runs the daemon through a command (prlimit ...).
	wrap []string
}

type daemonOpt func(*daemon)

func withArgs(args ...string) daemonOpt { return func(d *daemon) { d.args = append(d.args, args...) } }

func newDaemon(t *testing.T, opts ...daemonOpt) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "wc-it-")
	if err != nil {
		t.Fatal(err)
	}
	// Other uids (the owner, strangers) must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, state: filepath.Join(dir, "state"), run: filepath.Join(dir, "run")}
	d.socket = filepath.Join(d.run, "workcelld.sock")
	d.cgParent = fmt.Sprintf("/workcell-it-%d-%d", os.Getpid(), daemonNo.Add(1))
	d.cfgFile = filepath.Join(dir, "workcelld.json")
	d.storage = defaultStorage(dir)
	cfg, _ := json.Marshal(map[string]any{"cgroup_parent": d.cgParent, "stop_timeout": "2s"})
	if err := os.WriteFile(d.cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(d)
	}
	d.client = api.NewClient(d.socket)
	d.netns = newNetNS(t, "wcit")
	t.Cleanup(d.cleanup)
	d.start()
	return d
}

// with returns the daemon bound to a subtest's t, so its helpers fail
// the subtest.
func (d *daemon) with(t *testing.T) *daemon {
	c := *d
	c.t = t
	return &c
}

// start runs a workcelld on the daemon's folders and waits for its socket.
func (d *daemon) start() {
	d.t.Helper()
	args := append([]string{"--config", d.cfgFile, "--state-dir", d.state, "--run-dir", d.run, "--log-level", "debug"}, d.storage...)
	args = append(args, d.args...)
	cmdline := append(append(append([]string{"--net=" + netnsPath(d.netns), "--"}, d.wrap...), filepath.Join(binDir, "workcelld")), args...)
	d.cmd = exec.Command("nsenter", cmdline...)
	d.log = &bytes.Buffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start workcelld: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.client.Version(context.Background()); err == nil {
			return
		}
		if d.cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("workcelld did not come up; its log:\n%s", d.log)
}

// kill9 kills the daemon as a crash would.
func (d *daemon) kill9() {
	d.t.Helper()
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

// term sends SIGTERM and waits for the daemon to exit.
func (d *daemon) term() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			d.t.Errorf("workcelld exited with %v; log:\n%s", err, d.log)
		}
	case <-time.After(20 * time.Second):
		d.t.Fatalf("workcelld did not exit after SIGTERM; log:\n%s", d.log)
	}
}

func (d *daemon) cleanup() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		// Stop what the test left running, then the daemon.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if ps, err := d.client.Profiles(ctx); err == nil {
			for _, p := range ps {
				_ = d.client.Remove(ctx, p.Name)
			}
		}
		cancel()
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.cmd.Wait()
	}
	if d.t.Failed() {
		d.t.Logf("workcelld log:\n%s", d.log)
	}
	// Containers a failed test left behind: kill them by cgroup.
	for _, dir := range cgroupDirs(d.cgParent) {
		killCgroup(dir)
	}
	for _, dir := range cgroupDirs(d.cgParent) {
		removeCgroupTree(dir)
	}
	// Namespaces a failed test left pinned, then the daemon's own.
	unpinAll(filepath.Join(d.run, "netns"))
	deleteNetNS(d.netns)
	releaseMounts(d.dir)
	os.RemoveAll(d.dir)
}

// cgroupDirs returns the existing cgroup folders of a path under every
// mounted hierarchy.
func cgroupDirs(path string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		p := filepath.Join(r, path)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

func killCgroup(dir string) {
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			var pid int
			fmt.Sscan(f, &pid)
			if pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
	os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
	time.Sleep(50 * time.Millisecond)
}

func removeCgroupTree(dir string) {
	var all []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			all = append(all, p)
		}
		return nil
	})
	for i := len(all) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(all[i])
	}
}

// result is what one CLI run printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the workcell CLI against the daemon.
func (d *daemon) cli(args ...string) result {
	return d.cliAs(nil, "", args...)
}

// cliAs runs the CLI, optionally through a wrapper (setpriv) and with
// stdin.
func (d *daemon) cliAs(wrap []string, stdin string, args ...string) result {
	d.t.Helper()
	full := append([]string{filepath.Join(binDir, "workcell"), "--socket", d.socket}, args...)
	if wrap != nil {
		full = append(append([]string{}, wrap...), full...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		d.t.Fatalf("run %v: %v", full, err)
	}
	return r
}

// ok runs the CLI and fails the test unless it exits 0.
func (d *daemon) ok(args ...string) string {
	d.t.Helper()
	r := d.cli(args...)
	if r.code != 0 {
		d.t.Fatalf("workcell %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs the CLI and checks its exit code and that stderr says msg.
func (d *daemon) fails(code int, msg string, args ...string) {
	d.t.Helper()
	r := d.cli(args...)
	if r.code != code || !strings.Contains(r.stderr, msg) {
		d.t.Fatalf("workcell %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(args, " "), r.code, r.stderr, code, msg)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		d.t.Fatalf("workcell %s: error is not one line: %q", strings.Join(args, " "), r.stderr)
	}
}

func (d *daemon) status(name string) api.Profile {
	d.t.Helper()
	var p api.Profile
	if err := json.Unmarshal([]byte(d.ok("status", "--json", name)), &p); err != nil {
		d.t.Fatalf("status --json: %v", err)
	}
	return p
}

// install installs a busybox bundle as name (default command unless args).
func (d *daemon) install(name string, args ...string) string {
	d.t.Helper()
	bundle := testbundle.Busybox(d.t, args...)
	d.ok("install", name, bundle)
	return bundle
}

// pidAlive reports whether pid runs; a zombie waiting for its reaper
// counts as dead.
func pidAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls cond (a test helper, not product code) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertNoLeftovers checks that nothing of a profile is left: no cgroup,
// no container state, no profile folder.
func (d *daemon) assertNoLeftovers(name string) {
	d.t.Helper()
	if dirs := cgroupDirs(filepath.Join(d.cgParent, name)); len(dirs) != 0 {
		d.t.Errorf("cgroups left for %s: %v", name, dirs)
	}
	if _, err := os.Stat(filepath.Join(d.run, "containers", name)); !os.IsNotExist(err) {
		d.t.Errorf("container state left for %s: %v", name, err)
	}
}
