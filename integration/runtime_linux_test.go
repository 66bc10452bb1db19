package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
)

func TestProfileLifecycle(t *testing.T) {
	d := newDaemon(t, withConfig("standby", false)) // the cold path; TestStandby covers the prepared one
	d.install("work", "sh", "-c", "trap 'exit 0' TERM; echo work profile up; while :; do sleep 3600 & wait $!; done")
	if p := d.status("work"); p.State != api.StateStopped || p.Pid != 0 {
		t.Fatalf("after install: %+v, want stopped without pid", p)
	}
	d.ok("start") // NAME defaults to work
	p := d.status("work")
	if p.State != api.StateRunning || !pidAlive(p.Pid) {
		t.Fatalf("after start: %+v, want running with a live pid", p)
	}
	// The pid is the container's init on the host: it is in a new pid
	// namespace.
	self, _ := os.Readlink("/proc/self/ns/pid")
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.Pid))
	if err != nil || theirs == self {
		t.Fatalf("init pid %d: pid namespace %q vs ours %q (%v)", p.Pid, theirs, self, err)
	}
	waitFor(t, "the init's output in the log", func() bool { return strings.Contains(d.ok("logs", "work"), "work profile up") })

	var st api.Stats
	if err := json.Unmarshal([]byte(d.ok("--json", "stats", "work")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pids < 1 || st.MemoryBytes == 0 {
		t.Fatalf("stats = %+v, want pids and memory", st)
	}
	if out := d.ok("stats"); !strings.Contains(out, "pids") || !strings.Contains(out, "memory") {
		t.Fatalf("human stats: %q", out)
	}
	if out := d.ok("profiles"); !strings.Contains(out, "work") || !strings.Contains(out, "running") {
		t.Fatalf("profiles: %q", out)
	}
	d.ok("stop", "work")
	if p := d.status("work"); p.State != api.StateStopped || p.Pid != 0 {
		t.Fatalf("after stop: %+v", p)
	}
	if pidAlive(p.Pid) {
		t.Fatalf("init %d still alive after stop", p.Pid)
	}
	d.assertNoLeftovers("work")
	// Start again after stop works, then remove a running profile.
	d.ok("start", "work")
	d.ok("remove", "work")
	d.fails(3, "profile work does not exist", "status", "work")
	d.assertNoLeftovers("work")
	if _, err := os.Stat(filepath.Join(d.state, "profiles", "work")); !os.IsNotExist(err) {
		t.Fatalf("profile folder left after remove: %v", err)
	}
}

func TestBundleIsImported(t *testing.T) {
	d := newDaemon(t)
	bundle := d.install("work")
	if err := os.RemoveAll(bundle); err != nil {
		t.Fatal(err)
	}
	d.ok("start", "work")
	if out := d.ok("exec", "work", "--", "echo", "still here"); out != "still here\n" {
		t.Fatalf("exec after deleting the source bundle: %q", out)
	}
}

func TestIsolationFromInside(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	sh := func(script string) result { return d.cli("exec", "work", "--", "sh", "-c", script) }

	// Host pids are invisible: only the container's few processes.
	r := sh(`ls /proc | grep -c '^[0-9]*$'`)
	n, _ := strconv.Atoi(strings.TrimSpace(r.stdout))
	if r.code != 0 || n == 0 || n > 5 {
		t.Fatalf("processes visible inside: %q (exit %d), want a handful", r.stdout, r.code)
	}
	if r := sh(`cat /proc/1/cmdline | tr '\0' ' '`); !strings.HasPrefix(r.stdout, "sh -c") {
		t.Fatalf("pid 1 inside is %q, want the bundle's init", r.stdout)
	}
	host, _ := os.Hostname()
	if r := sh("hostname"); strings.TrimSpace(r.stdout) != "work" || strings.TrimSpace(r.stdout) == host {
		t.Fatalf("hostname inside = %q (host %q), want the profile's own", r.stdout, host)
	}
	for _, tc := range []struct{ name, script string }{
		{"mount", "mkdir -p /mnt && mount -t tmpfs none /mnt"},
		{"mknod", "mknod /tmp/mem c 1 1"},
		{"sysrq", "echo h > /proc/sysrq-trigger"},
		{"write /sys", "echo 1 > /sys/kernel/mm/ksm/run"},
		{"raw socket (NET_RAW dropped)", "ping -c1 -W1 127.0.0.1"},
		{"chroot escape via unshare", "unshare -m true"},
		{"read kcore (absent or masked)", "test -e /proc/kcore && test ! -c /proc/kcore"},
		{"read timer_list (masked)", "test ! -c /proc/timer_list"},
		{"read keys (masked)", "test ! -c /proc/keys"},
		{"write /proc/sys (read-only)", "echo 1 > /proc/sys/kernel/sysrq"},
	} {
		if r := sh(tc.script); r.code == 0 {
			t.Errorf("%s: allowed inside the profile (stdout %q)", tc.name, r.stdout)
		}
	}
	r = sh("grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status")
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.TrimSpace(v)
	}
	if fields["NoNewPrivs"] != "1" || fields["Seccomp"] != "2" {
		t.Fatalf("no_new_privs/seccomp inside: %v", fields)
	}
	bnd, err := strconv.ParseUint(fields["CapBnd"], 16, 64)
	if err != nil {
		t.Fatalf("CapBnd %q: %v", fields["CapBnd"], err)
	}
	for _, c := range []struct {
		name string
		bit  uint
	}{{"SYS_ADMIN", 21}, {"SYS_MODULE", 16}, {"SYS_PTRACE", 19}, {"NET_RAW", 13}, {"MKNOD", 27}, {"SYS_RAWIO", 17}, {"NET_ADMIN", 12}} {
		if bnd&(1<<c.bit) != 0 {
			t.Errorf("capability %s is in the bounding set %s", c.name, fields["CapBnd"])
		}
	}
	// Only the usual devices.
	r = sh("ls /dev")
	for _, dev := range strings.Fields(r.stdout) {
		switch dev {
		case "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "core", "console":
		default:
			t.Errorf("unexpected /dev entry inside: %s", dev)
		}
	}
	// The net namespace is the profile's own: no host interfaces, only
	// loopback and its end of the veth.
	if r := sh("ls /sys/class/net"); strings.Join(strings.Fields(r.stdout), " ") != "eth0 lo" {
		t.Errorf("interfaces inside: %q, want only eth0 and lo", r.stdout)
	}
}

