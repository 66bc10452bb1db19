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

// mountImage attaches imagePath to a free loop device with autoclear and
// mounts it; the device disappears when the filesystem is unmounted (or
// at once, if the mount fails and we close it).
func mountImage(ctx context.Context, imagePath, mountpoint string) error {
	img, err := os.OpenFile(imagePath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	defer img.Close()
	loop, dev, err := attachLoop(ctx, img)
	if err != nil {
		return fmt.Errorf("store %s: %w", imagePath, err)
	}
	defer loop.Close() // the mount keeps the device; autoclear frees it after umount
	if err := unix.Mount(dev, mountpoint, storeFSType, storeMountFlags, ""); err != nil {
		return fmt.Errorf("store %s: mount %s on %s: %w", imagePath, dev, mountpoint, err)
	}
	return nil
}

// attachLoop binds img to a free loop device with LOOP_CONFIGURE. Another
// process may grab the same free device between GET_FREE and CONFIGURE
// (EBUSY): try again with the next one.
func attachLoop(ctx context.Context, img *os.File) (*os.File, string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", err
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
		dev := fmt.Sprintf("/dev/loop%d", n)
		loop, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
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
