package vm

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	kernelOnce sync.Once
	kernel     *Kernel
	kernelErr  error
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration/vm needs root (apt-get download into the cache, and the guest's tests run as root): run `make test-vm` as root")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// guestKernel fetches Debian's kernel once per run; a machine without it
// fails the test (never skips) saying how to get it.
func guestKernel(t *testing.T) *Kernel {
	t.Helper()
	kernelOnce.Do(func() {
		start := time.Now()
		kernel, kernelErr = FetchKernel(context.Background(), CacheDir(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if kernelErr == nil {
			t.Logf("kernel %s (%s) ready in %v", kernel.Release, kernel.Deb, time.Since(start).Round(time.Millisecond))
		}
	})
	if kernelErr != nil {
		t.Fatalf("no guest kernel: %v", kernelErr)
	}
	return kernel
}

// buildStatic builds pkg with `go <sub> <flags> -o <out> <pkg>` into a
// temporary folder and returns the binary's path.
func buildStatic(t *testing.T, name string, cgo bool, pkg string, sub string, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	args := append(append(append([]string{sub}, flags...), "-o", out), pkg)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Logf("built %s in %v", name, time.Since(start).Round(time.Millisecond))
	return out
}

// boot runs programs in a fresh guest, streaming the console to the test
// log and to a file that is kept, and fails the test naming every guest
// program that failed, with its output.
func boot(t *testing.T, programs ...Program) *Result {
	t.Helper()
	return bootConfig(t, Config{Programs: programs})
}

// bootConfig is boot with the rest of cfg (Files, Timeout, ...) as given;
// it sets cfg's Kernel, Console and Logger itself.
func bootConfig(t *testing.T, cfg Config) *Result {
	t.Helper()
	programs := cfg.Programs
	cfg.Kernel = guestKernel(t)
	logFile, err := os.CreateTemp("", "workcell-vm-"+t.Name()+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	t.Logf("guest console: %s", logFile.Name())
	cfg.Console = &lineLogger{t: t, prefix: "guest: ", file: logFile}
	cfg.Logger = slog.New(slog.NewTextHandler(&lineLogger{t: t, prefix: "vm: "}, nil))
	res, err := Run(context.Background(), cfg)
	if res != nil {
		t.Logf("guest %s: booted in %v, whole run %v", res.Kernel, res.Boot.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
		for _, p := range res.Programs {
			t.Logf("guest program %s: exit %d in %v", p.Name, p.Code, p.Duration.Round(time.Millisecond))
		}
	}
	if err != nil {
		t.Fatalf("%v\n(full console: %s)", err, logFile.Name())
	}
	for _, p := range res.Failed() {
		t.Errorf("guest program %s exited %d\n%s(full console: %s)\n%s", p.Name, p.Code, tail(p.Output, 80), logFile.Name(), failSummary(p.Output))
	}
	if len(res.Programs) != len(programs) {
		t.Fatalf("guest ran %d of %d programs (full console: %s)", len(res.Programs), len(programs), logFile.Name())
	}
	return res
}

// lineLogger writes console lines to the test log (live under -v) and to a
// file.
type lineLogger struct {
	t      *testing.T
	prefix string
	file   *os.File
}

func (l *lineLogger) Write(p []byte) (int, error) {
	if l.file != nil {
		if _, err := l.file.Write(p); err != nil {
			return 0, err
		}
	}
	l.t.Log(l.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var goTestResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+s)\)`)

// goTests returns the verdict and time of every test in go test -v output.
func goTests(out string) map[string][2]string {
	res := map[string][2]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := goTestResult.FindStringSubmatch(sc.Text()); m != nil {
			res[m[2]] = [2]string{m[1], m[3]}
		}
	}
	return res
}

// failSummary names the guest tests that failed and repeats the lines
// their t.Error calls printed ("file_test.go:N: ..."), so that the end of
// a long log, which is what CI shows, says what went wrong.
func failSummary(out string) string {
	var fails []string
	tests := goTests(out)
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		if tests[name][0] == "FAIL" {
			fails = append(fails, name)
		}
	}
	var msgs []string
	for _, line := range strings.Split(out, "\n") {
		if testMessage.MatchString(line) || strings.HasPrefix(line, "panic: ") {
			msgs = append(msgs, strings.TrimSpace(line))
		}
	}
	if len(fails) == 0 && len(msgs) == 0 {
		return ""
	}
	return "failed guest tests: " + strings.Join(fails, ", ") + "\n" + tail(strings.Join(msgs, "\n"), 40)
}

var testMessage = regexp.MustCompile(`^\s+\S+_test\.go:[0-9]+: `)

func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines above ...]\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

// requirePassed fails unless each named go test passed in the guest: a
// test that was skipped or filtered out proves nothing.
func requirePassed(t *testing.T, p ProgramResult, names ...string) {
	t.Helper()
	got := goTests(p.Output)
	for _, n := range names {
		if r := got[n]; r[0] != "PASS" {
			t.Errorf("guest %s: %s did not pass (result %q)", p.Name, n, r[0])
		}
	}
}

// TestSandboxOnCgroupV2InVM runs the runtime core's own tests on a pure
// cgroup v2 hierarchy (the host is hybrid): sandbox's v2 freezer waiting
// on cgroup.events, and libcontainer's v2 cgroup manager with its eBPF
// device filter.
func TestSandboxOnCgroupV2InVM(t *testing.T) {
	bin := buildStatic(t, "sandbox.test", true, "../../sandbox", "test", "-c",
		"-tags", "netgo osusergo seccomp", "-ldflags", "-extldflags -static")
	res := boot(t, Program{
		Name: "sandbox",
		Path: bin,
		Args: []string{"-test.v", "-test.count=1", "-test.timeout=6m"},
	})
	p := res.Programs[0]
	tests := goTests(p.Output)
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		if !strings.Contains(name, "/") {
			t.Logf("guest sandbox %s %s (%s)", tests[name][0], name, tests[name][1])
		}
	}
	if !strings.Contains(p.Output, "cgroup v2=true") {
		t.Error("guest sandbox tests did not report running on cgroup v2 (\"cgroup v2=true\")")
	}
	requirePassed(t, p,
		"TestStartRunsIsolatedContainer", "TestExecExitCodes", "TestStop",
		"TestFreezeThawHundredProcesses", "TestFreezeV2RealCgroup",
		"TestFreezeV2WaitsForEventsNotification", "TestStats")
}

// TestBinderDevicesInVM proves the binder driver the binder issue builds on:
// both binder_linux contexts exist, speak protocol 8, and a pure-Go
// program becomes the manager of the profile's context.
func TestBinderDevicesInVM(t *testing.T) {
	bin := buildStatic(t, "binderprobe", false, "./internal/binderprobe", "build")
	res := boot(t, Program{Name: "binderprobe", Path: bin})
	if out := res.Programs[0].Output; !strings.Contains(out, "binderprobe: PASS") {
		t.Errorf("binderprobe did not report PASS:\n%s", out)
	}
}

// TestBinderDriverInVM runs the binder package's driver tests (build tag
// binderdriver, see binder/doc.go) against the real driver: each test's
// server is the context manager of /dev/workbinder.
func TestBinderDriverInVM(t *testing.T) {
	bin := buildStatic(t, "binder.test", false, "../../binder", "test", "-c", "-tags", "binderdriver")
	res := boot(t, Program{
		Name: "binder",
		Path: bin,
		Args: []string{"-test.v", "-test.count=1", "-test.timeout=4m"},
		Env:  []string{"WORKCELL_BINDER_DEVICE=/dev/workbinder"},
	})
	requirePassed(t, res.Programs[0], "TestDriverSyncCalls", "TestDriverCallbackThroughPassedBinder",
		"TestDriverPassesFileDescriptor", "TestDriverDeathNotificationWhenServerExits",
		"TestDriverScatterGatherTransaction", "TestDriverScatterGatherReply", "TestDriverFDArray",
		"TestProxyScatterGatherBuffers", "TestProxyFDArrays",
		"TestNodeHelperDeathReachesWork", "TestNodeHelperPolicy", "TestExportToHost", "TestNodeHelperFigures")
}
