package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images/fscrypt"
)

// defaultStorage gives a test daemon its own small store image (sparse,
// made by the daemon at first start), since the temp folder's filesystem
// cannot encrypt.
func defaultStorage(dir string) []string {
	return []string{"--store-image", filepath.Join(dir, "store.img"), "--store-size", "64M"}
}

func withStorage(args ...string) daemonOpt { return func(d *daemon) { d.storage = args } }

// releaseMounts unmounts whatever is mounted under dir (overlays, the
// store), deepest first; the store's loop device goes with it.
func releaseMounts(dir string) {
	for _, m := range mountsUnder(dir) {
		if syscall.Unmount(m, 0) != nil {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// mountsUnder lists the mountpoints under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			ms = append(ms, fields[4])
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

// mkStoreImage makes a sparse ext4 image; with encrypt, with -O encrypt.
func mkStoreImage(t *testing.T, path string, size int64, encrypt bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-q", "-F"}
	if encrypt {
		args = append(args, "-O", "encrypt")
	}
	if out, err := exec.Command("mkfs.ext4", append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
}

// withOwnStore makes the test's own encrypting ext4 image and gives it to
// the daemon.
func withOwnStore(t *testing.T) (daemonOpt, string) {
	img := filepath.Join(t.TempDir(), "store.img")
	mkStoreImage(t, img, 64<<20, true)
	return withStorage("--store-image", img, "--store-size", "64M"), img
}

// marker is a unique string to look for on raw images.
func marker(t *testing.T) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "wcmark" + hex.EncodeToString(b)
}

// imageHolds reports whether the raw image file contains s, read with
// the store unmounted and the page cache dropped.
func imageHolds(t *testing.T, img, s string) bool {
	t.Helper()
	syscall.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	needle := []byte(s)
	buf := make([]byte, 4<<20)
	var carry []byte
	for {
		n, err := f.Read(buf)
		chunk := append(carry, buf[:n]...)
		if bytes.Contains(chunk, needle) {
			return true
		}
		if len(chunk) >= len(needle) {
			carry = append([]byte{}, chunk[len(chunk)-len(needle)+1:]...)
		}
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// stopAndRelease stops the daemon and unmounts the store.
func (d *daemon) stopAndRelease() {
	d.t.Helper()
	d.term()
	releaseMounts(d.dir)
	if ms := mountsUnder(d.dir); len(ms) > 0 {
		d.t.Fatalf("still mounted: %v", ms)
	}
}

func (d *daemon) store() string { return filepath.Join(d.state, "store") }

func (d *daemon) dataDir(name string) string { return filepath.Join(d.store(), name, "data") }

// keyID reads the identifier of the profile's key from its data folder's
// policy (readable locked or not).
func (d *daemon) keyID(name string) fscrypt.Identifier {
	d.t.Helper()
	id, err := fscrypt.GetPolicy(context.Background(), d.dataDir(name))
	if err != nil {
		d.t.Fatalf("policy of %s: %v", name, err)
	}
	return id
}

func (d *daemon) keyState(id fscrypt.Identifier) fscrypt.KeyState {
	d.t.Helper()
	st, err := fscrypt.GetKeyStatus(context.Background(), d.store(), id)
	if err != nil {
		d.t.Fatalf("key status: %v", err)
	}
	return st.State
}

// execOut runs a shell command in the profile and returns its stdout.
func (d *daemon) execOut(name, script string) string {
	d.t.Helper()
	return d.ok("exec", name, "--", "sh", "-c", script)
}

func TestDataIsEncryptedAtRest(t *testing.T) {
	opt, img := withOwnStore(t)
	d := newDaemon(t, opt)
	mark := marker(t)
	d.install("work")
	if p := d.status("work"); p.State != api.StateStopped || !p.Encrypted || p.Passphrase {
		t.Fatalf("after install: %+v, want stopped (unlocked by itself), encrypted, no passphrase", p)
	}
	d.ok("start", "work")
	d.execOut("work", "mkdir /notes && for i in 1 2 3 4 5 6 7 8; do echo "+mark+" >> /notes/"+mark+".txt; done; sync")
	// What work prints is work data too: the console log is encrypted.
	d.execOut("work", "echo console-"+mark+" >> /proc/1/fd/1")
	waitFor(t, "the console line", func() bool { return strings.Contains(d.ok("logs", "work"), "console-"+mark) })
	if got := d.execOut("work", "head -n1 /notes/"+mark+".txt"); strings.TrimSpace(got) != mark {
		t.Fatalf("read inside: %q", got)
	}
	id := d.keyID("work")
	if st := d.keyState(id); st != fscrypt.KeyPresent {
		t.Fatalf("key while running: %s", st)
	}

	// Locked: stopped, no overlay, key gone; names and contents unreadable.
	if p := jsonProfile(t, d.ok("lock", "--json", "work")); p.State != api.StateLocked {
		t.Fatalf("lock: %+v", p)
	}
	if st := d.keyState(id); st != fscrypt.KeyAbsent {
		t.Fatalf("key after lock: %s", st)
	}
	var names []string
	filepath.WalkDir(d.dataDir("work"), func(p string, e os.DirEntry, err error) error {
		if err == nil && p != d.dataDir("work") {
			names = append(names, e.Name())
			if e.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil {
					t.Errorf("%s is readable while locked (%d bytes)", p, len(b))
				}
			}
		}
		return nil
	})
	if len(names) < 4 {
		t.Fatalf("data holds %v: want upper, work, the notes folder and file, with encrypted names", names)
	}
	for _, n := range names {
		if strings.Contains(n, "notes") || strings.Contains(n, mark) || n == "upper" || n == "work" {
			t.Fatalf("a plaintext name is visible while locked: %q", n)
		}
	}
	d.fails(5, "unlock it first", "start", "work")
	d.fails(5, "logs are encrypted", "logs", "work")

	// At rest on the raw image: no plaintext, names or contents.
	d.stopAndRelease()
	// Nor anywhere in the state folder outside the store.
	filepath.WalkDir(d.state, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && !strings.HasSuffix(p, ".img") {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), mark) {
				t.Errorf("work data in plaintext in the state folder: %s", p)
			}
		}
		return nil
	})
	control := filepath.Join(t.TempDir(), "control")
	os.WriteFile(control, []byte("xx"+mark+"yy"), 0o600)
	if !imageHolds(t, control, mark) {
		t.Fatal("the scan does not find a marker that is there")
	}
	if imageHolds(t, img, mark) {
		t.Fatal("the marker is on the raw store image in plaintext")
	}

	// A new daemon unlocks it by itself (no passphrase): data back.
	d.start()
	if p := d.status("work"); p.State != api.StateStopped {
		t.Fatalf("after restart: %s, want stopped", p.State)
	}
	d.ok("start", "work")
	if got := d.execOut("work", "cat /notes/*.txt | wc -l"); strings.TrimSpace(got) != "8" {
		t.Fatalf("after unlock: %q", got)
	}
}

func jsonProfile(t *testing.T, out string) api.Profile {
	t.Helper()
	var p api.Profile
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	return p
}

func TestPassphraseLockUnlock(t *testing.T) {
	d := newDaemon(t)
	mark := marker(t)
	d.install("work")
	d.ok("start", "work")
	d.execOut("work", "echo "+mark+" > /secret")
	// Without stdin lines: end of input, a clear error.
	d.fails(2, "no passphrase given", "passphrase", "set", "--passphrase-stdin", "work")
	if r := d.cliAs(nil, "correct horse\n", "passphrase", "set", "--passphrase-stdin", "work"); r.code != 0 {
		t.Fatalf("passphrase set: %+v", r)
	}
	r := d.cliAs(nil, "correct horse\n", "passphrase", "set", "--passphrase-stdin", "work")
	if r.code == 0 {
		t.Fatal("set with only the old passphrase (no new) worked")
	}
	if p := d.status("work"); !p.Passphrase || p.State != api.StateRunning {
		t.Fatalf("after set: %+v", p)
	}
	d.ok("lock", "work")
	d.fails(5, "unlock it first", "start", "work")
	// No terminal and no --passphrase-stdin.
	d.fails(2, "not a terminal", "unlock", "work")
	for i, guess := range []string{"wrong one", "another wrong"} {
		r := d.cliAs(nil, guess+"\n", "unlock", "--passphrase-stdin", "work")
		if r.code != 4 || !strings.Contains(r.stderr, "wrong passphrase") || strings.Contains(r.stderr, guess) {
			t.Fatalf("wrong passphrase: %+v", r)
		}
		if p := d.status("work"); p.FailedUnlocks != i+1 || p.State != api.StateLocked {
			t.Fatalf("after %d wrong: %+v", i+1, p)
		}
	}
	if r := d.cliAs(nil, "correct horse\n", "unlock", "--passphrase-stdin", "work"); r.code != 0 {
		t.Fatalf("unlock: %+v", r)
	}
	if p := d.status("work"); p.FailedUnlocks != 0 || p.State != api.StateStopped {
		t.Fatalf("after unlock: %+v", p)
	}
	d.ok("start", "work")
	if got := d.execOut("work", "cat /secret"); strings.TrimSpace(got) != mark {
		t.Fatalf("after unlock: %q", got)
	}
	// A host process with a file of the data folder open: lock refuses,
	// names it, and the profile stays unlocked (key present).
	d.ok("stop", "work")
	var held string
	filepath.WalkDir(filepath.Join(d.dataDir("work"), "upper"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			held = p
		}
		return nil
	})
	holder := exec.Command("sh", "-c", "exec 3<\"$0\"; exec sleep 60", held)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r = d.cli("lock", "work")
	holder.Process.Kill()
	holder.Wait()
	if r.code != 5 || !strings.Contains(r.stderr, "sleep") || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("lock with a busy file: %+v", r)
	}
	if p := d.status("work"); p.State != api.StateStopped {
		t.Fatalf("after a refused lock: %s", p.State)
	}
	if st := d.keyState(d.keyID("work")); st != fscrypt.KeyPresent {
		t.Fatalf("key after a refused lock: %s (half removed?)", st)
	}
	d.ok("lock", "work")
	// Clear needs the old passphrase.
	if r := d.cliAs(nil, "wrong\n", "passphrase", "clear", "--passphrase-stdin", "work"); r.code != 4 {
		t.Fatalf("clear with a wrong passphrase: %+v", r)
	}
	if r := d.cliAs(nil, "correct horse\n", "passphrase", "clear", "--passphrase-stdin", "work"); r.code != 0 {
		t.Fatalf("clear: %+v", r)
	}
	if p := d.status("work"); p.Passphrase || p.State != api.StateLocked {
		t.Fatalf("after clear: %+v", p)
	}
	d.ok("unlock", "work")
}

