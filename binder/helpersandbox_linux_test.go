//go:build linux && (amd64 || arm64)

package binder

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The sandbox tests need no binder driver: a child of the test binary
// goes through the node helper's two stages (drop, execute itself, lock
// down) and then shows what it may still do.

const sandboxTestEnv = "WORKCELL_BINDER_SANDBOX_TEST"

func init() {
	switch os.Getenv(sandboxTestEnv) {
	case "":
		return
	case "drop":
		// As enterSandbox, without devices.
		if err := dropPrivileges(65534, 65534); err != nil {
			fmt.Println("drop:", err)
			os.Exit(1)
		}
		env := []string{sandboxTestEnv + "=locked"}
		err := syscall.Exec("/proc/self/exe", []string{os.Args[0], "-test.run=^$"}, env)
		fmt.Println("exec the second stage:", err)
		os.Exit(1)
	case "locked":
		if err := lockDown(); err != nil {
			fmt.Println("lock down:", err)
			os.Exit(1)
		}
		sandboxedProbes()
		os.Exit(0)
	}
}

// sandboxedProbes runs in the locked-down child: what a helper needs works
// (threads, timers, the GC, pipes), what an attacker wants does not; then
// it waits for stdin to close so that the parent can read its status.
func sandboxedProbes() {
	var wg sync.WaitGroup
	for range 16 { // new OS threads
		wg.Go(func() {
			runtime.LockOSThread()
			time.Sleep(5 * time.Millisecond)
		})
	}
	wg.Wait()
	runtime.GC()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		fmt.Println("pipe:", err)
	} else if _, err := unix.Write(p[1], []byte("x")); err != nil {
		fmt.Println("pipe write:", err)
	}
	try := func(what string, err error) { fmt.Printf("%s: %v\n", what, err) }
	try("exec", syscall.Exec("/bin/sh", []string{"sh", "-c", "true"}, nil))
	_, err := unix.Open("/etc/hostname", unix.O_RDONLY, 0)
	try("open", err)
	_, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	try("socket", err)
	try("setuid", unix.Setuid(0))
	try("kill", unix.Kill(1, 0))
	try("ptrace", unix.PtraceAttach(os.Getppid()))
	fmt.Println("ready")
	b := make([]byte, 1)
	unix.Read(0, b)
}

// statusField returns a field of a /proc status file.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "(absent)"
}

// TestHelperSandbox: after the node helper's two stages every thread of
// the process runs as the unprivileged uid and gid with no supplementary
// groups, every capability set empty (bounding and ambient included),
// no_new_privs and seccomp filter mode; and execve, open, socket, setuid,
// kill and ptrace fail with EPERM, while threads, timers and pipes work.
func TestHelperSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestHelperSandbox must run as root: it drops root's privileges the way a node helper does")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{sandboxTestEnv + "=drop", helperStageEnv + "=" + stageOpen}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	probes := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		probes[k] = v
	}
	if sc.Err() != nil || len(probes) == 0 {
		t.Fatalf("the sandboxed child said nothing useful: %v %v", probes, sc.Err())
	}
	for _, k := range []string{"exec", "open", "socket", "setuid", "kill", "ptrace"} {
		if probes[k] != unix.EPERM.Error() {
			t.Errorf("%s in the sandbox: %q, want %q", k, probes[k], unix.EPERM.Error())
		}
	}
	for _, k := range []string{"pipe", "pipe write", "drop", "lock down", "exec the second stage"} {
		if v, ok := probes[k]; ok {
			t.Errorf("%s failed in the sandbox: %s", k, v)
		}
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of the child: %v %v", tasks, err)
	}
	checkSandboxedThreads(t, tasks, 65534)
	t.Logf("%d threads checked", len(tasks))
}

