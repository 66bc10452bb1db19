//go:build binderdriver && linux

package binder

import (
	"context"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// Scatter-gather buffers and fd arrays through the proxy: a host service
// (role "sgecho") registered under two names, one whose policy allows fds
// and one whose policy does not; workcelld's side runs as role
// "sgworkcelld" with that policy.

const (
	sgDescriptor = "workcell.test.ISG"
	sgName       = "test.sg"
	sgNoFDsName  = "test.sg.nofd"
)

// Codes of the sgecho service.
const (
	sgcBuffers = FirstCallTransaction + iota // buffer with a child at 0 -> the child reversed, as a reply buffer with a child
	sgcFDArray                               // buffer(8+4n) with an fd array at 8 -> the contents joined by "|"
)

func init() {
	roles["sgecho"] = runSGEcho
	roles["sgworkcelld"] = runSGWorkcelld
}

func runSGEcho() error {
	return runHostService(func(*Conn) Handler { return HandlerFunc(sgEchoHandler) }, sgName, sgNoFDsName)
}

func sgEchoHandler(ctx context.Context, t *Transaction) (*Parcel, error) {
	if err := t.Data.EnforceInterface(sgDescriptor); err != nil {
		return nil, err
	}
	h, parent, err := t.Data.ReadBuffer()
	if err != nil {
		return nil, err
	}
	switch t.Code {
	case sgcBuffers:
		_, child, err := t.Data.ReadEmbeddedBuffer(h, 0)
		if err != nil {
			return nil, err
		}
		rev := []byte(string(child))
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		r := NewParcel(testRel)
		r.WriteNoException()
		rh, err := r.WriteBuffer(parent)
		if err != nil {
			return nil, err
		}
		if _, err := r.WriteEmbeddedBuffer(rev, rh, 0); err != nil {
			return nil, err
		}
		return r, nil
	case sgcFDArray:
		fds, err := t.Data.ReadFDArray(h, 8)
		if err != nil {
			return nil, err
		}
		s, err := joinFDContents(fds)
		if err != nil {
			return nil, err
		}
		return reply(testRel, func(r *Parcel) { r.WriteString16(s) }), nil
	}
	return nil, StatusUnknownTransaction
}

// runSGWorkcelld is runWorkcelld with the sg services' policy.
func runSGWorkcelld() error {
	codes := []CodeRange{{sgcBuffers, sgcFDArray}}
	return runProxyWorkcelld(ProxyPolicy{Services: []ServicePolicy{
		{Name: sgName, Descriptor: sgDescriptor, Codes: codes, AllowFDs: true},
		{Name: sgNoFDsName, Descriptor: sgDescriptor, Codes: codes},
	}})
}

func newSGRig(t *testing.T) *rig {
	t.Helper()
	r, _ := startRig(t, "sgecho", "sgworkcelld")
	return r
}

// TestProxyScatterGatherBuffers: a buffer with a child goes through the
// proxy to the host service, and its reply's buffers come back, re-sent
// with the same layout both ways.
func TestProxyScatterGatherBuffers(t *testing.T) {
	newSGRig(t)
	ctx := context.Background()
	c := workApp(t)
	for _, name := range []string{sgName, sgNoFDsName} {
		p := c.NewParcel()
		p.WriteInterfaceToken(sgDescriptor)
		parent := make([]byte, 16)
		copy(parent[8:], "keepme!!")
		h, err := p.WriteBuffer(parent)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.WriteEmbeddedBuffer([]byte("through the proxy"), h, 0); err != nil {
			t.Fatal(err)
		}
		r, err := callAIDL(ctx, c, lookupWork(t, c, name), sgcBuffers, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rh, rparent, err := r.ReadBuffer()
		if err != nil || string(rparent[8:]) != "keepme!!" {
			t.Fatalf("%s: reply parent %q, %v", name, rparent, err)
		}
		_, child, err := r.ReadEmbeddedBuffer(rh, 0)
		if err != nil || string(child) != "yxorp eht hguorht" {
			t.Fatalf("%s: reply child %q, %v", name, child, err)
		}
	}
}

// TestProxyFDArrays: an fd array passes like fds, only where the policy
// allows fds; elsewhere the call is denied with an audit record.
func TestProxyFDArrays(t *testing.T) {
	r := newSGRig(t)
	ctx := context.Background()
	c := workApp(t)
	var fds []int
	for i, s := range []string{"alpha", "beta", "gamma"} {
		fd := memfd(t, fmt.Sprintf("pfda%d", i), s)
		defer unix.Close(fd)
		fds = append(fds, fd)
	}
	call := func(name string) (string, error) {
		p := c.NewParcel()
		p.WriteInterfaceToken(sgDescriptor)
		h, err := p.WriteBuffer(make([]byte, 8+4*len(fds)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WriteFDArray(fds, h, 8, false); err != nil {
			t.Fatal(err)
		}
		rep, err := callAIDL(ctx, c, lookupWork(t, c, name), sgcFDArray, p)
		if err != nil {
			return "", err
		}
		return rep.ReadString16()
	}
	if s, err := call(sgName); err != nil || s != "alpha|beta|gamma" {
		t.Fatalf("fd array through an fd-allowing service: %q, %v", s, err)
	}
	_, err := call(sgNoFDsName)
	wantException(t, err, ExSecurity)
	wantAudit(t, r, sgNoFDsName, sgcFDArray, "file descriptors not allowed")
	// The refused call changed nothing: the allowed one still works.
	if s, err := call(sgName); err != nil || s != "alpha|beta|gamma" {
		t.Fatalf("after a refusal: %q, %v", s, err)
	}
}