func TestExecExitCodesAndStdio(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		code   int
		stdout string
	}{
		{"success", []string{"true"}, "", 0, ""},
		{"exit code passes through", []string{"sh", "-c", "exit 3"}, "", 3, ""},
		{"killed by a signal", []string{"sh", "-c", "kill -9 $$"}, "", 137, ""},
		{"stdin and stdout pass through", []string{"cat"}, "hello from the host\n", 0, "hello from the host\n"},
		{"no such command", []string{"/no/such/binary"}, "", 127, ""},
		{"not executable", []string{"/etc/passwd"}, "", 126, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.cliAs(nil, tc.stdin, append([]string{"exec", "work", "--"}, tc.args...)...)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Fatalf("exec %v: exit %d stdout %q stderr %q; want exit %d stdout %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout)
			}
		})
	}
	r := d.cli("exec", "work", "--", "sh", "-c", "echo to-stderr >&2")
	if r.stderr != "to-stderr\n" {
		t.Fatalf("stderr = %q", r.stderr)
	}
}

// frozenState reads the kernel's freezer state of the profile's cgroup.
func frozenState(t *testing.T, d *daemon, name string) string {
	t.Helper()
	v1 := filepath.Join("/sys/fs/cgroup/freezer", d.cgParent, name, "freezer.state")
	if b, err := os.ReadFile(v1); err == nil {
		return strings.TrimSpace(string(b))
	}
	v2 := filepath.Join("/sys/fs/cgroup", d.cgParent, name, "cgroup.events")
	b, err := os.ReadFile(v2)
	if err != nil {
		t.Fatalf("no freezer state for %s: %v", name, err)
	}
	if strings.Contains(string(b), "frozen 1") {
		return "FROZEN"
	}
	return "THAWED"
}