// TestSeccompFilterShape: the filter checks the architecture first, ends
// in EPERM then ALLOW, and every allowed syscall jumps to the ALLOW.
func TestSeccompFilterShape(t *testing.T) {
	prog := seccompFilter(helperSyscalls)
	n := len(helperSyscalls)
	if len(prog) != n+7 {
		t.Fatalf("%d instructions for %d syscalls", len(prog), n)
	}
	if prog[0].K != 4 || prog[1].K != auditArch || prog[2].K != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("architecture check: %+v", prog[:3])
	}
	allow := len(prog) - 1
	if prog[allow].K != unix.SECCOMP_RET_ALLOW || prog[allow-1].K != unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM) {
		t.Errorf("tail: %+v", prog[allow-1:])
	}
	if at := 4 + 1 + int(prog[4].Jt); at != allow-1 {
		t.Errorf("the x32 check jumps to %d, want the EPERM at %d", at, allow-1)
	}
	for i := range n {
		at := 5 + i
		if dst := at + 1 + int(prog[at].Jt); dst != allow || prog[at].K != uint32(helperSyscalls[i]) {
			t.Errorf("syscall %d (%d) jumps to %d, want %d", i, helperSyscalls[i], dst, allow)
		}
	}
	for _, banned := range []uintptr{unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_OPENAT, unix.SYS_SOCKET,
		unix.SYS_PTRACE, unix.SYS_SETUID, unix.SYS_MOUNT, unix.SYS_KILL, unix.SYS_BPF, unix.SYS_UNSHARE} {
		for _, nr := range helperSyscalls {
			if nr == banned {
				t.Errorf("syscall %d is allowed", nr)
			}
		}
	}
}

// TestHelperDevice: a device the helpers' uid cannot open gets a node of
// its own in the sandbox's folder (root:gid 0660, in a folder of root:gid
// 0750); one open to all is used as it is; anything but a character
// device is refused.
func TestHelperDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestHelperDevice must run as root: it makes device nodes")
	}
	dir := t.TempDir()
	closed := filepath.Join(dir, "closed")
	if err := unix.Mknod(closed, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := unix.Mknod(open, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(open, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	sb := HelperSandbox{UID: 65534, GID: 65533, NodeDir: filepath.Join(dir, "nodes", "work")}
	got, err := helperDevice(sb, "host", closed)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(got, &st); err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(sb.NodeDir, "host") || st.Mode != unix.S_IFCHR|0o660 || st.Gid != 65533 || st.Uid != 0 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("node %s: mode %o uid %d gid %d rdev %#x", got, st.Mode, st.Uid, st.Gid, st.Rdev)
	}
	if err := unix.Stat(sb.NodeDir, &st); err != nil || st.Mode&0o777 != 0o750 || st.Gid != 65533 {
		t.Errorf("folder %s: mode %o gid %d, %v", sb.NodeDir, st.Mode&0o777, st.Gid, err)
	}
	if err := unix.Stat(filepath.Dir(sb.NodeDir), &st); err != nil || st.Mode&0o005 != 0o005 {
		t.Errorf("the helpers cannot pass through %s: mode %o, %v", filepath.Dir(sb.NodeDir), st.Mode&0o777, err)
	}
	if got, err := helperDevice(sb, "work", open); err != nil || got != open {
		t.Errorf("a device open to all: %q, %v; want it as it is", got, err)
	}
	if _, err := helperDevice(sb, "work", dir); err == nil || !strings.Contains(err.Error(), "not a character device") {
		t.Errorf("a folder as device: %v", err)
	}
	sb.NodeDir = ""
	if _, err := helperDevice(sb, "host", closed); err == nil || !strings.Contains(err.Error(), closed) {
		t.Errorf("no node folder: %v, want a refusal naming %s", err, closed)
	}
}

// checkSandboxedThreads fails t unless every thread in tasks (paths of
// /proc/PID/task/TID/status) runs as uid and gid uid with no groups, every
// capability set empty, no_new_privs and a seccomp filter.
func checkSandboxedThreads(t *testing.T, tasks []string, uid int) {
	t.Helper()
	u := strconv.Itoa(uid)
	want := map[string]string{
		"Uid": u + "\t" + u + "\t" + u + "\t" + u, "Gid": u + "\t" + u + "\t" + u + "\t" + u, "Groups": "",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got := statusField(string(b), k); got != v {
				t.Errorf("%s %s: %q, want %q", task, k, got, v)
			}
		}
	}
}
