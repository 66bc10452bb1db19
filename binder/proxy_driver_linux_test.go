//go:build binderdriver && linux

package binder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The proxy tests play three parties on two binder devices, each in its own
// process (the driver refuses calls from a process to the context manager
// it owns). The "host" is /dev/binder (WORKCELL_BINDER_HOST_DEVICE): its
// context manager is a ServiceManager (role "hostsm"), and the echo service
// runs in its own process (role "echo") so that killing it is a real
// death. workcelld's side (role "workcelld") is the ServiceManager and
// Proxy serving the profile's device (see device()), with its client
// connection on the host device; it writes audit records to the file named
// by WORKCELL_BINDER_TEST_AUDIT. Work apps are connections of the test
// process on the profile's device.

const (
	hostDeviceEnv = "WORKCELL_BINDER_HOST_DEVICE"
	auditEnv      = "WORKCELL_BINDER_TEST_AUDIT"
	releaseEnv    = "WORKCELL_BINDER_TEST_RELEASE"
)

func hostDevice() string {
	if d := os.Getenv(hostDeviceEnv); d != "" {
		return d
	}
	return "/dev/binder"
}

const (
	echoDescriptor     = "workcell.test.IEcho"
	callbackDescriptor = "workcell.test.ICallback"
	sessionDescriptor  = "workcell.test.ISession"
)

// Codes of the echo service.
const (
	echoEcho      = FirstCallTransaction + iota // String16 -> the same
	echoCallback                                // ICallback binder, String16 -> what the callback answers
	echoReadFD                                  // fd -> its contents as String16
	echoSecret                                  // -> "secret" (no policy allows it)
	echoSink                                    // byte array -> its length
	echoSession                                 // -> a new ISession (code 1 -> "session")
	echoCallerUID                               // -> the caller's euid as the driver gave it, int32
)

// Names the echo service registers with the host: the policy allows the
// first with fds, the second without, and does not list the third.
const (
	echoName       = "test.echo"
	echoNoFDsName  = "test.echo.nofd"
	echoHiddenName = "test.echo.hidden"
)

func init() {
	roles["echo"] = runEcho
	roles["hostsm"] = runHostSM
	roles["workcelld"] = runWorkcelld
	roles["workmgr"] = runWorkManager
}

// manage makes sm the context manager of its connection, retrying while the
// driver still tears down the previous test's manager, and serves.
func manage(ctx context.Context, c *Conn, sm *ServiceManager) error {
	return serveAsManager(ctx, c, func() error {
		_, err := sm.Start(ctx)
		return err
	})
}

func runHostSM() error {
	ctx := context.Background()
	c, err := Open(ctx, hostDevice(), testRel, WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer c.Close()
	return manage(ctx, c, NewServiceManager(c))
}

func runWorkManager() error {
	ctx := context.Background()
	rel, err := ParseRelease(os.Getenv(releaseEnv))
	if err != nil {
		return err
	}
	c, err := Open(ctx, device(), rel, WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer c.Close()
	return manage(ctx, c, NewServiceManager(c))
}

// runWorkcelld is workcelld's binder side: the profile's service manager
// with the proxy as its resolver.
func runWorkcelld() error { return runProxyWorkcelld(testProxyPolicy()) }

func testProxyPolicy() ProxyPolicy {
	codes := []CodeRange{{echoEcho, echoReadFD}, {echoSink, echoCallerUID}}
	objects := []InterfacePolicy{{Descriptor: sessionDescriptor, Codes: []CodeRange{Code(1)}}}
	return ProxyPolicy{Services: []ServicePolicy{
		{Name: echoName, Descriptor: echoDescriptor, Codes: codes, AllowFDs: true, Objects: objects},
		{Name: echoNoFDsName, Descriptor: echoDescriptor, Codes: codes, Objects: objects},
	}}
}

func reply(rel Release, fill func(*Parcel)) *Parcel {
	r := NewParcel(rel)
	r.WriteNoException()
	fill(r)
	return r
}

func runEcho() error {
	return runHostService(echoHandler, echoName, echoNoFDsName, echoHiddenName)
}

// echoHandler is the echo service on c.
func echoHandler(c *Conn) Handler {
	session := HandlerFunc(func(ctx context.Context, t *Transaction) (*Parcel, error) {
		if err := t.Data.EnforceInterface(sessionDescriptor); err != nil {
			return nil, err
		}
		return reply(testRel, func(r *Parcel) { r.WriteString16("session") }), nil
	})
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
			return reply(testRel, func(r *Parcel) { r.WriteString16(s) }), nil
		case echoCallback:
			cb, err := t.Data.ReadBinder()
			if err != nil {
				return nil, err
			}
			s, err := t.Data.ReadString16()
			if err != nil {
				return nil, err
			}
			if cb.Type != TypeHandle {
				return nil, fmt.Errorf("callback is %#x, not a handle", cb.Type)
			}
			got, err := callString(ctx, c, cb.Handle(), callbackDescriptor, 1, s)
			if err != nil {
				return nil, err
			}
			return reply(testRel, func(r *Parcel) { r.WriteString16(got) }), nil
		case echoReadFD:
			b, err := readFDContents(t.Data)
			if err != nil {
				return nil, err
			}
			return reply(testRel, func(r *Parcel) { r.WriteString16(string(b)) }), nil
		case echoSecret:
			return reply(testRel, func(r *Parcel) { r.WriteString16("secret") }), nil
		case echoSink:
			b, err := t.Data.ReadByteArray()
			if err != nil {
				return nil, err
			}
			return reply(testRel, func(r *Parcel) { r.WriteInt32(int32(len(b))) }), nil
		case echoSession:
			s := c.NewNode(session)
			return reply(testRel, func(r *Parcel) { s.WriteTo(r) }), nil
		case echoCallerUID:
			return reply(testRel, func(r *Parcel) { r.WriteInt32(int32(t.SenderEUID)) }), nil
		}
		return nil, StatusUnknownTransaction
	})
}

