package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// State is a container's state as the kernel sees it.
type State string

const (
	// Created: prepared, init waits for Begin to exec the user's process.
	Created State = "created"
	Running State = "running"
	Paused  State = "paused"
	Stopped State = "stopped"
)

// Container is a started or adopted container. Its methods are safe for
// concurrent use.
type Container struct {
	id  string
	lc  *libcontainer.Container
	pid int
	log *slog.Logger

	mu    sync.Mutex // guards pidfd against Close
	pidfd int        // -1: init was already gone when adopted, or closed
	// reaped is closed once our child init is reaped; nil for an adopted
	// container (not our child, someone else reaps it).
	reaped chan struct{}
	// freezer is made on the first freeze on cgroup v2; guarded by mu.
	freezer *cgroupFreezer
	// user is the bundle's process.user, whom exec runs as; nil when the
	// container's state does not record it (see userFromLabels).
	user *User
	// v1 are the cgroup v1 groups the sandbox made beside libcontainer's
	// cgroup (cgroup_v1_linux.go); warnings the limits not enforced.
	v1       []string
	warnings []string
	// ids is the id range work runs under without a user namespace
	// (HardenOptions.UIDRange): exec shifts a caller's user into it. nil
	// otherwise.
	ids *IDMap
}

// Warnings lists what the kernel could not enforce for this container,
// e.g. "pids limit of 50 not enforced: the kernel has no pids cgroup
// controller"; empty when every limit holds.
func (c *Container) Warnings() []string { return append([]string(nil), c.warnings...) }

// ID returns the container's id.
func (c *Container) ID() string { return c.id }

// Pid returns the host pid of the container's init.
func (c *Container) Pid() int { return c.pid }

// Close releases the handle's resources (the pidfd, the cgroup v2 freezer's
// inotify instance); the container itself is not touched. Call it when the
// handle is dropped, also after Stop.
func (c *Container) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.freezer != nil {
		_ = c.freezer.Close()
		c.freezer = nil
	}
	if c.pidfd < 0 {
		return nil
	}
	err := unix.Close(c.pidfd)
	c.pidfd = -1
	if err != nil {
		return fmt.Errorf("container %s: close pidfd: %w", c.id, err)
	}
	return nil
}

// State returns running, paused or stopped. Paused is read from the freezer
// cgroup, so it is right whoever froze the container.
func (c *Container) State(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("container %s: state: %w", c.id, err)
	}
	st, err := c.lc.Status()
	if err != nil {
		return "", fmt.Errorf("container %s: state: %w", c.id, err)
	}
	switch st {
	case libcontainer.Created:
		return Created, nil
	case libcontainer.Paused:
		return Paused, nil
	case libcontainer.Stopped:
		return Stopped, nil
	default:
		return Running, nil
	}
}

// Begin lets the init of a prepared container exec the user's process and
// returns once it has.
func (c *Container) Begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("container %s: begin: %w", c.id, err)
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("container %s: begin: %w", c.id, err)
	}
	c.log.Info("container started", "id", c.id, "pid", c.pid)
	return nil
}

// Freeze freezes every process of the container (work mode off). On cgroup
// v2 it waits for the kernel's notification, on v1 it retries as
// libcontainer does (v1 has no notification).
func (c *Container) Freeze(ctx context.Context) error {
	if err := c.setFrozen(ctx, true); err != nil {
		return fmt.Errorf("container %s: freeze: %w", c.id, err)
	}
	return nil
}

// Thaw resumes a frozen container.
func (c *Container) Thaw(ctx context.Context) error {
	if err := c.setFrozen(ctx, false); err != nil {
		return fmt.Errorf("container %s: thaw: %w", c.id, err)
	}
	return nil
}

// v2Dir is the container's cgroup v2 directory.
func (c *Container) v2Dir() (string, error) {
	st, err := c.lc.State()
	if err != nil {
		return "", err
	}
	if st.CgroupPaths[""] == "" {
		return "", errors.New("no cgroup v2 path in the container state")
	}
	return st.CgroupPaths[""], nil
}

// v2Freezer returns the container's cgroup v2 freezer, made on first use
// (work mode off/on is a hot path: the state is read only then).
func (c *Container) v2Freezer() (*cgroupFreezer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.freezer != nil {
		return c.freezer, nil
	}
	dir, err := c.v2Dir()
	if err != nil {
		return nil, err
	}
	c.freezer, err = newCgroupFreezer(dir)
	return c.freezer, err
}

func (c *Container) setFrozen(ctx context.Context, frozen bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if cgroups.IsCgroup2UnifiedMode() {
		if frozen {
			if s, err := c.lc.Status(); err != nil {
				return err
			} else if s == libcontainer.Stopped {
				return libcontainer.ErrNotRunning
			}
		}
		z, err := c.v2Freezer()
		if err != nil {
			return err
		}
		return z.set(ctx, frozen)
	}
	if frozen {
		return c.lc.Pause()
	}
	err := c.lc.Resume()
	if errors.Is(err, libcontainer.ErrNotPaused) {
		return nil
	}
	return err
}

// Stop sends SIGTERM to init, waits up to grace for it to exit, then kills
// every process of the container; a paused container is thawed after the
// signal so that it can act on it. It then destroys the container: cgroups
// and state dir are removed.
func (c *Container) Stop(ctx context.Context, grace time.Duration) error {
	return c.StopCut(ctx, grace, context.Background())
}

