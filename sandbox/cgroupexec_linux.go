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
// the process runs and may have forked: the container is frozen meanwhile,
// so nothing forks while its processes are moved, and left as it was.
func (c *Container) joinV1Groups(ctx context.Context) error {
	if len(c.v1) == 0 {
		return nil
	}
	z, err := c.v2Freezer()
	if err != nil {
		return fmt.Errorf("container %s: cgroup v1 groups: %w", c.id, err)
	}
	err = z.whileFrozen(ctx, func() error {
		pids, err := cgroups.GetAllPids(z.dir)
		if err != nil {
			return err
		}
		for _, dir := range c.v1 {
			for _, pid := range pids {
				// A process that exited meanwhile is no longer there.
				if err := cgroups.WriteCgroupProc(dir, pid); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("join %d to %s: %w", pid, dir, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("container %s: cgroup v1 groups: %w", c.id, err)
	}
	return nil
}
