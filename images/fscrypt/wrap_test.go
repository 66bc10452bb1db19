package fscrypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cheap keeps argon2id fast in tests; the format stores whatever was used.
var cheap = WithArgon2(1, 64, 1)

func testProtector(t *testing.T) *FileProtector {
	t.Helper()
	return NewFileProtector(filepath.Join(t.TempDir(), "device.key"))
}

func mustKey(t *testing.T) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

func TestWrapRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		passphrase string
	}{
		{"device key only", ""},
		{"device key and passphrase", "correct horse battery staple"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, key := testProtector(t), mustKey(t)
			w, err := Seal(ctx, p, key, []byte(tc.passphrase), cheap)
			if err != nil {
				t.Fatal(err)
			}
			if w.HasPassphrase() != (tc.passphrase != "") {
				t.Fatalf("HasPassphrase = %v", w.HasPassphrase())
			}
			data := w.Marshal()
			if bytes.Contains(data, key.raw[:]) {
				t.Fatal("wrapped file contains the key in the clear")
			}
			w2, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := w2.Open(ctx, p, []byte(tc.passphrase))
			if err != nil {
				t.Fatal(err)
			}
			defer got.Wipe()
			if !got.Equal(key) {
				t.Fatal("unwrapped key differs")
			}
		})
	}
}

func TestDefaultArgon2RoundTrip(t *testing.T) {
	ctx := context.Background()
	p, key := testProtector(t), mustKey(t)
	w, err := Seal(ctx, p, key, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if a := w.Argon2; a.Time != 3 || a.MemoryKiB != 64<<10 || a.Threads != 4 || len(a.Salt) != 16 {
		t.Fatalf("argon2 params %+v", w.Argon2)
	}
	got, err := w.Open(ctx, p, []byte("pw"))
	if err != nil || !got.Equal(key) {
		t.Fatalf("open: %v", err)
	}
}

// Every single-byte change to a wrapped-key file must be caught as
// corruption, never taken for a wrong passphrase or accepted.
func TestWrapTamperDetected(t *testing.T) {
	ctx := context.Background()
	for _, pass := range []string{"", "pass"} {
		t.Run(fmt.Sprintf("passphrase=%v", pass != ""), func(t *testing.T) {
			p, key := testProtector(t), mustKey(t)
			w, err := Seal(ctx, p, key, []byte(pass), cheap)
			if err != nil {
				t.Fatal(err)
			}
			data := w.Marshal()
			for i := range data {
				for _, flip := range []byte{0x01, 0x80} {
					bad := bytes.Clone(data)
					bad[i] ^= flip
					wk, err := Parse(bad)
					if err == nil {
						var k *Key
						k, err = wk.Open(ctx, p, []byte(pass))
						k.Wipe()
					}
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("byte %d ^%#x: err = %v, want ErrCorrupt", i, flip, err)
					}
				}
			}
		})
	}
}

func TestWrongPassphrase(t *testing.T) {
	ctx := context.Background()
	p, key := testProtector(t), mustKey(t)
	w, err := Seal(ctx, p, key, []byte("right"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, pass string }{{"wrong", "hunter2-not-it"}, {"missing", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Open(ctx, p, []byte(tc.pass))
			if !errors.Is(err, ErrWrongPassphrase) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrWrongPassphrase only", err)
			}
			if tc.pass != "" && strings.Contains(err.Error(), tc.pass) {
				t.Fatalf("error %q shows the passphrase", err)
			}
		})
	}
}

