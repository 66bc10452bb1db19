package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// User is a user of the container: container uids and gids, which a user
// namespace (where there is one) maps like every other.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
}

func specUser(u specs.User) User {
	return User{UID: u.UID, GID: u.GID, AdditionalGids: append([]uint32(nil), u.AdditionalGids...)}
}

// userLabelKey records the bundle's process.user in the container's
// libcontainer state, so that a daemon adopting the container after a
// restart runs exec as the same user without reading the bundle again.
const userLabelKey = "workcell.exec-user"

func (u User) label() string {
	gids := make([]string, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		gids[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%s=%d:%d:%s", userLabelKey, u.UID, u.GID, strings.Join(gids, ","))
}

// userFromLabels reads the label; nil when it is absent or malformed.
func userFromLabels(labels []string) *User {
	for _, l := range labels {
		v, ok := strings.CutPrefix(l, userLabelKey+"=")
		if !ok {
			continue
		}
		f := strings.Split(v, ":")
		if len(f) != 3 {
			return nil
		}
		uid, err1 := strconv.ParseUint(f[0], 10, 32)
		gid, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			return nil
		}
		u := &User{UID: uint32(uid), GID: uint32(gid)}
		if f[2] != "" {
			for _, s := range strings.Split(f[2], ",") {
				g, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					return nil
				}
				u.AdditionalGids = append(u.AdditionalGids, uint32(g))
			}
		}
		return u
	}
	return nil
}

// ExecSpec describes a process to run in a running container.
type ExecSpec struct {
	Args, Env []string // Env default: DefaultEnv
	Cwd       string   // default "/"
	// User runs the process as another user; nil runs it as the bundle's
	// process.user. Who may ask is the daemon's decision.
	User *User
	// Stdin, Stdout and Stderr are for Exec only: files the caller made
	// (nil means /dev/null). Never hand a process a file from outside:
	// a directory or O_PATH file there is a way out of the container.
	Stdin, Stdout, Stderr *os.File
	// Tty (Start only) gives the process a terminal of Rows x Cols,
	// allocated in the container's own devpts.
	Tty        bool
	Rows, Cols uint16
}

// Exec runs a process in the container, with the container's capabilities,
// seccomp profile and no_new_privs, and returns its exit code: 128+N when it
// was killed by signal N. Cancelling ctx kills it.
func (c *Container) Exec(ctx context.Context, e ExecSpec) (int, error) {
	if e.Tty {
		return -1, fmt.Errorf("container %s: exec: a terminal needs Start: %w", c.id, ErrInvalidSpec)
	}
	p, err := c.start(ctx, e, func(_ *Process, lp *libcontainer.Process) (func(), error) {
		// Assign only non-nil files: a nil *os.File in an io.Writer is not nil.
		if e.Stdin != nil {
			lp.Stdin = e.Stdin
		}
		if e.Stdout != nil {
			lp.Stdout = e.Stdout
		}
		if e.Stderr != nil {
			lp.Stderr = e.Stderr
		}
		return func() {}, nil
	})
	if err != nil {
		return -1, err
	}
	defer p.Close()
	return p.Wait(ctx)
}

// Process is a process started by Start, with stdio the sandbox made:
// pipes, or the master of its terminal.
type Process struct {
	// Stdin feeds the process; CloseStdin ends it.
	Stdin io.Writer
	// Stdout and Stderr are what it writes. Once it has exited they return
	// what it wrote before, then io.EOF, even while a process it left
	// behind holds them open. With a terminal Stderr is nil.
	Stdout, Stderr io.Reader

	id, arg0 string
	lp       *libcontainer.Process
	pid      int
	wantTty  bool
	tty      *os.File   // the pty master, or nil
	files    []*os.File // the daemon's ends, closed by Close

	mu     sync.Mutex
	exited bool // the process is a zombie or reaped: its pid may be reused once reaped
	done   chan struct{}
	status syscall.WaitStatus
	err    error
}

// Start starts a process in the container with stdio made here: pipes, or
// a terminal when e.Tty is set. The caller relays the process's streams,
// calls Wait, then Close.
func (c *Container) Start(ctx context.Context, e ExecSpec) (*Process, error) {
	if e.Stdin != nil || e.Stdout != nil || e.Stderr != nil {
		return nil, fmt.Errorf("container %s: exec: Start makes the stdio itself, files are for Exec: %w", c.id, ErrInvalidSpec)
	}
	return c.start(ctx, e, func(p *Process, lp *libcontainer.Process) (func(), error) {
		if e.Tty {
			return p.setupTty(lp, e)
		}
		return p.setupPipes(lp)
	})
}

