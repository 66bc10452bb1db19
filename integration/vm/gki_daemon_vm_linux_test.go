package vm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/internal/testbundle"
)

// gkiDaemonConfig is workcelld's configuration in the GKI-shaped guest: a
// phone's. Storage is an ext4 image made with `mke2fs -O encrypt` (the
// guest's root is a tmpfs, as a phone's /data cannot be here), loop
// devices live in /dev/block, binder contexts come from binderfs, the
// host's context is /dev/binder, and there is no /etc/resolv.conf, so the
// resolvers are given. pid_namespace and firewall are left at "auto": the
// daemon must find out by probing that the kernel has neither pid
// namespaces nor nf_tables.
func gkiDaemonConfig() map[string]any {
	return map[string]any{
		"state_dir": "/data/workcell", "run_dir": "/run/workcell",
		"store_image": "/data/workcell-store.img", "store_size": 256 << 20,
		"binder_host_device": "/dev/binder",
		"stop_on_exit":       true,
		"dns":                []string{"192.168.50.254"},
		// A phone whose CPU has no AES instructions: the whole storage
		// path (lock, unlock, wipe) runs on Adiantum here; the host's
		// integration tests cover AES-256-XTS.
		"fscrypt_contents": "adiantum",
	}
}

var gkiStepFail = regexp.MustCompile(`^FAIL\[([a-z0-9-]+)\]: (.*)$`)

// TestDaemonOnGKIInVM runs the real workcelld with a busybox profile on
// the GKI-shaped kernel in the Android-shaped guest (gki/guest-daemon.sh
// has the steps): install, start, exec, the isolation probes, off/on,
// binder through binderfs with the service manager and the proxy, the
// split-network probes in direct, offline and vpn-lockdown over
// iptables-legacy with netd's routing, stop, lock, unlock, wipe, remove,
// and nothing left behind. Each failure names its step.
func TestDaemonOnGKIInVM(t *testing.T) {
	static := []string{"-tags", "netgo osusergo seccomp", "-ldflags", "-extldflags -static"}
	workcelld := buildStatic(t, "workcelld", true, "../../cmd/workcelld", "build", static...)
	cli := buildStatic(t, "workcell", false, "../../cmd/workcell", "build")
	app := buildStatic(t, "binderapp", false, "./internal/binderapp", "build")

	dir := t.TempDir()
	spec, err := json.MarshalIndent(testbundle.Spec(), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(gkiDaemonConfig())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"config.json": spec, "daemon.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := bootGKI(t, Config{
		// busybox runs the applet its argv[0] names: the program "sh" is sh.
		Programs: []Program{{Name: "sh", Path: busybox, Args: []string{"/wc/guest.sh"}}},
		Files: map[string]string{
			"wc/workcelld":   workcelld,
			"wc/workcell":    cli,
			"wc/binderapp":   app,
			"wc/config.json": filepath.Join(dir, "config.json"),
			"wc/daemon.json": filepath.Join(dir, "daemon.json"),
			"wc/guest.sh":    "gki/guest-daemon.sh",
		},
		Timeout: 8 * time.Minute,
	})
	p := res.Programs[0]
	t.Logf("guest script: exit %d in %v", p.Code, p.Duration.Round(time.Millisecond))
	var steps []string
	for _, line := range strings.Split(p.Output, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "=== STEP "); ok {
			steps = append(steps, s)
		}
		if m := gkiStepFail.FindStringSubmatch(line); m != nil {
			t.Errorf("step %s: %s", m[1], m[2])
		}
	}
	t.Logf("guest steps run: %s", strings.Join(steps, ", "))
	if p.Code != 0 || !strings.Contains(p.Output, "gki-daemon: PASS") {
		t.Errorf("the guest script exited %d without PASS; its output's end:\n%s", p.Code, tail(p.Output, 120))
	}
}
