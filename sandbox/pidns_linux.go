package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Without pid namespaces (Android's GKI kernels: `# CONFIG_PID_NS is not
// set`) a container shares the host's pid namespace. Three things then
// stand in for it:
//
//   - its /proc is a private procfs instance mounted hidepid=invisible
//     (Linux 5.8+; hidepid=2 before), so work lists only the processes it
//     could ptrace: its own uid's;
//   - work runs under its profile's own non-root uid range (no CAP_KILL,
//     no CAP_SYS_PTRACE), so it cannot signal or trace a host process;
//   - its init is whatever the bundle names, an ordinary process: killing
//     it does not take the others down, so stop, wipe and remove kill by
//     cgroup (killCgroup).

// ProbePIDNS reports why the kernel cannot give containers pid
// namespaces, or nil when it can: /proc/self/ns/pid exists and a child
// made with CLONE_NEWPID really starts (it is held stopped at its exec and
// killed; none of its code runs).
func ProbePIDNS(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Stat("/proc/self/ns/pid"); err != nil {
		return fmt.Errorf("no /proc/self/ns/pid: the kernel has no pid namespaces (CONFIG_PID_NS): %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	fd := null.Fd()
	// The file can be there and the clone still refused (a kernel built
	// without CONFIG_PID_NS answers EINVAL; seccomp or SELinux EPERM).
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"workcell-pidns-probe"}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{fd, fd, fd},
		Sys: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWPID,
			Ptrace:     true,
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	if err != nil {
		return fmt.Errorf("a child in a new pid namespace could not start: %w", err)
	}
	killReap(pid)
	return nil
}

// ProcModern and ProcLegacy are the options of a container's procfs
// without a pid namespace. hidepid=invisible hides, not only locks, other
// users' processes, in this procfs instance only (Linux 5.8 made procfs
// options per mount); before 5.8 hidepid=2 is the nearest, and is a
// setting of the whole pid namespace, the host's too (Android mounts its
// /proc hidepid=2 already).
//
// subset=pid (also 5.8), which would leave only the process folders, is
// not used: libcontainer's init reads /proc/sys/kernel/cap_last_cap inside
// the container at every exec, which fails without /proc/sys. The rest of
// /proc is guarded as in a pid namespace: runc's masked and read-only
// paths, and /proc/sys is the host root's, read-only for a work uid.
var (
	ProcModern = []string{"hidepid=invisible"}
	ProcLegacy = []string{"hidepid=2"}
)

// ProbeProcOptions asks the kernel which procfs options it takes: it
// builds (never mounts) a procfs instance through fsopen/fsconfig with
// ProcModern and returns them, or ProcLegacy with the reason the modern
// ones were refused.
func ProbeProcOptions(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		// fsopen came with 5.2, per-mount procfs options with 5.8.
		return ProcLegacy, fmt.Errorf("fsopen(proc): %w: the kernel is older than 5.2, so it has no hidepid=invisible (5.8)", err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fd, "hidepid", "invisible"); err != nil {
		return ProcLegacy, fmt.Errorf("procfs refuses hidepid=invisible: %w (per-mount procfs options came with Linux 5.8)", err)
	}
	// Before 5.8 this would change the host's procfs; the option above
	// is refused there, so it is reached only where instances are
	// private.
	if err := unix.FsconfigCreate(fd); err != nil {
		return ProcLegacy, fmt.Errorf("procfs instance with hidepid=invisible: %w", err)
	}
	return ProcModern, nil
}

// sharedPID reports whether lc runs in the host's pid namespace.
func sharedPID(lc *libcontainer.Container) bool {
	return !lc.Config().Namespaces.IsPrivate(configs.NEWPID)
}

// cgroupManager rebuilds the manager of a container's cgroups from its
// saved state (libcontainer keeps its own private).
func cgroupManager(lc *libcontainer.Container) (cgroups.Manager, error) {
	st, err := lc.State()
	if err != nil {
		return nil, err
	}
	return manager.NewWithPaths(st.Config.Cgroups, st.CgroupPaths)
}

// killSettle is how long killCgroup waits between looks at a cgroup it
// has killed: SIGKILL is delivered at once, but the exits it causes finish
// asynchronously (a task in uninterruptible sleep leaves when it wakes).
const killSettle = 5 * time.Millisecond

// discardKillTimeout bounds the kill of a container whose start failed,
// which has no caller's context to end it.
const discardKillTimeout = 10 * time.Second

// killCgroup kills every process in m's cgroups and returns once none is
// left, or ctx ends. Where the kernel has cgroup.kill (v2, 5.14+) one
// write kills the whole tree, forks under way included; else the cgroup
// is frozen (no fork can race the kill), each pid in it gets SIGKILL and
// it is thawed so the frozen ones can die, over and over until it is
// empty. A frozen container is killed the same way.
func killCgroup(ctx context.Context, m cgroups.Manager) error {
	if !m.Exists() {
		return nil
	}
	kill := ""
	if p := m.Path(""); p != "" {
		if _, err := os.Stat(filepath.Join(p, "cgroup.kill")); err == nil {
			kill = filepath.Join(p, "cgroup.kill")
		}
	}
	for round := 0; ; round++ {
		pids, err := m.GetAllPids()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kill by cgroup: %w", err)
		}
		if len(pids) == 0 {
			return nil
		}
		if round > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("kill by cgroup: %d process(es) left %v: %w", len(pids), pids, ctx.Err())
			case <-time.After(killSettle):
			}
		}
		if kill != "" {
			if err := os.WriteFile(kill, []byte("1"), 0); err == nil {
				// A v1 freezer (hybrid hosts) holds killed tasks until
				// thawed; v2's lets a fatal signal through.
				if st, err := m.GetFreezerState(); err == nil && st == cgroups.Frozen {
					if err := m.Freeze(cgroups.Thawed); err != nil {
						return fmt.Errorf("kill by cgroup: thaw: %w", err)
					}
				}
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("kill by cgroup: %w", err)
			}
			kill = ""
		}
		frozen := m.Freeze(cgroups.Frozen) == nil
		if pids, err = m.GetAllPids(); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = m.Freeze(cgroups.Thawed)
			return fmt.Errorf("kill by cgroup: %w", err)
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				_ = m.Freeze(cgroups.Thawed)
				return fmt.Errorf("kill by cgroup: pid %d: %w", pid, err)
			}
		}
		if frozen {
			if err := m.Freeze(cgroups.Thawed); err != nil {
				return fmt.Errorf("kill by cgroup: thaw: %w", err)
			}
		}
	}
}

// KillAll kills every process of the container by its cgroup and returns
// once none is left (the container's init included). A container in its
// own pid namespace is killed the same way; the kernel would also take
// its processes down with its init.
func (c *Container) KillAll(ctx context.Context) error {
	m, err := cgroupManager(c.lc)
	if err != nil {
		return fmt.Errorf("container %s: kill all: %w", c.id, err)
	}
	if err := killCgroup(ctx, m); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return nil
}

// killShared kills what is left in the cgroup of a container without a
// pid namespace, whose init is dead or dying: its children outlive it.
func killShared(ctx context.Context, lc *libcontainer.Container) error {
	if !sharedPID(lc) {
		return nil
	}
	m, err := cgroupManager(lc)
	if err != nil {
		return err
	}
	return killCgroup(ctx, m)
}

// ProbeMqueue reports whether the kernel has POSIX message queues (the
// mqueue filesystem a bundle's /dev/mqueue is): nil when it has.
func ProbeMqueue(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("mqueue: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "mqueue" {
			return nil
		}
	}
	return errors.New("the kernel has no mqueue filesystem (CONFIG_POSIX_MQUEUE)")
}
