package vm

import (
	"context"
	"testing"
)

// TestBinderBenchInVM runs the bench's guest program (internal/binderbench)
// briefly and checks that it measured every figure on both paths with the
// repetitions asked for; the figures are logged, never asserted (`make
// bench-vm` reports them). That the proxied path goes through a node
// helper is a property of the guest program, not checked here.
func TestBinderBenchInVM(t *testing.T) {
	const reps, n, n64 = 3, 20, 5
	prog, err := BinderBenchProgram(context.Background(), t.TempDir(), reps, n, n64)
	if err != nil {
		t.Fatal(err)
	}
	res := boot(t, prog)
	figs, err := ParseBinderBench(res.Programs[0].Output)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Programs[0].Output)
	}
	for _, f := range figs {
		t.Logf("%s: direct %.3f %s, proxied %.3f %s (p99 %.3f / %.3f; %d reps of %d; via %s)",
			f.Row, f.Direct, f.Unit, f.Proxied, f.Unit, f.DirectP99, f.ProxiedP99, f.Reps, f.N, f.Proxy)
		// The figures must come from the run asked for, not defaults.
		want := n
		if f.Row == "throughput-64KiB" {
			want = n64
		}
		if f.Reps != reps || f.N != want {
			t.Errorf("%s: %d reps of %d, want %d of %d", f.Row, f.Reps, f.N, reps, want)
		}
	}
}
