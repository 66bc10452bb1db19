package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Program is a static binary to run in the guest as root, in its own
// working directory, with a clean environment plus Env.
type Program struct {
	Name string   // unique, [A-Za-z0-9._-]; names the program in markers and errors
	Path string   // the binary on the host; it must be static
	Args []string // e.g. -test.v -test.run ...
	Env  []string // KEY=VALUE added to PATH, HOME, TMPDIR and GOMAXPROCS
}

// Config is one boot of the guest. Kernel and Programs are required.
type Config struct {
	Kernel   *Kernel
	Programs []Program
	// Modules are loaded before the programs run, dependencies first.
	// Default: DefaultModules.
	Modules []Module
	// Files are extra files (guest path -> host path), e.g. peers the
	// programs call. Default: none.
	Files map[string]string
	// MemoryMiB is the guest's memory. Default: 1024.
	MemoryMiB int
	// CPUs is the number of vCPUs. Default: 2.
	CPUs int
	// GOMAXPROCS is set for every program: Go under TCG is sensitive to it.
	// Default: CPUs.
	GOMAXPROCS int
	// Timeout bounds the whole boot; the guest is killed when it passes.
	// Default: 8 minutes.
	Timeout time.Duration
	// Console receives every line of the serial console as it arrives.
	// Default: discarded (Result keeps the lines of each program).
	Console io.Writer
	// WorkDir holds the initramfs. Default: a temporary folder, removed.
	WorkDir string
	// Logger gets the harness's own progress. Default: discarded.
	Logger *slog.Logger
	// Android lays the guest out as Android 12-15 lay out a phone (see
	// androidInit): cgroup v1 memory at /dev/memcg and cpu at /dev/cpuctl,
	// cgroup2 at /sys/fs/cgroup with no controller enabled, binderfs at
	// /dev/binderfs, loop devices under /dev/block, netd's iptables chains,
	// and iptables-legacy, ip and mke2fs (Debian's dynamic builds, with
	// their libraries and loader). For a kernel with everything built in
	// (BuildGKIKernel): Modules defaults to none.
	Android bool
}

// Result is what the guest reported.
type Result struct {
	Kernel   string          // the guest's uname -r
	Boot     time.Duration   // from qemu's start to the guest's READY marker
	Wall     time.Duration   // qemu's whole run
	Programs []ProgramResult // in run order; absent when a program never began
}

// ProgramResult is one program's outcome.
type ProgramResult struct {
	Name     string
	Code     int // its exit code; -1 when it never finished
	Output   string
	Duration time.Duration // host time between its BEGIN and RESULT markers
}

// Failed lists the programs that exited non-zero or never finished.
func (r *Result) Failed() []ProgramResult {
	var out []ProgramResult
	for _, p := range r.Programs {
		if p.Code != 0 {
			out = append(out, p)
		}
	}
	return out
}

// ErrTimeout is wrapped when the guest was killed at Config.Timeout.
var ErrTimeout = errors.New("guest timed out")

