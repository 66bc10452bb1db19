//go:build linux && (amd64 || arm64)

package binder

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The node helper's sandbox. A helper parses every parcel a work app (or,
// for an export, the host) sends it, so it must not be root: it runs as
// an unprivileged uid with no capabilities in any set, no_new_privs, a
// seccomp allow-list, and in a cgroup with memory and pids limits.
//
// The binder driver dictates the order. It takes the sender's euid of a
// transaction from the opening process's thread-group leader at the time
// of the call (task_euid(proc->tsk) in drivers/android/binder.c since
// "binder: fix test regression due to sender_euid change", 2021), and only
// the process (the same leader and the same mm, binder_mmap and
// binder_alloc_mmap_handler) that opened the device may map it, so the
// helper must open its devices after it is unprivileged and keep its
// image. Capabilities are per thread, and a Go program has many threads
// before its main runs, so the helper starts as root, and on its main
// thread drops to the uid, clears every capability set including the
// bounding set and sets no_new_privs, then executes itself again: only
// execve leaves a process whose every thread has the dropped credentials.
// The new image opens and maps the devices (NewNodeHelpers made them open
// to the helper's gid: helperDevice), installs the seccomp filter on all
// its threads and serves. Host services see the helper's uid as the
// caller, never 0.

// HelperSandbox is what node helpers run under.
type HelperSandbox struct {
	// UID and GID the helper runs as; never 0.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// NodeDir is a folder where NewNodeHelpers makes device nodes the
	// helpers can open (root:GID, 0660) for devices they could not; its
	// filesystem must allow devices (not nodev), its parents must be
	// open to pass through.
	NodeDir string `json:"-"`
	// Cgroup is the cgroup v2 directory (under the cgroup2 mount) all the
	// profile's helpers run in, made with these limits; empty: none.
	Cgroup    string `json:"-"`
	MemoryMax int64  `json:"-"` // bytes; 0: no limit
	PidsMax   int64  `json:"-"` // tasks; 0: no limit
}

// Validate checks the uid and gid and the limits.
func (s HelperSandbox) Validate() error {
	switch {
	case s.UID <= 0 || s.UID > 1<<31-2:
		return fmt.Errorf("binder: node helper uid %d: must be an unprivileged uid (not 0)", s.UID)
	case s.GID <= 0 || s.GID > 1<<31-2:
		return fmt.Errorf("binder: node helper gid %d: must be an unprivileged gid (not 0)", s.GID)
	case s.MemoryMax < 0:
		return fmt.Errorf("binder: node helper memory limit %d: must not be negative", s.MemoryMax)
	case s.PidsMax < 0:
		return fmt.Errorf("binder: node helper pids limit %d: must not be negative", s.PidsMax)
	case s.Cgroup != "" && !filepath.IsAbs(s.Cgroup):
		return fmt.Errorf("binder: node helper cgroup %q: must be an absolute path", s.Cgroup)
	}
	return nil
}

// Environment of a node helper: which stage it is in, and the spec the
// first stage hands the second.
const (
	helperStageEnv = "WORKCELL_BINDER_NODE_STAGE"
	helperSpecEnv  = "WORKCELL_BINDER_NODE_SPEC"
	stageOpen      = "open"  // root: open the devices, drop, exec
	stageServe     = "serve" // unprivileged: map, filter, serve
)

func init() {
	// The first stage must execute itself from the thread-group leader:
	// the driver keeps the leader that opened the device, and an execve
	// from another thread would replace it. Locking in init keeps main
	// on the main thread.
	if os.Getenv(helperStageEnv) == stageOpen {
		runtime.LockOSThread()
	}
}

