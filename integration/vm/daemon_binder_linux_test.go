package vm

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/internal/testbundle"
)

// TestDaemonBinderInVM runs workcelld end to end on the real driver: the
// host's context (/dev/binder) has its own service manager and an echo
// service; workcelld, configured with binder_devices ["/dev/workbinder"],
// gives the profile "work" that device as /dev/binder and is its context
// manager, with the proxy of the profile's binder policy as resolver. A
// work app in the container then calls the echo service through it:
// allowed code, denied code (SecurityException and an audit record),
// `workcell binder services`, a live policy change, a restart of the
// profile, and a work service that stays inside
// (internal/binderapp/guest-daemon.sh has the steps).
func TestDaemonBinderInVM(t *testing.T) {
	static := []string{"-tags", "netgo osusergo seccomp", "-ldflags", "-extldflags -static"}
	workcelld := buildStatic(t, "workcelld", true, "../../cmd/workcelld", "build", static...)
	cli := buildStatic(t, "workcell", false, "../../cmd/workcell", "build")
	app := buildStatic(t, "binderapp", false, "./internal/binderapp", "build")

	dir := t.TempDir()
	spec, err := json.MarshalIndent(testbundle.Spec(), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(map[string]any{
		"state_dir": "/var/lib/workcell", "run_dir": "/run/workcell",
		// The guest's root is a tmpfs, which cannot encrypt.
		"insecure_unencrypted_storage": true,
		"binder_devices":               []string{"/dev/workbinder"},
		"binder_host_device":           "/dev/binder",
		"stop_on_exit":                 true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"config.json": spec, "daemon.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"wc/workcelld":   workcelld,
		"wc/workcell":    cli,
		"wc/binderapp":   app,
		"wc/config.json": filepath.Join(dir, "config.json"),
		"wc/daemon.json": filepath.Join(dir, "daemon.json"),
		"wc/guest.sh":    "internal/binderapp/guest-daemon.sh",
	}

	logFile, err := os.CreateTemp("", "workcell-vm-"+t.Name()+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	t.Logf("guest console: %s", logFile.Name())
	// busybox runs the applet its argv[0] names: the program "sh" is sh.
	res, err := Run(context.Background(), Config{
		Kernel:   guestKernel(t),
		Programs: []Program{{Name: "sh", Path: busybox, Args: []string{"/wc/guest.sh"}}},
		Files:    files,
		// workcelld's network manager opens every netlink family of the
		// host (vishvananda/netlink: route, xfrm, netfilter) and deletes
		// conntrack entries, and its rules use ct and named counters: the
		// guest's kernel has all of these as modules.
		Modules: append(slices.Clone(DefaultModules), Module{Name: "xfrm_user"}, Module{Name: "nf_conntrack_netlink"},
			Module{Name: "nft_ct"}, Module{Name: "nft_objref"}),
		Timeout: 4 * time.Minute,
		Console: &lineLogger{t: t, prefix: "guest: ", file: logFile},
		Logger:  slog.New(slog.NewTextHandler(&lineLogger{t: t, prefix: "vm: "}, nil)),
	})
	if res != nil {
		t.Logf("guest %s: booted in %v, whole run %v", res.Kernel, res.Boot.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
	}
	if err != nil {
		t.Fatalf("%v\n(full console: %s)", err, logFile.Name())
	}
	if len(res.Programs) != 1 {
		t.Fatalf("guest ran %d of 1 programs (full console: %s)", len(res.Programs), logFile.Name())
	}
	p := res.Programs[0]
	t.Logf("guest script: exit %d in %v", p.Code, p.Duration.Round(time.Millisecond))
	if p.Code != 0 || !strings.Contains(p.Output, "daemon-binder: PASS") {
		var fails []string
		for _, l := range strings.Split(p.Output, "\n") {
			if strings.Contains(l, "FAIL:") {
				fails = append(fails, strings.TrimSpace(l))
			}
		}
		t.Errorf("guest script exited %d: %s\n%s(full console: %s)", p.Code, strings.Join(fails, "; "), tail(p.Output, 150), logFile.Name())
	}
}
