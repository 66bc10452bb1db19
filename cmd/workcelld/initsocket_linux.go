package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// androidSocketEnv names the control socket Android's init made for us:
// the .rc's `socket workcelld stream ...` line makes init create, bind,
// chown, chmod and label /dev/socket/workcelld, and hand the fd over in
// ANDROID_SOCKET_<name> as decimal (what libcutils'
// android_get_control_socket reads).
const androidSocketEnv = "ANDROID_SOCKET_workcelld"

// inheritedListener returns the listener on the control socket init
// handed over in androidSocketEnv, and the socket's path, or a nil
// listener when the variable is unset (a Linux phone: the daemon binds
// its socket itself). The fd is checked to be a bound unix stream socket
// before use, set to listen (init only binds) and marked close-on-exec:
// init clears that flag to pass it across exec, and without it every
// child (the containers' init, the binder helpers) would inherit the
// control socket.
func inheritedListener(getenv func(string) string) (net.Listener, string, error) {
	v := getenv(androidSocketEnv)
	if v == "" {
		return nil, "", nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		// 0-2 are stdio: init never puts a socket there, and taking one
		// over would close the daemon's log.
		return nil, "", fmt.Errorf("%s=%q: want the decimal number of an inherited fd above 2", androidSocketEnv, v)
	}
	if err := checkStreamUnix(fd); err != nil {
		return nil, "", fmt.Errorf("%s=%d: %w", androidSocketEnv, fd, err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return nil, "", fmt.Errorf("%s=%d: listen: %w", androidSocketEnv, fd, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "init:"+androidSocketEnv)
	// FileListener dups the fd; the original is closed either way so no
	// copy of the socket outlives the listener.
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, "", fmt.Errorf("%s=%d: %w", androidSocketEnv, fd, err)
	}
	path := ln.Addr().String()
	if path == "" || path[0] != '/' {
		ln.Close()
		return nil, "", fmt.Errorf("%s=%d: socket is bound to %q, not to a path", androidSocketEnv, fd, path)
	}
	return ln, path, nil
}

// checkStreamUnix tells whether fd is an AF_UNIX SOCK_STREAM socket, so a
// stale or forged variable naming some other fd is refused by name
// instead of failing later in accept.
func checkStreamUnix(fd int) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("socket type: %w", err)
	}
	if dom != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return fmt.Errorf("socket is domain %d type %d, want a unix stream socket (the .rc's `socket workcelld stream`)", dom, typ)
	}
	return nil
}
