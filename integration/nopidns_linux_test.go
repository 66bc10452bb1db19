package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/testbundle"
)

// ptraceProbeSrc attaches to the pid it is given: busybox has no tool
// that calls ptrace.
const ptraceProbeSrc = `package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	pid, _ := strconv.Atoi(os.Args[1])
	if err := syscall.PtraceAttach(pid); err != nil {
		fmt.Println("attach:", err)
		os.Exit(1)
	}
	fmt.Println("attached")
}
`

// buildPtraceProbe builds ptraceProbeSrc as a static binary at out.
func buildPtraceProbe(t *testing.T, out string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"main.go": ptraceProbeSrc, "go.mod": "module ptraceprobe\n\ngo 1.21\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the ptrace probe: %v: %s", err, b)
	}
}

// A kernel without pid and user namespaces (Android's GKI), forced on
// this machine's kernel, which has both, by the daemon's config: work
// shares the host's pid namespace behind a hidepid procfs and runs under
// its profile's uid range without a mapping.

// gkiDaemon is a daemon in the mode a GKI kernel gets.
func gkiDaemon(t *testing.T, opts ...daemonOpt) *daemon {
	t.Helper()
	d := newDaemon(t, append([]daemonOpt{withConfig("pid_namespace", "off"), withConfig("userns", "off")}, opts...)...)
	var v api.VersionInfo
	if err := json.Unmarshal([]byte(d.ok("--json", "version")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Identity != "uid-range" || v.PIDMode != "shared-pid+hidepid" || !slices.Contains(v.ProcOptions, "hidepid=invisible") {
		t.Fatalf("daemon's modes: identity %q (%s), pid %q (%s), proc %v; want uid-range, shared-pid+hidepid, hidepid=invisible",
			v.Identity, v.IdentityWhy, v.PIDMode, v.PIDModeWhy, v.ProcOptions)
	}
	return d
}

// profilePids returns the pids in a profile's cgroup (under any
// hierarchy, children included).
func (d *daemon) profilePids(name string) []int {
	seen := map[int]bool{}
	for _, dir := range cgroupDirs(filepath.Join(d.cgParent, name)) {
		_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					seen[n] = true
				}
			}
			return nil
		})
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// hostStatus reads fields of /proc/PID/status on the host.
func hostStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

func TestNoPIDNSVersionSaysWhy(t *testing.T) {
	d := gkiDaemon(t)
	out := d.ok("version")
	for _, want := range []string{"identity: uid-range", `userns is "off"`, "pid: shared-pid+hidepid", `pid_namespace is "off"`, "hidepid=invisible", "kill by cgroup"} {
		if !strings.Contains(out, want) {
			t.Errorf("workcell version does not say %q:\n%s", want, out)
		}
	}
}