func TestOffOnWith100Processes(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	d.ok("exec", "work", "--", "sh", "-c", "for i in $(seq 99); do sleep 100000 >/dev/null 2>&1 & done")
	// A ticker that proves whether processes run.
	d.ok("exec", "work", "--", "sh", "-c", "(i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; usleep 10000; done) >/dev/null 2>&1 &")
	var st api.Stats
	json.Unmarshal([]byte(d.ok("--json", "stats", "work")), &st)
	if st.Pids < 100 {
		t.Fatalf("pids in the profile = %d, want >= 100", st.Pids)
	}
	tick := func() string { return strings.TrimSpace(d.ok("exec", "work", "--", "cat", "/tmp/tick")) }
	waitFor(t, "the ticker", func() bool { return tick() != "" })

	for round := 0; round < 3; round++ {
		d.ok("off", "work")
		if p := d.status("work"); p.State != api.StatePaused {
			t.Fatalf("after off: %s", p.State)
		}
		if s := frozenState(t, d, "work"); s != "FROZEN" {
			t.Fatalf("kernel freezer state after off = %s", s)
		}
		tickFile := fmt.Sprintf("/proc/%d/root/tmp/tick", d.status("work").Pid)
		before, _ := os.ReadFile(tickFile)
		time.Sleep(150 * time.Millisecond)
		after, _ := os.ReadFile(tickFile)
		if string(before) != string(after) {
			t.Fatalf("ticker advanced while frozen: %q -> %q", before, after)
		}
		// Exec into a paused profile is refused, not hung.
		d.fails(5, "paused", "exec", "work", "--", "true")
		d.ok("on", "work")
		if s := frozenState(t, d, "work"); s != "THAWED" {
			t.Fatalf("kernel freezer state after on = %s", s)
		}
		a := tick()
		waitFor(t, "the ticker to advance after on", func() bool { return tick() != a })
	}
	// off/on are idempotent toggles.
	d.ok("on", "work")
	d.ok("off", "work")
	d.ok("off", "work")
	// Stop works on a paused profile.
	d.ok("stop", "work")
	d.assertNoLeftovers("work")
}

func TestAdoptionAfterKill9(t *testing.T) {
	d := newDaemon(t, withConfig("standby", false)) // the cold path; TestStandby covers the prepared one
	d.install("work")
	d.ok("start", "work")
	pid := d.status("work").Pid
	d.kill9()
	if !pidAlive(pid) {
		t.Fatalf("the profile's init %d died with the daemon", pid)
	}
	d.start()
	p := d.status("work")
	if p.State != api.StateRunning || p.Pid != pid {
		t.Fatalf("after restart: %+v, want running with pid %d", p, pid)
	}
	d.ok("off", "work")
	if s := frozenState(t, d, "work"); s != "FROZEN" {
		t.Fatalf("freezer after off on an adopted profile = %s", s)
	}
	// A daemon killed while the profile is paused adopts it paused.
	d.kill9()
	d.start()
	if p := d.status("work"); p.State != api.StatePaused || p.Pid != pid {
		t.Fatalf("after restart while paused: %+v", p)
	}
	d.ok("on", "work")
	if out := d.ok("exec", "work", "--", "echo", "adopted"); out != "adopted\n" {
		t.Fatalf("exec in adopted profile: %q", out)
	}
	// The adopted init dying is noticed without any request.
	events := d.watchEvents()
	syscall.Kill(pid, syscall.SIGKILL)
	events.want(t, "work", api.StateStopped)
	if p := d.status("work"); p.State != api.StateStopped {
		t.Fatalf("after the adopted init died: %+v", p)
	}
	d.assertNoLeftovers("work")
}

func TestInitDiedWhileDaemonDown(t *testing.T) {
	d := newDaemon(t, withConfig("standby", false)) // the cold path; TestStandby covers the prepared one
	d.install("work")
	d.ok("start", "work")
	pid := d.status("work").Pid
	d.kill9()
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, "init to die", func() bool { return !pidAlive(pid) })
	d.start()
	if p := d.status("work"); p.State != api.StateStopped || p.Pid != 0 {
		t.Fatalf("after restart: %+v, want stopped", p)
	}
	d.assertNoLeftovers("work")
	d.ok("start", "work")
}

func TestSIGTERMLeavesProfilesRunning(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	pid := d.status("work").Pid
	d.term()
	if !pidAlive(pid) {
		t.Fatal("SIGTERM of the daemon stopped the profile")
	}
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	d.args = append(d.args, "--stop-on-exit")
	d.start()
	if p := d.status("work"); p.Pid != pid {
		t.Fatalf("not adopted: %+v", p)
	}
	d.term()
	if pidAlive(pid) {
		t.Fatal("--stop-on-exit left the profile running")
	}
	d.assertNoLeftovers("work")
}

