package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pidfdExited reports, without blocking, whether the process of pidfd has
// exited (a pidfd polls readable from then on).
func pidfdExited(pidfd int) (bool, error) {
	for {
		pfd := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd: %w", err)
		}
		return n > 0, nil
	}
}

// waitPidfd blocks until the process of pidfd exits or ctx ends, and closes
// pidfd. pidfd must be non-blocking (PIDFD_NONBLOCK): os.NewFile then
// registers it with the runtime's netpoller, so the wait parks the goroutine
// instead of a thread and a read deadline can interrupt it.
func waitPidfd(ctx context.Context, pidfd int) error {
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	if exited, err := pidfdExited(pidfd); err != nil || exited {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		// Not in the netpoller: waiting would need a thread or a loop.
		return fmt.Errorf("pidfd is not pollable: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		var exited bool
		exited, perr = pidfdExited(int(fd))
		return exited || perr != nil
	})
	if perr != nil {
		return perr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wait on pidfd: %w", err)
	}
	return nil
}
