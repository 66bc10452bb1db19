package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/internal/testbundle"
)

// pathWithout makes a PATH folder holding every program of the usual
// folders but those whose names start with one of prefixes.
func pathWithout(t *testing.T, prefixes ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, src := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		ents, err := os.ReadDir(src)
		if err != nil {
			continue
		}
		for _, e := range ents {
			skip := false
			for _, p := range prefixes {
				skip = skip || strings.HasPrefix(e.Name(), p)
			}
			if dst := filepath.Join(dir, e.Name()); !skip {
				if _, err := os.Lstat(dst); err != nil {
					if err := os.Symlink(filepath.Join(src, e.Name()), dst); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	return dir
}

// TestNoFirewallDaemonServesAndStartSaysWhy: on a kernel (or system) with
// neither nf_tables nor iptables-legacy for the daemon to use, workcelld
// still serves: status, doctor and wipe work, and a start is refused with
// what is missing and where to look, rather than the daemon exiting (the
// opaque "container failed to start" of Waydroid's users).
func TestNoFirewallDaemonServesAndStartSaysWhy(t *testing.T) {
	bin := pathWithout(t, "iptables", "ip6tables")
	d := newDaemon(t, withConfig("firewall", "iptables-legacy"), func(d *daemon) {
		d.wrap = []string{"env", "PATH=" + bin}
	})
	d.ok("install", "work", testbundle.Busybox(t))
	r := d.cli("start", "work")
	if r.code == 0 {
		t.Fatalf("start without a firewall succeeded: %s", r.stdout)
	}
	for _, want := range []string{"profile networks cannot be made", "iptables", "workcell doctor"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("start's error %q does not say %q", r.stderr, want)
		}
	}
	out := d.ok("doctor")
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "firewall") {
			row = l
			break
		}
	}
	if !strings.Contains(row, "missing") {
		t.Errorf("doctor's firewall row %q, want missing; doctor said:\n%s", row, out)
	}
	if st := d.status("work"); st.State == "running" {
		t.Fatalf("profile state %s after a refused start", st.State)
	}
	d.ok("wipe", "--yes", "work")
}
