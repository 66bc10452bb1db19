//go:build binderdriver && linux

package binder

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Scatter-gather buffers and fd arrays on the real driver, against a server
// of their own (role "sgserver", the context manager of device()).

// Codes of the sgserver.
const (
	sgEchoBuffers = FirstCallTransaction + iota // int32, buffer(24) with a child at 0 -> child, parent[8:] as byte arrays
	sgReplyBuffer                               // -> int32, buffer(32) with a child at 0 and an fd array of 1 at 16
	sgReadFDArray                               // int32, buffer(8+4n) with an fd array of n at 8 -> the fds' contents joined by "|"
	sgCountFDs                                  // -> the number of fds the server has open
)

func init() { roles["sgserver"] = runSGServer }

// memfd returns an fd holding s.
func memfd(t testing.TB, name, s string) int {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return fd
}

// fdContents reads what an fd holds from offset 0 (the sender shares the
// file offset).
func fdContents(fd int) (string, error) {
	b := make([]byte, 256)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	return len(ents), err
}

func sgHandler(ctx context.Context, t *Transaction) (*Parcel, error) {
	r := NewParcel(testRel)
	switch t.Code {
	case sgEchoBuffers:
		if _, err := t.Data.ReadInt32(); err != nil {
			return nil, err
		}
		h, parent, err := t.Data.ReadBuffer()
		if err != nil {
			return nil, err
		}
		_, child, err := t.Data.ReadEmbeddedBuffer(h, 0)
		if err != nil {
			return nil, err
		}
		if len(parent) != 24 || ne.Uint64(parent) == 0 {
			return nil, fmt.Errorf("parent %x: no child address in its slot", parent)
		}
		r.WriteByteArray(child)
		r.WriteByteArray(parent[8:])
	case sgReplyBuffer:
		r.WriteInt32(0)
		parent := make([]byte, 32)
		copy(parent[8:], "parent!!")
		h, err := r.WriteBuffer(parent)
		if err != nil {
			return nil, err
		}
		if _, err := r.WriteEmbeddedBuffer([]byte("reply child"), h, 0); err != nil {
			return nil, err
		}
		fd, err := unix.MemfdCreate("reply", unix.MFD_CLOEXEC)
		if err != nil {
			return nil, err
		}
		unix.Write(fd, []byte("reply fd"))
		if err := r.WriteFDArray([]int{fd}, h, 16, true); err != nil {
			return nil, err
		}
	case sgReadFDArray:
		if _, err := t.Data.ReadInt32(); err != nil {
			return nil, err
		}
		h, parent, err := t.Data.ReadBuffer()
		if err != nil {
			return nil, err
		}
		fds, err := t.Data.ReadFDArray(h, 8)
		if err != nil {
			return nil, err
		}
		if len(parent) != 8+4*len(fds) {
			return nil, fmt.Errorf("parent of %d bytes for %d fds", len(parent), len(fds))
		}
		s, err := joinFDContents(fds)
		if err != nil {
			return nil, err
		}
		r.WriteString16(s)
	case sgCountFDs:
		n, err := openFDs()
		if err != nil {
			return nil, err
		}
		r.WriteInt32(int32(n))
	default:
		return nil, StatusUnknownTransaction
	}
	return r, nil
}

func runSGServer() error {
	ctx := context.Background()
	c, err := Open(ctx, device(), testRel, WithMaxThreads(4))
	if err != nil {
		return err
	}
	defer c.Close()
	return serveAsManager(ctx, c, func() error {
		_, err := c.BecomeContextManager(ctx, HandlerFunc(sgHandler))
		return err
	})
}

func startSGServer(t *testing.T) {
	t.Helper()
	needDevices(t, device())
	startRole(t, "sgserver")
}