func TestOtherDeviceKeyIsCorrupt(t *testing.T) {
	ctx := context.Background()
	key := mustKey(t)
	w, err := Seal(ctx, testProtector(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := testProtector(t)
	if _, err := other.Wrap(ctx, []byte("x")); err != nil { // creates its key
		t.Fatal(err)
	}
	if _, err := w.Open(ctx, other, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestTruncatedFile(t *testing.T) {
	ctx := context.Background()
	p, key := testProtector(t), mustKey(t)
	path := filepath.Join(t.TempDir(), "profile.key")
	if err := StoreKey(ctx, path, p, key, []byte("pw"), cheap); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		if err := os.WriteFile(path, full[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKey(ctx, path, p, []byte("pw"))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%d of %d bytes: err = %v, want ErrCorrupt naming %s", n, len(full), err, path)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, full[:n]) {
			t.Fatalf("%d bytes: the reader changed the file", n)
		}
	}
	if err := os.WriteFile(path, append(bytes.Clone(full), 0), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(ctx, path, p, []byte("pw")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

func TestKeyIsRedacted(t *testing.T) {
	key := mustKey(t)
	secret := hex.EncodeToString(key.raw[:4])
	holder := struct{ K *Key }{key}
	byValue := struct{ K Key }{*key}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		for _, arg := range []any{key, *key, holder, byValue, []*Key{key}} {
			out := fmt.Sprintf(verb, arg)
			if strings.Contains(strings.ToLower(out), secret) || strings.Contains(out, fmt.Sprint(key.raw[0], " ", key.raw[1])) {
				t.Fatalf("%s of %T prints key bytes: %s", verb, arg, out)
			}
		}
	}
}

func TestFileProtectorDeviceKeyFile(t *testing.T) {
	ctx := context.Background()
	t.Run("created 0600 on first wrap", func(t *testing.T) {
		p := testProtector(t)
		if _, err := p.Wrap(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p.Path())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() != deviceKeySize {
			t.Fatalf("device key mode %v size %d", fi.Mode(), fi.Size())
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p.Path()), ".*tmp*")); len(left) > 0 {
			t.Fatalf("temp files left: %v", left)
		}
	})
	t.Run("unwrap never creates it", func(t *testing.T) {
		p := testProtector(t)
		if _, err := p.Unwrap(ctx, append([]byte{blobVersion}, make([]byte, 40)...)); err == nil {
			t.Fatal("unwrap without a device key succeeded")
		}
		if _, err := os.Stat(p.Path()); !os.IsNotExist(err) {
			t.Fatalf("device key file appeared: %v", err)
		}
	})
	for _, tc := range []struct {
		name string
		mode os.FileMode
		size int
		want error
	}{
		{"group readable", 0o640, deviceKeySize, ErrInsecureFile},
		{"world readable", 0o604, deviceKeySize, ErrInsecureFile},
		{"short", 0o600, deviceKeySize - 1, ErrCorrupt},
		{"long", 0o600, deviceKeySize + 1, ErrCorrupt},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			p := testProtector(t)
			orig := bytes.Repeat([]byte{7}, tc.size)
			if err := os.WriteFile(p.Path(), orig, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p.Path(), tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := p.Wrap(ctx, []byte("x"))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), p.Path()) {
				t.Fatalf("err = %v, want %v naming the file", err, tc.want)
			}
			if after, _ := os.ReadFile(p.Path()); !bytes.Equal(after, orig) {
				t.Fatal("refused device key file was changed")
			}
		})
	}
}

func TestWriteFileAtomicAndDestroy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Fatalf("read %q, want %q", got, content)
		}
	}
	// A second link shows what Destroy left in the file's blocks.
	peek := filepath.Join(t.TempDir(), "peek")
	if err := os.Link(path, peek); err != nil {
		t.Fatal(err)
	}
	if err := Destroy(ctx, path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(peek); bytes.Contains(b, []byte("second")) || len(b) < len("second, longer") {
		t.Fatalf("destroyed file still holds its content: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	if err := Destroy(ctx, path); err != nil {
		t.Fatalf("destroy of a missing file (resumed wipe): %v", err)
	}
}

func FuzzParseWrappedKey(f *testing.F) {
	ctx := context.Background()
	key, _ := NewKey()
	p := NewFileProtector(filepath.Join(f.TempDir(), "device.key"))
	plain, _ := Seal(ctx, p, key, nil)
	pass, _ := Seal(ctx, p, key, []byte("pw"), cheap)
	key.Wipe()
	for _, seed := range [][]byte{
		plain.Marshal(), pass.Marshal(),
		pass.Marshal()[:20], plain.Marshal()[:9],
		nil, []byte(magic), []byte(magic + "\x01\x00\xff\xff\xff\xff"),
		[]byte(magic + "\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parse error %v is not ErrCorrupt", err)
			}
			return
		}
		// The format is canonical: what parses re-encodes to the same bytes.
		if !bytes.Equal(w.Marshal(), data) {
			t.Fatalf("Marshal(Parse(x)) != x")
		}
	})
}
