package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// boundSocket makes what Android's init makes for a `socket NAME stream`
// line: a unix stream socket bound to path, not listening, without
// close-on-exec. It returns the fd, closed at cleanup.
func boundSocket(t *testing.T, path string, typ int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("bind %s: %v", path, err)
	}
	return fd
}

func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestInheritedListenerServesInitsSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workcelld")
	fd := boundSocket(t, path, unix.SOCK_STREAM)
	ln, got, err := inheritedListener(envOf(map[string]string{androidSocketEnv: strconv.Itoa(fd)}))
	if err != nil {
		t.Fatalf("inheritedListener: %v", err)
	}
	defer ln.Close()
	if got != path {
		t.Errorf("path = %q, want %q", got, path)
	}
	// The original fd is closed (FileListener keeps a dup), so nothing
	// but the listener holds the socket.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Errorf("fd %d from init still open after the take-over", fd)
	}
	// A client connects and is accepted: the socket was set to listen.
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Write([]byte("ok"))
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if err := <-done; err != nil || string(b) != "ok" {
		t.Fatalf("accept: %v, read %q", err, b)
	}
	// Children must not inherit the control socket.
	raw, err := ln.(*net.UnixListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(lfd uintptr) {
		flags, err := unix.FcntlInt(lfd, unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("listener fd flags %#x (%v): want FD_CLOEXEC", flags, err)
		}
	})
}

func TestInheritedListenerUnsetIsNone(t *testing.T) {
	ln, path, err := inheritedListener(envOf(nil))
	if ln != nil || path != "" || err != nil {
		t.Fatalf("got %v %q %v, want nothing: without the variable the daemon binds its own socket", ln, path, err)
	}
}

func TestInheritedListenerRefusesBadFDs(t *testing.T) {
	dir := t.TempDir()
	dgram := boundSocket(t, filepath.Join(dir, "dgram"), unix.SOCK_DGRAM)
	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	closed := boundSocket(t, filepath.Join(dir, "closed"), unix.SOCK_STREAM)
	unix.Close(closed)
	for _, tc := range []struct{ name, value, want string }{
		{"not a number", "sock", "want the decimal number"},
		{"stdin", "0", "above 2"},
		{"negative", "-4", "above 2"},
		{"regular file", strconv.Itoa(int(f.Fd())), "not a socket"},
		{"datagram socket", strconv.Itoa(dgram), "want a unix stream socket"},
		{"closed fd", strconv.Itoa(closed), "not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, _, err := inheritedListener(envOf(map[string]string{androidSocketEnv: tc.value}))
			if err == nil {
				ln.Close()
				t.Fatalf("%s=%s accepted", androidSocketEnv, tc.value)
			}
			if !strings.Contains(err.Error(), androidSocketEnv) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want the variable's name and %q", err, tc.want)
			}
		})
	}
}

func TestRunRefusesASocketFlagOtherThanInits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "workcelld")
	fd := boundSocket(t, path, unix.SOCK_STREAM)
	t.Setenv(androidSocketEnv, strconv.Itoa(fd))
	err := app().Run([]string{"workcelld", "--state-dir", filepath.Join(dir, "state"), "--run-dir", filepath.Join(dir, "run"), "--socket", filepath.Join(dir, "other.sock")})
	if err == nil || !strings.Contains(err.Error(), "init handed over the socket "+path) {
		t.Fatalf("err = %v, want the two paths named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Errorf("the state folder was made although the daemon refused to start")
	}
}
