package daemon

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
)

// unixPair returns both ends of a connected unix stream socket.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// A descriptor on the exec connection is an error, and the daemon's copy
// is closed at once: the sent socket's peer sees EOF as soon as the
// sender drops its own copy.
func TestFdRefusingReaderClosesDescriptors(t *testing.T) {
	daemonEnd, clientEnd := unixPair(t)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(pair[1]), "peer")
	defer peer.Close()
	if _, _, err := clientEnd.WriteMsgUnix(api.AppendFrame(nil, api.FrameStdin, []byte("x")), unix.UnixRights(pair[0], pair[0]), nil); err != nil {
		t.Fatal(err)
	}
	unix.Close(pair[0])
	r := &fdRefusingReader{uc: daemonEnd}
	_, err = r.Read(make([]byte, 64))
	var fe *fdError
	if !errors.As(err, &fe) || fe.n != 2 || !strings.Contains(err.Error(), "2 file descriptor") {
		t.Fatalf("read with descriptors: %v, want an fdError for 2", err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the received copies are still open: read %d, %v", n, err)
	}
	// Plain data passes.
	if _, err := clientEnd.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	if n, err := r.Read(b); err != nil || string(b[:n]) != "abc" {
		t.Fatalf("plain read: %q %v", b[:n], err)
	}
}

func TestCheckExecRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  api.ExecRequest
		msg  string
	}{
		{"ok", api.ExecRequest{Args: []string{"true"}}, ""},
		{"tty with size", api.ExecRequest{Args: []string{"sh"}, Tty: true, Rows: 24, Cols: 80}, ""},
		{"no command", api.ExecRequest{}, "args: a command is required"},
		{"empty command", api.ExecRequest{Args: []string{""}}, "args: a command is required"},
		{"size without tty", api.ExecRequest{Args: []string{"sh"}, Rows: 24}, "rows/cols: a window size needs tty"},
		{"uid -1", api.ExecRequest{Args: []string{"sh"}, User: &api.ExecUser{UID: 1<<32 - 1}}, "user: uid/gid 4294967295"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExecRequest(tc.req)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, api.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want invalid argument saying %q", err, tc.msg)
			}
		})
	}
}