// wipeGone checks that nothing of a wiped profile is left: not in the
// API, not in the kernel keyring, not on disk.
func (d *daemon) wipeGone(name string, id fscrypt.Identifier) {
	d.t.Helper()
	d.fails(3, "does not exist", "status", name)
	if st := d.keyState(id); st != fscrypt.KeyAbsent {
		d.t.Errorf("key of %s after wipe: %s", name, st)
	}
	for _, p := range []string{
		filepath.Join(d.store(), name), filepath.Join(d.state, "profiles", name),
		filepath.Join(d.state, "journal", "wipe-"+name+".json"), filepath.Join(d.run, "profiles", name, "rootfs"),
	} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			d.t.Errorf("%s is left after wipe (%v)", p, err)
		}
	}
	ms, _ := filepath.Glob(filepath.Join(d.state, "profiles", ".*"))
	if len(ms) > 0 {
		d.t.Errorf("left in profiles/: %v", ms)
	}
	d.assertNoLeftovers(name)
}

func TestWipe(t *testing.T) {
	opt, img := withOwnStore(t)
	d := newDaemon(t, opt, withArgs("--owner-uid", "4242"))
	mark := marker(t)
	d.install("work")
	d.ok("start", "work")
	d.execOut("work", "for i in $(seq 64); do echo "+mark+"; done > /data; head -c 4000000 /dev/urandom > /noise; sync")
	id := d.keyID("work")
	// The owner may not wipe; no terminal and no --yes is refused.
	if r := d.cliAs([]string{"setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups"}, "", "wipe", "--yes", "work"); r.code != 4 {
		t.Fatalf("wipe as the owner: %+v", r)
	}
	d.fails(2, "--yes", "wipe", "work")
	if p := d.status("work"); p.State != api.StateRunning {
		t.Fatalf("refused wipes changed the profile: %+v", p)
	}
	if out := d.ok("wipe", "--yes", "work"); !strings.Contains(out, "wiped") {
		t.Fatalf("wipe: %q", out)
	}
	d.wipeGone("work", id)
	d.stopAndRelease()
	if imageHolds(t, img, mark) {
		t.Fatal("plaintext of the wiped profile is on the raw image")
	}
}

