package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

// exec upgrades the connection to api.ExecUpgrade and relays the process's
// stdio as frames. The process's stdio is made here (pipes or a pty in the
// container); a descriptor the client sends is closed and ends the exec.
func (s *Server) exec(w http.ResponseWriter, r *http.Request, name string) error {
	switch up := r.Header.Get("Upgrade"); {
	case strings.EqualFold(up, api.ExecUpgrade):
	case strings.EqualFold(up, api.ExecUpgradeV1):
		return api.Errorf(api.ErrInvalidArgument, "exec protocol %q is refused: it handed the client's file descriptors to the container; this workcelld speaks %q: update the workcell CLI", api.ExecUpgradeV1, api.ExecUpgrade)
	default:
		return api.Errorf(api.ErrInvalidArgument, "exec needs the %q upgrade: use the workcell CLI or api.Client.Exec", api.ExecUpgrade)
	}
	var req api.ExecRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if err := checkExecRequest(req); err != nil {
		return err
	}
	if req.User != nil {
		if err := authorize(uidOf(r), s.d.cfg, roleAdmin, "exec as another user (--user)"); err != nil {
			s.d.log.Warn("exec refused", "uid", uidOf(r), "profile", name, "err", err)
			return err
		}
	}
	if _, err := s.d.container(name); err != nil {
		return err
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("exec: hijack connection: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil
	}
	// The server's read and idle timeouts are for requests: an exec lives
	// as long as its process (an interactive shell), and a hang-up ends it.
	_ = uc.SetDeadline(time.Time{})
	if _, err := io.WriteString(uc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+api.ExecUpgrade+"\r\n\r\n"); err != nil {
		return nil
	}
	fw := api.NewFrameWriter(uc)
	// Bytes read before the upgrade went through plain reads, which would
	// not have shown descriptors sent with them: the protocol has the
	// client wait for 101, so anything early is refused.
	if n := brw.Reader.Buffered(); n > 0 {
		writeExit(fw, -1, api.Errorf(api.ErrInvalidArgument, "exec: %d bytes arrived before 101 Switching Protocols: send frames only after the upgrade", n))
		return nil
	}
	s.relay(uc, fw, name, req)
	return nil
}

// checkExecRequest validates what the body asks for.
func checkExecRequest(req api.ExecRequest) error {
	if len(req.Args) == 0 || req.Args[0] == "" {
		return api.Errorf(api.ErrInvalidArgument, "args: a command is required")
	}
	if !req.Tty && (req.Rows != 0 || req.Cols != 0) {
		return api.Errorf(api.ErrInvalidArgument, "rows/cols: a window size needs tty")
	}
	if u := req.User; u != nil && (u.UID == 1<<32-1 || u.GID == 1<<32-1) {
		return api.Errorf(api.ErrInvalidArgument, "user: uid/gid 4294967295 is not a user")
	}
	return nil
}

// relay starts the process and copies frames both ways until it has
// exited and its output is drained, then sends the exit frame. The client
// hanging up, a malformed frame or a descriptor from the client kills it.
func (s *Server) relay(uc *net.UnixConn, fw *api.FrameWriter, name string, req api.ExecRequest) {
	ctx, cancel := context.WithCancel(s.d.ctx)
	defer cancel()
	p, err := s.d.startExec(ctx, name, req)
	if err != nil {
		// A command that cannot be started answers like a shell does
		// (127 not found, 126 not executable), on the process's stderr.
		if code, ok := shellCode(err); ok {
			t, nl := api.FrameStderr, "\n"
			if req.Tty {
				t, nl = api.FrameStdout, "\r\n" // the client's terminal is raw
			}
			_ = fw.Write(t, fmt.Appendf(nil, "workcell: exec %s: %s%s", req.Args[0], shellReason(code), nl))
			writeExit(fw, code, nil)
			return
		}
		writeExit(fw, -1, err)
		return
	}
	defer p.Close()
	// The reader below may block feeding a stdin the process does not
	// read; a hang-up must kill the process all the same.
	stop, err := watchHangup(uc, cancel)
	if err != nil {
		s.d.log.Warn("exec: no hang-up watch: a hang-up is seen only when the process reads its stdin", "profile", name, "err", err)
	} else {
		defer stop()
	}

	var (
		mu        sync.Mutex
		clientErr error // a refused descriptor or a malformed frame
	)
	go func() {
		err := s.readClient(p, uc)
		if err != nil {
			mu.Lock()
			clientErr = err
			mu.Unlock()
			s.d.log.Warn("exec: client refused", "profile", name, "err", err)
		}
		// Hang-up or refusal: the process goes.
		cancel()
	}()

	var pumps sync.WaitGroup
	pump := func(r io.Reader, t api.FrameType) {
		defer pumps.Done()
		buf := make([]byte, api.MaxFramePayload)
		for {
			n, err := r.Read(buf)
			if n > 0 && fw.Write(t, buf[:n]) != nil {
				cancel()
				_, _ = io.Copy(io.Discard, r)
				return
			}
			if err != nil {
				return
			}
		}
	}
	pumps.Add(1)
	go pump(p.Stdout, api.FrameStdout)
	if p.Stderr != nil {
		pumps.Add(1)
		go pump(p.Stderr, api.FrameStderr)
	}
	code, werr := p.Wait(ctx)
	pumps.Wait()
	mu.Lock()
	cerr := clientErr
	mu.Unlock()
	switch {
	case cerr != nil:
		writeExit(fw, -1, cerr)
	case werr != nil && ctx.Err() != nil:
		// The client hung up (or the daemon is ending): nobody to tell.
	default:
		writeExit(fw, code, werr)
	}
}

// readClient applies the client's frames to the process until the
// connection ends (nil) or the client breaks the protocol.
func (s *Server) readClient(p *sandbox.Process, uc *net.UnixConn) error {
	fr := api.NewFrameReader(&fdRefusingReader{uc: uc}, api.FromClient)
	stdinOpen := true
	for {
		t, b, err := fr.Next()
		if err != nil {
			var fe *fdError
			switch {
			case errors.As(err, &fe):
				return api.Errorf(api.ErrPermission, "exec: %v", err)
			case errors.Is(err, api.ErrBadFrame):
				return api.Errorf(api.ErrInvalidArgument, "exec: %v", err)
			}
			return nil
		}
		switch t {
		case api.FrameStdin:
			if !stdinOpen {
				return api.Errorf(api.ErrInvalidArgument, "exec: stdin frame after stdin EOF")
			}
			// A process that closed its stdin or exited drops the rest,
			// as a closed pipe would.
			_, _ = p.Stdin.Write(b)
		case api.FrameStdinEOF:
			if stdinOpen {
				stdinOpen = false
				_ = p.CloseStdin()
			}
		case api.FrameResize:
			if !p.Tty() {
				return api.Errorf(api.ErrInvalidArgument, "exec: window size for a process without a terminal")
			}
			ws, err := api.DecodeWindowSize(b)
			if err != nil {
				return api.Errorf(api.ErrInvalidArgument, "exec: %v", err)
			}
			_ = p.Resize(ws.Rows, ws.Cols)
		case api.FrameSignal:
			_ = p.Signal(unix.Signal(b[0]))
		}
	}
}

// watchHangup calls fn once the client's end of uc is closed (POLLHUP or
// POLLRDHUP on a duplicate of the socket), independently of the reader.
// stop ends the watch.
func watchHangup(uc *net.UnixConn, fn func()) (stop func(), err error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	sock := -1
	var derr error
	if err := raw.Control(func(fd uintptr) { sock, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup the connection: %w", derr)
	}
	var wake [2]int
	if err := unix.Pipe2(wake[:], unix.O_CLOEXEC); err != nil {
		unix.Close(sock)
		return nil, fmt.Errorf("wake pipe: %w", err)
	}
	go func() {
		defer unix.Close(sock)
		defer unix.Close(wake[0])
		fds := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLRDHUP}, {Fd: int32(wake[0]), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || fds[1].Revents != 0 {
				return
			}
			if fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				fn()
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_, _ = unix.Write(wake[1], []byte{0})
			unix.Close(wake[1])
		})
	}, nil
}

