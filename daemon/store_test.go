package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

func newTestStore(t *testing.T) *store {
	t.Helper()
	s, err := newStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAtomicWriteFaultInjection(t *testing.T) {
	// For each step of the atomic write, a failure must leave either the
	// old or (only once renamed) the new record, and no temp file.
	for _, tc := range []struct {
		step    string
		wantNew bool
	}{
		{"create", false}, {"write", false}, {"sync", false}, {"rename", false}, {"syncdir", true},
	} {
		t.Run(tc.step, func(t *testing.T) {
			s := newTestStore(t)
			if err := os.MkdirAll(s.dir("work"), 0o700); err != nil {
				t.Fatal(err)
			}
			old := record{Name: "work", State: api.StateStopped, CreatedAt: time.Unix(1, 0).UTC()}
			if err := s.save(old); err != nil {
				t.Fatal(err)
			}
			injected := errors.New("injected fault")
			s.fault = func(step string) error {
				if step == tc.step {
					return injected
				}
				return nil
			}
			nw := old
			nw.State = api.StateRunning
			nw.Pid = 42
			err := s.save(nw)
			if !errors.Is(err, injected) {
				t.Fatalf("save error = %v, want the injected fault", err)
			}
			s.fault = nil
			got, err := s.load("work")
			if err != nil {
				t.Fatalf("record unreadable after a fault at %s: %v", tc.step, err)
			}
			want := old
			if tc.wantNew {
				want = nw
			}
			if got.State != want.State || got.Pid != want.Pid {
				t.Fatalf("record after fault at %s = %+v, want %+v", tc.step, got, want)
			}
			tmps, _ := filepath.Glob(filepath.Join(s.dir("work"), ".*tmp*"))
			if len(tmps) != 0 {
				t.Fatalf("temp files left: %v", tmps)
			}
		})
	}
}

func TestCrashBetweenWriteAndRenameIsCleaned(t *testing.T) {
	s := newTestStore(t)
	os.MkdirAll(s.dir("work"), 0o700)
	if err := s.save(record{Name: "work", State: api.StateStopped}); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 after the temp write leaves behind.
	tmp := filepath.Join(s.dir("work"), "."+recordFile+".tmp-123")
	os.WriteFile(tmp, []byte(`{"name":"work","sta`), 0o600)
	if _, err := s.cleanPartial(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temp record survived cleanPartial: %v", err)
	}
	if rec, err := s.load("work"); err != nil || rec.State != api.StateStopped {
		t.Fatalf("record after cleanup = %+v, %v", rec, err)
	}
}

func writeBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "rootfs", "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "rootfs", "bin", "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("tool", filepath.Join(dir, "rootfs", "bin", "alias"))
	return dir
}

func TestInstallCopiesAndIsAtomic(t *testing.T) {
	s := newTestStore(t)
	src := writeBundle(t)
	rec := record{Name: "work", State: api.StateStopped}
	if err := s.install(rec, src, nil, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.bundle("work"), "rootfs", "bin", "tool"))
	if err != nil || string(b) != "#!/bin/sh\n" {
		t.Fatalf("copied file = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(s.bundle("work"), "rootfs", "bin", "tool")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("mode not kept: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(s.bundle("work"), "rootfs", "bin", "alias")); err != nil || l != "tool" {
		t.Fatalf("symlink = %q, %v", l, err)
	}
	if err := s.install(rec, writeBundle(t), nil, func(string) error { return nil }); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("second install = %v, want conflict", err)
	}
	assertNoPartial(t, s)
}

func TestInstallFailuresLeaveNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   func(t *testing.T) string
		check func(string) error
		fault string
		class error
		msg   string
	}{
		{"missing bundle", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, nil, "", api.ErrInvalidArgument, "no such file"},
		{"device node in rootfs", func(t *testing.T) string {
			d := writeBundle(t)
			if err := syscall.Mknod(filepath.Join(d, "rootfs", "sda"), syscall.S_IFCHR|0o600, 0x0103); err != nil {
				t.Skipf("mknod needs root: %v", err)
			}
			return d
		}, nil, "", api.ErrInvalidArgument, "rootfs/sda is a device node"},
		{"fifo in rootfs", func(t *testing.T) string {
			d := writeBundle(t)
			if err := syscall.Mkfifo(filepath.Join(d, "rootfs", "p"), 0o600); err != nil {
				t.Fatal(err)
			}
			return d
		}, nil, "", api.ErrInvalidArgument, "is a fifo"},
		{"check refuses", writeBundle, func(string) error { return api.Errorf(api.ErrInvalidArgument, "config.json: hooks: refused") }, "", api.ErrInvalidArgument, "hooks"},
		{"crash before final rename", writeBundle, nil, "install-rename", nil, "injected"},
		{"record write fails", writeBundle, nil, "sync", nil, "injected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			check := tc.check
			if check == nil {
				check = func(string) error { return nil }
			}
			if tc.fault != "" {
				s.fault = func(step string) error {
					if step == tc.fault {
						return errors.New("injected")
					}
					return nil
				}
			}
			err := s.install(record{Name: "work"}, tc.src(t), nil, check)
			if err == nil {
				t.Fatal("install succeeded")
			}
			if tc.class != nil && !errors.Is(err, tc.class) {
				t.Fatalf("error %v is not of class %v", err, tc.class)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
			assertNoPartial(t, s)
			if names, _ := s.list(); len(names) != 0 {
				t.Fatalf("profiles after a failed install: %v", names)
			}
		})
	}
}

func assertNoPartial(t *testing.T, s *store) {
	t.Helper()
	ents, _ := os.ReadDir(s.root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("left behind in the store: %s", e.Name())
		}
	}
}

func TestCleanPartialRollsBackInstallAndFinishesRemove(t *testing.T) {
	s := newTestStore(t)
	for _, d := range []string{installPrefix + "work-1", removePrefix + "old-2"} {
		os.MkdirAll(filepath.Join(s.root, d, "bundle", "rootfs"), 0o700)
	}
	cleaned, err := s.cleanPartial()
	if err != nil || len(cleaned) != 2 {
		t.Fatalf("cleanPartial = %v, %v", cleaned, err)
	}
	assertNoPartial(t, s)
}

func TestRemoveDeletesEverything(t *testing.T) {
	s := newTestStore(t)
	if err := s.install(record{Name: "work"}, writeBundle(t), nil, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.remove("work"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.root); len(ents) != 0 {
		t.Fatalf("left after remove: %v", ents)
	}
}

func TestLoadRejectsCorruptRecord(t *testing.T) {
	s := newTestStore(t)
	os.MkdirAll(s.dir("work"), 0o700)
	os.WriteFile(filepath.Join(s.dir("work"), recordFile), []byte("{not json"), 0o600)
	if _, err := s.load("work"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("load = %v, want a corrupt-record error", err)
	}
	os.WriteFile(filepath.Join(s.dir("work"), recordFile), []byte(`{"name":"other"}`), 0o600)
	if _, err := s.load("work"); err == nil || !strings.Contains(err.Error(), `names profile "other"`) {
		t.Fatalf("load = %v, want a name mismatch", err)
	}
}

// TestInstallShiftsOwners: with a range, the copy is owned by the range
// (root's files by its first id, uid 1000's by base+1000), and a setuid
// file keeps its bit, which the chown alone would clear.
func TestInstallShiftsOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (it chowns files): run it as root")
	}
	s := newTestStore(t)
	src := writeBundle(t)
	su := filepath.Join(src, "rootfs", "bin", "su")
	if err := os.WriteFile(su, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(su, 0o4755); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(src, "rootfs", "bin", "tool"), 1000, 1000)
	m := sandbox.IDMap{HostID: 1_000_000_000, Size: 65536}
	if err := s.install(record{Name: "work"}, src, &m, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]uint32{"rootfs": m.HostID, "rootfs/bin/tool": m.HostID + 1000, "rootfs/bin/alias": m.HostID, "rootfs/bin/su": m.HostID} {
		fi, err := os.Lstat(filepath.Join(s.bundle("work"), rel))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != want || st.Gid != want {
			t.Errorf("%s is owned by %d:%d, want %d:%d", rel, st.Uid, st.Gid, want, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.bundle("work"), "rootfs", "bin", "su")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("su lost its setuid bit in the shifted copy: %v %v", fi.Mode(), err)
	}
}
