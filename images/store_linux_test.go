package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/images/fscrypt"
	"golang.org/x/sys/unix"
)

const testStoreSize = 64 << 20

// requireRoot fails, never skips: these tests guard kernel behaviour and
// must run (as root) wherever the package is tested.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (loop devices, mounts, fscrypt keys); running as euid %d", os.Geteuid())
	}
}

// newStore makes a fresh encrypting store with EnsureStore and unmounts it
// (lazily if something still holds it) when the test ends.
func newStore(t *testing.T) (image, mnt string) {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	image, mnt = filepath.Join(dir, "store.img"), filepath.Join(dir, "store")
	if err := EnsureStore(t.Context(), image, testStoreSize, mnt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forceUnmount(t, mnt) })
	return image, mnt
}

func forceUnmount(t *testing.T, target string) {
	if err := Unmount(context.Background(), target); err != nil {
		t.Logf("cleanup: %v; detaching lazily", err)
		_ = unix.Unmount(target, unix.MNT_DETACH)
	}
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	m, err := mountAt(path)
	if err != nil {
		t.Fatal(err)
	}
	return m != nil
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomMarker(t *testing.T, prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func TestEnsureStoreCreatesOnceAndIsIdempotent(t *testing.T) {
	image, mnt := newStore(t)
	ctx := t.Context()
	fi, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != testStoreSize {
		t.Fatalf("image size %d", fi.Size())
	}
	if err := EnsureStore(ctx, image, testStoreSize, mnt); err != nil {
		t.Fatalf("second EnsureStore on a mounted store: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "kept"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseStore(ctx, mnt); err != nil {
		t.Fatal(err)
	}
	if mounted(t, mnt) {
		t.Fatal("still mounted after ReleaseStore")
	}
	waitLoopDetached(t, image)
	if err := ReleaseStore(ctx, mnt); err != nil {
		t.Fatalf("ReleaseStore of an unmounted store: %v", err)
	}
	if err := EnsureStore(ctx, image, testStoreSize, mnt); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "kept")); err != nil || string(b) != "kept" {
		t.Fatalf("existing image was not reused as it was: %q, %v", b, err)
	}
	if err := fscrypt.Supported(ctx, mnt); err != nil {
		t.Fatal(err)
	}
}

// waitLoopDetached waits for autoclear, which the kernel may finish just
// after umount returns.
func waitLoopDetached(t *testing.T, image string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		dev, err := loopDeviceOf(image)
		if err != nil {
			t.Fatal(err)
		}
		if dev == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still attached to %s after unmount", image, dev)
		}
	}
}

func TestEnsureStoreRefusesWithoutTouchingImage(t *testing.T) {
	requireRoot(t)
	mkfs := func(args ...string) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, testStoreSize); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("mkfs.ext4", append(append([]string{"-q", "-F"}, args...), path)...).CombinedOutput()
			if err != nil {
				t.Fatalf("mkfs.ext4: %v: %s", err, out)
			}
		}
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
		size int64
		want string
	}{
		{"wrong size", mkfs("-O", "encrypt"), 2 * testStoreSize, "size is"},
		{"not ext4", func(t *testing.T, path string) {
			b := make([]byte, 1<<20)
			rand.Read(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, testStoreSize); err != nil {
				t.Fatal(err)
			}
		}, testStoreSize, "not an ext4"},
		{"ext4 without encrypt", mkfs("-O", "^encrypt"), testStoreSize, "without the encrypt feature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			image, mnt := filepath.Join(dir, "store.img"), filepath.Join(dir, "store")
			tc.make(t, image)
			before := fileHash(t, image)
			err := EnsureStore(t.Context(), image, tc.size, mnt)
			if err == nil {
				forceUnmount(t, mnt)
				t.Fatal("EnsureStore accepted it")
			}
			if !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), image) {
				t.Fatalf("err = %v, want ErrBadImage naming %s and %q", err, image, tc.want)
			}
			if fileHash(t, image) != before {
				t.Fatal("refused image was modified")
			}
			if mounted(t, mnt) {
				t.Fatal("refused image was mounted")
			}
			if dev, _ := loopDeviceOf(image); dev != "" {
				t.Fatalf("refused image attached to %s", dev)
			}
		})
	}
}

