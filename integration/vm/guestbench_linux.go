package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The runtime and binder rows measured inside a guest, for `make bench`'s
// kernel rows (integration/bench/gki_linux.go): internal/guestbench times
// workcelld's prepared start and off+on beside in-guest peers, and
// internal/binderbench the proxied binder call beside the direct one, in
// one boot of the Debian kernel or of the GKI-shaped one (Config.Android),
// so that the two kernels' ratios can stand side by side.

// GuestBenchPackage is the runtime rows' guest program; workcelldPackage the daemon.
const (
	GuestBenchPackage = "github.com/workcell/workcell/integration/vm/internal/guestbench"
	workcelldPackage  = "github.com/workcell/workcell/cmd/workcelld"
)

// GuestFigure is one row measured in a guest: medians in ms, workcell's
// and its in-guest peer's.
type GuestFigure struct {
	Row            string // start-prepared, off-on, binder-roundtrip
	Workcell, Peer float64
	N              int
	PeerName       string
}

// GuestBenchResult is one guest's figures.
type GuestBenchResult struct {
	Kernel  string // the guest's uname -r
	Figures []GuestFigure
	// Errors are the rows that could not be measured in this guest, with
	// why (e.g. workcelld cannot start a profile on this kernel).
	Errors []string
}

// RunGuestBench builds workcelld, guestbench and binderbench statically
// into dir (the working directory must be inside the workcell source
// tree) and measures them in one boot of k: the Debian kernel's guest, or
// with android the GKI-shaped kernel's Android-shaped guest. n is the
// number of measurements per runtime figure; reps, calls the binder
// bench's repetitions and calls per repetition.
func RunGuestBench(ctx context.Context, k *Kernel, android bool, dir string, n, reps, calls int, log *slog.Logger) (*GuestBenchResult, error) {
	wcd := filepath.Join(dir, "workcelld")
	gb := filepath.Join(dir, "guestbench")
	for _, b := range []struct {
		out, pkg string
		cgo      bool
		flags    []string
	}{
		{wcd, workcelldPackage, true, []string{"-tags", "netgo osusergo seccomp", "-ldflags", "-extldflags -static"}},
		{gb, GuestBenchPackage, false, nil},
	} {
		if _, err := os.Stat(b.out); err == nil {
			continue
		}
		args := append(append([]string{"build"}, b.flags...), "-o", b.out, b.pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b.cgo {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vm: go %s (run inside the workcell source tree): %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	bb, err := BinderBenchProgram(ctx, dir, reps, calls, 1)
	if err != nil {
		return nil, err
	}
	// The Android guest has no binder_linux device list: its host context
	// is binderfs's binder, and vndbinder stands in for the profile's.
	if android {
		bb.Args = append(bb.Args, "-host", "/dev/binderfs/binder", "-work", "/dev/binderfs/vndbinder")
	}
	cfg, _ := json.Marshal(map[string]any{
		"state_dir": "/var/lib/workcell", "run_dir": "/run/workcell",
		// Both guests' roots are tmpfs: the figures compare kernels, not
		// storage.
		"insecure_unencrypted_storage": true,
		"stop_timeout":                 "2s",
	})
	cfgFile := filepath.Join(dir, "guestbench-daemon.json")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		return nil, err
	}
	vmcfg := Config{
		Kernel:  k,
		Android: android,
		Programs: []Program{
			{Name: "guestbench", Path: gb, Args: []string{"-n", strconv.Itoa(n)}},
			bb,
		},
		Files: map[string]string{"wc/workcelld": wcd, "wc/daemon.json": cfgFile},
		// One vCPU, as the binder row always had: every hop is a context
		// switch on it, and the host's noise stalls both sides alike.
		CPUs:    1,
		Timeout: 10 * time.Minute,
		Logger:  log,
	}
	if k.ModulesDir != "" {
		// workcelld's network manager needs these families and matches
		// (see TestDaemonBinderInVM); the GKI kernel has them built in.
		vmcfg.Modules = append(slices.Clone(DefaultModules), Module{Name: "xfrm_user"}, Module{Name: "nf_conntrack_netlink"},
			Module{Name: "nft_ct"}, Module{Name: "nft_objref"})
	}
	res, err := Run(ctx, vmcfg)
	if err != nil {
		return nil, err
	}
	out := &GuestBenchResult{Kernel: res.Kernel}
	for _, p := range res.Programs {
		switch p.Name {
		case "guestbench":
			figs, err := parseGuestBench(p.Output)
			if err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("runtime rows (exit %d): %v", p.Code, err))
			}
			out.Figures = append(out.Figures, figs...)
		case "binderbench":
			figs, err := ParseBinderBench(p.Output)
			if err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("binder row (exit %d): %v", p.Code, err))
				continue
			}
			for _, f := range figs {
				if f.Row == "roundtrip-small" {
					out.Figures = append(out.Figures, GuestFigure{Row: "binder-roundtrip", Workcell: f.Proxied, Peer: f.Direct, N: f.Reps,
						PeerName: "direct call to the host service, same guest run"})
				}
			}
		}
	}
	return out, nil
}

var guestBenchLine = regexp.MustCompile(`GUEST-BENCH (.*)$`)

func parseGuestBench(out string) ([]GuestFigure, error) {
	var figs []GuestFigure
	for _, line := range strings.Split(out, "\n") {
		m := guestBenchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if e, ok := strings.CutPrefix(m[1], "error="); ok {
			if u, err := strconv.Unquote(e); err == nil {
				e = u
			}
			return figs, fmt.Errorf("%s", e)
		}
		f := fields(m[1])
		g := GuestFigure{Row: f["row"]}
		var err error
		if g.Workcell, err = strconv.ParseFloat(f["workcell"], 64); err == nil {
			if g.Peer, err = strconv.ParseFloat(f["peer"], 64); err == nil {
				g.N, err = strconv.Atoi(f["n"])
			}
		}
		if err != nil || g.Workcell <= 0 || g.Peer <= 0 {
			return figs, fmt.Errorf("bad GUEST-BENCH line %q (%v)", line, err)
		}
		switch g.Row {
		case "start-prepared":
			g.PeerName = "unshare -m -u -i -n /bin/true (the namespace floor), same guest run"
		case "off-on":
			g.PeerName = "bare cgroup v2 freeze + thaw of one process, same guest run"
		}
		figs = append(figs, g)
	}
	for _, want := range []string{"start-prepared", "off-on"} {
		if !slices.ContainsFunc(figs, func(g GuestFigure) bool { return g.Row == want }) {
			return figs, fmt.Errorf("the guest printed no GUEST-BENCH row=%s", want)
		}
	}
	return figs, nil
}