// start checks, builds the libcontainer process, lets setup attach stdio
// (it returns what to run once the process started or failed: closing the
// child's ends) and runs it.
func (c *Container) start(ctx context.Context, e ExecSpec, setup func(*Process, *libcontainer.Process) (func(), error)) (*Process, error) {
	if len(e.Args) == 0 {
		return nil, fmt.Errorf("container %s: exec: no args: %w", c.id, ErrInvalidSpec)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
	}
	u := e.User
	if u == nil {
		u = c.user
	}
	if u == nil {
		return nil, fmt.Errorf("container %s: exec %s: its state records no process user (started by an older workcelld): restart the profile: %w", c.id, e.Args[0], ErrInvalidSpec)
	}
	if u.UID == noID || u.GID == noID {
		return nil, fmt.Errorf("container %s: exec %s: uid/gid %d is not a user: %w", c.id, e.Args[0], noID, ErrInvalidSpec)
	}
	if e.User != nil && c.ids != nil {
		// Container ids, as the caller knows them; the recorded process
		// user is shifted already.
		s, err := c.ids.shiftUser(*e.User)
		if err != nil {
			return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
		}
		u = &s
	}
	// A process joining a frozen cgroup would freeze at once and Exec
	// would hang until ctx ends.
	if st, err := c.State(ctx); err != nil {
		return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
	} else if st != Running {
		return nil, fmt.Errorf("container %s: exec %s: container is %s", c.id, e.Args[0], st)
	}
	lp := &libcontainer.Process{Args: e.Args, Env: e.Env, Cwd: e.Cwd, UID: int(u.UID), GID: int(u.GID)}
	for _, g := range u.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if len(lp.Env) == 0 {
		lp.Env = DefaultEnv
	}
	if lp.Cwd == "" {
		lp.Cwd = "/"
	}
	p := &Process{lp: lp, done: make(chan struct{})}
	after, err := setup(p, lp)
	if err != nil {
		return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
	}
	err = c.lc.Run(lp)
	after()
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
	}
	p.id, p.arg0 = c.id, e.Args[0]
	if p.pid, err = lp.Pid(); err != nil {
		_ = lp.Signal(unix.SIGKILL)
		_, _ = lp.Wait()
		p.Close()
		return nil, fmt.Errorf("container %s: exec %s: pid: %w", c.id, e.Args[0], err)
	}
	// Where limits live in v1 groups beside libcontainer's cgroup
	// (Android's /dev/memcg), the exec'd process joins them too.
	if err := c.joinV1Groups(ctx, p.pid); err != nil {
		_ = lp.Signal(unix.SIGKILL)
		_, _ = lp.Wait()
		p.Close()
		return nil, fmt.Errorf("container %s: exec %s: %w", c.id, e.Args[0], err)
	}
	if p.wantTty {
		if err := p.recvTty(ctx, p.files[0]); err != nil {
			p.kill(unix.SIGKILL)
			go p.reap()
			<-p.done
			p.Close()
			return nil, fmt.Errorf("container %s: exec %s: terminal: %w", c.id, e.Args[0], err)
		}
	}
	go p.reap()
	return p, nil
}

// noID is (uid_t)-1, which setuid reads as "no change".
const noID = 1<<32 - 1

func (p *Process) setupPipes(lp *libcontainer.Process) (func(), error) {
	var child []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(child)
			closeAll(p.files)
			p.files = nil
			return nil, fmt.Errorf("stdio pipe: %w", err)
		}
		if i == 0 {
			child = append(child, r)
			p.files = append(p.files, w)
			p.Stdin = w
			lp.Stdin = r
			continue
		}
		child = append(child, w)
		p.files = append(p.files, r)
		if i == 1 {
			p.Stdout, lp.Stdout = &drainReader{f: r, p: p}, w
		} else {
			p.Stderr, lp.Stderr = &drainReader{f: r, p: p}, w
		}
	}
	return func() { closeAll(child) }, nil
}

// setupTty hands libcontainer a console socket: its init allocates the
// pty in the container's devpts (so the process's terminal is the
// container's /dev/pts/N, not one of the host's) and sends the master back.
func (p *Process) setupTty(lp *libcontainer.Process, e ExecSpec) (func(), error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "console-parent")
	child := os.NewFile(uintptr(fds[1]), "console-child")
	p.files = append(p.files, parent)
	p.wantTty = true
	lp.ConsoleSocket = child
	lp.ConsoleWidth, lp.ConsoleHeight = e.Cols, e.Rows
	return func() { child.Close() }, nil
}