// fdError: the client sent descriptors, which were closed.
type fdError struct{ n int }

func (e *fdError) Error() string {
	return fmt.Sprintf("the client sent %d file descriptor(s) on the connection: refused and closed (workcelld makes the process's stdio itself)", e.n)
}

// fdRefusingReader reads the connection with a control buffer, so that
// any descriptor the client attaches is seen, closed at once and turned
// into an error; a plain read would drop it unseen.
type fdRefusingReader struct {
	uc  *net.UnixConn
	oob [256]byte
}

func (r *fdRefusingReader) Read(b []byte) (int, error) {
	n, oobn, flags, _, err := r.uc.ReadMsgUnix(b, r.oob[:])
	if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
		fds := rightsIn(r.oob[:oobn])
		for _, fd := range fds {
			unix.Close(fd)
		}
		// Descriptors beyond the buffer (MSG_CTRUNC) were never installed.
		return 0, &fdError{n: max(len(fds), 1)}
	}
	return n, err
}

// rightsIn returns the descriptors of SCM_RIGHTS messages in oob.
func rightsIn(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func writeExit(fw *api.FrameWriter, code int, err error) {
	res := api.ExecResult{ExitCode: code}
	if err != nil {
		body, _ := api.ToBody(err)
		// The exit frame is bounded like every other.
		if len(body.Message) > 4096 {
			body.Message = body.Message[:4096] + "..."
		}
		res.Error = &body
	}
	b, _ := json.Marshal(res)
	_ = fw.Write(api.FrameExit, b)
}

// startExec starts a command in a running profile, as the bundle's
// process.user unless req.User says otherwise (the caller checked who may).
func (d *Daemon) startExec(ctx context.Context, name string, req api.ExecRequest) (*sandbox.Process, error) {
	if len(req.Args) == 0 || req.Args[0] == "" {
		return nil, api.Errorf(api.ErrInvalidArgument, "args: a command is required")
	}
	c, err := d.container(name)
	if err != nil {
		return nil, err
	}
	e := sandbox.ExecSpec{Args: req.Args, Env: req.Env, Cwd: req.Cwd, Tty: req.Tty, Rows: req.Rows, Cols: req.Cols}
	if req.User != nil {
		e.User = &sandbox.User{UID: req.User.UID, GID: req.User.GID}
	}
	p, err := c.Start(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("exec %q in profile %s: %w", req.Args[0], name, err)
	}
	return p, nil
}

// shellCode maps a failure to start a command to a shell's exit code.
// libcontainer reports the init's exec error as text, so match both the
// error chain and the text.
func shellCode(err error) (int, bool) {
	msg := err.Error()
	switch {
	case errors.Is(err, os.ErrNotExist) || strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "executable file not found"):
		return 127, true
	case errors.Is(err, os.ErrPermission) || strings.Contains(msg, "permission denied") || strings.Contains(msg, "exec format error"):
		return 126, true
	}
	return 0, false
}

func shellReason(code int) string {
	if code == 127 {
		return "command not found"
	}
	return "permission denied or not executable"
}
