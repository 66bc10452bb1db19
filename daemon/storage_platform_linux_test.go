package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/images/fscrypt"
	"golang.org/x/sys/unix"
)

// encStore is a loop-mounted ext4 -O encrypt, unmounted when the test ends.
func encStore(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root (loop devices, mounts, fscrypt keys); running as euid %d", os.Geteuid())
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "store")
	if err := images.EnsureStore(t.Context(), filepath.Join(dir, "store.img"), 32<<20, mnt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := images.Unmount(context.Background(), mnt); err != nil {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// storDaemon is a daemon whose storage is root (keys and data in one
// folder, as without a store image).
func storDaemon(t *testing.T, root string, mode fscrypt.Mode) *Daemon {
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Daemon{
		log:      slog.New(slog.DiscardHandler),
		profiles: map[string]*profile{},
		stor: &storage{
			keyRoot: root, dataRoot: root, mode: mode,
			prot: fscrypt.NewFileProtector(filepath.Join(root, deviceKeyFile)),
		},
	}
}

func addKey(t *testing.T, mnt string) (*fscrypt.Key, fscrypt.Identifier) {
	t.Helper()
	k, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	id, err := fscrypt.AddKey(t.Context(), mnt, k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = fscrypt.RemoveKeyAllUsers(context.Background(), mnt, id) })
	return k, id
}

func keyState(t *testing.T, mnt string, id fscrypt.Identifier) fscrypt.KeyState {
	t.Helper()
	st, err := fscrypt.GetKeyStatus(context.Background(), mnt, id)
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

// TestEncryptedStateFolderNeedsTheStoreImage is Android's /data/misc: a
// state folder under a folder with its own policy and key. Start says the
// store image is needed; unlock refuses before adding any key; and lock
// and wipe of a profile whose data folder inherited that policy never
// remove the phone's key.
func TestEncryptedStateFolderNeedsTheStoreImage(t *testing.T) {
	mnt := encStore(t)
	ctx := t.Context()
	misc := filepath.Join(mnt, "misc")
	if err := os.Mkdir(misc, 0o711); err != nil {
		t.Fatal(err)
	}
	_, phoneID := addKey(t, mnt)
	if err := fscrypt.SetPolicy(ctx, misc, phoneID); err != nil {
		t.Fatal(err)
	}
	d := storDaemon(t, filepath.Join(misc, "workcell", "profiles"), fscrypt.ModeAES)

	err := d.stor.checkParent(ctx)
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "--store-image") || !strings.Contains(err.Error(), phoneID.String()) {
		t.Fatalf("checkParent = %v; want a conflict naming the phone's key %s and --store-image", err, phoneID)
	}

	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	kid, _ := key.Identifier()
	if err := d.prepareData(ctx, "work", key); err == nil || !strings.Contains(err.Error(), "--store-image") {
		t.Fatalf("prepareData under the phone's policy: %v", err)
	}
	if keyState(t, mnt, kid) != fscrypt.KeyAbsent {
		t.Fatal("the profile's key was added before the refusal")
	}

	// A data folder made under the phone's policy by hand (or by an older
	// daemon) inherits it: with or without a record, lock and wipe leave
	// the phone's key alone.
	data := d.stor.dataDir("work")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if got, err := fscrypt.ReadPolicy(ctx, data); err != nil || got.Identifier != phoneID {
		t.Fatalf("data folder policy %v, %v: want the inherited %s", got.Key(), err, phoneID)
	}
	for _, tc := range []struct {
		name   string
		record bool
		key    *fscrypt.Key
	}{
		{"no record, no key", false, nil},
		{"no record, key in memory", false, key},
		{"record of its own key", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(d.stor.recordFile("work"))
			if tc.record {
				if err := d.stor.saveFscryptRecord("work", fscryptRecord{Mode: fscrypt.ModeAES, KeyID: kid.String()}); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.evictKey(ctx, "work", tc.key, false); !errors.Is(err, errForeignKey) {
				t.Errorf("lock: %v; want a refusal (errForeignKey)", err)
			}
			if err := d.evictKey(ctx, "work", tc.key, true); err != nil {
				t.Errorf("wipe's evict: %v; want it to go on without removing anything", err)
			}
			if err := d.keyPresent(ctx, "work"); err == nil {
				t.Error("the phone's key counts as the profile's: unlocked")
			}
			if st := keyState(t, mnt, phoneID); st != fscrypt.KeyPresent {
				t.Fatalf("the phone's key is %s", st)
			}
		})
	}
}

// TestProfileKeepsItsModeAndOnlyItsKeyIsRemoved unlocks a profile on a
// clean encrypting folder: its mode and key are recorded; a daemon that
// now prefers another mode keeps the profile's; lock removes exactly the
// recorded key.
func TestProfileKeepsItsModeAndOnlyItsKeyIsRemoved(t *testing.T) {
	mnt := encStore(t)
	ctx := t.Context()
	d := storDaemon(t, filepath.Join(mnt, "profiles"), fscrypt.ModeAES)
	if err := d.stor.checkParent(ctx); err != nil {
		t.Fatal(err)
	}
	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	defer key.Wipe()
	kid, _ := key.Identifier()
	if err := d.prepareData(ctx, "work", key); err != nil {
		t.Fatal(err)
	}
	r, err := d.stor.loadFscryptRecord("work")
	if err != nil || r == nil || r.Mode != fscrypt.ModeAES || r.KeyID != kid.String() {
		t.Fatalf("record %+v, %v", r, err)
	}
	d.stor.mode = fscrypt.ModeAdiantum // the config changed since
	if m, err := d.profileMode(ctx, "work"); err != nil || m != fscrypt.ModeAES {
		t.Fatalf("profileMode = %q, %v; the profile keeps aes", m, err)
	}
	if err := d.prepareData(ctx, "work", key); err != nil {
		t.Fatalf("prepareData again (an unlock after a lock): %v", err)
	}
	if err := d.keyPresent(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	// Another key in the same keyring is not touched by the lock.
	_, otherID := addKey(t, mnt)
	if err := d.evictKey(ctx, "work", nil, false); err != nil {
		t.Fatal(err)
	}
	if keyState(t, mnt, kid) != fscrypt.KeyAbsent || keyState(t, mnt, otherID) != fscrypt.KeyPresent {
		t.Fatal("lock removed the wrong key")
	}
	// A record naming another key: nothing is removed.
	if _, err := fscrypt.AddKey(ctx, mnt, key); err != nil {
		t.Fatal(err)
	}
	if err := d.stor.saveFscryptRecord("work", fscryptRecord{Mode: fscrypt.ModeAES, KeyID: otherID.String()}); err != nil {
		t.Fatal(err)
	}
	if err := d.evictKey(ctx, "work", nil, false); !errors.Is(err, errForeignKey) {
		t.Fatalf("evict with a record of another key: %v", err)
	}
	if keyState(t, mnt, kid) != fscrypt.KeyPresent {
		t.Fatal("a key the record does not name was removed")
	}
	_, _ = fscrypt.RemoveKeyAllUsers(ctx, mnt, kid)
}

func TestConfigPlatform(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"mode", func(c *Config) { c.FscryptContents = "chacha" }, "fscrypt_contents"},
		{"not an address", func(c *Config) { c.DNS = []string{"9.9.9.9", "dns.example"} }, "dns[1]"},
		{"loopback v4", func(c *Config) { c.DNS = []string{"127.0.0.53"} }, "loopback"},
		{"loopback v6", func(c *Config) { c.DNS = []string{"::1"} }, "loopback"},
		{"mapped loopback", func(c *Config) { c.DNS = []string{"::ffff:127.0.0.1"} }, "loopback"},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	c := DefaultConfig()
	c.FscryptContents, c.DNS = "adiantum", []string{"9.9.9.9", "2620:fe::fe"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestChooseModeFollowsCPUAndKernel(t *testing.T) {
	noAES, withAES := []byte("Features\t: fp asimd\n"), []byte("flags\t\t: fpu sse2 aes avx\n")
	has := func(ms ...fscrypt.Mode) func(context.Context, fscrypt.Mode) error {
		return func(_ context.Context, m fscrypt.Mode) error {
			for _, x := range ms {
				if x == m {
					return nil
				}
			}
			return fscrypt.ErrCipherMissing
		}
	}
	both := has(fscrypt.ModeAES, fscrypt.ModeAdiantum)
	for _, tc := range []struct {
		name, setting string
		cpu           []byte
		probe         func(context.Context, fscrypt.Mode) error
		want          fscrypt.Mode
	}{
		{"auto, AES CPU", "auto", withAES, both, fscrypt.ModeAES},
		{"auto, no AES: Adiantum as Android", "auto", noAES, both, fscrypt.ModeAdiantum},
		{"auto, no AES, kernel without Adiantum", "auto", noAES, has(fscrypt.ModeAES), fscrypt.ModeAES},
		{"aes set", "aes", noAES, both, fscrypt.ModeAES},
		{"adiantum set, even if missing", "adiantum", withAES, has(fscrypt.ModeAES), fscrypt.ModeAdiantum},
	} {
		var s storage
		if err := s.chooseMode(t.Context(), tc.setting, tc.cpu, tc.probe); err != nil || s.mode != tc.want || s.modeWhy == "" {
			t.Errorf("%s: mode %q (%s), %v; want %q", tc.name, s.mode, s.modeWhy, err, tc.want)
		}
	}
}