// TestNoPIDNSIsolation runs the isolation probes from inside a work
// profile on a GKI-shaped daemon.
func TestNoPIDNSIsolation(t *testing.T) {
	d := gkiDaemon(t, withConfig("standby", false))
	bundle := testbundle.Busybox(t)
	buildPtraceProbe(t, filepath.Join(bundle, "rootfs", "bin", "ptrace-probe"))
	d.ok("install", "work", bundle)
	d.install("other")
	base, size := d.idsOf("work")
	obase, _ := d.idsOf("other")
	if base < 1_000_000_000 || size != 65536 || obase == base {
		t.Fatalf("ranges work %d+%d, other %d: want disjoint ranges from 1000000000", base, size, obase)
	}
	d.ok("start", "work")
	d.ok("start", "other")
	d.execOut("other", "echo other-secret > /secret; chmod 600 /secret")
	initPid, otherPid := d.status("work").Pid, d.status("other").Pid

	host := exec.Command("sleep", "1000")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })
	hostPid := host.Process.Pid

	sh := func(script string) (int, string) {
		r := d.cli("exec", "work", "--", "sh", "-c", script)
		return r.code, r.stdout + r.stderr
	}
	t.Run("init runs under the range, without capabilities, not as pid 1", func(t *testing.T) {
		if initPid <= 1 {
			t.Fatalf("init's pid is %d", initPid)
		}
		if got := hostStatus(t, initPid, "Uid"); got != strings.Repeat(fmt.Sprint(base)+" ", 3)+fmt.Sprint(base) {
			t.Errorf("init's host uids = %q, want %d", got, base)
		}
		if got := hostStatus(t, initPid, "CapEff"); got != "0000000000000000" {
			t.Errorf("init's effective capabilities = %s, want none", got)
		}
		code, out := sh("id -u; id -g; grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
		f := strings.Fields(out)
		if code != 0 || len(f) < 2 || f[0] != fmt.Sprint(base) || f[1] != fmt.Sprint(base) {
			t.Fatalf("exec's ids: %q (exit %d), want %d", out, code, base)
		}
		for _, want := range []string{"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(out, want) {
				t.Errorf("exec's status lacks %q:\n%s", want, out)
			}
		}
		if r := d.cli("exec", "--user", "1000:1000", "work", "--", "id", "-u"); r.code != 0 || strings.TrimSpace(r.stdout) != fmt.Sprint(base+1000) {
			t.Errorf("exec --user 1000 ran as %q (exit %d, %s), want %d", r.stdout, r.code, r.stderr, base+1000)
		}
	})
	t.Run("host processes invisible", func(t *testing.T) {
		_, out := sh("ls /proc")
		var seen []int
		for _, f := range strings.Fields(out) {
			if n, err := strconv.Atoi(f); err == nil {
				seen = append(seen, n)
			}
		}
		if !slices.Contains(seen, initPid) {
			t.Fatalf("work's /proc %v lacks its own init %d", seen, initPid)
		}
		mine := d.profilePids("work")
		for _, p := range seen {
			// The exec's own processes (sh, ls) are gone by now.
			if pidAlive(p) && !slices.Contains(mine, p) {
				t.Errorf("work's /proc shows pid %d, which is not work's (work's: %v)", p, mine)
			}
		}
		for _, p := range []int{1, hostPid, d.cmd.Process.Pid, otherPid} {
			if slices.Contains(seen, p) {
				t.Errorf("work's /proc shows host or other pid %d", p)
			}
		}
	})
	refused := []struct{ name, script string }{
		{"mount", "mount -t tmpfs none /mnt"},
		{"mknod", "mknod /tmp/null c 1 3"},
		{"sysrq", "echo h > /proc/sysrq-trigger"},
		{"write /proc/sys", "echo 1 > /proc/sys/kernel/sysrq"},
		{"write a network sysctl", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
		{"set the hostname", "hostname evil"},
		{"kill a host process", fmt.Sprintf("kill -9 %d", hostPid)},
		{"kill host init", "kill -0 1"},
		{"kill the daemon", fmt.Sprintf("kill -0 %d", d.cmd.Process.Pid)},
		{"kill another profile", fmt.Sprintf("kill -9 %d", otherPid)},
		{"ptrace-read a host process", fmt.Sprintf("cat /proc/%d/environ", hostPid)},
		{"read another profile's files", fmt.Sprintf("cat /proc/%d/root/secret", otherPid)},
		{"read the host's files through a host process", fmt.Sprintf("ls /proc/%d/root/", hostPid)},
	}
	for _, tt := range refused {
		t.Run(tt.name+" refused", func(t *testing.T) {
			if code, out := sh(tt.script); code == 0 {
				t.Fatalf("%q succeeded: %s", tt.script, out)
			}
		})
	}
	t.Run("ptrace attach refused", func(t *testing.T) {
		for _, pid := range []int{hostPid, otherPid, d.cmd.Process.Pid} {
			code, out := sh(fmt.Sprintf("ptrace-probe %d", pid))
			// EPERM, not ESRCH: the pid is there, the attach refused.
			if code == 0 || !strings.Contains(out, "operation not permitted") {
				t.Errorf("PTRACE_ATTACH to %d from work: exit %d, %q; want refused with EPERM", pid, code, out)
			}
		}
	})
	t.Run("hostname separate", func(t *testing.T) {
		hn, _ := os.Hostname()
		_, out := sh("hostname")
		if strings.TrimSpace(out) == hn || strings.TrimSpace(out) == "" {
			t.Errorf("work's hostname %q is the host's %q", out, hn)
		}
	})
	t.Run("host and other profile unharmed", func(t *testing.T) {
		if !pidAlive(hostPid) || !pidAlive(otherPid) {
			t.Fatal("a host process or the other profile's init died")
		}
		if got := d.execOut("other", "cat /secret"); strings.TrimSpace(got) != "other-secret" {
			t.Fatalf("other's secret = %q", got)
		}
	})
	t.Run("files are the range's on the host", func(t *testing.T) {
		d.execOut("work", "echo x > /made-by-work")
		if u, g := ownerOf(t, filepath.Join(d.dataDir("work"), "upper", "made-by-work")); u != base || g != base {
			t.Errorf("/made-by-work is %d:%d on the host, want %d", u, g, base)
		}
		if u, _ := ownerOf(t, filepath.Join(d.state, "profiles", "work", "bundle", "rootfs", "bin", "busybox")); u != base {
			t.Errorf("the image's busybox is owned by %d, want %d", u, base)
		}
	})
}

