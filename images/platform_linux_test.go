package images

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/workcell/workcell/images/fscrypt"
	"golang.org/x/sys/unix"
)

// Phone platforms: no mkfs.ext4 (AOSP ships mke2fs), loop nodes under
// /dev/block or nowhere, Adiantum where the CPU has no AES, and a state
// folder under Android's encrypted /data/misc.

func TestMkfsCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		have []string
		want []string
		err  string
	}{
		{"mkfs.ext4 first", []string{"mkfs.ext4", "mke2fs"}, []string{"/bin/mkfs.ext4", "-q", "-F", "-O", "encrypt", "-E", "nodiscard"}, ""},
		{"mke2fs -t ext4 on AOSP", []string{"mke2fs"}, []string{"/bin/mke2fs", "-t", "ext4", "-q", "-F", "-O", "encrypt", "-E", "nodiscard"}, ""},
		{"neither", nil, nil, "install e2fsprogs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			look := func(p string) (string, error) {
				if slices.Contains(tc.have, p) {
					return "/bin/" + p, nil
				}
				return "", exec.ErrNotFound
			}
			got, err := MkfsCommand(look)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("MkfsCommand = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestStoreMadeWithMke2fsWhereMkfsExt4IsMissing runs the real mke2fs from
// a PATH that has no mkfs.ext4, as on Android.
func TestStoreMadeWithMke2fsWhereMkfsExt4IsMissing(t *testing.T) {
	requireRoot(t)
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		t.Fatalf("this test needs e2fsprogs' mke2fs: %v", err)
	}
	bin := t.TempDir()
	if err := os.Symlink(mke2fs, filepath.Join(bin, "mke2fs")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		t.Fatal("mkfs.ext4 still on PATH")
	}
	dir := t.TempDir()
	image, mnt := filepath.Join(dir, "store.img"), filepath.Join(dir, "store")
	if err := EnsureStore(t.Context(), image, testStoreSize, mnt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forceUnmount(t, mnt) })
	if !mounted(t, mnt) {
		t.Fatal("store not mounted")
	}
	if err := fscrypt.Supported(t.Context(), mnt); err != nil {
		t.Fatalf("store made by mke2fs cannot encrypt: %v", err)
	}

	t.Setenv("PATH", t.TempDir())
	other := filepath.Join(dir, "other.img")
	err = EnsureStore(t.Context(), other, testStoreSize, filepath.Join(dir, "other"))
	if err == nil || !strings.Contains(err.Error(), "mke2fs") {
		t.Fatalf("no mkfs at all: %v, want an error naming mke2fs", err)
	}
	if _, serr := os.Stat(other); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a half-made image was left: %v", serr)
	}
}

