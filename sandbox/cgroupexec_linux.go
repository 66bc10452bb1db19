package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// joinV1Groups puts every process of the container's cgroup v2 group into
// the sandbox's v1 groups. libcontainer starts an exec'd process in the v2
// group only (it knows nothing of the v1 ones), and by the time Run returns
// the process runs. The exec'd process (pid) goes first: it has forked
// nothing of its own yet. Then the v2 group is swept until a sweep finds
// everyone in place: a child forked before its parent moved is caught by
// the next sweep, and one forked after is born in the parent's v1 groups.
// No freeze: a process still in libcontainer's setns handshake can sit in
// an uninterruptible wait, and a freeze held over it stalled, and left
// cgroup.freeze set under a work mode off that came meanwhile.
func (c *Container) joinV1Groups(ctx context.Context, pid int) error {
	if len(c.v1) == 0 {
		return nil
	}
	dir, err := c.v2Dir()
	if err != nil {
		return fmt.Errorf("container %s: cgroup v1 groups: %w", c.id, err)
	}
	join := func(pid int) error {
		for _, dir := range c.v1 {
			// A process that exited meanwhile is no longer there.
			if err := cgroups.WriteCgroupProc(dir, pid); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("container %s: cgroup v1 groups: join %d to %s: %w", c.id, pid, dir, err)
			}
		}
		return nil
	}
	if err := join(pid); err != nil {
		return err
	}
	const sweeps = 16
	for range sweeps {
		if err := ctx.Err(); err != nil {
			return err
		}
		pids, err := cgroups.GetAllPids(dir)
		if err != nil {
			return fmt.Errorf("container %s: cgroup v1 groups: %w", c.id, err)
		}
		in := map[int]int{}
		for _, dir := range c.v1 {
			there, err := cgroups.GetPids(dir)
			if err != nil {
				return fmt.Errorf("container %s: cgroup v1 groups: %w", c.id, err)
			}
			for _, p := range there {
				in[p]++
			}
		}
		moved := 0
		for _, p := range pids {
			if in[p] == len(c.v1) {
				continue
			}
			if err := join(p); err != nil {
				return err
			}
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return fmt.Errorf("container %s: cgroup v1 groups: processes still outside them after %d sweeps (a process forking without pause)", c.id, sweeps)
}
