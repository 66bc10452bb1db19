package images

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/internal/atomicfile"
)

// ErrBadImage: an existing store image is not what was asked for (size,
// filesystem, features). Nothing was changed.
var ErrBadImage = errors.New("unusable store image")

// ext4 superblock fields (fs/ext4/ext4.h): the superblock starts at 1024.
const (
	sbOffset         = 1024
	sbMagicOff       = 0x38
	sbIncompatOff    = 0x60
	sbSize           = 1024
	ext4Magic        = 0xEF53
	incompatEncrypt  = 0x10000
	storeFSType      = "ext4"
	storeMountFlags  = unix.MS_NOSUID | unix.MS_NODEV
	storeImageSuffix = ".tmp"
)

// StoreOption changes how EnsureStoreWith finds loop device nodes.
type StoreOption func(*loopNodes)

// WithLoopNodeDir lets EnsureStoreWith make a loop device node in dir
// (the daemon's own run folder, on a mount without nodev) when the
// platform keeps none for the device /dev/loop-control handed out; the
// node is removed as soon as it is open. Default: none is made.
func WithLoopNodeDir(dir string) StoreOption { return func(n *loopNodes) { n.makeDir = dir } }

// withLoopNodeDirs replaces where nodes are searched (tests).
func withLoopNodeDirs(dirs ...string) StoreOption { return func(n *loopNodes) { n.dirs = dirs } }

// EnsureStore is EnsureStoreWith without options.
func EnsureStore(ctx context.Context, imagePath string, size int64, mountpoint string) error {
	return EnsureStoreWith(ctx, imagePath, size, mountpoint)
}

// EnsureStoreWith makes sure the ext4 image at imagePath is loop-mounted
// at mountpoint. A missing image is created sparse with size bytes and
// formatted with mkfs.ext4 -O encrypt, or mke2fs -t ext4 -O encrypt where
// there is no mkfs.ext4 (AOSP ships only mke2fs), under a temporary name,
// so a crash never leaves a half-made image. An existing image is checked,
// never formatted: a size other than size, a filesystem that is not ext4,
// or ext4 without the encrypt feature is refused with ErrBadImage. If
// mountpoint already has this image mounted, it does nothing. The loop
// device comes from /dev/loop-control, its node from /dev or /dev/block
// (found by device number), or see WithLoopNodeDir.
func EnsureStoreWith(ctx context.Context, imagePath string, size int64, mountpoint string, opts ...StoreOption) error {
	nodes := defaultLoopNodes
	for _, o := range opts {
		o(&nodes)
	}
	if size <= 0 {
		return fmt.Errorf("store %s: size %d: must be positive", imagePath, size)
	}
	imagePath, err := filepath.Abs(imagePath)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	if mounted, err := storeMounted(imagePath, mountpoint); err != nil || mounted {
		return err
	}
	switch _, err := os.Lstat(imagePath); {
	case errors.Is(err, fs.ErrNotExist):
		if err := createImage(ctx, imagePath, size); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	if err := checkImage(imagePath, size); err != nil {
		return err
	}
	if dev, err := loopDeviceOf(imagePath); err != nil {
		return err
	} else if dev != "" {
		// Two mounts of one ext4 through two loop devices would corrupt it.
		return fmt.Errorf("store %s: %w: already attached to %s", imagePath, ErrBadImage, dev)
	}
	if err := os.MkdirAll(mountpoint, 0o700); err != nil {
		return fmt.Errorf("store mountpoint: %w", err)
	}
	return mountImage(ctx, imagePath, mountpoint, nodes)
}

// ReleaseStore unmounts the store at mountpoint; the loop device goes away
// with it (autoclear). Not mounted is fine. A busy store is an error naming
// the processes that hold it.
func ReleaseStore(ctx context.Context, mountpoint string) error {
	return Unmount(ctx, mountpoint)
}

// storeMounted reports whether imagePath is what is mounted at mountpoint,
// and refuses anything else mounted there.
func storeMounted(imagePath, mountpoint string) (bool, error) {
	m, err := mountAt(mountpoint)
	if err != nil || m == nil {
		return false, err
	}
	backing, err := loopBackingDev(m.Major, m.Minor)
	if err == nil && sameFile(backing, imagePath) {
		return true, nil
	}
	return false, fmt.Errorf("store mountpoint %s: %s (%s) is mounted there, not %s", mountpoint, m.Source, m.FSType, imagePath)
}

// mountAt returns the topmost mount exactly at path, or nil.
func mountAt(path string) (*mountinfo.Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(abs))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	return ms[len(ms)-1], nil
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func createImage(ctx context.Context, imagePath string, size int64) error {
	dir := filepath.Dir(imagePath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(imagePath)+storeImageSuffix+"-*")
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename this removes nothing
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store %s: make sparse file: %w", imagePath, err)
	}
	argv, err := MkfsCommand(exec.LookPath)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], tmp)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("store %s: %s: %w: %s", imagePath, argv[0], err, bytes.TrimSpace(out))
	}
	if f, err = os.Open(tmp); err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, imagePath)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	return nil
}

// MkfsCommand is the command (without the image's path) that makes an
// ext4 filesystem with the encrypt feature: mkfs.ext4, else mke2fs -t ext4
// (AOSP has no mkfs.ext4), as lookPath (exec.LookPath) finds them.
func MkfsCommand(lookPath func(string) (string, error)) ([]string, error) {
	// -E nodiscard: discarding a sparse file only punches holes it already has.
	opts := []string{"-q", "-F", "-O", "encrypt", "-E", "nodiscard"}
	if p, err := lookPath("mkfs.ext4"); err == nil {
		return append([]string{p}, opts...), nil
	}
	if p, err := lookPath("mke2fs"); err == nil {
		return append([]string{p, "-t", "ext4"}, opts...), nil
	}
	return nil, errors.New("neither mkfs.ext4 nor mke2fs is on PATH: install e2fsprogs (on Android, /system/bin/mke2fs)")
}

// checkImage refuses an image that is not a regular file of size bytes
// holding ext4 with the encrypt feature. It only reads.
func checkImage(imagePath string, size int64) error {
	f, err := os.Open(imagePath)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("store %s: %w: not a regular file", imagePath, ErrBadImage)
	}
	if fi.Size() != size {
		return fmt.Errorf("store %s: %w: size is %d bytes, want %d (resize it yourself or pass its size)", imagePath, ErrBadImage, fi.Size(), size)
	}
	sb := make([]byte, sbSize)
	if _, err := f.ReadAt(sb, sbOffset); err != nil {
		return fmt.Errorf("store %s: %w: no ext4 superblock: %w", imagePath, ErrBadImage, err)
	}
	if binary.LittleEndian.Uint16(sb[sbMagicOff:]) != ext4Magic {
		return fmt.Errorf("store %s: %w: not an ext4 filesystem", imagePath, ErrBadImage)
	}
	if binary.LittleEndian.Uint32(sb[sbIncompatOff:])&incompatEncrypt == 0 {
		return fmt.Errorf("store %s: %w: ext4 without the encrypt feature (tune2fs -O encrypt %s)", imagePath, ErrBadImage, imagePath)
	}
	return nil
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
