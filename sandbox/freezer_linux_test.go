package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// fakeCgroup is a directory with the two files freezeV2 uses, standing in
// for a cgroup v2 directory: the test plays the kernel.
func fakeCgroup(t *testing.T, frozen string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(frozen), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen "+frozen+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freezeV2 runs one freeze or thaw with a freezer of its own.
func freezeV2(ctx context.Context, dir string, frozen bool) error {
	z, err := newCgroupFreezer(dir)
	if err != nil {
		return err
	}
	defer z.Close()
	return z.set(ctx, frozen)
}

// overwrite rewrites name in place without truncating it first, as the
// kernel's cgroup.events never reads empty.
func overwrite(name, content string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestFreezeV2WaitsForEventsNotification(t *testing.T) {
	for _, frozen := range []bool{true, false} {
		t.Run(fmt.Sprintf("frozen=%v", frozen), func(t *testing.T) {
			from, to := "0", "1"
			if !frozen {
				from, to = "1", "0"
			}
			dir := fakeCgroup(t, from)
			done := make(chan error, 1)
			go func() { done <- freezeV2(context.Background(), dir, frozen) }()
			select {
			case err := <-done:
				t.Fatalf("freezeV2 returned %v before cgroup.events changed", err)
			case <-time.After(50 * time.Millisecond):
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze")); string(b) != to {
				t.Fatalf("cgroup.freeze = %q, want %q", b, to)
			}
			// An unrelated change first: the waiter must keep waiting.
			if err := overwrite(filepath.Join(dir, "cgroup.events"), "populated 0\nfrozen "+from+"\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("freezeV2 returned %v on an unrelated change", err)
			case <-time.After(20 * time.Millisecond):
			}
			if err := overwrite(filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen "+to+"\n"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("freezeV2 missed the cgroup.events change")
			}
		})
	}
}

func TestFreezeV2CancelledThawsBack(t *testing.T) {
	dir := fakeCgroup(t, "0")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := freezeV2(ctx, dir, true)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.freeze")); string(b) != "0" {
		t.Fatalf("cgroup.freeze = %q after a cancelled freeze, want 0", b)
	}
}

// cgroup2Mount returns a mounted cgroup v2 hierarchy: the unified root on a
// v2 host, /sys/fs/cgroup/unified on a hybrid one. cgroup.freeze is a core
// file of v2, so it works even when no controller is enabled there.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	t.Fatal("no cgroup v2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
	return ""
}

// TestFreezeV2RealCgroup runs the v2 freezer against the kernel with 100
// processes: on this hybrid host in the (controller-less) unified
// hierarchy, on a v2 host at its root.
func TestFreezeV2RealCgroup(t *testing.T) {
	requireRoot(t)
	mnt := cgroup2Mount(t)
	parent := filepath.Join(mnt, strings.TrimPrefix(testCgroupParent, "/"))
	dir := filepath.Join(parent, "freezer-v2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(dir)
		_ = os.Remove(parent)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	counter := filepath.Join(t.TempDir(), "counter")
	var procs []*exec.Cmd
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	})
	spawn := func(args ...string) {
		cmd := exec.Command("/bin/busybox", args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	spawn("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > "+counter+"; done")
	for range 99 {
		spawn("sleep", "3600")
	}

	waitCounter(t, counter)
	if err := freezeV2(ctx, dir, true); err != nil {
		t.Fatal(err)
	}
	if f, _ := readFrozen(filepath.Join(dir, "cgroup.events")); f != '1' {
		t.Fatalf("cgroup.events frozen = %c", f)
	}
	n1 := assertCounterFrozen(t, counter)
	if err := freezeV2(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	assertCounterMoves(t, counter, n1)

	z, err := newCgroupFreezer(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var d []time.Duration
	for range 100 {
		start := time.Now()
		if err := z.set(ctx, true); err != nil {
			t.Fatal(err)
		}
		if err := z.set(ctx, false); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	t.Logf("cgroup v2 freeze+thaw round trip, 100 processes (%s, v2 unified host=%v): p50 %v p99 %v max %v",
		mnt, cgroups.IsCgroup2UnifiedMode(), d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
}