func TestHalfDoneInstallIsRolledBack(t *testing.T) {
	d := newDaemon(t)
	d.kill9()
	partial := filepath.Join(d.state, "profiles", ".install-work-123")
	os.MkdirAll(filepath.Join(partial, "bundle", "rootfs"), 0o700)
	d.start()
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("half-done install left: %v", err)
	}
	if out := d.ok("profiles", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("profiles after rollback: %s", out)
	}
}

func TestAuthorizationByPeerUID(t *testing.T) {
	d := newDaemon(t, withArgs("--owner-uid", "4242", "--system-uid", "4343"))
	bundle := d.install("work")
	as := func(uid int) []string {
		return []string{"setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups"}
	}
	// A stranger is refused, by uid.
	r := d.cliAs(as(12345), "", "status", "work")
	if r.code != 4 || !strings.Contains(r.stderr, "uid 12345") {
		t.Fatalf("stranger: exit %d %q, want 4 naming uid 12345", r.code, r.stderr)
	}
	// The owner drives the employee's actions...
	for _, args := range [][]string{{"start", "work"}, {"status", "work"}, {"off", "work"}, {"on", "work"}, {"stats", "work"}, {"logs", "work"}, {"exec", "work", "--", "true"}, {"stop", "work"}} {
		if r := d.cliAs(as(4242), "", args...); r.code != 0 {
			t.Fatalf("owner %v: exit %d %q", args, r.code, r.stderr)
		}
	}
	// ...but may not install or remove.
	r = d.cliAs(as(4242), "", "install", "other", bundle)
	if r.code != 4 || !strings.Contains(r.stderr, "uid 4242 may not install") {
		t.Fatalf("owner install: exit %d %q", r.code, r.stderr)
	}
	if r := d.cliAs(as(4242), "", "remove", "work"); r.code != 4 {
		t.Fatalf("owner remove: exit %d %q", r.code, r.stderr)
	}
	// The system uid may do everything.
	if r := d.cliAs(as(4343), "", "install", "other", bundle); r.code != 0 {
		t.Fatalf("system uid install: exit %d %q", r.code, r.stderr)
	}
	if r := d.cliAs(as(4343), "", "remove", "other"); r.code != 0 {
		t.Fatalf("system uid remove: exit %d %q", r.code, r.stderr)
	}
	// A body claiming to be root changes nothing: only SO_PEERCRED counts.
	r = d.cliAs(as(12345), "", "--json", "profiles")
	if r.code != 4 {
		t.Fatalf("stranger profiles: exit %d", r.code)
	}
}

func TestEventsStream(t *testing.T) {
	d := newDaemon(t)
	ev := d.watchEvents()
	d.install("work")
	ev.want(t, "work", api.StateStopped)
	d.ok("start", "work")
	ev.want(t, "work", api.StateRunning)
	d.ok("off", "work")
	ev.want(t, "work", api.StatePaused)
	d.ok("on", "work")
	ev.want(t, "work", api.StateRunning)
	d.ok("remove", "work")
	ev.want(t, "work", api.StateStopped)
	ev.want(t, "work", api.StateAbsent)
}

type eventWatch struct {
	ch     chan api.Event
	cancel context.CancelFunc
}

func (d *daemon) watchEvents() *eventWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &eventWatch{ch: make(chan api.Event, 100), cancel: cancel}
	ready := make(chan struct{})
	go func() {
		// A raw stream, as a UI would read it with curl.
		conn, err := net.Dial("unix", d.socket)
		if err != nil {
			close(ready)
			return
		}
		defer conn.Close()
		context.AfterFunc(ctx, func() { conn.Close() })
		fmt.Fprintf(conn, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		close(ready)
		if err != nil {
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev api.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				w.ch <- ev
			}
		}
	}()
	<-ready
	d.t.Cleanup(cancel)
	return w
}

func (w *eventWatch) want(t *testing.T, profile string, st api.State) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.ch:
			if ev.Profile == profile && ev.State == st {
				return
			}
		case <-timeout:
			t.Fatalf("no event %s %s", profile, st)
		}
	}
}
