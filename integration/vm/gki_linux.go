package vm

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The GKI-shaped guest: a kernel built from Debian's linux-source-6.1 with
// gki/gki.fragment (the choices of android14-6.1's gki_defconfig that
// workcell depends on, everything built in), booted with Config.Android so
// that the guest is laid out as Android 12-15 lay out a phone.

//go:embed gki/gki.fragment
var gkiFragment []byte

//go:embed gki/build.sh
var gkiBuildScript []byte

// GKIFragment is the Kconfig fragment the GKI-shaped kernel is built with.
func GKIFragment() []byte { return bytes.Clone(gkiFragment) }

// BuildGKIKernel returns the GKI-shaped kernel from cacheDir, building it
// first when no build of this fragment, build script and source package
// is there (gki/build.sh; it takes minutes, once). The build script and
// fragment are the ones compiled into this package, so that the bench and
// the tests, from any working directory, share one cached kernel.
func BuildGKIKernel(ctx context.Context, cacheDir string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return nil, fmt.Errorf("vm: bash not found: %w", ErrMissing)
	}
	tmp, err := os.MkdirTemp("", "workcell-gki-")
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "build.sh")
	if err := os.WriteFile(filepath.Join(tmp, "gki.fragment"), gkiFragment, 0o644); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	if err := os.WriteFile(script, gkiBuildScript, 0o755); err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	start := time.Now()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script, cacheDir)
	cmd.Stderr = &progress{log: log, buf: &stderr}
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "MISSING:") {
			return nil, fmt.Errorf("vm: GKI kernel build: %s: %w", lastLines(msg, 30), ErrMissing)
		}
		return nil, fmt.Errorf("vm: GKI kernel build (integration/vm/gki/build.sh): %v:\n%s", err, lastLines(msg, 60))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	k, err := gkiKernelIn(dir)
	if err != nil {
		return nil, err
	}
	if took := time.Since(start); took > time.Minute {
		log.Info("GKI-shaped kernel built", "dir", dir, "took", took.Round(time.Second), "make_seconds", k.BuildSeconds)
	}
	return k, nil
}

func gkiKernelIn(dir string) (*Kernel, error) {
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, fmt.Errorf("vm: GKI kernel %s: %w", dir, err)
	}
	bz := filepath.Join(dir, "bzImage")
	if _, err := os.Stat(bz); err != nil {
		return nil, fmt.Errorf("vm: GKI kernel %s: %w", dir, err)
	}
	k := &Kernel{
		Package: "linux-source-6.1 + gki.fragment",
		Release: strings.TrimSpace(string(rel)),
		Vmlinuz: bz,
		Config:  filepath.Join(dir, "config"),
	}
	if b, err := os.ReadFile(filepath.Join(dir, "seconds")); err == nil {
		k.BuildSeconds, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return k, nil
}

// progress passes the build script's lines to log as they come.
type progress struct {
	log  *slog.Logger
	buf  *bytes.Buffer
	line []byte
}

func (p *progress) Write(b []byte) (int, error) {
	p.buf.Write(b)
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			break
		}
		p.log.Info(string(p.line[:i]))
		p.line = p.line[i+1:]
	}
	return len(b), nil
}

// lastLines is the end of s, n lines at most.
func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
