//go:build binderdriver && linux

package binder

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// The node helper tests run the proxy as workcelld does: role
// "workcelld-helpers" is the profile's ServiceManager with NodeHelpers as
// its resolver, re-executing the test binary as role "nodehelper" for each
// proxied host service and each export.

const (
	exportName     = "work.echo"
	exportHostName = "work.echo.exported"
	privateName    = "work.private"
)

func init() {
	roles["workcelld-helpers"] = runWorkcelldHelpers
	roles["nodehelper"] = func() error {
		os.Exit(RunNodeHelper(os.Stdin, os.Stdout, os.Stderr))
		return nil
	}
}

func helperPolicy() ProxyPolicy {
	pol := testProxyPolicy()
	pol.Exports = []ExportPolicy{{Name: exportName, HostName: exportHostName, Descriptor: echoDescriptor,
		Codes: []CodeRange{Code(echoEcho)}}}
	return pol
}

func runWorkcelldHelpers() error {
	return serveWorkcelld(context.Background(), func(work *Conn, audit *AuditLog) (Resolver, io.Closer, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		command := func() *exec.Cmd {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), roleEnv+"=nodehelper")
			return cmd
		}
		h, err := NewNodeHelpers(testRel, hostDevice(), device(), "work", helperPolicy(), command, audit, false, nil)
		return h, h, err
	})
}

type helperRig struct {
	rig
	workcelld *exec.Cmd
}