// recvTty reads the pty master init sent on the console socket: exactly one
// descriptor, and it must be a pty master.
func (p *Process) recvTty(ctx context.Context, sock *os.File) error {
	fc, err := net.FileConn(sock)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer fc.Close()
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		return errors.New("console socket is not a unix socket")
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("receive the pty master: %w", err)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return err
	}
	if len(fds) != 1 || flags&unix.MSG_CTRUNC != 0 {
		closeFds(fds)
		return fmt.Errorf("receive the pty master: got %d descriptors, want 1", len(fds))
	}
	fd := fds[0]
	if _, err := unix.IoctlGetInt(fd, unix.TIOCGPTN); err != nil {
		unix.Close(fd)
		return fmt.Errorf("received descriptor is not a pty master: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("pty master: %w", err)
	}
	m := os.NewFile(uintptr(fd), "pty-master")
	p.tty = m
	p.files = append(p.files, m)
	p.Stdin = m
	p.Stdout = &drainReader{f: m, p: p}
	return nil
}

// parseRights returns every descriptor in a control message buffer.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			fds = append(fds, got...)
		}
	}
	return fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// reap waits for the exit without reaping first (WNOWAIT), marks the
// process exited under mu so that Signal never reaches a reused pid, then
// reaps it.
func (p *Process) reap() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	// A non-zero exit comes with an *exec.ExitError beside the state.
	ps, err := p.lp.Wait()
	if ps != nil {
		err = nil
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			p.status = ws
		} else {
			err = fmt.Errorf("unexpected wait status %T", ps.Sys())
		}
	} else if err == nil {
		err = errors.New("no wait status")
	}
	p.err = err
	// Wake readers blocked on pipes a left-behind process holds: they
	// drain what is there and end (drainReader).
	for _, f := range p.files {
		_ = f.SetDeadline(time.Now())
	}
	close(p.done)
}

// Signal sends sig to the process's group (exec'd processes lead their own
// session): what a terminal's Ctrl-C does. After the exit it does nothing.
func (p *Process) Signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	if err := unix.Kill(-p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("container %s: exec %s: signal %v: %w", p.id, p.arg0, sig, err)
	}
	return nil
}

func (p *Process) kill(sig unix.Signal) { _ = p.Signal(sig) }

// Resize sets the terminal's size; the kernel sends SIGWINCH to its
// foreground group. Without a terminal it is an error.
func (p *Process) Resize(rows, cols uint16) error {
	if p.tty == nil {
		return fmt.Errorf("container %s: exec %s: resize: the process has no terminal: %w", p.id, p.arg0, ErrInvalidSpec)
	}
	ws := &unix.Winsize{Row: rows, Col: cols}
	if err := unix.IoctlSetWinsize(int(p.tty.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return fmt.Errorf("container %s: exec %s: resize: %w", p.id, p.arg0, err)
	}
	return nil
}

// Tty reports whether the process has a terminal.
func (p *Process) Tty() bool { return p.tty != nil }

// CloseStdin ends the process's input: a pipe is closed; a terminal gets
// its end-of-file character (^D), as typing it would, and stays open.
func (p *Process) CloseStdin() error {
	if p.tty != nil {
		_, err := p.tty.Write([]byte{4})
		return err
	}
	if len(p.files) > 0 {
		return p.files[0].Close()
	}
	return nil
}

// Wait waits for the process and returns its exit code: 128+N when signal
// N killed it. Cancelling ctx kills its group first.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill(unix.SIGKILL)
		<-p.done
		return -1, fmt.Errorf("container %s: exec %s: %w", p.id, p.arg0, ctx.Err())
	}
	if p.err != nil {
		return -1, fmt.Errorf("container %s: exec %s: wait: %w", p.id, p.arg0, p.err)
	}
	if p.status.Signaled() {
		return 128 + int(p.status.Signal()), nil
	}
	return p.status.ExitStatus(), nil
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Close closes the sandbox's ends of the stdio. It does not wait.
func (p *Process) Close() {
	for _, f := range p.files {
		f.Close()
	}
}

// drainReader reads a pipe or pty master until EOF; once the process has
// exited (reap set a past deadline), it reads what is buffered without
// waiting and then ends, so a background process holding the other end
// cannot keep the exec open.
type drainReader struct {
	f *os.File
	p *Process
}

func (d *drainReader) Read(b []byte) (int, error) {
	n, err := d.f.Read(b)
	if err == nil || n > 0 {
		return n, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return d.drain(b)
	}
	// A pty master whose slave side is all closed reads EIO: that is EOF.
	if errors.Is(err, unix.EIO) {
		return 0, io.EOF
	}
	return 0, err
}

func (d *drainReader) drain(b []byte) (int, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return 0, io.EOF
	}
	var n int
	var rerr error
	// Control ignores the deadline: the fd is non-blocking, so this read
	// returns what is there or EAGAIN.
	if err := rc.Control(func(fd uintptr) {
		for {
			n, rerr = unix.Read(int(fd), b)
			if !errors.Is(rerr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return 0, io.EOF
	}
	if n > 0 && rerr == nil {
		return n, nil
	}
	return 0, io.EOF
}