// stubbornArgs is an init that ignores SIGTERM and leaves children that
// do too: one in the background, one double-forked into its own session.
var stubbornArgs = []string{"sh", "-c", "trap '' TERM; (trap '' TERM; while :; do sleep 1; done) & " +
	"sh -c 'setsid sh -c \"trap \\\"\\\" TERM; while :; do sleep 1; done\" &' ; while :; do sleep 1; done"}

// TestNoPIDNSLeavesNoProcess: start, off/on, exec, stop, wipe and remove
// leave no process behind when init is not pid 1, its children ignore
// SIGTERM, and one of them is a double-forked daemon. Standby is on: the
// prepared container (an init waiting to exec) is discarded the same way.
func TestNoPIDNSLeavesNoProcess(t *testing.T) {
	d := gkiDaemon(t)
	d.install("work", stubbornArgs...)
	all := map[int]bool{}
	collect := func(min int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d processes in work's cgroup", min), func() bool { return len(d.profilePids("work")) >= min })
		for _, p := range d.profilePids("work") {
			all[p] = true
		}
	}
	// The daemon may prepare a new container (standby) in the same cgroup
	// right after a stop: the processes seen before must be gone.
	assertDead := func(what string) {
		t.Helper()
		for p := range all {
			if pidAlive(p) {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				t.Errorf("after %s, pid %d of work is alive: %q", what, p, b)
			}
		}
	}
	start := func() {
		t.Helper()
		d.ok("start", "work")
		collect(4)
		// An exec that leaves a process behind, ignoring SIGTERM.
		d.execOut("work", "(trap '' TERM; setsid sleep 1000 </dev/null >/dev/null 2>&1 &) ; true")
		collect(5)
	}

	start()
	d.ok("off", "work")
	if st := d.status("work").State; st != api.StatePaused {
		t.Fatalf("after off: %s", st)
	}
	d.ok("on", "work")
	d.ok("stop", "--timeout", "300ms", "work")
	assertDead("stop")
	// The prepared container for the next start, if any, is the only
	// process then; it goes at wipe.
	start()
	d.ok("stop", "work") // the daemon's 2 s grace, ending in the kill
	assertDead("stop after the grace")

	start()
	d.ok("off", "work")
	d.ok("wipe", "--yes", "work")
	assertDead("wipe of a paused profile")
	if left := d.profilePids("work"); len(left) != 0 {
		t.Errorf("after wipe, work's cgroup holds %v", left)
	}
	d.assertNoLeftovers("work")

	d.install("again", stubbornArgs...)
	d.ok("start", "again")
	waitFor(t, "again's processes", func() bool { return len(d.profilePids("again")) >= 4 })
	pids := d.profilePids("again")
	d.ok("remove", "again")
	for _, p := range pids {
		if pidAlive(p) {
			t.Errorf("after remove, pid %d of again is alive", p)
		}
	}
	d.assertNoLeftovers("again")
}

// TestNoPIDNSInitExitLeavesNoChild: an init that exits by itself, leaving
// a double-forked child that ignores SIGTERM, does not leave it running:
// the daemon removes the container by its cgroup.
func TestNoPIDNSInitExitLeavesNoChild(t *testing.T) {
	d := gkiDaemon(t, withConfig("standby", false))
	d.install("work", "sh", "-c", "sh -c 'setsid sh -c \"trap \\\"\\\" TERM; while :; do sleep 1; done\" &'; sleep 1; exit 3")
	d.ok("start", "work")
	var pids []int
	waitFor(t, "the orphan", func() bool { pids = d.profilePids("work"); return len(pids) >= 2 })
	waitFor(t, "the profile to stop by itself", func() bool { return d.status("work").State == api.StateStopped })
	waitFor(t, "the orphans to go", func() bool {
		for _, p := range pids {
			if pidAlive(p) {
				return false
			}
		}
		return true
	})
	d.assertNoLeftovers("work")
}

