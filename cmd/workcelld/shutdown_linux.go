package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// shutdownDaemon makes the workcelld serving socket exit as a power-off
// wants, and waits until it has: it sends that daemon SIGTERM, on which a
// daemon started with --stop-on-exit stops every profile (and only then
// exits), and waits up to timeout for the process to end.
//
// It exists for Android's init, whose `stop` SIGKILLs a service (so a
// clean stop needs a signal init cannot send) and whose `exec` in
// `on shutdown` blocks the shutdown until the command returns: that is
// the one place the profiles can be stopped before /data is unmounted.
// The daemon is found by the socket's peer credentials (the process that
// called listen), never by a process name, and checked to run this same
// executable before it is signalled. No daemon listening is not an error:
// there is nothing to stop.
func shutdownDaemon(ctx context.Context, socket string, timeout time.Duration, out io.Writer) error {
	pid, err := listenerPID(ctx, socket)
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
		fmt.Fprintf(out, "no workcelld listens on %s: nothing to stop\n", socket)
		return nil
	}
	if err != nil {
		return err
	}
	same, err := sameExecutable(pid)
	if err != nil {
		return fmt.Errorf("socket %s: listener pid %d: %w", socket, pid, err)
	}
	if !same {
		return fmt.Errorf("socket %s: listener pid %d does not run this workcelld executable: not signalling it", socket, pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of workcelld pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// The pid could have been reused between reading it and opening the
	// pidfd; the daemon answering again with the same pid rules that out.
	if again, err := listenerPID(ctx, socket); err != nil || again != pid {
		return fmt.Errorf("socket %s: the listener changed while shutting it down (pid %d, then %d, %v)", socket, pid, again, err)
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0); err != nil {
		return fmt.Errorf("SIGTERM to workcelld pid %d: %w", pid, err)
	}
	fmt.Fprintf(out, "workcelld pid %d: stopping its profiles\n", pid)
	deadline := time.Now().Add(timeout)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for workcelld pid %d: %w", pid, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("workcelld pid %d still runs %s after SIGTERM", pid, timeout)
		}
		// A pidfd polls readable once the process has exited. Short
		// slices keep ctx's cancellation prompt.
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("waiting for workcelld pid %d: %w", pid, err)
		}
		if n > 0 {
			fmt.Fprintf(out, "workcelld pid %d: exited\n", pid)
			return nil
		}
	}
}

// listenerPID returns the pid of the process that listens on socket, from
// SO_PEERCRED (for a listening unix socket the kernel records the caller
// of listen(), so this is the daemon even where init created the socket).
func listenerPID(ctx context.Context, socket string) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", socket, err)
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("socket %s: %w", socket, err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, fmt.Errorf("socket %s: %w", socket, err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("socket %s: peer credentials: %w", socket, cerr)
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("socket %s: the kernel names no listener pid", socket)
	}
	if int(cred.Uid) != os.Geteuid() && cred.Uid != 0 {
		return 0, fmt.Errorf("socket %s: the listener runs as uid %d, not as root: not a workcelld", socket, cred.Uid)
	}
	return int(cred.Pid), nil
}

// sameExecutable tells whether pid runs the file this process runs.
func sameExecutable(pid int) (bool, error) {
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return false, fmt.Errorf("own executable: %w", err)
	}
	other, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false, fmt.Errorf("its executable: %w", err)
	}
	return os.SameFile(self, other), nil
}
