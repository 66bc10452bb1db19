package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/workcell/workcell/integration/vm"
)

// The kernel rows: the prepared start, off+on and the proxied binder call
// measured inside qemu guests of integration/vm, once on Debian's kernel
// and once on the GKI-shaped kernel (gki/gki.fragment, an Android-shaped
// guest), in one run of the bench, each as a ratio to its peer measured in
// the same guest (vm.RunGuestBench says which). The ratios, not the
// absolute figures, compare: both guests run under TCG on one vCPU. The
// GKI kernel is built once and cached (vm.BuildGKIKernel).
func init() {
	Register(Row{Section: "kernels", Name: "kernels-vm", Run: kernelRows})
}

func kernelRows(ctx context.Context, b *Bench) ([]Line, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	deb, err := vm.FetchKernel(ctx, vm.CacheDir(), log)
	if err != nil {
		return nil, err
	}
	gki, err := vm.BuildGKIKernel(ctx, vm.CacheDir(), log)
	if err != nil {
		return nil, err
	}
	n, reps, calls := b.N(15, 3), b.N(7, 3), b.N(60, 10)
	var lines []Line
	var errs []error
	// One folder for both guests: the binaries they run are the same, so
	// they are built once.
	dir := filepath.Join(b.Dir, "guestbench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return lines, err
	}
	for _, g := range []struct {
		label   string
		k       *vm.Kernel
		android bool
	}{
		{"Debian kernel", deb, false},
		{"GKI-shaped kernel", gki, true},
	} {
		res, err := vm.RunGuestBench(ctx, g.k, g.android, dir, n, reps, calls, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s guest: %w", g.label, err))
			continue
		}
		env := fmt.Sprintf("guest %s, TCG, 1 vCPU", res.Kernel)
		for _, f := range res.Figures {
			name := map[string]string{
				"start-prepared":   "start (prepared)",
				"off-on":           "off+on, 1 proc",
				"binder-roundtrip": "binder small call, proxied",
			}[f.Row]
			if name == "" {
				name = f.Row
			}
			lines = append(lines, Line{
				Name:     fmt.Sprintf("%s, %s", name, g.label),
				Workcell: Millis(ms(f.Workcell)), Peer: Millis(ms(f.Peer)), PeerName: f.PeerName,
				Note: fmt.Sprintf("median of %d; %s", f.N, env),
			})
		}
		for _, e := range res.Errors {
			errs = append(errs, fmt.Errorf("%s guest (%s): %s", g.label, res.Kernel, e))
		}
	}
	return lines, errors.Join(errs...)
}
