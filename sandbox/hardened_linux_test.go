package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/workcell/workcell/internal/testbundle"
)

// A real container from a bundle that asks for writable sysfs and cgroup
// mounts ("rw", "rrw"), a suid/exec procfs and oom_score_adj 0 gets the
// daemon's mounts and score instead: before issue 8, "rrw" left the cgroup
// tree writable and a container inherited the daemon's oom_score_adj.
func TestStartedContainerGetsDaemonMounts(t *testing.T) {
	rt, _ := newRuntime(t)
	script := `{ cat /proc/self/mountinfo; echo @@; cat /proc/self/limits; echo @@; cat /proc/self/oom_score_adj; echo @@;
	  (cat /sys/class/net/lo/tx_queue_len > /sys/class/net/lo/tx_queue_len) 2>&1; echo @@;
	  (echo x > /sys/fs/cgroup/workcell-escape) 2>&1; } > /result.tmp; mv /result.tmp /result; ` + testbundle.DefaultArgs[2]
	bundle := testbundle.Busybox(t, "sh", "-c", script)
	editSpec(t, bundle, func(s *specs.Spec) {
		for i := range s.Mounts {
			switch s.Mounts[i].Destination {
			case "/sys":
				s.Mounts[i].Options = []string{"ro", "rw"}
			case "/sys/fs/cgroup":
				s.Mounts[i].Options = []string{"rrw"}
			case "/proc":
				s.Mounts[i].Options = []string{"suid", "exec", "dev"}
			}
		}
		s.Process.OOMScoreAdj = ptr(0)
	})
	id := newID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rt.Start(ctx, Spec{ID: id, BundleDir: bundle})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx, 0); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		c.Close()
	})
	var out []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err = os.ReadFile(filepath.Join(bundle, "rootfs", "result")); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the container wrote no result: %v", err)
	}
	parts := strings.Split(string(out), "@@\n")
	if len(parts) != 5 {
		t.Fatalf("result = %q", out)
	}
	mountinfo, limits, oom, sysWrite, cgWrite := parts[0], parts[1], parts[2], parts[3], parts[4]

	// The last line of a mount point is its top mount, the one a path
	// resolves to (the read-only remount of a v1 cgroup tmpfs comes last).
	top := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(mountinfo), "\n") {
		if f := strings.Fields(line); len(f) >= 6 {
			top[f[4]] = f[5]
		}
	}
	checked := map[string]bool{}
	for point, o := range top {
		opts := strings.Split(o, ",")
		var want []string
		switch {
		case point == "/proc":
			want = []string{"nosuid", "nodev", "noexec"}
		case point == "/sys" || point == "/sys/fs/cgroup" || strings.HasPrefix(point, "/sys/fs/cgroup/"):
			want = []string{"ro", "nosuid", "nodev", "noexec"}
		default:
			continue
		}
		checked[point] = true
		for _, w := range want {
			if !contains(opts, w) {
				t.Errorf("%s is mounted %s, want %s", point, o, w)
			}
		}
	}
	for _, p := range []string{"/proc", "/sys", "/sys/fs/cgroup"} {
		if !checked[p] {
			t.Errorf("no %s in the container's mountinfo:\n%s", p, mountinfo)
		}
	}
	if !strings.Contains(sysWrite, "Read-only file system") {
		t.Errorf("writing sysfs: %q, want a read-only file system", sysWrite)
	}
	if !strings.Contains(cgWrite, "Read-only file system") {
		t.Errorf("writing the cgroup tree: %q, want a read-only file system", cgWrite)
	}
	if got := strings.TrimSpace(oom); got != "800" {
		t.Errorf("oom_score_adj = %s, want %d", got, DefaultOOMScoreAdj)
	}
	for _, l := range strings.Split(limits, "\n") {
		if strings.HasPrefix(l, "Max realtime priority") || strings.HasPrefix(l, "Max realtime timeout") {
			if f := strings.Fields(l); len(f) < 5 || f[3] != "0" || f[4] != "0" {
				t.Errorf("limits: %q, want 0 0", l)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// editSpec rewrites a bundle's config.json through fn.
func editSpec(t *testing.T, bundle string, fn func(*specs.Spec)) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	fn(&s)
	if data, err = json.Marshal(&s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
