package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ProbeUserNS reports why the kernel cannot give containers user
// namespaces, or nil when it can: /proc/self/ns/user exists,
// user.max_user_namespaces is above 0, and a child made with
// CLONE_NEWUSER and a one-id mapping (which is what a container needs)
// really starts.
func ProbeUserNS(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return fmt.Errorf("no /proc/self/ns/user: the kernel has no user namespaces (CONFIG_USER_NS): %w", err)
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n == 0 {
			return errors.New("user.max_user_namespaces is 0: user namespaces are switched off")
		}
	}
	// A real child: some kernels (and seccomp or SELinux policies) have
	// the file but refuse the clone, or refuse writing the map.
	pid, err := forkStopped(unix.CLONE_NEWUSER, IDMap{HostID: 65534, Size: 1})
	if err != nil {
		return fmt.Errorf("a child in a new user namespace could not start: %w", err)
	}
	killReap(pid)
	return nil
}

// PinUserNS makes a user namespace with mapping m and a network namespace
// owned by it, and bind-mounts them at userPath and netPath (files made if
// missing; an earlier pin there is replaced). Work's root then holds
// CAP_NET_ADMIN over its own network namespace (a VPN client can make its
// tunnel) and can mount its sysfs, and over nothing of the host's.
func PinUserNS(ctx context.Context, m IDMap, userPath, netPath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return err
	}
	for _, p := range []string{userPath, netPath} {
		if err := unpinNS(p); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("pin user namespace: %w", err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o444)
		if err != nil {
			return fmt.Errorf("pin user namespace: %w", err)
		}
		f.Close()
	}
	runtime.LockOSThread() // the tracer of the stopped child is this thread
	defer runtime.UnlockOSThread()
	pid, err := forkStopped(unix.CLONE_NEWUSER|unix.CLONE_NEWNET, m)
	if err != nil {
		os.Remove(userPath)
		os.Remove(netPath)
		return fmt.Errorf("pin user namespace at %s: %w", userPath, err)
	}
	defer killReap(pid)
	for _, p := range []struct{ ns, path string }{{"user", userPath}, {"net", netPath}} {
		src := fmt.Sprintf("/proc/%d/ns/%s", pid, p.ns)
		if err := unix.Mount(src, p.path, "", unix.MS_BIND, ""); err != nil {
			_ = unpinNS(userPath)
			_ = unpinNS(netPath)
			return fmt.Errorf("pin %s namespace at %s: %w", p.ns, p.path, err)
		}
	}
	return nil
}

// UnpinNS unmounts and removes a pinned namespace; a missing one is fine.
func UnpinNS(path string) error { return unpinNS(path) }

func unpinNS(path string) error {
	for {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break
			}
			return fmt.Errorf("unpin namespace %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	return nil
}

// forkStopped starts a child in new namespaces with m as its uid and gid
// map, stopped by ptrace at its exec so that none of its code runs: it
// only holds the namespaces while the caller pins them. /proc/self/exe is
// reached through the magic link, so the mapped root needs no search
// permission on the folder of the binary.
func forkStopped(flags uintptr, m IDMap) (int, error) {
	idm := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostID), Size: int(m.Size)}}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	fd := null.Fd()
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"workcell-userns-holder"}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{fd, fd, fd},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: idm,
			GidMappings: idm,
			// Root writes the map, so setgroups stays allowed (as LXD's):
			// Go's default "deny" would drop a bundle's additionalGids.
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return 0, err
	}
	return pid, nil
}

func killReap(pid int) {
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// NetNSOwnedBy reports whether the network namespace open as netFD is
// owned by the user namespace pinned at userPath.
func NetNSOwnedBy(netFD int, userPath string) bool {
	owner, err := unix.IoctlRetInt(netFD, unix.NS_GET_USERNS)
	if err != nil {
		return false
	}
	defer unix.Close(owner)
	var a, b unix.Stat_t
	if unix.Fstat(owner, &a) != nil || unix.Stat(userPath, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// NetNSOwnedByOurs reports whether the network namespace open as netFD is
// owned by the daemon's own user namespace.
func NetNSOwnedByOurs(netFD int) bool {
	// A kernel without user namespaces (GKI) has only the initial one,
	// and no ns/user file to compare with: every namespace is ours.
	if _, err := os.Stat("/proc/self/ns/user"); errors.Is(err, os.ErrNotExist) {
		return true
	}
	return NetNSOwnedBy(netFD, "/proc/self/ns/user")
}

// ShiftTree gives every file under dir (dir too) the host owner its
// container owner has under m: uid u becomes m.Shift(u), as a user
// namespace with m shows it as u again. Ids already in the range are kept,
// so a shift cut short is finished by running it again. chown clears the
// setuid and setgid bits, so the mode is set again after it; symlinks are
// not followed.
func ShiftTree(ctx context.Context, dir string, m IDMap) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("shift owners under %s: %w", dir, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return ShiftFile(path, m)
	})
}

// ShiftFile is ShiftTree for one file.
func ShiftFile(path string, m IDMap) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fmt.Errorf("shift owner of %s: %w", path, err)
	}
	uid, gid := m.Shift(st.Uid), m.Shift(st.Gid)
	if uid == st.Uid && gid == st.Gid {
		return nil
	}
	if err := unix.Lchown(path, int(uid), int(gid)); err != nil {
		return fmt.Errorf("shift owner of %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		if err := unix.Chmod(path, st.Mode&0o7777); err != nil {
			return fmt.Errorf("shift owner of %s: mode again: %w", path, err)
		}
	}
	return nil
}

