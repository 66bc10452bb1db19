package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/testbundle"
)

// The exec tests are the attack of issue 8 (a client's descriptor of the
// host's / handed to a root process in the container) and its regression.

const (
	execOwnerUID  = 4252
	execSystemUID = 4353
)

// shadowLine returns the first line of the host's /etc/shadow, the secret
// the attack reads.
func shadowLine(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatalf("host /etc/shadow: %v (the attack's target must exist)", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line == "" {
		t.Fatal("host /etc/shadow is empty: nothing to tell a leak by")
	}
	return line
}

func asUID(uid int) []string {
	return []string{"setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups"}
}

// execAttack runs `workcell exec` as uid (-1: as root) with stdin open on
// a host path (the attack's is /).
func (d *daemon) execAttack(uid int, stdin string, args ...string) result {
	d.t.Helper()
	root, err := os.Open(stdin)
	if err != nil {
		d.t.Fatal(err)
	}
	defer root.Close()
	full := append([]string{filepath.Join(binDir, "workcell"), "--socket", d.socket, "exec"}, args...)
	if uid >= 0 {
		full = append(asUID(uid), full...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = root, &out, &errb
	err = cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		d.t.Fatalf("run %v: %v", full, err)
	}
	return r
}

// TestExecOwnerCannotReadHostFiles is the first attack, as the
// owner uid through the real CLI: stdin is the host's /, and the process
// reads /proc/self/fd/0/etc/shadow.
func TestExecOwnerCannotReadHostFiles(t *testing.T) {
	secret := shadowLine(t)
	d := newDaemon(t, withArgs("--owner-uid", strconv.Itoa(execOwnerUID)))
	d.install("work")
	d.ok("start", "work")
	r := d.execAttack(execOwnerUID, "/", "work", "--", "sh", "-c", "head -2 /proc/self/fd/0/etc/shadow; readlink /proc/self/fd/0")
	if strings.Contains(r.stdout, secret) {
		t.Fatalf("the owner read the host's /etc/shadow through exec: %q", r.stdout)
	}
	if !strings.HasPrefix(strings.TrimSpace(lastLine(r.stdout)), "pipe:") {
		t.Fatalf("stdin inside is %q (exit %d, stderr %q), want a pipe the daemon made", r.stdout, r.code, r.stderr)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// TestExecStdioIsDaemonMade: stdin, stdout and stderr inside are pipes;
// with a terminal they are the container's own pty.
func TestExecStdioIsDaemonMade(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	// The CLI's own stdin is a host file: inside, fd 0 must not be it.
	r := d.execAttack(-1, "/etc/hostname", "-T", "work", "--", "sh", "-c", "for f in 0 1 2; do readlink /proc/self/fd/$f; done 2>&1")
	out := r.stdout
	for i, l := range strings.Fields(out) {
		if !strings.HasPrefix(l, "pipe:") {
			t.Errorf("fd %d inside is %q, want a pipe", i, l)
		}
	}
	if n := len(strings.Fields(out)); n != 3 {
		t.Fatalf("readlink printed %q", out)
	}
	var buf bytes.Buffer
	code, err := d.client.Exec(context.Background(), "work", api.ExecRequest{Args: []string{"readlink", "/proc/self/fd/0"}, Tty: true}, api.ExecIO{Stdout: &buf})
	if err != nil || code != 0 {
		t.Fatalf("tty exec: %d %v", code, err)
	}
	if got := strings.TrimSpace(buf.String()); !strings.HasPrefix(got, "/dev/pts/") {
		t.Fatalf("tty stdin inside is %q, want the container's /dev/pts/N", got)
	}
}

// v2Dial speaks the new protocol by hand up to the 101 and returns the
// connection and the status line's code.
func v2Dial(t *testing.T, socket, upgrade string, req api.ExecRequest, rights []byte) (*net.UnixConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	uc := c.(*net.UnixConn)
	t.Cleanup(func() { uc.Close() })
	body, _ := json.Marshal(req)
	msg := fmt.Sprintf("POST /v1/profiles/work/exec HTTP/1.1\r\nHost: workcelld\r\nConnection: Upgrade\r\nUpgrade: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", upgrade, len(body), body)
	if _, _, err := uc.WriteMsgUnix([]byte(msg), rights, nil); err != nil {
		t.Fatal(err)
	}
	_ = uc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(uc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return uc, br, resp
}

// readAll reads the daemon's frames up to the exit frame.
func readAll(t *testing.T, br *bufio.Reader) (stdout string, res api.ExecResult) {
	t.Helper()
	fr := api.NewFrameReader(br, api.FromDaemon)
	var out bytes.Buffer
	for {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatalf("frames: %v (stdout so far %q)", err, out.String())
		}
		switch typ {
		case api.FrameStdout, api.FrameStderr:
			out.Write(p)
		case api.FrameExit:
			if err := json.Unmarshal(p, &res); err != nil {
				t.Fatal(err)
			}
			return out.String(), res
		}
	}
}

// daemonFds lists where the daemon's descriptors point.
func daemonFds(t *testing.T, d *daemon) []string {
	t.Helper()
	v, err := d.client.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/proc/%d/fd", v.DaemonPid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out = append(out, l)
		}
	}
	return out
}

func countOf(list []string, s string) int {
	n := 0
	for _, l := range list {
		if l == s {
			n++
		}
	}
	return n
}

// TestExecRefusesClientFds: a client that sends descriptors on the exec
// connection (a directory of /, an O_PATH of /, a socket), with a frame
// after the upgrade or with the request itself, reads nothing of the host,
// and the daemon keeps none of them.
func TestExecRefusesClientFds(t *testing.T) {
	secret := shadowLine(t)
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	attack := api.ExecRequest{Args: []string{"sh", "-c", "sleep 0.5; head -2 /proc/self/fd/0/etc/shadow /proc/self/fd/3/etc/shadow"}}
	open := map[string]func(t *testing.T) (fd int, peer *os.File){
		"directory of /": func(t *testing.T) (int, *os.File) {
			fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd, nil
		},
		"O_PATH of /": func(t *testing.T) (int, *os.File) {
			fd, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd, nil
		},
		"socket": func(t *testing.T) (int, *os.File) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fds[0], os.NewFile(uintptr(fds[1]), "peer")
		},
	}
	for _, kind := range []string{"directory of /", "O_PATH of /", "socket"} {
		for _, when := range []string{"after the upgrade", "with the request"} {
			t.Run(kind+" "+when, func(t *testing.T) {
				before := countOf(daemonFds(t, d), "/")
				fd, peer := open[kind](t)
				rights := unix.UnixRights(fd, fd, fd)
				var pre []byte
				if when == "with the request" {
					pre = rights
				}
				uc, br, resp := v2Dial(t, d.socket, api.ExecUpgrade, attack, pre)
				if resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("status %d, want 101", resp.StatusCode)
				}
				if when == "after the upgrade" {
					frame := api.AppendFrame(nil, api.FrameStdin, []byte("x"))
					if _, _, err := uc.WriteMsgUnix(frame, rights, nil); err != nil {
						t.Fatal(err)
					}
				}
				unix.Close(fd)
				out, res := readAll(t, br)
				if strings.Contains(out, secret) {
					t.Fatalf("read the host's shadow through a passed descriptor: %q", out)
				}
				if when == "after the upgrade" {
					if res.Error == nil || res.Error.Code != "permission_denied" || !strings.Contains(res.Error.Message, "file descriptor") {
						t.Fatalf("result %+v, want a refusal naming the file descriptors", res)
					}
				} else if res.ExitCode == 0 {
					// Sent with the request, the kernel dropped them unread
					// (plain reads): the process saw pipes and failed.
					t.Fatalf("exec with descriptors in the request succeeded: %q", out)
				}
				if peer != nil {
					// Every copy of the sent end is closed only if the daemon
					// closed its own: then the peer reads EOF at once.
					defer peer.Close()
					_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := peer.Read(make([]byte, 1))
					if n != 0 || !errors.Is(err, io.EOF) {
						t.Fatalf("the sent socket is still open somewhere: read %d, %v", n, err)
					}
				}
				if after := countOf(daemonFds(t, d), "/"); after > before {
					t.Fatalf("the daemon holds %d descriptors of / (had %d)", after, before)
				}
			})
		}
	}
}