var programName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Run builds the initramfs, boots the guest under qemu (TCG), runs the
// programs and returns their results. A program's non-zero exit is not an
// error (see Result.Failed); a missing tool, a failed setup step or module,
// a guest that ends early or hangs past Timeout is, and the Result so far
// comes with it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("vm: qemu-system-x86_64 not found (package qemu-system-x86): %w", ErrMissing)
	}
	work := cfg.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "workcell-vm-"); err != nil {
			return nil, fmt.Errorf("vm: %w", err)
		}
		defer os.RemoveAll(work)
	}
	nonce, initrd, err := buildInitramfs(cfg, work)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max",
		"-smp", strconv.Itoa(cfg.CPUs), "-m", strconv.Itoa(cfg.MemoryMiB),
		"-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
		"-kernel", cfg.Kernel.Vmlinuz, "-initrd", initrd,
		// No AppArmor: with it, binder cannot give a context manager the
		// sender's security context and every such call fails.
		"-append", "console=ttyS0 quiet panic=-1 lsm=lockdown,yama,integrity,selinux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	start := time.Now()
	cfg.Logger.Info("booting", "kernel", cfg.Kernel.Release, "programs", len(cfg.Programs), "timeout", cfg.Timeout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm: start qemu: %w", err)
	}
	p := &parser{nonce: nonce, start: start, res: &Result{}, console: cfg.Console}
	p.read(out)
	waitErr := cmd.Wait()
	p.res.Wall = time.Since(start)
	cfg.Logger.Info("guest ended", "wall", p.res.Wall.Round(time.Millisecond))

	switch {
	case p.setupFailed != "":
		return p.res, fmt.Errorf("vm: guest setup failed: %s", p.setupFailed)
	case len(p.moduleFailed) > 0:
		return p.res, fmt.Errorf("vm: guest could not load modules: %s", strings.Join(p.moduleFailed, ", "))
	case ctx.Err() != nil && !p.done:
		return p.res, fmt.Errorf("vm: %w after %v%s; console tail:\n%s", ErrTimeout, cfg.Timeout, p.where(), p.tail())
	case !p.done:
		return p.res, fmt.Errorf("vm: guest ended before reporting all programs%s (qemu: %v, %s); console tail:\n%s",
			p.where(), waitErr, strings.TrimSpace(stderr.String()), p.tail())
	case ctx.Err() != nil:
		// Every program ran, but the guest could not power itself off
		// (a kernel without working ACPI): each boot would cost Timeout.
		return p.res, fmt.Errorf("vm: the guest ran every program but did not power off; qemu was killed at the %v timeout; console tail:\n%s", cfg.Timeout, p.tail())
	}
	return p.res, nil
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Kernel == nil {
		return cfg, errors.New("vm: Config.Kernel is required (FetchKernel)")
	}
	if len(cfg.Programs) == 0 {
		return cfg, errors.New("vm: Config.Programs is empty")
	}
	seen := map[string]bool{}
	for _, p := range cfg.Programs {
		if !programName.MatchString(p.Name) || seen[p.Name] {
			return cfg, fmt.Errorf("vm: program name %q is not unique or not [A-Za-z0-9._-]", p.Name)
		}
		seen[p.Name] = true
	}
	// Modules to load are the kernel's matter: the GKI-shaped one has
	// everything built in and no modules folder.
	if cfg.Modules == nil && cfg.Kernel.ModulesDir != "" {
		cfg.Modules = DefaultModules
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.GOMAXPROCS == 0 {
		cfg.GOMAXPROCS = cfg.CPUs
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 8 * time.Minute
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// buildInitramfs writes work/initrd.gz and returns the boot's nonce.
func buildInitramfs(cfg Config, work string) (string, string, error) {
	if _, err := os.Stat(busybox); err != nil {
		return "", "", fmt.Errorf("vm: the guest needs a static %s (package busybox-static): %w", busybox, ErrMissing)
	}
	var mods []loadable
	if len(cfg.Modules) > 0 {
		m, err := resolveModules(cfg.Kernel, cfg.Modules, work)
		if err != nil {
			return "", "", err
		}
		mods = m
	}
	var n [8]byte
	_, _ = rand.Read(n[:])
	nonce := hex.EncodeToString(n[:])

	files := map[string]archiveEntry{
		"bin/busybox": {src: busybox, perm: 0o755},
		"init":        {data: []byte(initScript(nonce, mods, cfg.Programs, cfg.GOMAXPROCS, cfg.Android)), perm: 0o755},
	}
	if cfg.Android {
		tools, err := androidFiles()
		if err != nil {
			return "", "", err
		}
		for name, e := range tools {
			files[name] = e
		}
	}
	for _, m := range mods {
		files[strings.TrimPrefix(guestModuleDir, "/")+"/"+m.name+".ko"] = archiveEntry{src: m.file, perm: 0o644}
	}
	for _, p := range cfg.Programs {
		if err := checkStatic(p.Path); err != nil {
			return "", "", fmt.Errorf("vm: program %s: %w", p.Name, err)
		}
		files[strings.TrimPrefix(guestProgramDir, "/")+"/"+p.Name] = archiveEntry{src: p.Path, perm: 0o755}
	}
	for guest, host := range cfg.Files {
		name := strings.TrimPrefix(path.Clean("/"+guest), "/")
		if _, ok := files[name]; ok || name == "" {
			return "", "", fmt.Errorf("vm: extra file %s collides with the harness's own", guest)
		}
		files[name] = archiveEntry{src: host, perm: 0o755}
	}
	dirs := []string{"bin", "proc", "sys", "dev", "tmp", "run", "root", "etc", "newroot"}
	initrd := filepath.Join(work, "initrd.gz")
	if err := writeInitramfs(initrd, dirs, files); err != nil {
		return "", "", fmt.Errorf("vm: initramfs %s: %w", initrd, err)
	}
	return nonce, initrd, nil
}

// busybox is the static busybox of package busybox-static: the guest's
// shell and tools, and the sandbox tests' bundle userspace.
const busybox = "/bin/busybox"

// checkStatic refuses a dynamically linked binary: the guest has no libc.
func checkStatic(file string) error {
	ef, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it static (CGO_ENABLED=0, or -ldflags \"-extldflags -static\")", file)
		}
	}
	return nil
}