// TestDriverScatterGatherTransaction sends a buffer object with a child
// buffer (BC_TRANSACTION_SG); the server reads both.
func TestDriverScatterGatherTransaction(t *testing.T) {
	startSGServer(t)
	c := openClient(t)
	p := c.NewParcel()
	p.WriteInt32(1)
	parent := make([]byte, 24)
	copy(parent[8:], "sixteen bytes!!!")
	h, err := p.WriteBuffer(parent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteEmbeddedBuffer([]byte("the child buffer"), h, 0); err != nil {
		t.Fatal(err)
	}
	r, err := c.Transact(context.Background(), 0, sgEchoBuffers, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	child, err := r.ReadByteArray()
	if err != nil || string(child) != "the child buffer" {
		t.Fatalf("child %q, %v", child, err)
	}
	rest, err := r.ReadByteArray()
	if err != nil || string(rest) != "sixteen bytes!!!" {
		t.Fatalf("parent %q, %v", rest, err)
	}
	// The sender's copy is untouched and can be sent again.
	if _, err := c.Transact(context.Background(), 0, sgEchoBuffers, p, 0); err != nil {
		t.Fatalf("second send: %v", err)
	}
}

// TestDriverScatterGatherReply receives a reply (BC_REPLY_SG) with a
// buffer, its child and an fd array: the buffers are copied out of the
// mapping and the fd survives the driver closing its own at BC_FREE_BUFFER.
func TestDriverScatterGatherReply(t *testing.T) {
	startSGServer(t)
	c := openClient(t)
	before, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r, err := c.Transact(context.Background(), 0, sgReplyBuffer, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := r.ReadInt32(); err != nil || v != 0 {
			t.Fatalf("status %d, %v", v, err)
		}
		h, parent, err := r.ReadBuffer()
		if err != nil || string(parent[8:16]) != "parent!!" {
			t.Fatalf("parent %q, %v", parent, err)
		}
		_, child, err := r.ReadEmbeddedBuffer(h, 0)
		if err != nil || string(child) != "reply child" {
			t.Fatalf("child %q, %v", child, err)
		}
		fds, err := r.ReadFDArray(h, 16)
		if err != nil || len(fds) != 1 {
			t.Fatalf("fd array %v, %v", fds, err)
		}
		// Another call frees more buffers first: the fd must stay ours.
		callSGCount(t, c)
		if s, err := fdContents(fds[0]); err != nil || s != "reply fd" {
			t.Fatalf("call %d: reply fd holds %q, %v", i, s, err)
		}
		unix.Close(fds[0])
	}
	after, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("%d fds open before, %d after: the driver's fds of the fd arrays leaked", before, after)
	}
}

func callSGCount(t *testing.T, c *Conn) int32 {
	t.Helper()
	return callInt32(t, c, 0, sgCountFDs, nil)
}

// TestDriverFDArray sends an fd array of 3 fds in a buffer; the server reads
// them from the patched parent buffer, and neither its duplicates nor the
// driver's fds stay open there.
func TestDriverFDArray(t *testing.T) {
	startSGServer(t)
	c := openClient(t)
	var fds []int
	for i, s := range []string{"one", "two", "three"} {
		fd := memfd(t, fmt.Sprintf("fda%d", i), s)
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	base := callSGCount(t, c)
	for range 3 {
		p := c.NewParcel()
		p.WriteInt32(3)
		h, err := p.WriteBuffer(make([]byte, 8+4*len(fds)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WriteFDArray(fds, h, 8, false); err != nil {
			t.Fatal(err)
		}
		r, err := c.Transact(context.Background(), 0, sgReadFDArray, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := r.ReadString16(); err != nil || s != "one|two|three" {
			t.Fatalf("server read %q, %v", s, err)
		}
	}
	// A call's fds are closed right after its reply is written, so the
	// count (served maybe by another looper) may come a moment early:
	// give the last call's closing a bounded while.
	n := callSGCount(t, c)
	for deadline := time.Now().Add(2 * time.Second); n != base && time.Now().Before(deadline); n = callSGCount(t, c) {
		time.Sleep(10 * time.Millisecond)
	}
	if n != base {
		t.Errorf("server had %d fds open before the fd arrays, %d after", base, n)
	}
	// Our own fds were lent, not given.
	if s, err := fdContents(fds[2]); err != nil || s != "three" {
		t.Errorf("sender's fd after sending: %q, %v", s, err)
	}
}