// TestExecOldProtocolRefused: a hand-rolled client of the first protocol
// (upgrade workcell-exec, then stdin/stdout/stderr as SCM_RIGHTS) gets an
// error naming the new protocol and reads nothing of the host.
func TestExecOldProtocolRefused(t *testing.T) {
	secret := shadowLine(t)
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	root, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	uc, br, resp := v2Dial(t, d.socket, "workcell-exec", api.ExecRequest{Args: []string{"sh", "-c", "head -2 /proc/self/fd/0/etc/shadow"}}, nil)
	// As the old client did, whatever the answer: one byte with the fds.
	_, _, _ = uc.WriteMsgUnix([]byte{0}, unix.UnixRights(root, 1, 2), nil)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	rest, _ := io.ReadAll(br)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), api.ExecUpgrade) {
		t.Fatalf("old protocol: status %d body %q, want 400 naming %s", resp.StatusCode, body, api.ExecUpgrade)
	}
	if strings.Contains(string(body)+string(rest), secret) {
		t.Fatal("the old protocol still reads the host's shadow")
	}
}

// TestExecRunsAsBundleUser: exec runs as the bundle's process.user; the
// owner may not pick another (403 naming its uid), root and the system
// uid may.
func TestExecRunsAsBundleUser(t *testing.T) {
	d := newDaemon(t, withArgs("--owner-uid", strconv.Itoa(execOwnerUID), "--system-uid", strconv.Itoa(execSystemUID)))
	bundle := testbundle.Busybox(t)
	if err := testbundle.SetUser(bundle, 1000, 1000, 1001); err != nil {
		t.Fatal(err)
	}
	d.ok("install", "work", bundle)
	d.ok("start", "work")
	if out := d.ok("exec", "work", "--", "id", "-u"); strings.TrimSpace(out) != "1000" {
		t.Fatalf("root's exec runs as uid %q, want the bundle's 1000", out)
	}
	if r := d.cliAs(asUID(execOwnerUID), "", "exec", "work", "--", "id", "-G"); r.code != 0 || strings.Join(strings.Fields(r.stdout), " ") != "1000 1001" {
		t.Fatalf("owner's exec: groups %q (exit %d, %q), want the bundle's 1000 1001", r.stdout, r.code, r.stderr)
	}
	r := d.cliAs(asUID(execOwnerUID), "", "exec", "--user", "0", "work", "--", "id", "-u")
	if r.code != 4 || !strings.Contains(r.stderr, fmt.Sprintf("uid %d may not exec as another user", execOwnerUID)) || r.stdout != "" {
		t.Fatalf("owner --user 0: exit %d stdout %q stderr %q, want 4 naming uid %d", r.code, r.stdout, r.stderr, execOwnerUID)
	}
	if out := d.ok("exec", "--user", "0", "work", "--", "id", "-u"); strings.TrimSpace(out) != "0" {
		t.Fatalf("root --user 0 ran as %q", out)
	}
	if r := d.cliAs(asUID(execSystemUID), "", "exec", "--user", "33:44", "work", "--", "sh", "-c", "echo $(id -u):$(id -g)"); r.code != 0 || strings.TrimSpace(r.stdout) != "33:44" {
		t.Fatalf("system uid --user 33:44: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// The user survives a daemon restart (adopted container).
	d.kill9()
	d.start()
	if out := d.ok("exec", "work", "--", "id", "-u"); strings.TrimSpace(out) != "1000" {
		t.Fatalf("after adoption exec runs as %q, want 1000", out)
	}
}

// TestExecStreams: stdin to EOF, stdout and stderr apart, byte-exact at
// 8 MiB, exit codes.
func TestExecStreams(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	ctx := context.Background()
	in := make([]byte, 8<<20)
	if _, err := rand.Read(in); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code, err := d.client.Exec(ctx, "work", api.ExecRequest{Args: []string{"sh", "-c", "cat; echo to-stderr >&2; exit 7"}},
		api.ExecIO{Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errb})
	if err != nil || code != 7 {
		t.Fatalf("exec cat: code %d err %v, want 7 (stdin EOF must reach cat)", code, err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Fatalf("stdout: %d bytes, differ from the %d sent", out.Len(), len(in))
	}
	if errb.String() != "to-stderr\n" {
		t.Fatalf("stderr %q", errb.String())
	}
	out.Reset()
	code, err = d.client.Exec(ctx, "work", api.ExecRequest{Args: []string{"head", "-c", "8388608", "/dev/zero"}}, api.ExecIO{Stdout: &out})
	if err != nil || code != 0 || out.Len() != 8<<20 || bytes.IndexFunc(out.Bytes(), func(r rune) bool { return r != 0 }) >= 0 {
		t.Fatalf("8 MiB of zeros: code %d err %v, %d bytes", code, err, out.Len())
	}
	// A process left behind holding stdout does not keep the exec open.
	start := time.Now()
	if out := d.ok("exec", "work", "--", "sh", "-c", "sleep 30 & echo bye"); out != "bye\n" {
		t.Fatalf("exec with a background child: %q", out)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("exec waited %v for its background child", el)
	}
}

// TestExecTerminal: a tty exec sees a terminal of the client's size, and a
// resize reaches it (SIGWINCH).
func TestExecTerminal(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	ctx := context.Background()
	var out bytes.Buffer
	code, err := d.client.Exec(ctx, "work", api.ExecRequest{Args: []string{"sh", "-c", "test -t 0 && test -t 1 && test -t 2 && stty size"}, Tty: true, Rows: 33, Cols: 101}, api.ExecIO{Stdout: &out})
	if err != nil || code != 0 || strings.TrimSpace(out.String()) != "33 101" {
		t.Fatalf("tty exec: code %d err %v stdout %q, want a terminal of 33 101", code, err, out.String())
	}
	pr, pw := io.Pipe()
	resize := make(chan api.WindowSize, 1)
	type res struct {
		code int
		err  error
	}
	done := make(chan res, 1)
	go func() {
		code, err := d.client.Exec(ctx, "work", api.ExecRequest{
			Args: []string{"sh", "-c", `trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done`}, Tty: true, Rows: 10, Cols: 20,
		}, api.ExecIO{Stdout: pw, Resize: resize})
		pw.Close()
		done <- res{code, err}
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		lines = append(lines, l)
		if l == "ready" {
			resize <- api.WindowSize{Rows: 50, Cols: 120}
		}
	}
	r := <-done
	if r.err != nil || r.code != 0 || len(lines) < 2 || lines[len(lines)-1] != "50 120" {
		t.Fatalf("resize: code %d err %v lines %q, want the trap to print 50 120", r.code, r.err, lines)
	}
}

// TestExecCancelKills: cancelling the client's context (a hang-up) kills
// the process; Ctrl-C on the CLI without a terminal forwards SIGINT.
func TestExecCancelKills(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := d.client.Exec(ctx, "work", api.ExecRequest{Args: []string{"sh", "-c", "echo $$; exec sleep 1000"}}, api.ExecIO{Stdout: pw})
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read the pid: %v", err)
	}
	pid := strings.TrimSpace(line)
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exec returned %v", err)
	}
	waitFor(t, "the exec'd sleep to die", func() bool {
		r := d.cli("exec", "work", "--", "test", "-e", "/proc/"+pid)
		return r.code == 1
	})

	// Also when the daemon is blocked feeding a stdin the process never
	// reads.
	ctx, cancel = context.WithCancel(context.Background())
	pr, pw = io.Pipe()
	go func() {
		_, err := d.client.Exec(ctx, "work", api.ExecRequest{Args: []string{"sh", "-c", "echo $$; exec sleep 1000"}}, api.ExecIO{Stdin: zeros{}, Stdout: pw})
		pw.Close()
		done <- err
	}()
	if line, err = bufio.NewReader(pr).ReadString('\n'); err != nil {
		t.Fatalf("read the pid: %v", err)
	}
	pid = strings.TrimSpace(line)
	time.Sleep(200 * time.Millisecond) // let stdin fill the pipe
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exec returned %v", err)
	}
	waitFor(t, "the exec'd sleep with a full stdin to die", func() bool {
		r := d.cli("exec", "work", "--", "test", "-e", "/proc/"+pid)
		return r.code == 1
	})

	cmd := exec.Command(filepath.Join(binDir, "workcell"), "--socket", d.socket, "exec", "-T", "work", "--", "sh", "-c", "echo started; exec sleep 1000")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("workcell exec after SIGINT: %v, want exit 130 (the process died of the forwarded SIGINT)", err)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("SIGINT did not end the exec")
	}
}

