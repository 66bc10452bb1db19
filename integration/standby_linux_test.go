package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

// standbyPids returns the processes in the profile's cgroup (a prepared
// container has exactly its waiting init there).
func standbyPids(t *testing.T, d *daemon, name string) []int {
	t.Helper()
	for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		b, err := os.ReadFile(filepath.Join(root, d.cgParent, name, "cgroup.procs"))
		if err != nil {
			continue
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			pids = append(pids, n)
		}
		return pids
	}
	return nil
}

func waitStandby(t *testing.T, d *daemon, name string) int {
	t.Helper()
	waitFor(t, "the prepared container of "+name, func() bool { return d.status(name).Standby })
	pids := standbyPids(t, d, name)
	if len(pids) != 1 {
		t.Fatalf("prepared container of %s: processes %v, want its one waiting init", name, pids)
	}
	return pids[0]
}

func TestStandby(t *testing.T) {
	d := newDaemon(t, withArgs("--owner-uid", "4242"))
	d.install("work")
	// A stopped profile gets a prepared container: stopped, no pid shown,
	// one waiting init, and not the bundle's process yet.
	init1 := waitStandby(t, d, "work")
	if p := d.status("work"); p.State != api.StateStopped || p.Pid != 0 {
		t.Fatalf("prepared profile: %+v, want stopped without pid", p)
	}
	if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(init1) + "/cmdline"); strings.Contains(string(cmd), "sleep") || strings.Contains(string(cmd), "trap") {
		t.Fatalf("the bundle's process runs before start: %q", cmd)
	}
	if out := d.ok("status", "work"); !strings.Contains(out, "prepared") {
		t.Fatalf("status does not say prepared: %q", out)
	}
	// Start uses it: the profile's init is that very process.
	d.ok("start", "work")
	if p := d.status("work"); p.State != api.StateRunning || p.Pid != init1 || p.Standby {
		t.Fatalf("after start: %+v, want running as pid %d", p, init1)
	}
	if out := d.ok("exec", "work", "--", "hostname"); strings.TrimSpace(out) != "work" {
		t.Fatalf("exec in a profile started from standby: %q", out)
	}
	// Stop prepares the next one.
	d.ok("stop", "work")
	init2 := waitStandby(t, d, "work")
	if init2 == init1 || pidAlive(init1) {
		t.Fatalf("after stop: prepared init %d, old init %d alive=%v", init2, init1, pidAlive(init1))
	}
	// A cold start discards it and starts from scratch.
	d.ok("start", "--cold", "work")
	if p := d.status("work"); p.Pid == init2 || pidAlive(init2) {
		t.Fatalf("cold start used the prepared container %d: %+v", init2, p)
	}
	d.ok("stop", "work")
	init3 := waitStandby(t, d, "work")
	// A network change while stopped prepares anew with the new settings.
	d.ok("net", "set", "work", "--mode", "offline")
	waitFor(t, "a new prepared container after net set", func() bool {
		pids := standbyPids(t, d, "work")
		return d.status("work").Standby && len(pids) == 1 && pids[0] != init3
	})
	// A daemon killed with -9 leaves the prepared container; the next one
	// discards it and prepares its own.
	old := waitStandby(t, d, "work")
	d.kill9()
	d.start()
	fresh := waitStandby(t, d, "work")
	if fresh == old || pidAlive(old) {
		t.Fatalf("after restart: prepared %d, old %d alive=%v", fresh, old, pidAlive(old))
	}
	// Lock leaves no process and no container at all.
	d.ok("lock", "work")
	if p := d.status("work"); p.State != api.StateLocked || p.Standby {
		t.Fatalf("after lock: %+v", p)
	}
	if pidAlive(fresh) {
		t.Fatalf("prepared init %d survived lock", fresh)
	}
	d.assertNoLeftovers("work")
	d.ok("unlock", "work")
	broken := waitStandby(t, d, "work")
	// A network broken since the container was prepared (its veth gone):
	// start repairs the network and starts from scratch, in a working
	// network, not in the prepared container.
	if out, err := exec.Command("ip", "-n", d.netns, "link", "del", "wc-work").CombinedOutput(); err != nil {
		t.Fatalf("delete the veth: %v: %s", err, out)
	}
	d.ok("start", "work")
	if p := d.status("work"); p.Pid == broken || pidAlive(broken) {
		t.Fatalf("started in the prepared container %d of a broken network: %+v", broken, p)
	}
	if out := d.ok("exec", "work", "--", "cat", "/sys/class/net/eth0/operstate"); strings.TrimSpace(out) != "up" {
		t.Fatalf("eth0 after the repairing start: %q", out)
	}
	d.ok("stop", "work")
	last := waitStandby(t, d, "work")
	// Remove leaves nothing.
	d.ok("remove", "work")
	if pidAlive(last) {
		t.Fatalf("prepared init %d survived remove", last)
	}
	d.assertNoLeftovers("work")
}