// MountDeviceDir mounts a tmpfs at dir (made if missing) for the device
// nodes of containers in user namespaces, unless one is there: without
// nodev (which /run usually has, and a bind mount of a node keeps), with
// nosuid and noexec, and 0700: only host root reaches the nodes by path;
// the runtime opens a bind mount's source on the host, and a container
// then reaches its nodes through its own /dev only.
func MountDeviceDir(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("device folder: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.TMPFS_MAGIC && st.Flags&unix.ST_NODEV == 0 {
		var parent unix.Stat_t
		var self unix.Stat_t
		if unix.Stat(filepath.Dir(dir), &parent) == nil && unix.Stat(dir, &self) == nil && parent.Dev != self.Dev {
			return nil // ours, from an earlier daemon
		}
	}
	if err := unix.Mount("workcell-dev", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0700,size=64k,nr_inodes=4096"); err != nil {
		return fmt.Errorf("mount device folder %s: %w", dir, err)
	}
	return nil
}

// MakeDeviceNodes makes, in dir (a folder of MountDeviceDir's, 0700), a
// node for each of devs with the device's owner (container ids, shifted
// into m) and mode, default root's 0600, and returns the map of container
// path to node for HardenOptions.DeviceSources. A host node cannot serve:
// /dev/net/tun is host root's 0600, and chowning a shared node would hand
// it to one profile on the host too.
//
// A device in own (container path to host node) is the profile's own node
// already, and one that cannot be copied (a binderfs device opens only as
// itself): it must be that device, it is given the owner and mode instead,
// and its folder is made 0700 so no host uid reaches it by path.
func MakeDeviceNodes(ctx context.Context, dir string, devs []specs.LinuxDevice, m IDMap, own map[string]string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("device nodes: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device nodes: %w", err)
	}
	out := map[string]string{}
	fail := func(err error) (map[string]string, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	for i, d := range devs {
		var kind uint32
		switch d.Type {
		case "c", "u":
			kind = unix.S_IFCHR
		case "b":
			kind = unix.S_IFBLK
		default:
			return fail(fmt.Errorf("device %s: type %q cannot be bind-mounted: %w", d.Path, d.Type, ErrInvalidSpec))
		}
		uid, gid, mode := uint32(0), uint32(0), os.FileMode(0o600)
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		if d.FileMode != nil {
			mode = *d.FileMode & 0o666
		}
		if uid >= m.Size || gid >= m.Size {
			return fail(fmt.Errorf("device %s: owner %d:%d is outside the container's %d ids: %w", d.Path, uid, gid, m.Size, ErrInvalidSpec))
		}
		rdev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
		node := filepath.Join(dir, strconv.Itoa(i))
		if src, ok := own[d.Path]; ok {
			var st unix.Stat_t
			if err := unix.Lstat(src, &st); err != nil {
				return fail(fmt.Errorf("device node for %s: %w", d.Path, err))
			}
			if st.Mode&unix.S_IFMT != kind || st.Rdev != rdev {
				return fail(fmt.Errorf("device %s: %s is not device %d:%d: %w", d.Path, src, d.Major, d.Minor, ErrInvalidSpec))
			}
			if err := os.Chmod(filepath.Dir(src), 0o700); err != nil {
				return fail(fmt.Errorf("device node for %s: %w", d.Path, err))
			}
			node = src
		} else if err := unix.Mknod(node, kind|0o600, int(rdev)); err != nil {
			return fail(fmt.Errorf("device node for %s: %w", d.Path, err))
		}
		if err := unix.Chown(node, int(m.HostID+uid), int(m.HostID+gid)); err != nil {
			return fail(fmt.Errorf("device node for %s: %w", d.Path, err))
		}
		if err := unix.Chmod(node, uint32(mode)); err != nil {
			return fail(fmt.Errorf("device node for %s: %w", d.Path, err))
		}
		out[d.Path] = node
	}
	return out, nil
}

// rangeOf is the range a container runs under without a user namespace,
// or nil.
func rangeOf(h HardenOptions) *IDMap {
	if !ranged(h) {
		return nil
	}
	m := *h.UIDRange
	return &m
}

// rangeLabelKey records HardenOptions.UIDRange in the container's
// libcontainer state, so that exec as a given user is shifted into the
// range after the daemon restarted too.
const rangeLabelKey = "workcell.uid-range"

func (m IDMap) label() string { return fmt.Sprintf("%s=%d:%d", rangeLabelKey, m.HostID, m.Size) }

// rangeFromLabels reads the label; nil when it is absent or malformed
// (a malformed one cannot be written by the daemon).
func rangeFromLabels(labels []string) *IDMap {
	for _, l := range labels {
		v, ok := strings.CutPrefix(l, rangeLabelKey+"=")
		if !ok {
			continue
		}
		a, b, ok := strings.Cut(v, ":")
		host, err1 := strconv.ParseUint(a, 10, 32)
		size, err2 := strconv.ParseUint(b, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil
		}
		m := IDMap{HostID: uint32(host), Size: uint32(size)}
		if m.Validate() != nil {
			return nil
		}
		return &m
	}
	return nil
}

// shiftUser gives a container user its host ids in the range.
func (m IDMap) shiftUser(u User) (User, error) {
	out := User{}
	for _, p := range []struct {
		name string
		id   uint32
		dst  *uint32
	}{{"uid", u.UID, &out.UID}, {"gid", u.GID, &out.GID}} {
		if p.id >= m.Size {
			return User{}, fmt.Errorf("%s %d is outside the profile's %d ids: %w", p.name, p.id, m.Size, ErrInvalidSpec)
		}
		*p.dst = m.HostID + p.id
	}
	for _, g := range u.AdditionalGids {
		if g >= m.Size {
			return User{}, fmt.Errorf("additional gid %d is outside the profile's %d ids: %w", g, m.Size, ErrInvalidSpec)
		}
		out.AdditionalGids = append(out.AdditionalGids, m.HostID+g)
	}
	return out, nil
}