// StopCut is Stop whose grace ends, in SIGKILL, as soon as cut is done:
// whoever must not wait out another caller's long grace cancels cut. An
// ended ctx, unlike cut, abandons the stop.
func (c *Container) StopCut(ctx context.Context, grace time.Duration, cut context.Context) error {
	st, err := c.State(ctx)
	if err != nil {
		return fmt.Errorf("container %s: stop: %w", c.id, err)
	}
	// Without a pid namespace init is an ordinary process: its exit
	// leaves the others running, so they are killed by cgroup.
	shared := sharedPID(c.lc)
	if st != Stopped && c.alive() {
		if err := c.lc.Signal(unix.SIGTERM); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("container %s: stop: SIGTERM: %w", c.id, err)
		}
		// init is pid 1 of its namespace: the kernel drops a signal it has
		// no handler for, so without one there is nothing to wait for.
		if !shared && !catches(c.pid, unix.SIGTERM) {
			grace = 0
		}
		if st == Paused {
			if err := c.Thaw(ctx); err != nil {
				return fmt.Errorf("container %s: stop: %w", c.id, err)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		stopCut := context.AfterFunc(cut, cancel)
		err := c.Wait(gctx)
		stopCut()
		cancel()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("container %s: stop: %w", c.id, ctx.Err())
		}
		if err != nil {
			c.log.Info("container ignored SIGTERM, killing", "id", c.id, "grace", grace)
			if shared {
				if err := c.KillAll(ctx); err != nil {
					return fmt.Errorf("container %s: stop: %w", c.id, err)
				}
			} else if err := c.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) && !errors.Is(err, os.ErrProcessDone) {
				// init is pid 1 of its own pid namespace: SIGKILL to it
				// takes every process of the namespace down.
				return fmt.Errorf("container %s: stop: SIGKILL: %w", c.id, err)
			}
			if err := c.Wait(ctx); err != nil {
				return fmt.Errorf("container %s: stop: %w", c.id, err)
			}
		}
	} else if st == Paused {
		// init is dead but the cgroup is frozen: thaw so it can go.
		if err := c.Thaw(ctx); err != nil {
			return fmt.Errorf("container %s: stop: %w", c.id, err)
		}
	}
	// init's children (a double-forked daemon, one that ignores SIGTERM)
	// outlive it here; libcontainer's Destroy would kill them in one
	// pass, which a fork under way can escape on a v1 freezer.
	if shared {
		if err := c.KillAll(ctx); err != nil {
			return fmt.Errorf("container %s: stop: %w", c.id, err)
		}
	}
	if err := c.lc.Destroy(); err != nil {
		return fmt.Errorf("container %s: stop: %w", c.id, err)
	}
	if err := removeV1Groups(c.v1); err != nil {
		return fmt.Errorf("container %s: stop: %w", c.id, err)
	}
	// The cgroup is gone; the pidfd stays so that Wait keeps answering.
	c.mu.Lock()
	if c.freezer != nil {
		_ = c.freezer.Close()
		c.freezer = nil
	}
	c.mu.Unlock()
	c.log.Info("container stopped", "id", c.id)
	return nil
}

// alive reports whether init has not exited yet, without blocking.
func (c *Container) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd < 0 {
		return false
	}
	exited, err := pidfdExited(c.pidfd)
	return err == nil && !exited
}

// Wait returns when init has exited. It blocks in the Go netpoller on a
// pidfd, so it also works for an adopted init that is not our child, and it
// returns ctx's error when ctx ends first.
func (c *Container) Wait(ctx context.Context) error {
	if err := c.waitInit(ctx); err != nil {
		return fmt.Errorf("container %s: wait: %w", c.id, err)
	}
	return nil
}

func (c *Container) waitInit(ctx context.Context) error {
	c.mu.Lock()
	fd := -1
	var err error
	if c.pidfd >= 0 {
		// A private dup: each waiter sets its own deadline.
		fd, err = unix.FcntlInt(uintptr(c.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dup pidfd: %w", err)
	}
	if fd >= 0 {
		if err := waitPidfd(ctx, fd); err != nil {
			return err
		}
	}
	if c.reaped != nil {
		select {
		case <-c.reaped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Stats are a snapshot of the container's cgroup counters. A limit of 0
// means unlimited.
type Stats struct {
	CPUUsageNanos                 uint64
	MemoryBytes, MemoryLimitBytes uint64
	Pids, PidsLimit               uint64
}

// unlimitedMemory: v1 reports "no limit" as a page-rounded MaxInt64, v2 as
// MaxUint64.
const unlimitedMemory = math.MaxInt64 / 2

// Stats reads the container's CPU, memory and pids counters.
func (c *Container) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, fmt.Errorf("container %s: stats: %w", c.id, err)
	}
	s, err := c.lc.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("container %s: stats: %w", c.id, err)
	}
	cs := s.CgroupStats
	if cs == nil {
		return Stats{}, fmt.Errorf("container %s: stats: no cgroup stats", c.id)
	}
	out := Stats{
		CPUUsageNanos:    cs.CpuStats.CpuUsage.TotalUsage,
		MemoryBytes:      cs.MemoryStats.Usage.Usage,
		MemoryLimitBytes: cs.MemoryStats.Usage.Limit,
		Pids:             cs.PidsStats.Current,
		PidsLimit:        cs.PidsStats.Limit,
	}
	// Memory in a v1 group of the sandbox's own (Android's /dev/memcg).
	if u, l, ok, err := v1MemoryStats(c.v1); err != nil {
		return Stats{}, fmt.Errorf("container %s: stats: %w", c.id, err)
	} else if ok {
		out.MemoryBytes, out.MemoryLimitBytes = u, l
	}
	if out.MemoryLimitBytes > unlimitedMemory {
		out.MemoryLimitBytes = 0
	}
	return out, nil
}

// catches reports whether pid has a handler for sig (SigCgt in
// /proc/PID/status). When that cannot be read it answers true, which
// only costs the grace period.
func catches(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return true
}
