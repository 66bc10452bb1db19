//go:build binderdriver && linux && (amd64 || arm64)

package binder

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Role "workcelld-sandboxed" is "workcelld-helpers" with the node helpers
// in the sandbox workcelld gives them (uid 65534, no capabilities,
// seccomp, a cgroup with limits) and the limits of WORKCELL_BINDER_TEST_LIMITS
// ("services,deathlinks,objects").

const (
	limitsEnv     = "WORKCELL_BINDER_TEST_LIMITS"
	sandboxUID    = 65534
	helperCgroup  = "wc-binder-test-helpers"
	helperMemMax  = 64 << 20
	helperPidsMax = 128
)

func init() {
	roles["workcelld-sandboxed"] = runWorkcelldSandboxed
}

// testLimits reads limitsEnv.
func testLimits() (Limits, bool) {
	f := strings.Split(os.Getenv(limitsEnv), ",")
	if len(f) != 3 {
		return Limits{}, false
	}
	var v [3]int
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil {
			return Limits{}, false
		}
		v[i] = n
	}
	return Limits{Services: v[0], DeathLinks: v[1], ProxiedObjects: v[2]}, true
}

func runWorkcelldSandboxed() error {
	return serveWorkcelld(context.Background(), func(work *Conn, audit *AuditLog) (Resolver, io.Closer, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		command := func() *exec.Cmd {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = []string{roleEnv + "=nodehelper"}
			return cmd
		}
		// The guest's devices are root's 0600: the helpers get nodes of
		// their own in NodeDir.
		opts := []NodeHelpersOption{WithHelperSandbox(HelperSandbox{UID: sandboxUID, GID: sandboxUID,
			NodeDir: "/dev/wc-binder-test-nodes/work", Cgroup: filepath.Join(Cgroup2Mount(), helperCgroup),
			MemoryMax: helperMemMax, PidsMax: helperPidsMax})}
		if l, ok := testLimits(); ok {
			opts = append(opts, WithHelperLimits(l))
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, nil)) // the helpers' stderr, for the guest's console
		h, err := NewNodeHelpers(testRel, hostDevice(), device(), "work", helperPolicy(), command, audit, false, log, opts...)
		return h, h, err
	})
}

// startSandboxedRig starts the host's manager, the echo service and
// workcelld with sandboxed helpers and the given limits.
func startSandboxedRig(t *testing.T, limits string) *helperRig {
	t.Helper()
	needDevices(t, hostDevice(), device())
	r := &helperRig{rig: rig{audit: filepath.Join(t.TempDir(), "audit.jsonl")}}
	startRole(t, "hostsm")
	r.echo = startRole(t, "echo")
	r.workcelld = startRole(t, "workcelld-sandboxed", auditEnv+"="+r.audit, limitsEnv+"="+limits)
	return r
}

// TestNodeHelperSandboxed: a host service called through a node helper
// sees the helper's uid as its caller, not root; every thread of the
// helper has uid 65534, no capability in any set, no_new_privs and a
// seccomp filter; it runs in its cgroup with memory and pids limits.
func TestNodeHelperSandboxed(t *testing.T) {
	r := startSandboxedRig(t, "")
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	p := c.NewParcel()
	p.WriteInterfaceToken(echoDescriptor)
	rep, err := callAIDL(ctx, c, h, echoCallerUID, p)
	if err != nil {
		t.Fatal(err)
	}
	uid, err := rep.ReadInt32()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the host service sees calling uid %d through the node helper", uid)
	if uid != sandboxUID {
		t.Errorf("host service saw calling uid %d, want the helper's %d", uid, sandboxUID)
	}
	if got, err := callString(ctx, c, h, echoDescriptor, echoEcho, "sandboxed"); err != nil || got != "sandboxed" {
		t.Fatalf("call through the sandboxed helper: %q, %v", got, err)
	}
	helpers := childPIDs(t, r.workcelld.Process.Pid)
	if len(helpers) != 1 {
		t.Fatalf("workcelld runs %d helpers %v, want 1", len(helpers), helpers)
	}
	pid := helpers[0]
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of helper %d: %v %v", pid, tasks, err)
	}
	checkSandboxedThreads(t, tasks, sandboxUID)
	t.Logf("helper %d: %d threads with uid %d, no capabilities, no_new_privs, seccomp 2", pid, len(tasks), sandboxUID)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil || !strings.Contains(string(cg), "/"+helperCgroup) {
		t.Errorf("helper %d is in cgroup %q (%v), want %s", pid, strings.TrimSpace(string(cg)), err, helperCgroup)
	}
	dir := filepath.Join(Cgroup2Mount(), helperCgroup)
	for file, v := range map[string]int{"memory.max": helperMemMax, "pids.max": helperPidsMax} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(v) {
			t.Errorf("%s/%s: %q, %v; want %d", dir, file, b, err, v)
		}
	}
}

