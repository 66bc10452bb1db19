//go:build binderdriver && linux

package binder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Setup shared by the driver tests: the roles' side (becoming the context
// manager, registering host services, workcelld's connections) and the
// test's side (devices, rigs, connections, calls, figures).

// serveAsManager calls become, retrying while the driver still tears down
// the previous test's context manager (EBUSY, for up to 10s), then says
// "ready" and serves c.
func serveAsManager(ctx context.Context, c *Conn, become func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := become()
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("ready")
	return c.Serve(ctx)
}

// runHostService opens the host device, registers the node of handler(c)
// under each name, says "ready" and serves.
func runHostService(handler func(c *Conn) Handler, names ...string) error {
	ctx := context.Background()
	c, err := Open(ctx, hostDevice(), testRel, WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer c.Close()
	n := c.NewNode(handler(c))
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	for _, name := range names {
		if err := AddService(ctx, c, name, n); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	return <-served
}

// runProxyWorkcelld is workcelld's binder side: the profile's service
// manager with a Proxy under policy as its resolver.
func runProxyWorkcelld(policy ProxyPolicy) error {
	ctx := context.Background()
	host, err := Open(ctx, hostDevice(), testRel, WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer host.Close()
	go host.Serve(ctx)
	return serveWorkcelld(ctx, func(work *Conn, audit *AuditLog) (Resolver, io.Closer, error) {
		p, err := NewProxy(host, work, policy, WithProfile("work"), WithAudit(audit, false))
		return p, p, err
	})
}

// serveWorkcelld opens the profile's device and the audit file
// (WORKCELL_BINDER_TEST_AUDIT), and manages the device with a
// ServiceManager whose resolver resolve builds.
func serveWorkcelld(ctx context.Context, resolve func(work *Conn, audit *AuditLog) (Resolver, io.Closer, error)) error {
	work, err := Open(ctx, device(), testRel, WithMaxThreads(15))
	if err != nil {
		return err
	}
	defer work.Close()
	f, err := os.OpenFile(os.Getenv(auditEnv), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	r, closer, err := resolve(work, NewAuditLog(f))
	if err != nil {
		return err
	}
	defer closer.Close()
	opts := []ServiceManagerOption{WithResolver(r)}
	if l, ok := testLimits(); ok {
		opts = append(opts, WithServiceManagerLimits(l))
	}
	return manage(ctx, work, NewServiceManager(work, opts...))
}

// readFDContents reads the fd next in p to its end; the fd stays the
// parcel's (the connection closes it when the handler returns).
func readFDContents(p *Parcel) ([]byte, error) {
	fd, err := p.ReadFD()
	if err != nil {
		return nil, err
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "received")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return b, nil
}

// joinFDContents reads each fd (which stays the parcel's) and joins what
// they hold with "|".
func joinFDContents(fds []int) (string, error) {
	var got []string
	for _, fd := range fds {
		s, err := fdContents(fd)
		if err != nil {
			return "", err
		}
		got = append(got, s)
	}
	return strings.Join(got, "|"), nil
}

// needDevices fails the test unless each binder device exists.
func needDevices(t *testing.T, paths ...string) {
	t.Helper()
	for _, d := range paths {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("needs a binder driver at %s (run `make test-vm`): %v", d, err)
		}
	}
}

// startRig starts the parties of a proxy test: the host's service manager,
// the host service (echoRole) and workcelld's side (workcelldRole), which
// audits to a file of the test's.
func startRig(t *testing.T, echoRole, workcelldRole string) (*rig, *exec.Cmd) {
	t.Helper()
	needDevices(t, hostDevice(), device())
	r := &rig{audit: filepath.Join(t.TempDir(), "audit.jsonl")}
	startRole(t, "hostsm")
	r.echo = startRole(t, echoRole)
	workcelld := startRole(t, workcelldRole, auditEnv+"="+r.audit)
	return r, workcelld
}

// openOwner opens a serving connection on the profile's device; the
// returned close (also run when the test ends) closes it once.
func openOwner(t *testing.T, rel Release, threads int) (*Conn, func()) {
	t.Helper()
	ctx := context.Background()
	owner, err := Open(ctx, device(), rel, WithMaxThreads(threads))
	if err != nil {
		t.Fatal(err)
	}
	ownerDone := make(chan error, 1)
	go func() { ownerDone <- owner.Serve(ctx) }()
	closeOwner := sync1(func() { owner.Close(); <-ownerDone })
	t.Cleanup(closeOwner)
	return owner, closeOwner
}

// payloadFile returns a file of the test's holding s, open for reading
// until the test ends.
func payloadFile(t *testing.T, s string) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// callInt32 makes a call and reads an int32 from the reply.
func callInt32(t *testing.T, c *Conn, handle, code uint32, p *Parcel) int32 {
	t.Helper()
	r, err := c.Transact(context.Background(), handle, code, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.ReadInt32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// callAIDL makes a call and reads the reply's AIDL exception header; an
// exception comes back as *Exception.
func callAIDL(ctx context.Context, c *Conn, handle, code uint32, p *Parcel) (*Parcel, error) {
	r, err := c.Transact(ctx, handle, code, p, 0)
	if err != nil {
		return nil, err
	}
	if err := r.ReadException(); err != nil {
		return nil, err
	}
	return r, nil
}

// figureConns are echoName looked up directly on the host device and
// through the profile's device, for the figures tests.
type figureConns struct {
	direct, work *Conn
	dh, ph       uint32
}

func openFigureConns(t *testing.T) figureConns {
	t.Helper()
	direct := openServing(t, hostDevice(), testRel)
	dh, ok, err := CheckService(context.Background(), direct, echoName)
	if err != nil || !ok {
		t.Fatalf("direct lookup: %v %v", ok, err)
	}
	c := workApp(t)
	return figureConns{direct: direct, work: c, dh: dh, ph: lookupWork(t, c, echoName)}
}

// smallCalls makes n small echo calls and returns their mean round trip.
func smallCalls(t *testing.T, conn *Conn, h uint32, n int) time.Duration {
	t.Helper()
	start := time.Now()
	for range n {
		if _, err := callString(context.Background(), conn, h, echoDescriptor, echoEcho, "x"); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// printRoundtrip prints the small call's round trip direct and proxied
// under label. It warms both up, then alternates rounds and keeps each
// side's best, so that a noisy moment of the emulated machine hits both.
func (f figureConns) printRoundtrip(t *testing.T, label string) {
	t.Helper()
	smallCalls(t, f.direct, f.dh, 30)
	smallCalls(t, f.work, f.ph, 30)
	var bestD, bestP time.Duration
	for range 3 {
		if d := smallCalls(t, f.direct, f.dh, 200); bestD == 0 || d < bestD {
			bestD = d
		}
		if p := smallCalls(t, f.work, f.ph, 200); bestP == 0 || p < bestP {
			bestP = p
		}
	}
	fmt.Printf("%s roundtrip-small direct=%v proxied=%v ratio=%.2f\n",
		label, bestD.Round(time.Microsecond), bestP.Round(time.Microsecond), float64(bestP)/float64(bestD))
}

// wantPolicyServices checks that a work app sees the policy's services
// (testProxyPolicy) and that an allowed call on echoName goes through, and
// returns echoName's handle.
func wantPolicyServices(t *testing.T, c *Conn) uint32 {
	t.Helper()
	ctx := context.Background()
	names, err := ListServices(ctx, c)
	if err != nil || !slices.Equal(names, []string{echoName, echoNoFDsName}) {
		t.Fatalf("work lists %q, %v; want the policy's services", names, err)
	}
	h := lookupWork(t, c, echoName)
	if got, err := callString(ctx, c, h, echoDescriptor, echoEcho, "héllo"); err != nil || got != "héllo" {
		t.Fatalf("allowed call: %q, %v", got, err)
	}
	return h
}

// bangCallback is an ICallback node on c answering code 1's string with
// "!" added, counting its calls in calls unless that is nil.
func bangCallback(c *Conn, calls *atomic.Int32) *Node {
	return c.NewNode(HandlerFunc(func(ctx context.Context, tx *Transaction) (*Parcel, error) {
		if err := tx.Data.EnforceInterface(callbackDescriptor); err != nil {
			return nil, err
		}
		s, err := tx.Data.ReadString16()
		if err != nil {
			return nil, err
		}
		if calls != nil {
			calls.Add(1)
		}
		return reply(testRel, func(r *Parcel) { r.WriteString16(s + "!") }), nil
	}))
}