// zeros is an endless stdin.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// openPty opens a host pty pair for the CLI under test, of rows x cols.
func openPty(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	// Non-blocking, so that the master is pollable and reads obey deadlines.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	m := os.NewFile(uintptr(fd), "ptmx")
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// TestExecCLITerminal: on a terminal the CLI asks for one by itself (raw
// mode, its size), passes a window change (SIGWINCH) on, and -T gives
// pipes even there.
func TestExecCLITerminal(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	run := func(t *testing.T, m, s *os.File, onReady func(), args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "workcell"), append([]string{"--socket", d.socket, "exec"}, args...)...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			buf := make([]byte, 4096)
			for {
				n, err := m.Read(buf)
				out.Write(buf[:n])
				if onReady != nil && strings.Contains(out.String(), "ready") {
					onReady()
					onReady = nil
				}
				if err != nil {
					return
				}
			}
		}()
		errc := make(chan error, 1)
		go func() { errc <- cmd.Wait() }()
		select {
		case err := <-errc:
			// Let the output already written arrive, then stop reading.
			time.Sleep(100 * time.Millisecond)
			_ = m.SetReadDeadline(time.Now())
			<-readDone
			return out.String(), err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("workcell exec on a terminal hung; output %q", out.String())
		}
		return "", nil
	}
	t.Run("size and terminal", func(t *testing.T) {
		m, s := openPty(t, 27, 93)
		out, err := run(t, m, s, nil, "work", "--", "sh", "-c", "test -t 0 && readlink /proc/self/fd/0 && stty size")
		if err != nil || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "27 93") {
			t.Fatalf("exec on a terminal: %v, output %q; want the container's pty of 27 93", err, out)
		}
	})
	t.Run("window change", func(t *testing.T) {
		m, s := openPty(t, 10, 20)
		out, err := run(t, m, s, func() {
			_ = unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 44, Col: 111})
		}, "work", "--", "sh", "-c", `trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done`)
		if err != nil || !strings.Contains(out, "44 111") {
			t.Fatalf("SIGWINCH: %v, output %q; want the new size 44 111", err, out)
		}
	})
	t.Run("-T on a terminal", func(t *testing.T) {
		m, s := openPty(t, 10, 20)
		out, err := run(t, m, s, nil, "-T", "work", "--", "sh", "-c", "test -t 0 || echo no-terminal")
		if err != nil || !strings.Contains(out, "no-terminal") {
			t.Fatalf("-T: %v, output %q", err, out)
		}
	})
}
