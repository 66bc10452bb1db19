package vm

import (
	"context"
	"testing"
)

// TestBinderBenchInVM runs the bench's guest program (internal/binderbench)
// briefly and checks that it measured every figure on both paths, the
// proxied one through a node helper process as workcelld runs it; the
// figures are logged, never asserted (`make bench-vm` reports them).
func TestBinderBenchInVM(t *testing.T) {
	prog, err := BinderBenchProgram(context.Background(), t.TempDir(), 3, 20, 5)
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
		if f.Proxy != "node-helper" {
			t.Errorf("%s: proxied via %q, want the deployed design, node-helper", f.Row, f.Proxy)
		}
	}
}
