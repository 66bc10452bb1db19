package sandbox

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/internal/testbundle"
)

func TestPrepareThenBegin(t *testing.T) {
	rt, root := newRuntime(t)
	id := newID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rt.Prepare(ctx, Spec{ID: id, BundleDir: testbundle.Busybox(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.State(ctx); err != nil || st != Created {
		t.Fatalf("state after Prepare = %s, %v; want created", st, err)
	}
	// Init waits before the user's process: its command line is still
	// the runtime's init, not the bundle's shell.
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.Pid()))
	if strings.Contains(string(cmd), "trap") {
		t.Fatalf("the user's process ran before Begin: %q", cmd)
	}
	if _, err := c.Exec(ctx, ExecSpec{Args: []string{"true"}}); err == nil {
		t.Fatal("exec into a prepared (not begun) container was allowed")
	}
	// A new runtime (a restarted daemon) sees it as created too.
	rt2, err := New(root, WithCgroupParent(testCgroupParent))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := rt2.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := c2.State(ctx); st != Created {
		t.Fatalf("adopted prepared container state = %s", st)
	}
	c2.Close()

	if err := c.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State(ctx); st != Running {
		t.Fatalf("state after Begin = %s", st)
	}
	waitSigCaught(t, c.Pid(), 15)
	if code, err := c.Exec(ctx, ExecSpec{Args: []string{"true"}}); err != nil || code != 0 {
		t.Fatalf("exec after Begin: %d %v", code, err)
	}
	if err := c.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	assertGone(t, root, id)
}

func TestStopPreparedLeavesNothing(t *testing.T) {
	rt, root := newRuntime(t)
	id := newID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rt.Prepare(ctx, Spec{ID: id, BundleDir: testbundle.Busybox(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, root, id)
}
