package fscrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	deviceKeySize = 32
	blobVersion   = 1
)

// FileProtector keeps the device key in a file that only its owner can read
// (mode 0600, owned by the process's effective uid: root for workcelld).
// Wrap creates the file on first use; Unwrap never does, since a new device
// key could not open anything. A file with the wrong size, type, owner or
// mode is refused and left as it is.
type FileProtector struct {
	path string
}

var _ Protector = (*FileProtector)(nil)

// NewFileProtector returns a protector whose device key lives at path.
func NewFileProtector(path string) *FileProtector { return &FileProtector{path: path} }

// Path is the device key file.
func (p *FileProtector) Path() string { return p.path }

// Wrap seals plaintext as version(1) || nonce(12) || AES-256-GCM ciphertext.
func (p *FileProtector) Wrap(ctx context.Context, plaintext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dk, err := p.load(true)
	if err != nil {
		return nil, err
	}
	defer zero(dk)
	aead, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+gcmNonce, 1+gcmNonce+len(plaintext)+aead.Overhead())
	out[0] = blobVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("device key wrap: nonce: %w", err)
	}
	return aead.Seal(out, out[1:1+gcmNonce], plaintext, []byte{blobVersion}), nil
}

// Unwrap opens a blob made by Wrap; any change to it is ErrCorrupt.
func (p *FileProtector) Unwrap(ctx context.Context, blob []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(blob) < 1+gcmNonce || blob[0] != blobVersion {
		return nil, fmt.Errorf("%w: not a device-key blob", ErrCorrupt)
	}
	dk, err := p.load(false)
	if err != nil {
		return nil, err
	}
	defer zero(dk)
	aead, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, blob[1:1+gcmNonce], blob[1+gcmNonce:], blob[:1])
	if err != nil {
		return nil, fmt.Errorf("%w: does not authenticate under the device key %s", ErrCorrupt, p.path)
	}
	return plain, nil
}

func (p *FileProtector) load(create bool) ([]byte, error) {
	dk, err := readDeviceKey(p.path)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return dk, err
	}
	if err := createDeviceKey(p.path); err != nil {
		return nil, err
	}
	return readDeviceKey(p.path)
}

func readDeviceKey(path string) ([]byte, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return nil, fmt.Errorf("device key %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("device key %s: %w", path, err)
	}
	if err := checkPrivate(fi); err != nil {
		return nil, fmt.Errorf("device key %s: %w", path, err)
	}
	if fi.Size() != deviceKeySize {
		return nil, fmt.Errorf("device key %s: %w: %d bytes, want %d", path, ErrCorrupt, fi.Size(), deviceKeySize)
	}
	dk := make([]byte, deviceKeySize)
	if _, err := io.ReadFull(f, dk); err != nil {
		zero(dk)
		return nil, fmt.Errorf("device key %s: %w: %w", path, ErrCorrupt, err)
	}
	return dk, nil
}

// checkPrivate refuses anything but a regular file that only we can access.
func checkPrivate(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file (%s)", ErrInsecureFile, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: mode %#o gives access to group or others", ErrInsecureFile, perm)
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("%w: owned by uid %d, not %d", ErrInsecureFile, uid, os.Geteuid())
	}
	return nil
}

// createDeviceKey writes a new key next to path and links it into place, so
// a crash leaves no partial key and a concurrent creator's key wins intact.
func createDeviceKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("device key %s: %w", path, err)
	}
	dk := make([]byte, deviceKeySize)
	defer zero(dk)
	if _, err := rand.Read(dk); err != nil {
		return fmt.Errorf("device key %s: %w", path, err)
	}
	tmp, err := writeTemp(dir, filepath.Base(path), dk, 0o600)
	if err != nil {
		return fmt.Errorf("device key %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("device key %s: %w", path, err)
	}
	return syncDir(dir)
}
