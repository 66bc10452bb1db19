package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/workcell/workcell/images/fscrypt"
	"golang.org/x/sys/unix"
)

// MountOverlay mounts an overlay at target: lower[0] is the topmost
// read-only layer, upper takes the writes, work is overlayfs's scratch
// folder (same filesystem as upper, empty or overlay's own). With an
// encrypted upper the key must be added before the mount and stay until
// Unmount.
func MountOverlay(ctx context.Context, lower []string, upper, work, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(lower) == 0 {
		return errors.New("mount overlay: no lower layer")
	}
	for _, p := range append(append([]string{}, lower...), upper, work) {
		// The legacy mount data splits on ',' and ':' (and unescapes '\').
		if p == "" || strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("mount overlay on %s: unusable layer path %q", target, p)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("mount overlay on %s: %d layers make %d bytes of options, more than a page", target, len(lower), len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// Unmount unmounts target. Not mounted is fine; a busy mount is an error
// naming the processes that hold it (EBUSY stays in the chain).
func Unmount(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := mountAt(target)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if m == nil {
		return nil
	}
	err = unix.Unmount(target, 0)
	for errors.Is(err, unix.EINTR) {
		err = unix.Unmount(target, 0)
	}
	if errors.Is(err, unix.EBUSY) {
		if hs, herr := Holders(ctx, target); herr == nil && len(hs) > 0 {
			return fmt.Errorf("unmount %s: %w (held by %s)", target, err, describeHolders(hs))
		}
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// DataDir is a profile's encrypted data folder and the overlay folders in it.
type DataDir struct {
	Path  string // data/, with the fscrypt policy
	Upper string // data/upper
	Work  string // data/work
	Key   fscrypt.Identifier
}

// PrepareDataDir is PrepareDataDirMode with AES.
func PrepareDataDir(ctx context.Context, data string, key *fscrypt.Key) (DataDir, error) {
	return PrepareDataDirMode(ctx, data, key, fscrypt.ModeAES)
}

// PrepareDataDirMode readies data (a folder on an encrypting filesystem)
// for an overlay with an encrypted upper layer, in the order found to
// work: add the key, give data/ the policy of mode (a no-op if it has it
// already), then make upper/ and work/ in it so both share that one
// policy. A data/ that holds another policy is fscrypt.ErrPolicyMismatch;
// one whose parent is encrypted (Android's /data/misc) is
// fscrypt.ErrEncryptedParent, before any key is added. The caller keeps the
// key and removes it from the kernel when the profile locks.
func PrepareDataDirMode(ctx context.Context, data string, key *fscrypt.Key, mode fscrypt.Mode) (DataDir, error) {
	if err := EncryptedParent(ctx, data); err != nil {
		return DataDir{}, fmt.Errorf("prepare data dir: %w", err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return DataDir{}, fmt.Errorf("prepare data dir: %w", err)
	}
	id, err := fscrypt.AddKey(ctx, data, key)
	if err != nil {
		return DataDir{}, fmt.Errorf("prepare data dir %s: %w", data, err)
	}
	if err := fscrypt.SetPolicyMode(ctx, data, id, mode); err != nil {
		return DataDir{}, fmt.Errorf("prepare data dir: %w", err)
	}
	d := DataDir{Path: data, Upper: filepath.Join(data, "upper"), Work: filepath.Join(data, "work"), Key: id}
	for _, p := range []string{d.Upper, d.Work} {
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return DataDir{}, fmt.Errorf("prepare data dir: %w", err)
		}
	}
	return d, nil
}