// TestNoPIDNSAdoptedAfterKill9: a daemon killed as in a crash leaves the
// profile running; the next one adopts it, runs exec under the range
// (read back from the container's state) and stops it by cgroup.
func TestNoPIDNSAdoptedAfterKill9(t *testing.T) {
	d := gkiDaemon(t, withConfig("standby", false))
	d.install("work", stubbornArgs...)
	base, _ := d.idsOf("work")
	d.ok("start", "work")
	waitFor(t, "work's processes", func() bool { return len(d.profilePids("work")) >= 4 })
	pids := d.profilePids("work")
	initPid := d.status("work").Pid
	d.kill9()
	for _, p := range pids {
		if !pidAlive(p) {
			t.Fatalf("pid %d of work died with the daemon", p)
		}
	}
	d.start()
	if p := d.status("work"); p.State != api.StateRunning || p.Pid != initPid {
		t.Fatalf("after restart: %s pid %d, want running with init %d", p.State, p.Pid, initPid)
	}
	if got := strings.TrimSpace(d.ok("exec", "--user", "7:7", "work", "--", "id", "-u")); got != fmt.Sprint(base+7) {
		t.Fatalf("exec --user 7 in the adopted profile ran as %s, want %d", got, base+7)
	}
	d.ok("stop", "--timeout", "200ms", "work")
	for _, p := range pids {
		if pidAlive(p) {
			t.Errorf("after stop of the adopted profile, pid %d is alive", p)
		}
	}
}

// TestNoPIDNSWithUserNSRunsUnderTheRange: a kernel with user namespaces
// but without pid namespaces (forced here by pid_namespace "off" alone):
// root in a user namespace could not mount the host pid namespace's
// procfs, so the daemon runs work under its range without one, and says
// so.
func TestNoPIDNSWithUserNSRunsUnderTheRange(t *testing.T) {
	d := newDaemon(t, withConfig("pid_namespace", "off"), withConfig("standby", false))
	var v api.VersionInfo
	if err := json.Unmarshal([]byte(d.ok("--json", "version")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Identity != "uid-range" || !strings.Contains(v.IdentityWhy, "cannot mount") || v.PIDMode != "shared-pid+hidepid" {
		t.Fatalf("identity %q (%s), pid %q: want uid-range because of the shared pid namespace", v.Identity, v.IdentityWhy, v.PIDMode)
	}
	d.install("work")
	d.ok("start", "work")
	base, _ := d.idsOf("work")
	if got := strings.TrimSpace(d.execOut("work", "id -u; ls /proc | grep -c '^[0-9]'")); !strings.HasPrefix(got, fmt.Sprint(base)) {
		t.Fatalf("work runs as %q, want %d", got, base)
	}
	d.ok("remove", "work")
	d.assertNoLeftovers("work")
}

// TestNoPIDNSVPNLockdownGrantsNoCapability: without a user namespace the
// VPN client's CAP_NET_ADMIN would be the host user namespace's (a veth
// made in the profile could put its peer in the phone's network namespace
// by pid, and the phone's uplink could be moved into work's), so
// vpn-lockdown starts without it: the profile holds no capability at all,
// and its kill switch stays.
func TestNoPIDNSVPNLockdownGrantsNoCapability(t *testing.T) {
	d := gkiDaemon(t, withConfig("standby", false))
	d.ok("install", "work", testbundle.Busybox(t))
	d.ok("net", "set", "work", "--mode", "vpn-lockdown", "--vpn-endpoint", "192.0.2.1:51820")
	d.ok("start", "work")
	initPid := d.status("work").Pid
	for _, field := range []string{"CapEff", "CapPrm", "CapAmb"} {
		if got := hostStatus(t, initPid, field); got != "0000000000000000" {
			t.Errorf("init's %s = %s in vpn-lockdown, want none", field, got)
		}
	}
	out := d.execOut("work", "grep -E '^Cap(Eff|Amb):' /proc/self/status; ls /dev/net/tun")
	if strings.Count(out, "0000000000000000") != 2 || !strings.Contains(out, "/dev/net/tun") {
		t.Errorf("exec in vpn-lockdown: %q, want no capability and the tun node", out)
	}
}
