package integration

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/workcell/workcell/internal/testbundle"
)

// A bundle (an IT image) reached the host's kernel settings before issue 8:
// an extra procfs at /hostproc escaped /proc's read-only paths, so
// `echo '|/x' > /hostproc/sys/kernel/core_pattern` set the host's core
// handler (run as host root); a unified cgroup.procs of 1 would have moved
// host init into the profile's cgroup. Each is refused at install, naming
// the entry, and leaves nothing behind.
func TestInstallRefusesBundleEscapes(t *testing.T) {
	d := newDaemon(t)
	for _, tc := range []struct {
		name string
		edit func(cfg map[string]any)
		msg  string
	}{
		{"procfs off /proc (the core_pattern attack)", func(c map[string]any) {
			ms, _ := c["mounts"].([]any)
			c["mounts"] = append(ms, map[string]any{"destination": "/hostproc", "type": "proc", "source": "proc"})
		}, "mounts[7].destination: proc only at /proc"},
		{"writable sysfs off /sys", func(c map[string]any) {
			ms, _ := c["mounts"].([]any)
			c["mounts"] = append(ms, map[string]any{"destination": "/hostsys", "type": "sysfs", "source": "sysfs", "options": []any{"rw"}})
		}, "mounts[7].destination: sysfs only at /sys"},
		{"unified cgroup.procs", func(c map[string]any) {
			section(section(c, "linux"), "resources")["unified"] = map[string]any{"cgroup.procs": "1"}
		}, `linux.resources.unified: raw cgroup files ("cgroup.procs")`},
		{"unified pids.max lifts the daemon's limit", func(c map[string]any) {
			section(section(c, "linux"), "resources")["unified"] = map[string]any{"pids.max": "max"}
		}, "linux.resources.unified"},
		{"real-time rlimit", func(c map[string]any) {
			p := section(c, "process")
			p["rlimits"] = []any{map[string]any{"type": "RLIMIT_RTPRIO", "soft": 99, "hard": 99}}
		}, "process.rlimits[0].hard: RLIMIT_RTPRIO 99 exceeds the cap of 0"},
		{"the bundle's own SELinux label", func(c map[string]any) {
			section(c, "process")["selinuxLabel"] = "u:r:su:s0"
		}, "process.selinuxLabel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := testbundle.Busybox(t)
			editConfig(t, bundle, tc.edit)
			d := d.with(t)
			d.fails(2, tc.msg, "install", "work", bundle)
			d.fails(3, "does not exist", "status", "work")
			if ents, _ := os.ReadDir(filepath.Join(d.state, "profiles")); len(ents) != 0 {
				t.Fatalf("left in the store after a refused install: %v", ents)
			}
			d.assertNoLeftovers("work")
		})
	}
}
