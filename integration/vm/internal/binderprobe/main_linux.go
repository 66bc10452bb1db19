// Command binderprobe runs in the integration/vm guest and proves that the
// binder driver the binder issue builds on is there: it opens every
// binder_linux device, checks the protocol version, maps the receive
// buffer, and becomes the context manager of the profile's device. It is
// pure Go (x/sys/unix ioctls, constants checked against
// <linux/android/binder.h>) and built with CGO_ENABLED=0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// From <linux/android/binder.h>, 64-bit layouts.
const (
	binderVersion           = 0xc0046209 // _IOWR('b', 9, struct binder_version)
	binderSetContextMgrExt  = 0x4018620d // _IOW('b', 13, struct flat_binder_object)
	binderCurrentProtocol   = 8          // BINDER_CURRENT_PROTOCOL_VERSION without BINDER_IPC_32BIT
	binderTypeBinder        = 0x73622a85 // B_PACK_CHARS('s', 'b', '*', B_TYPE_LARGE)
	flatBinderFlagAcceptFds = 0x100
	mapSize                 = 128 << 10
)

// flatBinderObject is struct flat_binder_object (24 bytes).
type flatBinderObject struct {
	typ    uint32
	flags  uint32
	binder uint64
	cookie uint64
}

var _ [24 - unsafe.Sizeof(flatBinderObject{})]byte

func main() {
	devices := flag.String("devices", "/dev/binder,/dev/workbinder", "binder devices to probe")
	manager := flag.String("manager", "/dev/workbinder", "the device to become context manager of")
	flag.Parse()
	failed := false
	check := func(what string, err error) {
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", what, err)
			return
		}
		fmt.Printf("ok   %s\n", what)
	}
	var fds []int
	for _, dev := range strings.Split(*devices, ",") {
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		check("open "+dev, err)
		if err != nil {
			continue
		}
		fds = append(fds, fd)
		v, err := version(fd)
		if err == nil && v != binderCurrentProtocol {
			err = fmt.Errorf("protocol %d, want %d", v, binderCurrentProtocol)
		}
		check(fmt.Sprintf("%s BINDER_VERSION = %d", dev, v), err)
		// The driver writes transaction buffers into this mapping; user
		// space only reads it.
		_, err = unix.Mmap(fd, 0, mapSize, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
		check(dev+" mmap receive buffer", err)
	}
	if !failed {
		probeManager(*manager, check)
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if failed {
		fmt.Println("binderprobe: FAIL")
		os.Exit(1)
	}
	fmt.Println("binderprobe: PASS")
}

// probeManager becomes the context manager of dev and checks that the
// context now refuses a second manager, while another device's context
// stays free: each device is its own context.
func probeManager(dev string, check func(string, error)) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	check("open "+dev+" for the manager", err)
	if err != nil {
		return
	}
	check(dev+" BINDER_SET_CONTEXT_MGR_EXT", setContextMgr(fd))
	second, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	check("open "+dev+" again", err)
	if err != nil {
		return
	}
	defer unix.Close(second)
	err = setContextMgr(second)
	if errors.Is(err, unix.EBUSY) {
		err = nil
	} else if err == nil {
		err = errors.New("a second manager was accepted")
	}
	check(dev+" refuses a second context manager (EBUSY)", err)
	if dev != "/dev/binder" {
		other, err := unix.Open("/dev/binder", unix.O_RDWR|unix.O_CLOEXEC, 0)
		check("open /dev/binder", err)
		if err == nil {
			check("/dev/binder has its own context manager slot", setContextMgr(other))
			unix.Close(other)
		}
	}
}

func version(fd int) (int32, error) {
	var v int32
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), binderVersion, uintptr(unsafe.Pointer(&v))); errno != 0 {
		return 0, fmt.Errorf("BINDER_VERSION: %w", errno)
	}
	return v, nil
}

func setContextMgr(fd int) error {
	obj := flatBinderObject{typ: binderTypeBinder, flags: flatBinderFlagAcceptFds}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), binderSetContextMgrExt, uintptr(unsafe.Pointer(&obj))); errno != 0 {
		return fmt.Errorf("BINDER_SET_CONTEXT_MGR_EXT: %w", errno)
	}
	return nil
}
