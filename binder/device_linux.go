package binder

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device provisioning: a profile's binder context is a device of its own,
// made in binderfs where the kernel has it, or else one of the devices the
// binder_linux module made from its devices= list.

// binderfsDevice is struct binderfs_device of <linux/android/binderfs.h>.
type binderfsDevice struct {
	name  [binderfsMaxName + 1]byte
	major uint32
	minor uint32
}

const binderfsMaxName = 255

var (
	_ [264 - unsafe.Sizeof(binderfsDevice{})]byte
	_ [unsafe.Sizeof(binderfsDevice{}) - 264]byte
)

var iocCtlAdd = ioc(iocRead|iocWrite, 'b', 1, uint32(unsafe.Sizeof(binderfsDevice{})))

// DeviceNumbers returns the major and minor numbers of the binder character
// device at path.
func DeviceNumbers(path string) (major, minor uint32, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("binder: device %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return 0, 0, fmt.Errorf("binder: %s is not a character device", path)
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), nil
}

// BinderfsSupported reports whether the running kernel has binderfs
// (/proc/filesystems lists "binder").
func BinderfsSupported() bool {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "binder" {
			return true
		}
	}
	return false
}

// MountBinderfs mounts a binderfs instance at dir, making dir if needed;
// one already mounted there is kept.
func MountBinderfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("binder: binderfs mount point: %w", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err == nil && sfs.Type == unix.BINDERFS_SUPER_MAGIC {
		return nil
	}
	if err := unix.Mount("binder", dir, "binder", unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("binder: mount binderfs at %s: %w", dir, err)
	}
	return nil
}

// AddBinderfsDevice makes the device name in the binderfs mounted at dir
// (BINDER_CTL_ADD on its binder-control) and returns its path; an existing
// device of that name is kept.
func AddBinderfsDevice(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if name == "" || len(name) > binderfsMaxName || strings.ContainsAny(name, "/\x00") || name == "binder-control" || name == "features" {
		return "", fmt.Errorf("binder: binderfs device name %q is not usable", name)
	}
	if _, _, err := DeviceNumbers(path); err == nil {
		return path, nil
	}
	ctl, err := unix.Open(filepath.Join(dir, "binder-control"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("binder: open binder-control in %s: %w", dir, err)
	}
	defer unix.Close(ctl)
	var dev binderfsDevice
	copy(dev.name[:], name)
	if err := ioctl(ctl, iocCtlAdd, unsafe.Pointer(&dev)); err != nil {
		return "", fmt.Errorf("binder: BINDER_CTL_ADD %s in %s: %w", name, dir, err)
	}
	return path, nil
}

// RemoveBinderfsDevice deletes a device AddBinderfsDevice made; a missing
// one is not an error. Processes that have it open keep their context
// until they close it.
func RemoveBinderfsDevice(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("binder: remove binderfs device %s: %w", name, err)
	}
	return nil
}
