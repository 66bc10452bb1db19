package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopNodes says where the platform keeps loop device nodes and where the
// daemon may make one of its own when it finds none.
type loopNodes struct {
	// sysBlock is sysfs's block folder (/sys/block), where loopN/dev
	// holds the device's major:minor.
	sysBlock string
	// dirs are searched in order for a block node with that number:
	// /dev (Linux) and /dev/block (Android).
	dirs []string
	// makeDir is where a node is made when no dir has one; it is removed
	// as soon as it is open. "" means none may be made.
	makeDir string
}

var defaultLoopNodes = loopNodes{sysBlock: "/sys/block", dirs: []string{"/dev", "/dev/block"}}

// mountImage attaches imagePath to a free loop device with autoclear and
// mounts it; the device disappears when the filesystem is unmounted (or
// at once, if the mount fails and we close it).
func mountImage(ctx context.Context, imagePath, mountpoint string, nodes loopNodes) error {
	img, err := os.OpenFile(imagePath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	defer img.Close()
	loop, dev, err := attachLoop(ctx, img, nodes)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	defer loop.Close() // the mount keeps the device; autoclear frees it after umount
	// A node made for the moment is already removed: mount through the
	// open device instead (the mount is found again by device number).
	src := dev
	if nodes.makeDir != "" && strings.HasPrefix(dev, nodes.makeDir+"/") {
		src = fmt.Sprintf("/proc/self/fd/%d", loop.Fd())
	}
	if err := unix.Mount(src, mountpoint, storeFSType, storeMountFlags, ""); err != nil {
		return fmt.Errorf("store %s: mount %s on %s: %w", imagePath, dev, mountpoint, err)
	}
	return nil
}

// attachLoop binds img to a free loop device with LOOP_CONFIGURE. The
// device comes from /dev/loop-control (LOOP_CTL_GET_FREE makes one if
// none is free), its node from wherever the platform keeps it. Another
// process may grab the same free device between GET_FREE and CONFIGURE
// (EBUSY): try again with the next one.
func attachLoop(ctx context.Context, img *os.File, nodes loopNodes) (*os.File, string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("loop devices: %w (the kernel needs CONFIG_BLK_DEV_LOOP)", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		loop, dev, err := openLoop(n, nodes)
		if err != nil {
			return nil, "", err
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img.Name())
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, loop.Fd(), unix.LOOP_CONFIGURE, uintptr(unsafe.Pointer(&cfg)))
		if errno == 0 {
			return loop, dev, nil
		}
		loop.Close()
		if errno != unix.EBUSY || attempt >= 10 {
			return nil, "", fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, errno)
		}
	}
}

// openLoop opens loop device n: its node is found by device number (the
// name alone proves nothing), or made in nodes.makeDir and removed once
// open.
func openLoop(n int, nodes loopNodes) (*os.File, string, error) {
	name := fmt.Sprintf("loop%d", n)
	rdev, err := loopDevNumber(nodes.sysBlock, name)
	if err != nil {
		return nil, "", err
	}
	if path := findBlockNode(nodes.dirs, name, rdev); path != "" {
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, "", fmt.Errorf("open %s: %w", path, err)
		}
		return f, path, nil
	}
	if nodes.makeDir == "" {
		return nil, "", fmt.Errorf("no block node of %s (%d:%d) in %s", name, unix.Major(rdev), unix.Minor(rdev), strings.Join(nodes.dirs, ", "))
	}
	if err := os.MkdirAll(nodes.makeDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("loop node folder: %w", err)
	}
	path := filepath.Join(nodes.makeDir, name)
	_ = os.Remove(path) // a stale one of a daemon that died here
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev)); err != nil {
		return nil, "", fmt.Errorf("make loop node %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	os.Remove(path)
	if err != nil {
		return nil, "", fmt.Errorf("open loop node %s (made by the daemon; a nodev mount refuses it): %w", path, err)
	}
	return f, path, nil
}

// loopDevNumber reads the device number of loop device name from sysfs.
func loopDevNumber(sysBlock, name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(sysBlock, name, "dev"))
	if err != nil {
		return 0, fmt.Errorf("loop device %s: %w", name, err)
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		return 0, fmt.Errorf("loop device %s: sysfs dev %q: %w", name, b, err)
	}
	return unix.Mkdev(maj, min), nil
}

// findBlockNode returns the first dirs/name that is a block device with
// number rdev, or "".
func findBlockNode(dirs []string, name string, rdev uint64) string {
	for _, d := range dirs {
		var st unix.Stat_t
		p := filepath.Join(d, name)
		if err := unix.Stat(p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == rdev {
			return p
		}
	}
	return ""
}

// loopBackingDev returns the file behind the loop device with this number.
func loopBackingDev(major, minor int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", major, minor))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), nil
}

// loopBacking returns the file behind a loop device such as /dev/loop3.
func loopBacking(dev string) (string, error) {
	name := filepath.Base(dev)
	if !strings.HasPrefix(name, "loop") {
		return "", fmt.Errorf("%s is not a loop device", dev)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), nil
}

// loopDeviceOf returns a loop device that imagePath is attached to, or "".
func loopDeviceOf(imagePath string) (string, error) {
	devs, err := filepath.Glob("/sys/block/loop*")
	if err != nil {
		return "", err
	}
	for _, d := range devs {
		backing, err := loopBacking(d)
		if errors.Is(err, os.ErrNotExist) {
			continue // not attached
		}
		if err == nil && sameFile(backing, imagePath) {
			return "/dev/" + filepath.Base(d), nil
		}
	}
	return "", nil
}