// TestNodeHelperObjectLimit: a work app that makes a proxied service hand
// out ever new binders gets a SecurityException naming the limit once the
// helper stands for binder_max_proxied_objects of them; what it holds
// keeps working.
func TestNodeHelperObjectLimit(t *testing.T) {
	const objects = 6
	startSandboxedRig(t, fmt.Sprintf("256,256,%d", objects))
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName) // the service's root is the first object
	var got int
	var lastErr error
	for range 2 * objects {
		p := c.NewParcel()
		p.WriteInterfaceToken(echoDescriptor)
		r, err := callAIDL(ctx, c, h, echoSession, p)
		if err != nil {
			lastErr = err
			break
		}
		if _, err := r.ReadBinder(); err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != objects-1 {
		t.Errorf("work got %d sessions before the limit of %d objects, want %d", got, objects, objects-1)
	}
	wantException(t, lastErr, ExSecurity)
	if !strings.Contains(lastErr.Error(), KnobProxiedObjects) || !strings.Contains(lastErr.Error(), strconv.Itoa(objects)) {
		t.Errorf("the refusal does not name the limit: %v", lastErr)
	}
	if s, err := callString(ctx, c, h, echoDescriptor, echoEcho, "still"); err != nil || s != "still" {
		t.Fatalf("call after the limit: %q, %v", s, err)
	}
}

// TestServiceManagerLimits: registering past binder_max_services or
// binder_max_death_links fails with an IllegalStateException naming the
// limit; replacing a name or registering a binder already watched costs
// nothing; the room comes back when the registering app dies.
func TestServiceManagerLimits(t *testing.T) {
	startSandboxedRig(t, "4,3,4096")
	ctx := context.Background()
	app, closeApp := openOwner(t, testRel, 4)
	nodes := []*Node{app.NewNode(addOne), app.NewNode(addOne), app.NewNode(addOne), app.NewNode(addOne)}
	for i := range 3 {
		if err := AddService(ctx, app, fmt.Sprintf("work.s%d", i), nodes[i]); err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
	}
	wantLimit := func(err error, knob string) {
		t.Helper()
		wantException(t, err, ExIllegalState)
		if !strings.Contains(err.Error(), knob) {
			t.Errorf("refusal %v does not name %s", err, knob)
		}
	}
	// A fourth binder is a fourth death link.
	wantLimit(AddService(ctx, app, "work.s3", nodes[3]), KnobDeathLinks)
	// The same binder again, under the same and under a new name: no new link.
	for range 100 {
		if err := AddService(ctx, app, "work.s0", nodes[0]); err != nil {
			t.Fatalf("re-register: %v", err)
		}
	}
	if err := AddService(ctx, app, "work.s3", nodes[0]); err != nil {
		t.Fatalf("a fourth name for a watched binder: %v", err)
	}
	wantLimit(AddService(ctx, app, "work.s4", nodes[1]), KnobServices)
	// Replacing a name with another binder frees the old one's link.
	if err := AddService(ctx, app, "work.s2", nodes[1]); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if err := AddService(ctx, app, "work.s1", nodes[3]); err != nil {
		t.Fatalf("a binder in the freed link: %v", err)
	}
	closeApp()
	other, _ := openOwner(t, testRel, 4)
	eventually(t, 10*time.Second, "the dead app's registrations make room", func() bool {
		return AddService(ctx, other, "work.after", other.NewNode(addOne)) == nil
	})
}