// enterSandbox is the first stage: it drops to the sandbox's uid on this
// thread and executes this program again as the second stage, which opens
// the devices. It returns only on failure.
func enterSandbox(spec HelperSpec) error {
	sb := *spec.Sandbox
	if err := sb.Validate(); err != nil {
		return err
	}
	if os.Getpid() != unix.Gettid() {
		return errors.New("binder: node helper: the sandbox must be entered on the main thread")
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := dropPrivileges(sb.UID, sb.GID); err != nil {
		return err
	}
	env := []string{helperStageEnv + "=" + stageServe, helperSpecEnv + "=" + string(raw)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperStageEnv+"=") && !strings.HasPrefix(kv, helperSpecEnv+"=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("binder: node helper: execute the sandboxed stage: %w", err)
}

// dropPrivileges leaves the calling thread (only it: the caller executes
// next) with uid and gid, no supplementary groups, empty bounding,
// ambient, inheritable, permitted and effective capability sets, and
// no_new_privs.
func dropPrivileges(uid, gid int) error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("binder: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("binder: clear the ambient capabilities: %w", err)
	}
	// Raw calls change this thread alone, which is the point: see above.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("binder: drop supplementary groups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("binder: setresgid %d: %w", gid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("binder: setresuid %d: %w", uid, e)
	}
	// Leaving uid 0 cleared the permitted and effective sets; the
	// inheritable set stays unless cleared.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("binder: clear the capability sets: %w", e)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("binder: set no_new_privs: %w", err)
	}
	return nil
}

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// helperSyscalls are what a Go program serving binder calls needs once its
// devices are open and mapped: the runtime (threads, signals, memory,
// timers, the netpoller), reads and writes on its pipes, and ioctl on the
// devices. Everything else (execve, open, socket, ptrace, mount, kill,
// setuid, bpf, ...) fails with EPERM.
var helperSyscalls = append([]uintptr{
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV, unix.SYS_PREAD64, unix.SYS_PWRITE64,
	unix.SYS_CLOSE, unix.SYS_IOCTL, unix.SYS_FCNTL, unix.SYS_DUP3, unix.SYS_PIPE2, unix.SYS_LSEEK,
	unix.SYS_FSTAT, unix.SYS_NEWFSTATAT,
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_MREMAP, unix.SYS_BRK,
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_TGKILL, unix.SYS_GETTID, unix.SYS_GETPID,
	unix.SYS_FUTEX, unix.SYS_CLONE, unix.SYS_CLONE3, unix.SYS_SET_ROBUST_LIST, unix.SYS_RSEQ,
	unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_RESTART_SYSCALL,
	unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP,
	unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD2,
	unix.SYS_PPOLL, unix.SYS_GETRANDOM, unix.SYS_PRLIMIT64, unix.SYS_GETRLIMIT,
	unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
}, archSyscalls...)

// seccompFilter is a classic BPF program that kills a process calling
// through another architecture's syscall table, answers EPERM to every
// syscall outside allowed, and lets allowed through.
func seccompFilter(allowed []uintptr) []unix.SockFilter {
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
	)
	n := len(allowed)
	// seccomp_data: nr at 0, arch at 4.
	prog := []unix.SockFilter{
		{Code: ldAbs, K: 4},
		{Code: jeq, Jt: 1, K: auditArch},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ldAbs, K: 0},
		// x32 calls on amd64 set bit 30: never allowed (no arch has
		// syscall numbers that high).
		{Code: jge, Jt: uint8(n), K: 0x40000000},
	}
	for i, nr := range allowed {
		prog = append(prog, unix.SockFilter{Code: jeq, Jt: uint8(n - i), K: uint32(nr)})
	}
	return append(prog,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW})
}

// installSeccomp loads the helper's filter on every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC); no_new_privs must be set.
func installSeccomp() error {
	if len(helperSyscalls) > 250 {
		return fmt.Errorf("binder: seccomp allow-list of %d syscalls does not fit 8-bit jumps", len(helperSyscalls))
	}
	filter := seccompFilter(helperSyscalls)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return fmt.Errorf("binder: install the node helper's seccomp filter: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("binder: install the node helper's seccomp filter: thread %d cannot take it", r)
	}
	return nil
}

// Cgroup2Mount is where the cgroup v2 hierarchy is mounted ("" when it
// is not).
func Cgroup2Mount() string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return ""
}

// setupHelperCgroup makes the cgroup v2 directory of a profile's helpers
// with its limits, enabling the controllers it needs in its ancestors
// down from the cgroup2 mount. A limit whose controller the hierarchy
// lacks (the memory and pids controllers of a hybrid host are in v1) is
// left out, and note says so; sb then carries only the limits applied.
func setupHelperCgroup(sb *HelperSandbox) (note string, err error) {
	if sb.Cgroup == "" {
		return "", nil
	}
	root := Cgroup2Mount()
	rel, err := filepath.Rel(root, sb.Cgroup)
	if root == "" || err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("binder: node helper cgroup %s is not under the cgroup2 mount (%q)", sb.Cgroup, root)
	}
	have, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	avail := strings.Fields(string(have))
	var ctrls, missing []string
	for _, l := range []struct {
		ctrl string
		v    *int64
	}{{"memory", &sb.MemoryMax}, {"pids", &sb.PidsMax}} {
		switch {
		case *l.v <= 0:
		case slices.Contains(avail, l.ctrl):
			ctrls = append(ctrls, "+"+l.ctrl)
		default:
			missing = append(missing, l.ctrl)
			*l.v = 0
		}
	}
	if len(missing) > 0 {
		note = fmt.Sprintf("the cgroup2 hierarchy at %s has no %s controller", root, strings.Join(missing, " or "))
	}
	dir := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if len(ctrls) > 0 {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(ctrls, " ")), 0); err != nil {
				return note, fmt.Errorf("binder: enable %s in cgroup %s: %w", strings.Join(ctrls, " "), dir, err)
			}
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return note, fmt.Errorf("binder: make node helper cgroup %s: %w", dir, err)
		}
	}
	for file, v := range map[string]int64{"memory.max": sb.MemoryMax, "pids.max": sb.PidsMax} {
		if v <= 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(v, 10)), 0); err != nil {
			return note, fmt.Errorf("binder: set %s of node helper cgroup %s: %w", file, dir, err)
		}
	}
	if sb.MemoryMax > 0 {
		// Swapping would only slow the limit down; absent without swap.
		_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	}
	return note, nil
}