// parser follows the serial console.
type parser struct {
	nonce        string
	start        time.Time
	res          *Result
	console      io.Writer
	cur          *ProgramResult
	curStart     time.Time
	curOut       strings.Builder
	done         bool
	setupFailed  string
	moduleFailed []string
	last         []string // the last lines, for errors
}

var markerRE = regexp.MustCompile(markerPrefix + `([A-Z]+) nonce=([0-9a-f]+)(.*)$`)

func (p *parser) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			line = cleanLine(line)
			fmt.Fprintln(p.console, line)
			p.line(line)
		}
		if err != nil {
			p.finish()
			return
		}
	}
}

func (p *parser) line(line string) {
	if len(p.last) == 40 {
		p.last = p.last[1:]
	}
	p.last = append(p.last, line)
	m := markerRE.FindStringSubmatch(line)
	if m == nil || m[2] != p.nonce {
		if p.cur != nil {
			p.curOut.WriteString(line)
			p.curOut.WriteByte('\n')
		}
		return
	}
	f := fields(m[3])
	switch m[1] {
	case markReady:
		p.res.Kernel = f["kernel"]
		p.res.Boot = time.Since(p.start)
	case markSetup:
		p.setupFailed = fmt.Sprintf("%s exited %s", strings.ReplaceAll(f["step"], "_", " "), f["code"])
	case markModule:
		if f["code"] != "0" {
			p.moduleFailed = append(p.moduleFailed, fmt.Sprintf("insmod %s exited %s", f["name"], f["code"]))
		}
	case markBegin:
		p.finish()
		p.res.Programs = append(p.res.Programs, ProgramResult{Name: f["name"], Code: -1})
		p.cur = &p.res.Programs[len(p.res.Programs)-1]
		p.curStart = time.Now()
	case markResult:
		if p.cur != nil && p.cur.Name == f["name"] {
			code, err := strconv.Atoi(f["code"])
			if err != nil {
				code = -1
			}
			p.cur.Code = code
			p.finish()
		}
	case markDone:
		p.done = true
	}
}

// finish closes the current program's record.
func (p *parser) finish() {
	if p.cur == nil {
		return
	}
	p.cur.Output = p.curOut.String()
	p.cur.Duration = time.Since(p.curStart)
	p.curOut.Reset()
	p.cur = nil
}

// where names the program that was running when the guest stopped.
func (p *parser) where() string {
	n := len(p.res.Programs)
	if n > 0 && p.res.Programs[n-1].Code == -1 {
		return fmt.Sprintf(" while %s was running", p.res.Programs[n-1].Name)
	}
	if p.res.Kernel == "" {
		return " during boot"
	}
	return ""
}

func (p *parser) tail() string { return strings.Join(p.last, "\n") }

// ansiRE matches the terminal escapes SeaBIOS writes before the kernel
// starts.
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[@-Z\\-_c])`)

// cleanLine drops terminal escapes and control characters, so that the log
// stays readable.
func cleanLine(line string) string {
	line = ansiRE.ReplaceAllString(strings.TrimRight(line, "\r\n"), "")
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' {
			return -1
		}
		return r
	}, line)
}

func fields(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Fields(s) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}