// A second loop device on the same image would let two ext4 mounts
// corrupt each other.
func TestEnsureStoreRefusesImageAttachedElsewhere(t *testing.T) {
	image, mnt := newStore(t)
	if err := ReleaseStore(t.Context(), mnt); err != nil {
		t.Fatal(err)
	}
	waitLoopDetached(t, image)
	out, err := exec.Command("losetup", "-f", "--show", image).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	err = EnsureStore(t.Context(), image, testStoreSize, mnt)
	if !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), dev) {
		t.Fatalf("err = %v, want ErrBadImage naming %s", err, dev)
	}
}

func TestEnsureStoreRefusesOtherMount(t *testing.T) {
	_, mnt := newStore(t)
	other := filepath.Join(t.TempDir(), "other.img")
	err := EnsureStore(t.Context(), other, testStoreSize, mnt)
	if err == nil || !strings.Contains(err.Error(), "is mounted there") {
		t.Fatalf("err = %v, want a refusal naming what is mounted", err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatal("an image was created for an occupied mountpoint")
	}
}

// The whole life of a profile's data on the real kernel: encrypted data
// dir, overlay over a plain lower dir, lock (unmount, remove key), the raw
// image scanned for plaintext, unlock again.
func TestEncryptedOverlayLifecycle(t *testing.T) {
	image, mnt := newStore(t)
	ctx := t.Context()
	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()

	contentMarker := randomMarker(t, "workcell-secret-content-")
	nameMarker := randomMarker(t, "workcell-secret-name-")
	content := bytes.Repeat([]byte(contentMarker+"\n"), 2000)

	start := time.Now()
	data, err := PrepareDataDir(ctx, filepath.Join(mnt, "profile", "data"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PrepareDataDir (add key, set policy, mkdir): %v", time.Since(start))
	if id, err := fscrypt.GetPolicy(ctx, data.Path); err != nil || id != data.Key {
		t.Fatalf("GetPolicy = %v, %v; want %v", id, err, data.Key)
	}
	if id, err := fscrypt.GetPolicy(ctx, data.Upper); err != nil || id != data.Key {
		t.Fatalf("upper inherits the policy: GetPolicy = %v, %v", id, err)
	}
	// A file written straight into the encrypted dir.
	direct := filepath.Join(data.Path, nameMarker)
	if err := os.WriteFile(direct, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(direct); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("read back: %v", err)
	}

	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "from-image"), []byte("image file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MountOverlay(ctx, []string{lower}, data.Upper, data.Work, root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forceUnmount(t, root) })
	if err := os.WriteFile(filepath.Join(root, "through-overlay-"+nameMarker), content, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "from-image")); err != nil || string(b) != "image file\n" {
		t.Fatalf("lower file through the overlay: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(data.Upper, "through-overlay-"+nameMarker)); err != nil {
		t.Fatalf("write did not land in upper: %v", err)
	}

	// Lock in the wrong order first: the mounted overlay keeps the key busy,
	// which must be reported, and the removal completes after unmount.
	if st, err := fscrypt.RemoveKey(ctx, mnt, data.Key); !errors.Is(err, fscrypt.ErrFilesBusy) || !st.FilesBusy {
		t.Fatalf("RemoveKey under a mounted overlay: %+v, %v; want FilesBusy", st, err)
	}
	if err := Unmount(ctx, root); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	st, err := fscrypt.RemoveKey(ctx, mnt, data.Key)
	t.Logf("RemoveKey: %v (status %+v)", time.Since(start), st)
	if err != nil {
		t.Fatal(err)
	}
	if ks, err := fscrypt.GetKeyStatus(ctx, mnt, data.Key); err != nil || ks.State != fscrypt.KeyAbsent {
		t.Fatalf("key status after removal: %+v, %v", ks, err)
	}
	assertLocked(t, data.Path, nameMarker, "upper", "work")

	// Nothing readable on the raw image, with every cache out of the way.
	if err := ReleaseStore(ctx, mnt); err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{contentMarker, nameMarker, "through-overlay-"} {
		if bytes.Contains(raw, []byte(m)) {
			t.Fatalf("%q found in plaintext on the raw image", m)
		}
	}
	if !bytes.Contains(raw, []byte("profile")) {
		t.Fatal("sanity: the unencrypted folder name is not on the image, so the scan proves nothing")
	}

	// Unlock: mount the store again, add the same key, everything is back.
	if err := EnsureStore(ctx, image, testStoreSize, mnt); err != nil {
		t.Fatal(err)
	}
	assertLocked(t, data.Path, nameMarker, "upper", "work") // a fresh mount starts without keys
	data2, err := PrepareDataDir(ctx, data.Path, key)
	if err != nil {
		t.Fatal(err)
	}
	if data2.Key != data.Key {
		t.Fatalf("key id changed: %v, %v", data2.Key, data.Key)
	}
	if err := MountOverlay(ctx, []string{lower}, data2.Upper, data2.Work, root); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{direct, filepath.Join(root, "through-overlay-"+nameMarker)} {
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("after unlock %s: %v", filepath.Base(p), err)
		}
	}
	if err := Unmount(ctx, root); err != nil {
		t.Fatal(err)
	}
}

// assertLocked checks that without the key no name under dir is listed or
// reachable in the clear and no file's content can be read (ENOKEY).
func assertLocked(t *testing.T, dir string, names ...string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if slices.Contains(names, e.Name()) || strings.Contains(e.Name(), "workcell-secret") {
			t.Fatalf("%s lists %q in the clear while locked", dir, e.Name())
		}
		if e.Type().IsRegular() {
			files++
			if _, err := os.ReadFile(p); !errors.Is(err, unix.ENOKEY) {
				t.Fatalf("reading %s while locked: err = %v, want ENOKEY", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files found under %s", dir)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Fatalf("%s reachable by its plaintext name while locked", n)
		}
	}
}

// Removing the key while a file is open must say so (never a silent half
// removal), name the holder, and complete once the file is closed.
func TestRemoveKeyWhileFileOpen(t *testing.T) {
	_, mnt := newStore(t)
	ctx := t.Context()
	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	data, err := PrepareDataDir(ctx, filepath.Join(mnt, "data"), key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(data.Path, "open-file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	st, err := fscrypt.RemoveKey(ctx, mnt, data.Key)
	if !errors.Is(err, fscrypt.ErrFilesBusy) || !st.FilesBusy {
		t.Fatalf("RemoveKey with an open file: %+v, %v; want FilesBusy", st, err)
	}
	if ks, err := fscrypt.GetKeyStatus(ctx, mnt, data.Key); err != nil || ks.State != fscrypt.KeyIncompletelyRemoved {
		t.Fatalf("key status: %+v, %v; want incompletely removed", ks, err)
	}
	hs, err := Holders(ctx, mnt)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(hs, func(h Holder) bool { return h.PID == os.Getpid() })
	if i < 0 {
		t.Fatalf("holders %v do not include this test (pid %d)", hs, os.Getpid())
	}
	if hs[i].Comm == "" || !slices.ContainsFunc(hs[i].Uses, func(u string) bool { return strings.HasPrefix(u, "fd ") }) {
		t.Fatalf("holder %v: want comm and an fd", hs[i])
	}
	if err := ReleaseStore(ctx, mnt); !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("ReleaseStore of a busy store: %v; want EBUSY naming the holder", err)
	}

	f.Close()
	if st, err := fscrypt.RemoveKey(ctx, mnt, data.Key); err != nil || st.FilesBusy {
		t.Fatalf("RemoveKey after close: %+v, %v", st, err)
	}
	if ks, err := fscrypt.GetKeyStatus(ctx, mnt, data.Key); err != nil || ks.State != fscrypt.KeyAbsent {
		t.Fatalf("key status: %+v, %v; want absent", ks, err)
	}
	if hs, err := Holders(ctx, mnt); err != nil || len(hs) != 0 {
		t.Fatalf("holders after close: %v, %v", hs, err)
	}
}

func TestMountOverlayRejectsUnsafePaths(t *testing.T) {
	for _, p := range []string{"/a,b", "/a:b", `/a\b`, ""} {
		if err := MountOverlay(t.Context(), []string{p}, "/u", "/w", "/t"); err == nil {
			t.Fatalf("lower %q accepted", p)
		}
	}
}