func TestFindBlockNodeByNumber(t *testing.T) {
	requireRoot(t)
	dev, block := t.TempDir(), t.TempDir()
	mk := func(path string, mode uint32, maj, min uint32) {
		if err := unix.Mknod(path, mode|0o600, int(unix.Mkdev(maj, min))); err != nil {
			t.Fatal(err)
		}
	}
	// /dev/loop5 is some other device; /dev/block/loop5 is the one.
	mk(filepath.Join(dev, "loop5"), unix.S_IFBLK, 7, 99)
	mk(filepath.Join(block, "loop5"), unix.S_IFBLK, 7, 5)
	mk(filepath.Join(dev, "loop6"), unix.S_IFCHR, 7, 6)
	for _, tc := range []struct {
		name string
		rdev uint64
		want string
	}{
		{"loop5", unix.Mkdev(7, 5), filepath.Join(block, "loop5")},
		{"loop6", unix.Mkdev(7, 6), ""}, // a character device is no loop node
		{"loop7", unix.Mkdev(7, 7), ""},
	} {
		if got := findBlockNode([]string{dev, block}, tc.name, tc.rdev); got != tc.want {
			t.Errorf("findBlockNode(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestLoopNodeMadeWhereThePlatformHasNone mounts a store through a node
// the daemon makes in its own folder, when the searched folders hold none.
func TestLoopNodeMadeWhereThePlatformHasNone(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	empty, nodes := t.TempDir(), filepath.Join(dir, "nodes")
	image, mnt := filepath.Join(dir, "store.img"), filepath.Join(dir, "store")
	err := EnsureStoreWith(t.Context(), image, testStoreSize, mnt, withLoopNodeDirs(empty))
	if err == nil || !strings.Contains(err.Error(), "no block node") {
		t.Fatalf("without nodes and without a node folder: %v, want \"no block node\"", err)
	}
	if mounted(t, mnt) {
		t.Fatal("mounted anyway")
	}
	waitLoopDetached(t, image)
	if err := EnsureStoreWith(t.Context(), image, testStoreSize, mnt, withLoopNodeDirs(empty), WithLoopNodeDir(nodes)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { forceUnmount(t, mnt) })
	if !mounted(t, mnt) {
		t.Fatal("store not mounted")
	}
	if ents, err := os.ReadDir(nodes); err != nil || len(ents) != 0 {
		t.Fatalf("node folder holds %v (%v): the made node must be removed once open", ents, err)
	}
	// Found again by device number, though its source is no /dev path.
	if err := EnsureStoreWith(t.Context(), image, testStoreSize, mnt, withLoopNodeDirs(empty), WithLoopNodeDir(nodes)); err != nil {
		t.Fatalf("second EnsureStore on the mounted store: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeyIdentifierIsTheKernels(t *testing.T) {
	_, mnt := newStore(t)
	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	id, err := fscrypt.AddKey(t.Context(), mnt, key)
	if err != nil {
		t.Fatal(err)
	}
	defer fscrypt.RemoveKeyAllUsers(t.Context(), mnt, id)
	got, err := key.Identifier()
	if err != nil || got != id {
		t.Fatalf("Identifier() = %s, %v; the kernel says %s", got, err, id)
	}
	if back, err := fscrypt.ParseIdentifier(id.String()); err != nil || back != id {
		t.Fatalf("ParseIdentifier(%s) = %s, %v", id, back, err)
	}
}

// TestPolicyModesOnRealExt4 encrypts with each mode on a loop-mounted
// ext4 -O encrypt: the policy reads back with its mode, data round-trips
// while the key is in, and is unreadable once it is out.
func TestPolicyModesOnRealExt4(t *testing.T) {
	for _, mode := range []fscrypt.Mode{fscrypt.ModeAES, fscrypt.ModeAdiantum} {
		t.Run(string(mode), func(t *testing.T) {
			_, mnt := newStore(t)
			ctx := t.Context()
			key, err := fscrypt.NewKey()
			if err != nil {
				t.Fatal(err)
			}
			defer key.Wipe()
			if perr := fscrypt.ProbeMode(ctx, mode); perr != nil {
				// What can be checked without the cipher: the kernel takes
				// the policy's shape (modes and flags) and reads it back.
				shape := filepath.Join(mnt, "shape")
				if err := os.Mkdir(shape, 0o700); err != nil {
					t.Fatal(err)
				}
				id, err := fscrypt.AddKey(ctx, mnt, key)
				if err != nil {
					t.Fatal(err)
				}
				defer fscrypt.RemoveKeyAllUsers(context0(t), mnt, id)
				if err := fscrypt.SetPolicyMode(ctx, shape, id, mode); err != nil {
					t.Errorf("the kernel refuses the %s policy: %v", mode, err)
				} else if _, got, err := fscrypt.GetPolicyMode(ctx, shape); err != nil || got != mode {
					t.Errorf("policy reads back as %q, %v", got, err)
				}
				// Debian's kernel has no Adiantum; the GKI-shaped guest
				// (integration/vm) runs this test with the cipher and
				// sets WORKCELL_REQUIRE_ADIANTUM, so there it must pass.
				if os.Getenv("WORKCELL_REQUIRE_ADIANTUM") != "" || mode == fscrypt.ModeAES {
					t.Fatalf("this kernel cannot encrypt with %s: %v", mode, perr)
				}
				t.Skipf("this kernel cannot encrypt with %s (the policy's shape was checked): %v; "+
					"the file round trip in this mode runs in the GKI-shaped VM (TestGKIKernelShapeInVM, and the daemon suite TestDaemonOnGKIInVM stores its profiles with Adiantum)", mode, perr)
			}
			d, err := PrepareDataDirMode(ctx, filepath.Join(mnt, "p", "data"), key, mode)
			if err != nil {
				t.Fatal(err)
			}
			id, got, err := fscrypt.GetPolicyMode(ctx, d.Path)
			if err != nil || got != mode || id != d.Key {
				t.Fatalf("GetPolicyMode = %s, %q, %v; want %s, %q", id, got, err, d.Key, mode)
			}
			if _, m2, err := fscrypt.GetPolicyMode(ctx, d.Upper); err != nil || m2 != mode {
				t.Fatalf("upper/ inherits %q, %v", m2, err)
			}
			marker := bytes.Repeat([]byte("workcell-"+string(mode)+"-"), 500)
			if err := os.WriteFile(filepath.Join(d.Upper, "note"), marker, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(d.Upper, "note")); err != nil || !bytes.Equal(b, marker) {
				t.Fatalf("read back: %v", err)
			}
			if _, err := fscrypt.RemoveKeyAllUsers(ctx, filepath.Dir(d.Path), d.Key); err != nil {
				t.Fatal(err)
			}
			assertLocked(t, d.Path, "upper", "work", "note")
			// The other mode cannot be set over this one.
			other := fscrypt.ModeAES
			if mode == fscrypt.ModeAES {
				other = fscrypt.ModeAdiantum
			}
			if _, err := fscrypt.AddKey(ctx, mnt, key); err != nil {
				t.Fatal(err)
			}
			defer fscrypt.RemoveKeyAllUsers(context0(t), mnt, d.Key)
			if err := fscrypt.SetPolicyMode(ctx, d.Path, d.Key, other); !errors.Is(err, fscrypt.ErrPolicyMismatch) {
				t.Fatalf("SetPolicyMode(%s) over %s: %v, want ErrPolicyMismatch", other, mode, err)
			}
		})
	}
}

// TestEncryptedParentIsRefusedBeforeAnyKey is Android's /data/misc: the
// state folder already carries a policy of another key; a profile's data
// folder cannot get its own, and nothing of the profile's is added.
func TestEncryptedParentIsRefusedBeforeAnyKey(t *testing.T) {
	_, mnt := newStore(t)
	ctx := t.Context()
	parentKey, _ := fscrypt.NewKey()
	defer parentKey.Wipe()
	misc := filepath.Join(mnt, "misc")
	if err := os.Mkdir(misc, 0o700); err != nil {
		t.Fatal(err)
	}
	pid, err := fscrypt.AddKey(ctx, mnt, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	defer fscrypt.RemoveKeyAllUsers(context0(t), mnt, pid)
	if err := fscrypt.SetPolicy(ctx, misc, pid); err != nil {
		t.Fatal(err)
	}
	key, _ := fscrypt.NewKey()
	defer key.Wipe()
	kid, _ := key.Identifier()
	data := filepath.Join(misc, "workcell", "profiles", "work", "data")
	_, err = PrepareDataDirMode(ctx, data, key, fscrypt.ModeAES)
	if !errors.Is(err, fscrypt.ErrEncryptedParent) || !strings.Contains(err.Error(), pid.String()) {
		t.Fatalf("PrepareDataDirMode under an encrypted parent: %v; want ErrEncryptedParent naming key %s", err, pid)
	}
	if st, err := fscrypt.GetKeyStatus(ctx, mnt, kid); err != nil || st.State != fscrypt.KeyAbsent {
		t.Fatalf("the profile's key is %v (%v): nothing may be added before the refusal", st.State, err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data folder made anyway: %v", err)
	}
	if st, err := fscrypt.GetKeyStatus(ctx, mnt, pid); err != nil || st.State != fscrypt.KeyPresent {
		t.Fatalf("the parent's key is %v (%v)", st.State, err)
	}
}

// context0 is a context that outlives the test, for cleanups.
func context0(*testing.T) context.Context { return context.Background() }
