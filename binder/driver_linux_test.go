//go:build binderdriver && linux

package binder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// These tests need a real binder driver; see doc.go for how integration/vm
// runs them. The test process is the client; each test re-executes the test
// binary as the server, which becomes the device's context manager.

const (
	roleEnv   = "WORKCELL_BINDER_TEST_ROLE"
	deviceEnv = "WORKCELL_BINDER_DEVICE"
	// rigReleaseEnv names the release every party of these tests speaks
	// (default android11): integration/vm runs the proxy tests once more
	// in each other release. The roles inherit it.
	rigReleaseEnv = "WORKCELL_BINDER_TEST_RIG_RELEASE"
)

// testRel is the release of the tests' parties.
var testRel = rigRelease()

func rigRelease() Release {
	s := os.Getenv(rigReleaseEnv)
	if s == "" {
		return Android11
	}
	rel, err := ParseRelease(s)
	if err != nil {
		// A typo must not quietly test android11 instead.
		panic(fmt.Sprintf("%s: %v", rigReleaseEnv, err))
	}
	return rel
}

// Codes the test server answers.
const (
	codeAddOne     = FirstCallTransaction + iota // int32 -> int32+1
	codeOneWay                                   // one-way: remember an int32
	codeLastOneWay                               // -> the remembered int32
	codeCallBack                                 // binder, int32 -> what the binder answers to codeAddOne
	codeReadFD                                   // fd -> its contents
	codeNewNode                                  // -> a new binder answering codeAddOne
	codeExit                                     // one-way: the server process exits
)