// callString calls code on handle with descriptor's token and a string and
// reads an AIDL string reply; an exception comes back as *Exception.
func callString(ctx context.Context, c *Conn, handle uint32, descriptor string, code uint32, s string) (string, error) {
	p := c.NewParcel()
	p.WriteInterfaceToken(descriptor)
	p.WriteString16(s)
	r, err := callAIDL(ctx, c, handle, code, p)
	if err != nil {
		return "", err
	}
	return r.ReadString16()
}

// openServing opens a connection that serves until the test ends (work
// apps need it for callbacks and death notices).
func openServing(t *testing.T, path string, rel Release) *Conn {
	t.Helper()
	needDevices(t, path)
	c, err := Open(context.Background(), path, rel, WithMaxThreads(8))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		// Under load the serving goroutine may not have begun before the
		// test ends; Serve on a closed connection says ErrClosed.
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("serve %s: %v", path, err)
		}
	})
	return c
}

// rig is the three parties of a proxy test.
type rig struct {
	audit string
	echo  *exec.Cmd
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r, _ := startRig(t, "echo", "workcelld")
	return r
}

func (r *rig) records(t *testing.T) []AuditRecord {
	t.Helper()
	b, err := os.ReadFile(r.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []AuditRecord
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// workApp is a connection on the profile's device.
func workApp(t *testing.T) *Conn { return openServing(t, device(), testRel) }

func lookupWork(t *testing.T, c *Conn, name string) uint32 {
	t.Helper()
	h, ok, err := CheckService(context.Background(), c, name)
	if err != nil || !ok {
		t.Fatalf("work lookup of %s: found %v, %v", name, ok, err)
	}
	return h
}

func wantException(t *testing.T, err error, code int32) {
	t.Helper()
	var e *Exception
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want exception %d", err, code)
	}
}

func wantAudit(t *testing.T, r *rig, service string, code uint32, reason string) {
	t.Helper()
	for _, rec := range r.records(t) {
		if rec.Service == service && rec.Code == code && rec.Verdict == VerdictDeny && strings.Contains(rec.Reason, reason) {
			if rec.Profile != "work" || rec.Time.IsZero() || rec.Direction != DirectionWorkToHost || rec.SenderPID != int32(os.Getpid()) {
				t.Errorf("audit record incomplete: %+v", rec)
			}
			return
		}
	}
	t.Fatalf("no deny record for %s code %d with reason %q in %+v", service, code, reason, r.records(t))
}

// TestServiceManagerProtocol speaks each release's service manager
// protocol to a ServiceManager: add, check, list, isDeclared, interface
// query, refusals, and a registrant's death removing its service.
func TestServiceManagerProtocol(t *testing.T) {
	for _, rel := range Releases() {
		t.Run(rel.String(), func(t *testing.T) {
			ctx := context.Background()
			startRole(t, "workmgr", releaseEnv+"="+fmt.Sprint(int(rel)))
			owner, closeOwner := openOwner(t, rel, 2)
			if err := AddService(ctx, owner, "work.add", owner.NewNode(addOne)); err != nil {
				t.Fatal(err)
			}

			c := openServing(t, device(), rel)
			h, ok, err := CheckService(ctx, c, "work.add")
			if err != nil || !ok {
				t.Fatalf("check work.add: %v %v", ok, err)
			}
			if got := callAddOne(t, c, h, 41); got != 42 {
				t.Fatalf("registered service answered %d", got)
			}
			if _, ok, err := CheckService(ctx, c, "work.missing"); err != nil || ok {
				t.Fatalf("check of a missing name: found %v, %v", ok, err)
			}
			names, err := ListServices(ctx, c)
			if err != nil || !slices.Equal(names, []string{"work.add"}) {
				t.Fatalf("list = %q, %v", names, err)
			}
			r, err := c.Transact(ctx, 0, InterfaceTransaction, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := r.ReadString16(); err != nil || d != ServiceManagerDescriptor {
				t.Fatalf("interface = %q, %v", d, err)
			}
			if _, err := c.Transact(ctx, 0, PingTransaction, nil, 0); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if code := rel.ServiceManager().IsDeclared; code != 0 {
				p := c.NewParcel()
				p.WriteInterfaceToken(ServiceManagerDescriptor)
				p.WriteString16("work.add")
				r, err := c.Transact(ctx, 0, code, p, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := r.ReadException(); err != nil {
					t.Fatal(err)
				}
				if v, err := r.ReadBool(); err != nil || v {
					t.Fatalf("isDeclared = %v, %v", v, err)
				}
			}
			// A call without the manager's token is refused.
			p := c.NewParcel()
			p.WriteInterfaceToken("android.os.INotTheManager")
			p.WriteString16("work.add")
			if _, err := c.Transact(ctx, 0, rel.ServiceManager().CheckService, p, 0); err == nil {
				t.Fatal("a call with another interface token was answered")
			}
			// An invalid name is refused.
			if err := AddService(ctx, c, "bad name!", c.NewNode(addOne)); err == nil {
				t.Fatal("an invalid name was registered")
			}
			// The registrant dies: its service goes.
			closeOwner()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, ok, err := CheckService(ctx, c, "work.add"); err == nil && !ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the dead registrant's service is still listed after 10s")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestProxyAllowsAndDeniesByPolicy: an allowed call reaches the host
// service; a code, interface or meta transaction the policy does not allow
// gets a SecurityException and an audit record; unlisted host services are
// invisible; work services stay in the profile and cannot take a host
// service's name.
func TestProxyAllowsAndDeniesByPolicy(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := wantPolicyServices(t, c)
	ir, err := c.Transact(ctx, h, InterfaceTransaction, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ir.ReadString16(); d != echoDescriptor {
		t.Fatalf("interface of the proxied service = %q", d)
	}

	_, err = callString(ctx, c, h, echoDescriptor, echoSecret, "")
	wantException(t, err, ExSecurity)
	wantAudit(t, r, echoName, echoSecret, "code not allowed")

	_, err = callString(ctx, c, h, "android.os.IOther", echoEcho, "x")
	wantException(t, err, ExSecurity)
	wantAudit(t, r, echoName, echoEcho, "is not the service's")

	dr, err := c.Transact(ctx, h, DumpTransaction, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantException(t, dr.ReadException(), ExSecurity)
	wantAudit(t, r, echoName, DumpTransaction, "meta transaction")

	if _, ok, err := CheckService(ctx, c, echoHiddenName); err != nil || ok {
		t.Fatalf("a host service outside the policy is visible to work: %v %v", ok, err)
	}

	// Work services stay inside.
	own := c.NewNode(addOne)
	if err := AddService(ctx, c, "work.only", own); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := CheckService(ctx, openServing(t, hostDevice(), testRel), "work.only"); err != nil || ok {
		t.Fatalf("the host sees a work service: %v %v", ok, err)
	}
	err = AddService(ctx, c, echoName, own)
	if testRel == Android10 {
		// service_manager.c has no exceptions: a refused add is status -1.
		if !errors.Is(err, StatusPermissionDenied) {
			t.Fatalf("taking a host service's name: %v, want PERMISSION_DENIED", err)
		}
	} else {
		wantException(t, err, ExSecurity)
	}
	if got, err := callString(ctx, c, lookupWork(t, c, echoName), echoDescriptor, echoEcho, "still"); err != nil || got != "still" {
		t.Fatalf("after a takeover attempt: %q, %v", got, err)
	}
}

// TestProxyCallbackReachesWorkApp: a binder a work app passes to the host
// arrives there as a proxy node, and the host's call on it comes back to
// the work app through the proxy, nested in the original call.
func TestProxyCallbackReachesWorkApp(t *testing.T) {
	newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	var calls atomic.Int32
	cb := bangCallback(c, &calls)
	for i := range 3 {
		p := c.NewParcel()
		p.WriteInterfaceToken(echoDescriptor)
		cb.WriteTo(p)
		p.WriteString16(fmt.Sprint("ping", i))
		r, err := callAIDL(ctx, c, h, echoCallback, p)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := r.ReadString16(); err != nil || s != fmt.Sprint("ping", i, "!") {
			t.Fatalf("callback round %d answered %q, %v", i, s, err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("callback ran %d times, want 3", calls.Load())
	}
}

// TestProxyFileDescriptors: an fd passes where the service's policy allows
// fds and is refused (SecurityException, audit record) where it does not.
func TestProxyFileDescriptors(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	c := workApp(t)
	f := payloadFile(t, "work data")
	call := func(name string) (string, error) {
		p := c.NewParcel()
		p.WriteInterfaceToken(echoDescriptor)
		p.WriteFD(int(f.Fd()), false)
		rep, err := callAIDL(ctx, c, lookupWork(t, c, name), echoReadFD, p)
		if err != nil {
			return "", err
		}
		return rep.ReadString16()
	}
	if s, err := call(echoName); err != nil || s != "work data" {
		t.Fatalf("fd through an fd-allowing service: %q, %v", s, err)
	}
	f.Seek(0, io.SeekStart)
	_, err := call(echoNoFDsName)
	wantException(t, err, ExSecurity)
	wantAudit(t, r, echoNoFDsName, echoReadFD, "file descriptors not allowed")
}

// TestProxyHandsOutHostObjects: a binder the host service returns reaches
// work wrapped; calls on it follow the policy's Objects.
func TestProxyHandsOutHostObjects(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	p := c.NewParcel()
	p.WriteInterfaceToken(echoDescriptor)
	rep, err := callAIDL(ctx, c, h, echoSession, p)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := rep.ReadBinder()
	if err != nil || obj.Type != TypeHandle {
		t.Fatalf("session object %+v, %v", obj, err)
	}
	if s, err := callString(ctx, c, obj.Handle(), sessionDescriptor, 1, ""); err != nil || s != "session" {
		t.Fatalf("session call: %q, %v", s, err)
	}
	_, err = callString(ctx, c, obj.Handle(), sessionDescriptor, 2, "")
	wantException(t, err, ExSecurity)
	_, err = callString(ctx, c, obj.Handle(), echoDescriptor, echoEcho, "x")
	wantException(t, err, ExSecurity)
	wantAudit(t, r, echoName, echoEcho, "not allowed on objects")
}

// TestProxyHostDeathReachesWork kills the host service's process: calls
// through the proxy answer DEAD_OBJECT, the name disappears from the
// profile, and a restarted service is found again. (Work's own death
// recipients cannot fire: see Proxy.)
func TestProxyHostDeathReachesWork(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	if _, err := callString(ctx, c, h, echoDescriptor, echoEcho, "alive"); err != nil {
		t.Fatal(err)
	}
	if err := r.echo.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := callString(ctx, c, h, echoDescriptor, echoEcho, "dead?")
		if errors.Is(err, StatusDeadObject) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call to the killed service: %v, want DEAD_OBJECT", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		if _, ok, err := CheckService(ctx, c, echoName); err == nil && !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("work still finds the dead host service after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	startRole(t, "echo")
	h2 := lookupWork(t, c, echoName)
	if got, err := callString(ctx, c, h2, echoDescriptor, echoEcho, "again"); err != nil || got != "again" {
		t.Fatalf("restarted service: %q, %v", got, err)
	}
	if _, err := callString(ctx, c, h, echoDescriptor, echoEcho, "old"); !errors.Is(err, StatusDeadObject) {
		t.Fatalf("the old proxy of the dead service answered %v, want DEAD_OBJECT", err)
	}
}

// TestProxyConcurrentCallers: 8 work threads x 200 calls, each answer
// checked.
func TestProxyConcurrentCallers(t *testing.T) {
	newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				want := fmt.Sprintf("g%d-%d", g, i)
				got, err := callString(ctx, c, h, echoDescriptor, echoEcho, want)
				if err != nil || got != want {
					errs <- fmt.Errorf("caller %d call %d: %q, %v", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestProxySurvivesHostileClient sends malformed transactions to the
// proxied service: garbage bytes, truncated or oversized tokens, objects
// where strings belong, bad offsets and bogus handles. Each gets an error
// answer, and the proxy still serves a well-formed call afterwards.
func TestProxySurvivesHostileClient(t *testing.T) {
	newRig(t)
	ctx := context.Background()
	c := workApp(t)
	h := lookupWork(t, c, echoName)
	rng := rand.New(rand.NewPCG(1, 2))
	answered := func(what string, p *Parcel, code uint32) {
		t.Helper()
		r, err := c.Transact(ctx, h, code, p, 0)
		if err != nil {
			var s Status
			if !errors.As(err, &s) && !errors.Is(err, ErrFailedTransaction) {
				t.Fatalf("%s: %v", what, err)
			}
			return
		}
		if err := r.ReadException(); err == nil {
			// Only a body that happens to be a valid echo call may pass.
			if code != echoEcho {
				t.Fatalf("%s: code %d answered without an exception", what, code)
			}
		}
	}
	for i := range 200 {
		p := c.NewParcel()
		b := make([]byte, rng.IntN(256))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p.data = b
		answered(fmt.Sprintf("garbage %d", i), p, 1+uint32(rng.IntN(8)))
	}
	huge := c.NewParcel()
	huge.WriteInt32(StrictModePenaltyGather)
	huge.WriteInt32(UnsetWorkSource)
	huge.WriteInt32(HeaderSystem)
	huge.WriteInt32(0x3fffffff) // descriptor length far past the data
	answered("oversized descriptor", huge, echoEcho)

	objToken := c.NewParcel()
	objToken.WriteInt32(StrictModePenaltyGather)
	objToken.WriteInt32(UnsetWorkSource)
	objToken.WriteInt32(HeaderSystem)
	c.NewNode(addOne).WriteTo(objToken) // a binder where the descriptor belongs
	answered("object in the token", objToken, echoEcho)

	vendor := c.NewParcel()
	vendor.WriteInterfaceHeader(InterfaceToken{StrictMode: StrictModePenaltyGather, WorkSource: UnsetWorkSource, Header: 0x0badf00d, Descriptor: echoDescriptor})
	vendor.WriteString16("x")
	answered("bad header word", vendor, echoEcho)

	// The driver itself refuses these before they reach the proxy.
	bad := c.NewParcel()
	bad.WriteInterfaceToken(echoDescriptor)
	bad.WriteString16("x")
	bad.offsets = []uint64{2}
	answered("misaligned offset", bad, echoEcho)
	bogus := c.NewParcel()
	bogus.WriteInterfaceToken(echoDescriptor)
	bogus.WriteHandle(9999)
	bogus.WriteString16("x")
	answered("bogus handle", bogus, echoCallback)
	badFD := c.NewParcel()
	badFD.WriteInterfaceToken(echoDescriptor)
	badFD.WriteFD(987654, false)
	answered("bogus fd", badFD, echoReadFD)

	// A one-way flood of garbage must not wedge the proxy either.
	for range 50 {
		p := c.NewParcel()
		p.data = []byte{1, 2, 3, 4}
		if _, err := c.Transact(ctx, h, echoEcho, p, FlagOneWay); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := callString(ctx, c, h, echoDescriptor, echoEcho, "fine"); err != nil || got != "fine" {
		t.Fatalf("after the hostile calls: %q, %v", got, err)
	}
}

// TestProxyFigures prints the cost of the proxy beside the direct call,
// measured in the same run: a small call's round trip, and 1 KiB and 64 KiB
// parcels one way (the reply is 8 bytes). Lines start with BINDER-BENCH for
// integration/vm to collect; nothing here asserts a timing.
func TestProxyFigures(t *testing.T) {
	newRig(t)
	ctx := context.Background()
	f := openFigureConns(t)
	sink := func(conn *Conn, h uint32, size, n int) float64 {
		payload := make([]byte, size)
		start := time.Now()
		for range n {
			p := conn.NewParcel()
			p.WriteInterfaceToken(echoDescriptor)
			p.WriteByteArray(payload)
			if _, err := callAIDL(ctx, conn, h, echoSink, p); err != nil {
				t.Fatal(err)
			}
		}
		return float64(size*n) / time.Since(start).Seconds() / (1 << 20)
	}
	f.printRoundtrip(t, "BINDER-BENCH")
	for _, tc := range []struct {
		size, n int
	}{{1 << 10, 200}, {64 << 10, 60}} {
		var d, p float64
		for range 3 {
			d = max(d, sink(f.direct, f.dh, tc.size, tc.n))
			p = max(p, sink(f.work, f.ph, tc.size, tc.n))
		}
		fmt.Printf("BINDER-BENCH throughput-%dKiB direct=%.2fMiB/s proxied=%.2fMiB/s ratio=%.2f\n", tc.size>>10, d, p, d/p)
	}
}
