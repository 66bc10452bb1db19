package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/workcell/workcell/api"
)

// idsOf reads a profile's id range from its record.
func (d *daemon) idsOf(name string) (hostID, size uint32) {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.state, "profiles", name, "profile.json"))
	if err != nil {
		d.t.Fatal(err)
	}
	var rec struct {
		IDs *struct {
			HostID  uint32 `json:"host_id"`
			Size    uint32 `json:"size"`
			Shifted bool   `json:"shifted"`
		} `json:"ids"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		d.t.Fatal(err)
	}
	if rec.IDs == nil {
		d.t.Fatalf("record of %s has no id range: %s", name, b)
	}
	return rec.IDs.HostID, rec.IDs.Size
}

func ownerOf(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func requireUserNS(t *testing.T, d *daemon) {
	t.Helper()
	var v api.VersionInfo
	if err := json.Unmarshal([]byte(d.ok("--json", "version")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Identity != "userns" {
		t.Fatalf("daemon's identity mode is %q (%s): this kernel has user namespaces, so it must be userns", v.Identity, v.IdentityWhy)
	}
}

// TestWorkRootIsNotHostRoot: each profile runs in its own user namespace,
// on its own disjoint range; what root writes in work is the range's on
// the host; the range is free again once the profile is removed.
func TestWorkRootIsNotHostRoot(t *testing.T) {
	d := newDaemon(t, withConfig("standby", false))
	requireUserNS(t, d)
	d.install("work")
	d.install("other")
	base, size := d.idsOf("work")
	obase, _ := d.idsOf("other")
	if size != 65536 || base < 1_000_000_000 || obase < 1_000_000_000 || (obase < base+size && base < obase+size) {
		t.Fatalf("ranges work %d+%d and other %d+%d: want disjoint ranges of 65536 from 1000000000", base, size, obase, size)
	}
	d.ok("start", "work")
	d.ok("start", "other")
	sh := func(name, script string) string {
		r := d.cli("exec", name, "--", "sh", "-c", script)
		if r.code != 0 {
			t.Fatalf("exec %q in %s: exit %d: %s%s", script, name, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	t.Run("uid_map is the profile's range, not the identity", func(t *testing.T) {
		for name, b := range map[string]uint32{"work": base, "other": obase} {
			got := strings.Join(strings.Fields(sh(name, "cat /proc/self/uid_map")), " ")
			if want := fmt.Sprintf("0 %d 65536", b); got != want {
				t.Errorf("uid_map in %s = %q, want %q", name, got, want)
			}
			if got := strings.Join(strings.Fields(sh(name, "cat /proc/self/gid_map")), " "); got != fmt.Sprintf("0 %d 65536", b) {
				t.Errorf("gid_map in %s = %q", name, got)
			}
		}
	})
	t.Run("init runs as the range's root on the host", func(t *testing.T) {
		p := d.status("work")
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) != 4 || f[0] != fmt.Sprint(base) || f[1] != fmt.Sprint(base) {
					t.Fatalf("init's host uids = %q, want %d", v, base)
				}
				return
			}
		}
		t.Fatal("no Uid line in init's status")
	})
	t.Run("files root writes are the range's in the upper layer", func(t *testing.T) {
		sh("work", "echo x > /made-by-root && echo y > /tmp/by-user && chown 1000:1000 /tmp/by-user")
		upper := filepath.Join(d.dataDir("work"), "upper")
		if u, g := ownerOf(t, filepath.Join(upper, "made-by-root")); u != base || g != base {
			t.Errorf("/made-by-root is %d:%d in the upper layer, want %d:%d", u, g, base, base)
		}
		if u, g := ownerOf(t, filepath.Join(upper, "tmp", "by-user")); u != base+1000 || g != base+1000 {
			t.Errorf("/tmp/by-user is %d:%d in the upper layer, want %d:%d", u, g, base+1000, base+1000)
		}
		// The image's files are owned by the range too (shifted at install).
		if u, _ := ownerOf(t, filepath.Join(d.state, "profiles", "work", "bundle", "rootfs", "bin", "busybox")); u != base {
			t.Errorf("the image's /bin/busybox is owned by %d on the host, want %d", u, base)
		}
	})
	t.Run("root inside cannot act on host files", func(t *testing.T) {
		// /etc/resolv.conf is the daemon's bind mount, owned by host root:
		// unmapped, it shows as nobody and root inside cannot write it.
		if got := strings.TrimSpace(sh("work", "stat -c %u /etc/resolv.conf")); got != "65534" {
			t.Errorf("host root's resolv.conf shows as uid %s inside, want 65534 (unmapped)", got)
		}
		if r := d.cli("exec", "work", "--", "sh", "-c", "echo x >> /etc/resolv.conf"); r.code == 0 {
			t.Error("root inside appended to host root's resolv.conf")
		}
	})
	t.Run("the range is free after remove", func(t *testing.T) {
		d.ok("remove", "work")
		if pins, _ := filepath.Glob(filepath.Join(d.run, "userns", "work-*")); len(pins) != 0 {
			t.Errorf("user namespace pins left after remove: %v", pins)
		}
		d.install("third")
		if b, _ := d.idsOf("third"); b != base {
			t.Errorf("a new profile got range %d, want the removed profile's %d (the lowest free)", b, base)
		}
	})
}

// TestUserNSOffIsHostIDs: with userns "off" (the peer the bench compares
// with, and what kernels without user namespaces get) there is no mapping:
// work runs under its range's host ids as they are.
func TestUserNSOffIsHostIDs(t *testing.T) {
	d := newDaemon(t, withConfig("userns", "off"), withConfig("standby", false))
	var v api.VersionInfo
	if err := json.Unmarshal([]byte(d.ok("--json", "version")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Identity != "uid-range" || !strings.Contains(v.IdentityWhy, "off") {
		t.Fatalf("identity = %q (%s), want uid-range because of the config", v.Identity, v.IdentityWhy)
	}
	d.install("work")
	d.idsOf("work")
	d.ok("start", "work")
	if got := strings.Join(strings.Fields(d.ok("exec", "work", "--", "cat", "/proc/self/uid_map")), " "); got != "0 0 4294967295" {
		t.Fatalf("uid_map with userns off = %q, want the identity", got)
	}
	if base, _ := d.idsOf("work"); strings.TrimSpace(d.ok("exec", "work", "--", "id", "-u")) != fmt.Sprint(base) {
		t.Fatalf("work's root with userns off is not its range's host id %d", base)
	}
}

// TestProfileFromBeforeRangesMovesToItsUserNS: a profile installed before
// ranges existed (its record has none), which ran with host ids and wrote
// files as host uid 1000, gets a range at its next start, its image and
// its upper layer shifted into it (work sees the same owners), and its
// network namespace made again inside its user namespace.
func TestProfileFromBeforeRangesMovesToItsUserNS(t *testing.T) {
	d := newDaemon(t, withConfig("userns", "off"), withConfig("standby", false))
	d.install("work")
	d.ok("start", "work")
	d.ok("stop", "work")
	// What a daemon from before ranges left: a file of host uid 1000 in
	// the upper layer (work is no longer host root in any mode, so the
	// host writes it).
	upper := filepath.Join(d.dataDir("work"), "upper")
	if err := os.WriteFile(filepath.Join(upper, "old-file"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(upper, "old-file"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	d.term()
	recPath := filepath.Join(d.state, "profiles", "work", "profile.json")
	b, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	delete(rec, "ids") // as a record from before ranges
	b, _ = json.Marshal(rec)
	if err := os.WriteFile(recPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	withConfig("userns", "auto")(d)
	d.start()
	requireUserNS(t, d)
	d.ok("start", "work")
	base, _ := d.idsOf("work")
	if u, g := ownerOf(t, filepath.Join(upper, "old-file")); u != base+1000 || g != base+1000 {
		t.Errorf("after the move, /old-file is %d:%d on the host, want %d", u, g, base+1000)
	}
	if u, _ := ownerOf(t, filepath.Join(d.state, "profiles", "work", "bundle", "rootfs", "bin", "busybox")); u != base {
		t.Errorf("after the move, the image's busybox is owned by %d, want %d", u, base)
	}
	if got := strings.Fields(d.execOut("work", "cat /old-file; stat -c %u:%g /old-file; cat /proc/self/uid_map")); strings.Join(got, " ") != fmt.Sprintf("old 1000:1000 0 %d 65536", base) {
		t.Errorf("inside after the move: %q, want the same content and owner in the profile's range", got)
	}
	if got := strings.Join(strings.Fields(d.execOut("work", "ls /sys/class/net")), " "); got != "eth0 lo" {
		t.Errorf("interfaces after the move: %q, want eth0 and lo (the namespace made again in the user namespace)", got)
	}
	if !strings.Contains(d.log.String(), "namespace has another owner") {
		t.Error("the profile's network namespace was not made again in its user namespace")
	}
}
