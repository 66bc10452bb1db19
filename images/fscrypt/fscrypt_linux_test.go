package fscrypt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/images/fscrypt"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (loop devices, mounts, fscrypt keys); running as euid %d", os.Geteuid())
	}
}

// encryptingStore is a loop-mounted ext4 -O encrypt image made by images.EnsureStore.
func encryptingStore(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "store")
	if err := images.EnsureStore(t.Context(), filepath.Join(dir, "store.img"), 32<<20, mnt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

func unmount(t *testing.T, mnt string) {
	if err := images.Unmount(context.Background(), mnt); err != nil {
		t.Logf("cleanup: %v; detaching lazily", err)
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
	}
}

func newKey(t *testing.T) *fscrypt.Key {
	k, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

func TestPolicyAndKeyIoctls(t *testing.T) {
	mnt := encryptingStore(t)
	ctx := t.Context()
	dir := filepath.Join(mnt, "enc")
	plain := filepath.Join(mnt, "plain")
	for _, d := range []string{dir, plain} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	key := newKey(t)

	start := time.Now()
	id, err := fscrypt.AddKey(ctx, mnt, key)
	t.Logf("AddKey: %v (id %s)", time.Since(start), id)
	if err != nil {
		t.Fatal(err)
	}
	if id2, err := fscrypt.AddKey(ctx, mnt, key); err != nil || id2 != id {
		t.Fatalf("adding the same key again: %v, %v", id2, err)
	}
	if ks, err := fscrypt.GetKeyStatus(ctx, mnt, id); err != nil || ks.State != fscrypt.KeyPresent || !ks.AddedBySelf {
		t.Fatalf("key status: %+v, %v", ks, err)
	}
	if err := fscrypt.SetPolicy(ctx, dir, id); err != nil {
		t.Fatal(err)
	}
	if err := fscrypt.SetPolicy(ctx, dir, id); err != nil {
		t.Fatalf("setting the same policy again: %v", err)
	}
	otherID, err := fscrypt.AddKey(ctx, mnt, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := fscrypt.SetPolicy(ctx, dir, otherID); !errors.Is(err, fscrypt.ErrPolicyMismatch) {
		t.Fatalf("SetPolicy with another key: %v; want ErrPolicyMismatch", err)
	}
	if got, err := fscrypt.GetPolicy(ctx, dir); err != nil || got != id {
		t.Fatalf("GetPolicy = %s, %v; want %s", got, err, id)
	}
	if _, err := fscrypt.GetPolicy(ctx, plain); !errors.Is(err, fscrypt.ErrNotEncrypted) {
		t.Fatalf("GetPolicy of a plain dir: %v; want ErrNotEncrypted", err)
	}

	marker := []byte("fscrypt-marker-visible-only-with-key")
	file := filepath.Join(dir, "note.txt")
	if err := os.WriteFile(file, marker, 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	st, err := fscrypt.RemoveKey(ctx, mnt, id)
	t.Logf("RemoveKey: %v", time.Since(start))
	if err != nil || st != (fscrypt.RemovalStatus{}) {
		t.Fatalf("RemoveKey: %+v, %v", st, err)
	}
	if _, err := os.ReadFile(file); err == nil {
		t.Fatal("file readable by its name after the key was removed")
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() == "note.txt" {
		t.Fatalf("locked listing %v, %v: want one encrypted name", ents, err)
	}
	if _, err := os.ReadFile(filepath.Join(dir, ents[0].Name())); !errors.Is(err, unix.ENOKEY) {
		t.Fatalf("read while locked: %v; want ENOKEY", err)
	}
	if _, err := fscrypt.RemoveKey(ctx, mnt, id); !errors.Is(err, fscrypt.ErrKeyAbsent) {
		t.Fatalf("removing an absent key: %v; want ErrKeyAbsent", err)
	}
	if _, err := fscrypt.AddKey(ctx, mnt, key); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, marker) {
		t.Fatalf("after re-adding the key: %q, %v", b, err)
	}
	if _, err := fscrypt.RemoveKeyAllUsers(ctx, mnt, id); err != nil {
		t.Fatal(err)
	}
}

func TestSupported(t *testing.T) {
	requireRoot(t)
	ctx := t.Context()
	if err := fscrypt.Supported(ctx, encryptingStore(t)); err != nil {
		t.Fatalf("ext4 -O encrypt: %v", err)
	}

	tmpfs := t.TempDir()
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(t, tmpfs) })

	// ext4 without the encrypt feature, mounted without images.EnsureStore
	// (which refuses it).
	dir := t.TempDir()
	img, plainExt4 := filepath.Join(dir, "plain.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(plainExt4, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"mkfs.ext4", "-q", "-F", "-O", "^encrypt", img}, {"mount", "-o", "loop", img, plainExt4}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { unmount(t, plainExt4) })

	for _, tc := range []struct {
		name, dir string
		want      []string
	}{
		{"tmpfs", tmpfs, []string{"tmpfs", tmpfs}},
		{"ext4 without encrypt", plainExt4, []string{"ext4", plainExt4, "encrypt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fscrypt.Supported(ctx, tc.dir)
			if !errors.Is(err, fscrypt.ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not name %q", err, w)
				}
			}
			t.Log(err)
		})
	}
}