func device() string {
	if d := os.Getenv(deviceEnv); d != "" {
		return d
	}
	return "/dev/workbinder"
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		run := roles[role]
		if run == nil {
			fmt.Fprintln(os.Stderr, "binder test: unknown role", role)
			os.Exit(2)
		}
		if err := run(); err != nil {
			fmt.Fprintf(os.Stderr, "binder test %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var addOne = HandlerFunc(func(ctx context.Context, t *Transaction) (*Parcel, error) {
	if t.Code != codeAddOne {
		return nil, StatusUnknownTransaction
	}
	v, err := t.Data.ReadInt32()
	if err != nil {
		return nil, err
	}
	r := NewParcel(testRel)
	r.WriteInt32(v + 1)
	return r, nil
})

func runServer() error {
	ctx := context.Background()
	c, err := Open(ctx, device(), testRel, WithMaxThreads(4))
	if err != nil {
		return err
	}
	defer c.Close()
	var last atomic.Int32
	h := HandlerFunc(func(ctx context.Context, t *Transaction) (*Parcel, error) {
		r := NewParcel(testRel)
		switch t.Code {
		case codeAddOne:
			return addOne(ctx, t)
		case codeOneWay:
			v, err := t.Data.ReadInt32()
			if err != nil {
				return nil, err
			}
			last.Store(v)
		case codeLastOneWay:
			r.WriteInt32(last.Load())
		case codeCallBack:
			cb, err := t.Data.ReadBinder()
			if err != nil {
				return nil, err
			}
			v, err := t.Data.ReadInt32()
			if err != nil {
				return nil, err
			}
			arg := NewParcel(testRel)
			arg.WriteInt32(v)
			// A call nested back into the client's thread that waits for us.
			got, err := c.Transact(ctx, cb.Handle(), codeAddOne, arg, 0)
			if err != nil {
				return nil, err
			}
			w, err := got.ReadInt32()
			if err != nil {
				return nil, err
			}
			r.WriteInt32(w)
		case codeReadFD:
			b, err := readFDContents(t.Data)
			if err != nil {
				return nil, err
			}
			r.WriteByteArray(b)
		case codeNewNode:
			c.NewNode(addOne).WriteTo(r)
		case codeExit:
			os.Exit(0)
		default:
			return nil, StatusUnknownTransaction
		}
		return r, nil
	})
	// The previous test's server may still be being torn down by the driver.
	return serveAsManager(ctx, c, func() error {
		_, err := c.BecomeContextManager(ctx, h)
		return err
	})
}

// roles are the processes a test can start besides itself (startRole).
var roles = map[string]func() error{"server": runServer}

// startServer runs the server process and waits until it manages the context.
func startServer(t *testing.T) *exec.Cmd {
	t.Helper()
	needDevices(t, device())
	return startRole(t, "server")
}

// startRole re-executes the test binary as role, with env added, and waits
// for it to print "ready"; the process is killed when the test ends.
func startRole(t *testing.T, role string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("server said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(exited)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%s did not start: %v", role, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s was not ready within 30s", role)
	}
	return cmd
}

func openClient(t *testing.T) *Conn {
	t.Helper()
	c, err := Open(context.Background(), device(), testRel, WithMaxThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func callAddOne(t *testing.T, c *Conn, handle uint32, v int32) int32 {
	t.Helper()
	p := c.NewParcel()
	p.WriteInt32(v)
	return callInt32(t, c, handle, codeAddOne, p)
}

func TestDriverSyncCalls(t *testing.T) {
	startServer(t)
	c := openClient(t)
	for i := int32(0); i < 1000; i++ {
		if got := callAddOne(t, c, 0, i); got != i+1 {
			t.Fatalf("call %d answered %d", i, got)
		}
	}
}

func TestDriverPingAndUnknownCode(t *testing.T) {
	startServer(t)
	c := openClient(t)
	if _, err := c.Transact(context.Background(), 0, PingTransaction, nil, 0); err != nil {
		t.Fatalf("ping: %v", err)
	}
	_, err := c.Transact(context.Background(), 0, 0x00abcdef, nil, 0)
	var s Status
	if !errors.As(err, &s) || s != StatusUnknownTransaction {
		t.Fatalf("unknown code: %v, want UNKNOWN_TRANSACTION", err)
	}
}

func TestDriverOneWayCall(t *testing.T) {
	startServer(t)
	c := openClient(t)
	p := c.NewParcel()
	p.WriteInt32(4242)
	if r, err := c.Transact(context.Background(), 0, codeOneWay, p, FlagOneWay); err != nil || r != nil {
		t.Fatalf("one-way call: %v, %v", r, err)
	}
	// One-way work may be served after a later sync call: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.Transact(context.Background(), 0, codeLastOneWay, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := r.ReadInt32(); v == 4242 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the one-way call never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDriverCallbackThroughPassedBinder(t *testing.T) {
	startServer(t)
	c := openClient(t)
	var calls atomic.Int32
	cb := c.NewNode(HandlerFunc(func(ctx context.Context, tx *Transaction) (*Parcel, error) {
		calls.Add(1)
		return addOne(ctx, tx)
	}))
	p := c.NewParcel()
	cb.WriteTo(p)
	p.WriteInt32(99)
	r, err := c.Transact(context.Background(), 0, codeCallBack, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.ReadInt32(); err != nil || v != 100 {
		t.Fatalf("callback answered %d, %v", v, err)
	}
	if calls.Load() != 1 {
		t.Fatalf("callback ran %d times", calls.Load())
	}
	if strong, _ := cb.Refs(); strong < 0 {
		t.Fatalf("negative strong count %d", strong)
	}
}

func TestDriverPassesFileDescriptor(t *testing.T) {
	startServer(t)
	c := openClient(t)
	f := payloadFile(t, "through binder")
	p := c.NewParcel()
	p.WriteFD(int(f.Fd()), false)
	r, err := c.Transact(context.Background(), 0, codeReadFD, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := r.ReadByteArray(); err != nil || string(b) != "through binder" {
		t.Fatalf("server read %q, %v", b, err)
	}
}

func TestDriverDeathNotificationWhenServerExits(t *testing.T) {
	startServer(t)
	c := openClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	r, err := c.Transact(ctx, 0, codeNewNode, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := r.ReadBinder()
	if err != nil || obj.Type != TypeHandle {
		t.Fatalf("new node: %+v, %v", obj, err)
	}
	if got := callAddOne(t, c, obj.Handle(), 1); got != 2 {
		t.Fatalf("received handle answered %d", got)
	}
	died := make(chan struct{})
	if _, err := c.LinkToDeath(ctx, obj.Handle(), func() { close(died) }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Transact(ctx, 0, codeExit, nil, FlagOneWay); err != nil {
		t.Fatal(err)
	}
	select {
	case <-died:
	case <-time.After(20 * time.Second):
		t.Fatal("no death notification 20s after the server exited")
	}
	_, err = c.Transact(ctx, obj.Handle(), codeAddOne, nil, 0)
	if !errors.Is(err, ErrDeadObject) && !errors.Is(err, ErrFailedTransaction) {
		t.Fatalf("call to a dead object: %v", err)
	}
	if err := c.ReleaseHandle(ctx, obj.Handle()); err != nil {
		t.Fatal(err)
	}
}