func newHelperRig(t *testing.T) *helperRig {
	t.Helper()
	r, workcelld := startRig(t, "echo", "workcelld-helpers")
	return &helperRig{rig: *r, workcelld: workcelld}
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNodeHelperDeathReachesWork: a work app links to death on a proxied
// host service; killing the host service delivers the death notice to the
// work app's recipient, the name goes, and a restarted service is found
// and called again.
func TestNodeHelperDeathReachesWork(t *testing.T) {
	r := newHelperRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	if got, err := callString(ctx, c, h, echoDescriptor, echoEcho, "alive"); err != nil || got != "alive" {
		t.Fatalf("call through the helper: %q, %v", got, err)
	}
	dead := make(chan struct{})
	if _, err := c.LinkToDeath(ctx, h, func() { close(dead) }); err != nil {
		t.Fatal(err)
	}
	// Another proxied service has a helper of its own and lives on.
	other := lookupWork(t, c, echoNoFDsName)
	otherDead := make(chan struct{})
	if _, err := c.LinkToDeath(ctx, other, func() { close(otherDead) }); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := r.echo.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dead:
		t.Logf("death notice reached the work app %v after the kill", time.Since(killed).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("no death notice within 10s of killing the host service")
	}
	// The echo process served both names: both helpers go.
	select {
	case <-otherDead:
	case <-time.After(10 * time.Second):
		t.Fatal("no death notice for the second service of the killed process")
	}
	if _, err := callString(ctx, c, h, echoDescriptor, echoEcho, "dead?"); !isDead(err) {
		t.Fatalf("call on the dead service: %v, want DEAD_OBJECT", err)
	}
	eventually(t, 10*time.Second, "the dead host service leaves the profile", func() bool {
		_, ok, err := CheckService(ctx, c, echoName)
		return err == nil && !ok
	})
	startRole(t, "echo")
	h2 := lookupWork(t, c, echoName)
	if got, err := callString(ctx, c, h2, echoDescriptor, echoEcho, "again"); err != nil || got != "again" {
		t.Fatalf("restarted service: %q, %v", got, err)
	}
	if h2 == h {
		t.Fatalf("the restarted service came back as the dead handle %d", h)
	}
}

// TestNodeHelperPolicy: the helper checks calls as the proxy does, and its
// audit records reach workcelld's log.
func TestNodeHelperPolicy(t *testing.T) {
	r := newHelperRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := wantPolicyServices(t, c)
	_, err := callString(ctx, c, h, echoDescriptor, echoSecret, "")
	wantException(t, err, ExSecurity)
	eventually(t, 5*time.Second, "the helper's deny record", func() bool {
		for _, rec := range r.records(t) {
			if rec.Service == echoName && rec.Code == echoSecret && rec.Verdict == VerdictDeny {
				return true
			}
		}
		return false
	})
	wantAudit(t, &r.rig, echoName, echoSecret, "code not allowed")
	if _, ok, err := CheckService(ctx, c, echoHiddenName); err != nil || ok {
		t.Fatalf("a host service outside the policy is visible to work: %v %v", ok, err)
	}
	// Work apps still cannot take a proxied name.
	err = AddService(ctx, c, echoName, c.NewNode(addOne))
	wantException(t, err, ExSecurity)
	// A callback passed out comes back through the helper.
	cb := bangCallback(c, nil)
	p := c.NewParcel()
	p.WriteInterfaceToken(echoDescriptor)
	cb.WriteTo(p)
	p.WriteString16("ping")
	rep, err := callAIDL(ctx, c, h, echoCallback, p)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := rep.ReadString16(); err != nil || s != "ping!" {
		t.Fatalf("callback: %q, %v", s, err)
	}
}

// workEcho is a work service: echoEcho answers its string, echoSecret
// "secret".
func workEcho(rel Release) Handler {
	return HandlerFunc(func(ctx context.Context, t *Transaction) (*Parcel, error) {
		if err := t.Data.EnforceInterface(echoDescriptor); err != nil {
			return nil, err
		}
		switch t.Code {
		case echoEcho:
			s, err := t.Data.ReadString16()
			if err != nil {
				return nil, err
			}
			return reply(rel, func(r *Parcel) { r.WriteString16("work:" + s) }), nil
		case echoSecret:
			return reply(rel, func(r *Parcel) { r.WriteString16("secret") }), nil
		}
		return nil, StatusUnknownTransaction
	})
}

func hostFinds(ctx context.Context, host *Conn, name string) bool {
	_, ok, err := CheckService(ctx, host, name)
	return err == nil && ok
}

// TestExportToHost: a work service the policy exports appears in the
// host's service manager under its host name; an allowed code works, a
// denied one gets a SecurityException and an audit record; a work service
// that is not exported stays invisible; the export goes when the work
// service dies, comes back when it is registered again, and goes when the
// profile's context stops.
func TestExportToHost(t *testing.T) {
	r := newHelperRig(t)
	ctx := context.Background()
	owner, closeOwner := openOwner(t, testRel, 4)
	if err := AddService(ctx, owner, exportName, owner.NewNode(workEcho(testRel))); err != nil {
		t.Fatal(err)
	}
	if err := AddService(ctx, owner, privateName, owner.NewNode(workEcho(testRel))); err != nil {
		t.Fatal(err)
	}
	host := openServing(t, hostDevice(), testRel)
	eventually(t, 10*time.Second, "the export appears in the host's service manager", func() bool {
		return hostFinds(ctx, host, exportHostName)
	})
	h, _, err := CheckService(ctx, host, exportHostName)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := callString(ctx, host, h, echoDescriptor, echoEcho, "hi"); err != nil || got != "work:hi" {
		t.Fatalf("host call on the export: %q, %v", got, err)
	}
	_, err = callString(ctx, host, h, echoDescriptor, echoSecret, "")
	wantException(t, err, ExSecurity)
	eventually(t, 5*time.Second, "the export's deny record", func() bool {
		for _, rec := range r.records(t) {
			if rec.Service == exportName && rec.Code == echoSecret && rec.Verdict == VerdictDeny &&
				rec.Direction == DirectionHostToWork && rec.Profile == "work" && rec.Reason == "code not allowed" {
				return true
			}
		}
		return false
	})
	for _, name := range []string{privateName, exportName} {
		if hostFinds(ctx, host, name) {
			t.Fatalf("the host finds the work service %s", name)
		}
	}
	names, err := ListServices(ctx, host)
	if err != nil || slices.Contains(names, privateName) || !slices.Contains(names, exportHostName) {
		t.Fatalf("host lists %q, %v", names, err)
	}

	// The work service dies: the export goes.
	closeOwner()
	eventually(t, 10*time.Second, "the export leaves the host when the work service dies", func() bool {
		return !hostFinds(ctx, host, exportHostName)
	})
	if _, err := callString(ctx, host, h, echoDescriptor, echoEcho, "x"); !isDead(err) {
		t.Fatalf("call on the gone export: %v, want DEAD_OBJECT", err)
	}
	// Registered again: exported again.
	again := openServing(t, device(), testRel)
	if err := AddService(ctx, again, exportName, again.NewNode(workEcho(testRel))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the export comes back", func() bool { return hostFinds(ctx, host, exportHostName) })
	// The profile's context stops (workcelld goes): the export goes.
	r.workcelld.Process.Kill()
	eventually(t, 10*time.Second, "the export leaves the host when the profile stops", func() bool {
		return !hostFinds(ctx, host, exportHostName)
	})
}

func sync1(f func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			f()
		}
	}
}

// TestNodeHelperFigures prints the round trip of a small call through a
// node helper beside the direct call (BINDER-BENCH-HELPER; never asserted).
func TestNodeHelperFigures(t *testing.T) {
	newHelperRig(t)
	openFigureConns(t).printRoundtrip(t, "BINDER-BENCH-HELPER")
}

// isDead says whether a call failed because its target is dead: the driver
// answers BR_DEAD_REPLY for a node whose process died.
func isDead(err error) bool {
	return errors.Is(err, ErrDeadObject) || errors.Is(err, StatusDeadObject)
}