func TestWipeFinishesAfterKill9AtEachStep(t *testing.T) {
	d := newDaemon(t)
	for _, step := range []string{"journal", "stop", "evict", "destroy", "files", "records"} {
		t.Run(step, func(t *testing.T) {
			parent := d.t
			d.t = t
			defer func() { d.t = parent }()
			name := "w-" + step
			d.install(name)
			d.ok("start", name)
			d.execOut(name, "echo data > /file")
			id := d.keyID(name)
			// A daemon that kills itself with SIGKILL right after the step.
			d.term()
			os.Setenv(crashEnv, "wipe:"+step)
			d.start()
			os.Unsetenv(crashEnv)
			defer func() { // a failure above must not leave the next start crashing
				if d.cmd.ProcessState != nil {
					d.start()
				}
			}()
			if r := d.cli("wipe", "--yes", name); r.code == 0 {
				t.Fatalf("wipe survived the crash at %s: %+v", step, r)
			}
			if err := d.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("daemon exit: %v, want killed", err)
			}
			if step != "journal" && step != "stop" {
				// From the eviction on, the key is out of the kernel.
				if st := d.keyState(id); st != fscrypt.KeyAbsent {
					t.Fatalf("key after a crash at %s: %s", step, st)
				}
			}
			d.start()
			d.wipeGone(name, id)
		})
	}
}

