//go:build binderdriver && linux

package binder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The fd flood tests are the attack of a work app that sends fds nobody
// asked for, thousands of times, to every binder object it can reach: the
// profile's service manager (workcelld), a node helper's proxy node and,
// through it, a host service. Every fd the driver installs in a receiver
// that does not pass it on must be closed; before, each call left its fds
// open in workcelld until it hit its fd limit.

const floodCalls = 2000

// fdCount is the number of fds process pid has open.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count the fds of pid %d: %v", pid, err)
	}
	return len(ents)
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(st, "/proc/"), "/stat"))
			out = append(out, c)
		}
	}
	return out
}

// floodParcel is a call carrying one fd object and an fd array of two,
// after an interface token.
func floodParcel(t *testing.T, c *Conn, descriptor string, fds []int) *Parcel {
	t.Helper()
	p := c.NewParcel()
	p.WriteInterfaceToken(descriptor)
	p.WriteFD(fds[0], false)
	h, err := p.WriteBuffer(make([]byte, 8+4*2))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFDArray(fds[1:3], h, 8, false); err != nil {
		t.Fatal(err)
	}
	return p
}

// flood sends floodCalls calls carrying fds to handle, cycling through
// codes and one-way calls; failures are expected (the target refuses), a
// hung or crashed target is not.
func flood(t *testing.T, c *Conn, handle uint32, descriptor string, codes []uint32) (answered, failed int) {
	t.Helper()
	var fds []int
	for i := range 3 {
		fd := memfd(t, fmt.Sprintf("flood%d", i), "flood")
		t.Cleanup(func() { unix.Close(fd) })
		fds = append(fds, fd)
	}
	ctx := context.Background()
	for i := range floodCalls {
		code := codes[i%len(codes)]
		var flags uint32
		if i%5 == 4 {
			flags = FlagOneWay
		}
		r, err := c.Transact(ctx, handle, code, floodParcel(t, c, descriptor, fds), flags)
		if err != nil {
			failed++
			continue
		}
		if r != nil {
			r.CloseFDs()
		}
		answered++
	}
	return answered, failed
}

// wantBounded fails when pid holds more than slack fds beyond before.
func wantBounded(t *testing.T, who string, pid, before int) {
	t.Helper()
	const slack = 16 // looper threads' epoll and pipes, a log file
	var after int
	for range 50 { // one-way calls may still be in the queue
		if after = fdCount(t, pid); after <= before+slack {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s (pid %d): %d fds before %d calls with 3 fds each, %d after", who, pid, before, floodCalls, after)
	if after > before+slack {
		t.Errorf("%s (pid %d) kept the fds of the flood: %d open before, %d after", who, pid, before, after)
	}
}

// TestServiceManagerFDFlood: a work app sends 2,000 calls carrying an fd
// and an fd array to the profile's service manager; workcelld's fd count
// stays where it was and it still answers.
func TestServiceManagerFDFlood(t *testing.T) {
	r := newHelperRig(t)
	c := workApp(t)
	lookupWork(t, c, echoName) // the manager's lookups work, and its helper runs
	pid := r.workcelld.Process.Pid
	before := fdCount(t, pid)
	codes := testRel.ServiceManager()
	answered, failed := flood(t, c, 0, ServiceManagerDescriptor,
		[]uint32{codes.CheckService, codes.AddService, codes.ListServices, 0x00abcdef, PingTransaction})
	t.Logf("service manager: %d calls answered, %d failed", answered, failed)
	wantBounded(t, "workcelld's service manager", pid, before)
	lookupWork(t, c, echoName)
}

// TestNodeHelperFDFlood: the same flood on the proxy nodes of node
// helpers: a service whose policy allows no fds (denied, audited), codes
// outside the policy, meta transactions, one-way calls, and a service
// that allows fds (forwarded to the host service, which reads them). The
// helpers, workcelld and the host service all end with the fds they had.
func TestNodeHelperFDFlood(t *testing.T) {
	r := newHelperRig(t)
	c := workApp(t)
	noFDs := lookupWork(t, c, echoNoFDsName)
	withFDs := lookupWork(t, c, echoName)
	helpers := childPIDs(t, r.workcelld.Process.Pid)
	if len(helpers) != 2 {
		t.Fatalf("workcelld (pid %d) runs %d node helpers %v, want 2", r.workcelld.Process.Pid, len(helpers), helpers)
	}
	before := map[int]int{r.workcelld.Process.Pid: fdCount(t, r.workcelld.Process.Pid), r.echo.Process.Pid: fdCount(t, r.echo.Process.Pid)}
	for _, h := range helpers {
		before[h] = fdCount(t, h)
	}
	a, f := flood(t, c, noFDs, echoDescriptor, []uint32{echoEcho, echoSecret, InterfaceTransaction, PingTransaction, DumpTransaction})
	t.Logf("service without fds: %d calls answered, %d failed", a, f)
	a, f = flood(t, c, withFDs, echoDescriptor, []uint32{echoEcho, echoSecret, echoReadFD})
	t.Logf("service with fds: %d calls answered, %d failed", a, f)
	for pid, n := range before {
		who := "node helper"
		switch pid {
		case r.workcelld.Process.Pid:
			who = "workcelld"
		case r.echo.Process.Pid:
			who = "the host service"
		}
		wantBounded(t, who, pid, n)
	}
	if got, err := callString(context.Background(), c, withFDs, echoDescriptor, echoEcho, "after"); err != nil || got != "after" {
		t.Fatalf("call after the flood: %q, %v", got, err)
	}
}