// joinCgroup moves process pid into cgroup dir.
func joinCgroup(dir string, pid int) error {
	if dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("binder: move node helper %d into cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// binderfsMagic is BINDERFS_SUPER_MAGIC.
const binderfsMagic = 0x6c6f6f70

// helperDevice returns a path to dev that the sandbox's uid or gid can
// open read-write: dev itself when its mode lets them (Android's
// /dev/binder is 0666); for a device of binder_linux's devices= list (a
// misc device) a node of the same device made in sb.NodeDir, root:GID
// 0660, in a folder only root and GID may enter; a binderfs device (whose
// nodes work only inside their binderfs) of group root with no group
// access gets group GID with rw, and any other is refused, naming it.
func helperDevice(sb HelperSandbox, role, dev string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return "", fmt.Errorf("binder: node helper device %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return "", fmt.Errorf("binder: node helper device %s: not a character device", dev)
	}
	m := st.Mode
	if m&0o006 == 0o006 || (int(st.Gid) == sb.GID && m&0o060 == 0o060) || (int(st.Uid) == sb.UID && m&0o600 == 0o600) {
		return dev, nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dev, &fs); err == nil && fs.Type == binderfsMagic {
		// A binderfs node opens only inside its binderfs: give the
		// helpers' gid the device itself, where no other group has it (the
		// profile's device is workcelld's own; the container gets a node
		// of its own).
		if st.Gid != 0 || m&0o070 != 0 {
			return "", fmt.Errorf("binder: %s device %s (binderfs, mode %o, group %d) is not open to the node helpers' uid %d or gid %d: give it group %d with rw, or mode 0666 as Android does",
				role, dev, m&0o777, st.Gid, sb.UID, sb.GID, sb.GID)
		}
		if err := os.Chown(dev, int(st.Uid), sb.GID); err != nil {
			return "", fmt.Errorf("binder: open %s device %s to the node helpers' gid %d: %w", role, dev, sb.GID, err)
		}
		if err := os.Chmod(dev, os.FileMode(m&0o707|0o060)); err != nil {
			return "", fmt.Errorf("binder: open %s device %s to the node helpers' gid %d: %w", role, dev, sb.GID, err)
		}
		return dev, nil
	}
	if sb.NodeDir == "" {
		return "", fmt.Errorf("binder: %s device %s (mode %o) is not open to the node helpers' uid %d or gid %d, and no folder for a node of their own is set",
			role, dev, m&0o777, sb.UID, sb.GID)
	}
	// The helpers must pass through the parents; only the folder itself
	// is closed to others.
	if err := os.MkdirAll(filepath.Dir(sb.NodeDir), 0o755); err != nil {
		return "", fmt.Errorf("binder: make node helper device folder %s: %w", sb.NodeDir, err)
	}
	if err := os.Mkdir(sb.NodeDir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("binder: make node helper device folder %s: %w", sb.NodeDir, err)
	}
	if err := os.Chown(sb.NodeDir, 0, sb.GID); err != nil {
		return "", fmt.Errorf("binder: node helper device folder %s: %w", sb.NodeDir, err)
	}
	if err := os.Chmod(sb.NodeDir, 0o750); err != nil {
		return "", fmt.Errorf("binder: node helper device folder %s: %w", sb.NodeDir, err)
	}
	path := filepath.Join(sb.NodeDir, role)
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := unix.Mknod(tmp, unix.S_IFCHR|0o600, int(st.Rdev)); err != nil {
		return "", fmt.Errorf("binder: make a node of %s at %s: %w", dev, tmp, err)
	}
	err := os.Chown(tmp, 0, sb.GID)
	if err == nil {
		err = os.Chmod(tmp, 0o660)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("binder: make a node of %s at %s: %w", dev, path, err)
	}
	return path, nil
}

// RemoveHelperNodes removes the device nodes helperDevice made, and their
// parent folder once it is empty.
func RemoveHelperNodes(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("binder: remove node helper devices %s: %w", dir, err)
	}
	_ = os.Remove(filepath.Dir(dir)) // fails while other profiles' are there
	return nil
}

// RemoveHelperCgroup removes a profile's helper cgroup once its helpers
// are gone; one that is not there is fine.
func RemoveHelperCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("binder: remove node helper cgroup %s: %w", dir, err)
	}
	return nil
}
