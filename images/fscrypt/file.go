package fscrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/workcell/workcell/internal/atomicfile"
)

// ReadWrappedKey reads and parses a wrapped-key file; errors name the file,
// which is only ever read here.
func ReadWrappedKey(path string) (*WrappedKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wrapped key %s: %w", path, err)
	}
	w, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("wrapped key %s: %w", path, err)
	}
	return w, nil
}

// LoadKey reads the wrapped key at path and opens it with p and passphrase.
func LoadKey(ctx context.Context, path string, p Protector, passphrase []byte) (*Key, error) {
	w, err := ReadWrappedKey(path)
	if err != nil {
		return nil, err
	}
	k, err := w.Open(ctx, p, passphrase)
	if err != nil {
		return nil, fmt.Errorf("wrapped key %s: %w", path, err)
	}
	return k, nil
}

// StoreKey seals key (see Seal) and writes it atomically to path, mode 0600.
func StoreKey(ctx context.Context, path string, p Protector, key *Key, passphrase []byte, opts ...SealOption) error {
	w, err := Seal(ctx, p, key, passphrase, opts...)
	if err != nil {
		return fmt.Errorf("wrapped key %s: %w", path, err)
	}
	return WriteFileAtomic(path, w.Marshal(), 0o600)
}

// WriteFileAtomic replaces path with data: a temp file in the same folder,
// fsync, rename, fsync the folder. Readers see the old or the new file,
// never a mix, also after a crash.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return atomicfile.Write(path, data, atomicfile.Options{Perm: perm})
}

func writeTemp(dir, base string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// Destroy crypto-erases a wrapped-key file: it overwrites the file's
// blocks with random bytes, fsyncs, unlinks it and fsyncs the folder. A
// missing file is not an error, so an interrupted wipe can run it again.
// On flash storage the overwrite is best effort (the device may remap
// blocks); what makes the data unreadable for good is that the key also
// left the kernel and the wrapped copy no longer opens.
func Destroy(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := openWriteNoFollow(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", path, err)
	}
	err = overwrite(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("destroy %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("destroy %s: %w", path, err)
	}
	return nil
}

func overwrite(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	// Round up to whole 4 KiB blocks so the tail of the last block goes too.
	n := (fi.Size() + 4095) &^ 4095
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return err
	}
	return f.Sync()
}
