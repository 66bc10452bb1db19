package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The binder proxy's figures measured in the guest, for `workcell-bench
// -rows binder` (integration/bench/binder_linux.go) and
// TestBinderBenchInVM: internal/binderbench runs the host's service
// manager, a host echo service and workcelld's ServiceManager with
// binder.NodeHelpers on the two binder devices, as workcelld deploys them,
// and times calls direct vs through the echo service's node helper process
// in the same run.

// BinderBenchPackage is the guest program's package.
const BinderBenchPackage = "github.com/workcell/workcell/integration/vm/internal/binderbench"

// BinderFigure is one BINDER-BENCH line of the guest: medians over Reps
// repetitions of N calls each, direct to the host service and proxied.
type BinderFigure struct {
	Row             string // roundtrip-small, throughput-1KiB, throughput-64KiB
	Unit            string // ms (lower is better) or MiB/s (higher is better)
	Direct, Proxied float64
	// DirectP99 and ProxiedP99 are the round trip's 99th percentile over
	// every call (ms); zero for throughput rows.
	DirectP99, ProxiedP99 float64
	Reps, N               int
	// Proxy names the proxied path: "node-helper" (a binder.NodeHelpers
	// helper process, as workcelld runs it).
	Proxy string
}

// BinderBenchProgram builds the guest program statically into dir (from
// the module's source tree, so the working directory must be inside it)
// and returns it as a Program: reps repetitions, each of n small calls and
// 1 KiB parcels and n64 64 KiB parcels per side.
func BinderBenchProgram(ctx context.Context, dir string, reps, n, n64 int) (Program, error) {
	out := filepath.Join(dir, "binderbench")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, BinderBenchPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return Program{}, fmt.Errorf("vm: go build %s (run inside the workcell source tree): %v\n%s", BinderBenchPackage, err, b)
	}
	return Program{
		Name: "binderbench",
		Path: out,
		Args: []string{"-reps", strconv.Itoa(reps), "-n", strconv.Itoa(n), "-n64", strconv.Itoa(n64)},
	}, nil
}

var binderBenchLine = regexp.MustCompile(`BINDER-BENCH (row=\S+(?: \S+=\S+)*)\s*$`)

// ParseBinderBench reads the guest's BINDER-BENCH lines; it fails unless
// the round trip and both throughputs are there with positive figures.
func ParseBinderBench(out string) ([]BinderFigure, error) {
	var figs []BinderFigure
	for _, line := range strings.Split(out, "\n") {
		m := binderBenchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		f := fields(m[1])
		fig := BinderFigure{Row: f["row"], Unit: f["unit"], Proxy: f["proxy"]}
		var err error
		num := func(k string, dst *float64) {
			if v, ok := f[k]; ok && err == nil {
				*dst, err = strconv.ParseFloat(v, 64)
			}
		}
		num("direct", &fig.Direct)
		num("proxied", &fig.Proxied)
		num("direct_p99", &fig.DirectP99)
		num("proxied_p99", &fig.ProxiedP99)
		if err == nil {
			fig.Reps, err = strconv.Atoi(f["reps"])
		}
		if err == nil {
			fig.N, err = strconv.Atoi(f["n"])
		}
		if err != nil || fig.Direct <= 0 || fig.Proxied <= 0 {
			return nil, fmt.Errorf("vm: bad BINDER-BENCH line %q (%v)", line, err)
		}
		figs = append(figs, fig)
	}
	for _, want := range []string{"roundtrip-small", "throughput-1KiB", "throughput-64KiB"} {
		found := false
		for _, f := range figs {
			found = found || f.Row == want
		}
		if !found {
			return figs, fmt.Errorf("vm: the guest printed no BINDER-BENCH row=%s", want)
		}
	}
	return figs, nil
}
