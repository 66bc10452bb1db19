package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/workcell/workcell/integration/vm"
)

// The binder rows are measured in a qemu guest of integration/vm, the only
// place here with a binder driver: internal/binderbench times calls to a
// host service direct and through workcelld's policy proxy as deployed (the
// service's node helper process, started by binder.NodeHelpers from the
// profile's service manager), alternating them within each repetition, in
// one guest run. The peer is the direct call. Needs the VM tools (hack/vm-deps) and the cached Debian kernel.
func init() {
	Register(Row{Section: "binder", Name: "binder-vm", Run: binderInVM})
}

// binderRoundTripTarget is the budget for a proxied small call.
const binderRoundTripTarget = 2.5

func binderInVM(ctx context.Context, b *Bench) ([]Line, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	k, err := vm.FetchKernel(ctx, vm.CacheDir(), log)
	if err != nil {
		return nil, err
	}
	reps, n, n64 := b.N(9, 3), b.N(100, 20), b.N(30, 5)
	prog, err := vm.BinderBenchProgram(ctx, b.Dir, reps, n, n64)
	if err != nil {
		return nil, err
	}
	// One vCPU: every binder hop is then a context switch on it, and the
	// host's noise on the shared cores stalls both paths alike; with two,
	// a wake-up across vCPUs waits whenever the host deschedules one, and
	// the proxy, with twice the hops, pays it twice.
	res, err := vm.Run(ctx, vm.Config{Kernel: k, Programs: []vm.Program{prog}, CPUs: 1, Timeout: 8 * time.Minute, Logger: log})
	if err != nil {
		return nil, err
	}
	p := res.Programs[0]
	if p.Code != 0 {
		return nil, fmt.Errorf("guest binderbench exited %d:\n%s", p.Code, p.Output)
	}
	figs, err := vm.ParseBinderBench(p.Output)
	if err != nil {
		return nil, err
	}
	for _, f := range figs {
		if f.Proxy != "node-helper" {
			return nil, fmt.Errorf("guest binderbench: row %s proxied via %q, not the node helper", f.Row, f.Proxy)
		}
	}
	const via = "proxied = work app -> the service's node helper process (binder.NodeHelpers, as workcelld runs it) -> host service"
	env := fmt.Sprintf("guest %s, TCG, 1 vCPU", res.Kernel)
	var lines []Line
	for _, f := range figs {
		l := Line{PeerName: "direct call to the host service, same guest run"}
		switch f.Unit {
		case "ms":
			l.Name = "binder small call round trip, proxied"
			l.Workcell, l.Peer = Millis(ms(f.Proxied)), Millis(ms(f.Direct))
			l.WorkcellP99, l.PeerP99 = Millis(ms(f.ProxiedP99)), Millis(ms(f.DirectP99))
			l.Target = fmt.Sprintf("<= %.1fx direct", binderRoundTripTarget)
			l.Over = f.Proxied > binderRoundTripTarget*f.Direct
			l.Note = fmt.Sprintf("%s; median of %d reps, each the median of %d calls alternating with the peer's; %s", via, f.Reps, f.N, env)
		case "MiB/s":
			size, _ := strings.CutPrefix(f.Row, "throughput-")
			l.Name = "binder " + size + " parcels, proxied"
			l.Workcell = Figure{Value: f.Proxied, Unit: f.Unit, Set: true}
			l.Peer = Figure{Value: f.Direct, Unit: f.Unit, Set: true}
			l.Note = fmt.Sprintf("higher is better; proxied through the node helper; median of %d reps of %d parcels, alternating with the peer every 5", f.Reps, f.N)
		default:
			return lines, fmt.Errorf("guest binderbench: row %s in unknown unit %q", f.Row, f.Unit)
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// ms converts the guest's milliseconds.
func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