const crashEnv = "WORKCELL_TEST_CRASH_AT"

func TestRefusesUnencryptedFilesystem(t *testing.T) {
	tmpfs := func(d *daemon) {
		os.MkdirAll(d.state, 0o700)
		if err := syscall.Mount("tmpfs", d.state, "tmpfs", 0, "size=32m"); err != nil {
			d.t.Fatal(err)
		}
	}
	t.Run("refused", func(t *testing.T) {
		d := newDaemon(t, withStorage(), tmpfs)
		d.install("work")
		if p := d.status("work"); p.State != api.StateLocked {
			t.Fatalf("after install on tmpfs: %s, want locked", p.State)
		}
		r := d.cli("start", "work")
		for _, want := range []string{"tmpfs", "cannot encrypt", "--store-image PATH --store-size SIZE", "--insecure-unencrypted-storage"} {
			if r.code != 5 || !strings.Contains(r.stderr, want) {
				t.Fatalf("start on tmpfs: exit %d %q, want exit 5 naming %q", r.code, r.stderr, want)
			}
		}
	})
	t.Run("insecure", func(t *testing.T) {
		d := newDaemon(t, withStorage("--insecure-unencrypted-storage"), tmpfs)
		d.install("work")
		d.ok("start", "work")
		if p := d.status("work"); p.Encrypted || p.State != api.StateRunning {
			t.Fatalf("insecure: %+v", p)
		}
		if !strings.Contains(d.log.String(), "INSECURE") {
			t.Fatal("no loud warning in the log")
		}
		if r := d.cliAs(nil, "pass\n", "passphrase", "set", "--passphrase-stdin", "work"); r.code != 5 || !strings.Contains(r.stderr, "unencrypted") {
			t.Fatalf("passphrase on unencrypted storage: %+v", r)
		}
	})
}

func TestBadStoreImages(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, size, want string
		mk               func(path string)
	}{
		{"wrong size", "128M", "size is", func(p string) { mkStoreImage(t, p, 64<<20, true) }},
		{"no encrypt feature", "64M", "encrypt feature", func(p string) { mkStoreImage(t, p, 64<<20, false) }},
		{"not ext4", "64M", "not an ext4", func(p string) {
			b := make([]byte, 64<<20)
			copy(b[4096:], "precious user bytes")
			os.WriteFile(p, b, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".img")
			tc.mk(img)
			before := fileSum(t, img)
			state := filepath.Join(dir, tc.name, "state")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(binDir, "workcelld"), "--state-dir", state,
				"--run-dir", filepath.Join(dir, tc.name, "run"), "--store-image", img, "--store-size", tc.size).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), img) {
				t.Fatalf("workcelld with a bad store: %v: %s; want a refusal naming %q and the image", err, out, tc.want)
			}
			if fileSum(t, img) != before {
				t.Fatal("the image was changed")
			}
			if ms := mountsUnder(dir); len(ms) > 0 {
				releaseMounts(dir)
				t.Fatalf("mounted anyway: %v", ms)
			}
		})
	}
}

func fileSum(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}
