package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images/fscrypt"
)

// keyDaemon is a daemon with just enough storage to wrap and unwrap keys.
func keyDaemon(t *testing.T) (*Daemon, *profile) {
	dir := t.TempDir()
	d := &Daemon{
		log:      slog.New(slog.DiscardHandler),
		profiles: map[string]*profile{},
		stor: &storage{
			keyRoot:  dir,
			dataRoot: dir,
			prot:     fscrypt.NewFileProtector(filepath.Join(dir, deviceKeyFile)),
		},
	}
	p := &profile{rec: record{Name: "work", State: api.StateLocked}}
	p.stor.throttle = DefaultConfig().Passphrase
	d.profiles["work"] = p
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	return d, p
}

func TestWrongPassphraseIsCountedAndNeverShown(t *testing.T) {
	ctx := context.Background()
	d, p := keyDaemon(t)
	key, err := fscrypt.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := fscrypt.StoreKey(ctx, d.stor.keyFile("work"), d.stor.prot, key, []byte("right horse"), fscrypt.WithArgon2(1, 64, 1)); err != nil {
		t.Fatal(err)
	}
	for i, guess := range []string{"wrong-guess-1", "wrong-guess-2", "wrong-guess-3"} {
		_, err := d.loadKey(ctx, p, []byte(guess))
		if !errors.Is(err, api.ErrPermission) {
			t.Fatalf("guess %d: error %v, want a permission error", i, err)
		}
		if strings.Contains(err.Error(), guess) {
			t.Fatalf("the error shows the passphrase: %v", err)
		}
		if p.stor.tries.Failures != i+1 || !strings.Contains(err.Error(), "wrong in a row") {
			t.Fatalf("guess %d: count %d, error %v", i, p.stor.tries.Failures, err)
		}
	}
	// No passphrase at all tests nothing: refused, not counted.
	if _, err := d.loadKey(ctx, p, nil); !errors.Is(err, api.ErrPermission) || !strings.Contains(err.Error(), "needs its passphrase") || p.stor.tries.Failures != 3 {
		t.Fatalf("empty passphrase: %v, count %d", err, p.stor.tries.Failures)
	}
	got, err := d.loadKey(ctx, p, []byte("right horse"))
	if err != nil || !got.Equal(key) {
		t.Fatalf("right passphrase: %v", err)
	}
	// The device key was not locked out by the failures.
	if _, err := os.Stat(d.stor.prot.(*fscrypt.FileProtector).Path()); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptWrappedKeyIsKept(t *testing.T) {
	ctx := context.Background()
	for name, damage := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"flipped":   func(b []byte) []byte { b[len(b)-3] ^= 1; return b },
		"empty":     func([]byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			d, p := keyDaemon(t)
			key, _ := fscrypt.NewKey()
			path := d.stor.keyFile("work")
			if err := fscrypt.StoreKey(ctx, path, d.stor.prot, key, nil); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			bad := damage(b)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := d.loadKey(ctx, p, nil)
			if err == nil || !strings.Contains(err.Error(), "kept") || !strings.Contains(err.Error(), path) {
				t.Fatalf("load: %v", err)
			}
			if _, err := d.SetPassphrase(ctx, "work", nil, []byte("new one")); err == nil {
				t.Fatal("set passphrase over a corrupt key file worked")
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, bad) {
				t.Fatal("the corrupt key file was changed")
			}
		})
	}
}

func TestMissingKeyWithDataIsRefused(t *testing.T) {
	d, p := keyDaemon(t)
	if err := os.MkdirAll(filepath.Join(d.stor.dataDir("work"), "upper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := d.loadKey(context.Background(), p, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("load = %v, want a refusal (a new key would not open the data)", err)
	}
	if _, err := os.Stat(d.stor.keyFile("work")); !os.IsNotExist(err) {
		t.Fatalf("a key file was made: %v", err)
	}
}

func TestParseJournal(t *testing.T) {
	for _, tc := range []struct {
		file, data string
		name       string
		ok         bool
	}{
		{"/j/wipe-work.json", `{"name":"work","data_dir":"/s/work/data","key_file":"/k"}`, "work", true},
		{"/j/wipe-work.json", `{"name":"work"`, "work", false},      // torn: still wipes work
		{"/j/wipe-work.json", `{"name":"other"}`, "work", false},    // the file name wins
		{"/j/wipe-Bad_Name.json", `{"name":"Bad_Name"}`, "", false}, // not a profile
		{"/j/other.json", `{}`, "", false},
	} {
		j, err := parseJournal(tc.file, []byte(tc.data))
		if j.Name != tc.name || (err == nil) != tc.ok {
			t.Errorf("parseJournal(%s, %s) = %+v, %v; want name %q ok %v", tc.file, tc.data, j, err, tc.name, tc.ok)
		}
	}
}

func TestWipeStepsAreKnown(t *testing.T) {
	want := "journal stop evict destroy files records"
	if got := strings.Join(wipeSteps, " "); got != want {
		t.Fatalf("wipe steps %q, want %q (the integration test injects a crash at each)", got, want)
	}
}

func TestConfigStorage(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"relative image", func(c *Config) { c.StoreImage, c.StoreSize = "store.img", 1<<30 }, "store_image"},
		{"no size", func(c *Config) { c.StoreImage = "/s.img" }, "store_size"},
		{"size alone", func(c *Config) { c.StoreSize = 1 << 30 }, "store_size"},
		{"both ways out", func(c *Config) {
			c.StoreImage, c.StoreSize, c.InsecureUnencryptedStorage = "/s.img", 1<<30, true
		}, "contradict"},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	c := DefaultConfig()
	c.StoreImage, c.StoreSize = "/var/lib/workcell.img", 1<<30
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
