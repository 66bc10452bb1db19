package binder

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

// hidlParcel writes what a HIDL call with a hidl_vec-like parent (pointer
// slot at 0, an fd array at 16) and one child buffer looks like.
func hidlParcel(t *testing.T, fds []int) *Parcel {
	t.Helper()
	p := NewParcel(Android11)
	p.WriteInt32(42)
	parent := make([]byte, 32)
	copy(parent[28:], "tail")
	h, err := p.WriteBuffer(parent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteEmbeddedBuffer([]byte("child contents"), h, 0); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteFDArray(fds, h, 16, false); err != nil {
		t.Fatal(err)
	}
	p.WriteInt32(7)
	return p
}

// deliver plays the driver: it gives each buffer an address in a fake
// receive mapping, writes the addresses into the objects and the parents'
// pointer slots, and returns the received parcel with its buffers loaded.
func deliver(t *testing.T, p *Parcel) (*Parcel, error) {
	t.Helper()
	const base = 0x7f0000001000
	mem := map[uint64][]byte{}
	data := append([]byte(nil), p.Data()...)
	bufs := map[int][]byte{}
	for i, b := range p.bufs {
		bufs[i] = append([]byte(nil), b...)
	}
	next := uint64(base)
	addrs := map[int]uint64{}
	for i, off := range p.Offsets() {
		if ne.Uint32(data[off:]) != TypePtr {
			continue
		}
		bo := decodeBufferObject(data[off:])
		addrs[i] = next
		ne.PutUint64(data[off+8:], next)
		if bo.Flags&FlagBufferHasParent != 0 {
			ne.PutUint64(bufs[int(bo.Parent)][bo.ParentOffset:], next)
		}
		next += align8(bo.Length)
	}
	for i, a := range addrs {
		mem[a] = bufs[i]
	}
	r, err := ParseParcel(p.Release(), data, slices.Clone(p.Offsets()))
	if err != nil {
		return nil, err
	}
	err = r.loadBuffers(func(addr, n uint64) ([]byte, error) {
		b, ok := mem[addr]
		if !ok || uint64(len(b)) != n {
			return nil, errors.New("outside the mapping")
		}
		return b, nil
	})
	return r, err
}

func TestScatterGatherRoundTrip(t *testing.T) {
	p := hidlParcel(t, []int{5, 6, 7})
	if got := p.buffersSize(); got != 32+16 {
		t.Fatalf("buffers size %d, want 48", got)
	}
	// The objects as libhwbinder lays them out.
	off := p.Offsets()
	if len(off) != 3 || off[0] != 4 || off[1] != 44 || off[2] != 84 {
		t.Fatalf("offsets %v", off)
	}
	want := "2a000000" +
		"85**7470" + "00000000" + "0000000000000000" + "2000000000000000" + "0000000000000000" + "0000000000000000" +
		"85**7470" + "01000000" + "0000000000000000" + "0e00000000000000" + "0000000000000000" + "0000000000000000" +
		"85616466" + "00000000" + "0300000000000000" + "0000000000000000" + "1000000000000000" +
		"07000000"
	want = strings.ReplaceAll(want, "**", "2a")
	if got := hex.EncodeToString(p.Data()); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	if got := p.fdArrayFDs(); !slices.Equal(got, []int{5, 6, 7}) {
		t.Fatalf("fds in the parent %v", got)
	}

	r, err := deliver(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.ReadInt32(); err != nil || v != 42 {
		t.Fatalf("header %d, %v", v, err)
	}
	h, parent, err := r.ReadBuffer()
	if err != nil || h != 0 || len(parent) != 32 || string(parent[28:]) != "tail" {
		t.Fatalf("ReadBuffer: %d %q %v", h, parent, err)
	}
	// A plain read may not see the object; the wrong reader is refused
	// without moving.
	r2, _ := deliver(t, p)
	r2.SetPosition(4)
	if _, err := r2.ReadInt32(); err == nil {
		t.Fatal("ReadInt32 read a buffer object")
	}
	if _, _, err := r2.ReadEmbeddedBuffer(0, 0); err == nil || r2.Position() != 4 {
		t.Fatalf("top-level buffer read as embedded: %v at %d", err, r2.Position())
	}
	if _, err := r.ReadFDArray(0, 16); err == nil {
		t.Fatal("an embedded buffer read as an fd array")
	}
	if _, _, err := r.ReadEmbeddedBuffer(0, 8); err == nil {
		t.Fatal("embedded buffer read at the wrong parent offset")
	}
	ch, child, err := r.ReadEmbeddedBuffer(h, 0)
	if err != nil || ch != 1 || string(child) != "child contents" {
		t.Fatalf("ReadEmbeddedBuffer: %d %q %v", ch, child, err)
	}
	fds, err := r.ReadFDArray(h, 16)
	if err != nil || !slices.Equal(fds, []int{5, 6, 7}) {
		t.Fatalf("ReadFDArray: %v %v", fds, err)
	}
	if v, err := r.ReadInt32(); err != nil || v != 7 {
		t.Fatalf("trailer %d, %v", v, err)
	}
	bs := r.Buffers()
	if len(bs) != 2 || bs[1].Parent != 0 || !bs[1].HasParent || bs[0].HasParent || string(bs[1].Data) != "child contents" {
		t.Fatalf("Buffers: %+v", bs)
	}

	// Without loaded contents, a parsed parcel's buffers cannot be read.
	raw, err := ParseParcel(Android11, p.Data(), p.Offsets())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetPosition(4)
	if _, _, err := raw.ReadBuffer(); err == nil || raw.Position() != 4 {
		t.Fatalf("unloaded buffer: %v", err)
	}
}

func TestScatterGatherWritersRefuseWhatTheDriverRefuses(t *testing.T) {
	p := NewParcel(Android14)
	p.WriteInt32(0)
	h, _ := p.WriteBuffer(make([]byte, 24))
	n := len(p.Data())
	bad := []struct {
		name string
		do   func() error
	}{
		{"parent is not a buffer", func() error { _, err := p.WriteEmbeddedBuffer(nil, h+5, 0); return err }},
		{"slot past the parent", func() error { _, err := p.WriteEmbeddedBuffer(nil, h, 24); return err }},
		{"slot not 8-aligned", func() error { _, err := p.WriteEmbeddedBuffer(nil, h, 4); return err }},
		{"negative parent", func() error { _, err := p.WriteEmbeddedBuffer(nil, -1, 0); return err }},
		{"too many fds", func() error { return p.WriteFDArray(make([]int, 7), h, 0, false) }},
		{"fds past the parent", func() error { return p.WriteFDArray([]int{1, 2}, h, 20, false) }},
		{"fd array not 4-aligned", func() error { return p.WriteFDArray([]int{1}, h, 2, false) }},
		{"negative fd", func() error { return p.WriteFDArray([]int{-1}, h, 0, false) }},
	}
	for _, b := range bad {
		if err := b.do(); err == nil {
			t.Errorf("%s: accepted", b.name)
		}
		if len(p.Data()) != n || len(p.Offsets()) != 1 {
			t.Fatalf("%s: a refused write left %d bytes, %d objects", b.name, len(p.Data()), len(p.Offsets()))
		}
	}
	// Fixups into one parent must ascend.
	if _, err := p.WriteEmbeddedBuffer([]byte("a"), h, 8); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteEmbeddedBuffer([]byte("b"), h, 0); err == nil {
		t.Error("descending fixup accepted")
	}
	if err := p.WriteFDArray([]int{3}, h, 12, false); err == nil {
		t.Error("fd array overlapping the previous pointer slot accepted")
	}
	if err := p.WriteFDArray([]int{3, 4}, h, 16, true); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.OwnedFDs(), []int{3, 4}) {
		t.Errorf("owned fds %v", p.OwnedFDs())
	}
	// The driver takes no fixups into a buffer object at data offset 0.
	q := NewParcel(Android11)
	h0, _ := q.WriteBuffer(make([]byte, 8))
	if _, err := q.WriteEmbeddedBuffer(nil, h0, 0); err == nil || !strings.Contains(err.Error(), "offset 0") {
		t.Errorf("fixup into a buffer at offset 0: %v", err)
	}
	// An fd array needs a parent at all.
	if err := NewParcel(Android11).WriteFDArray([]int{1}, 0, 0, false); err == nil {
		t.Error("fd array without a buffer accepted")
	}
}

func TestScatterGatherHostileLayoutsAreRejected(t *testing.T) {
	base := func() *Parcel { return hidlParcel(t, []int{5, 6, 7}) }
	field := func(obj, at int, v uint64) func(p *Parcel) {
		return func(p *Parcel) { ne.PutUint64(p.data[p.offsets[obj]+uint64(at):], v) }
	}
	tests := []struct {
		name  string
		patch func(p *Parcel)
	}{
		{"child's parent is itself", field(1, 24, 1)},
		{"child's parent is later", field(1, 24, 2)},
		{"child's parent is huge", field(1, 24, 1<<63)},
		{"child's slot outside the parent", field(1, 32, 32)},
		{"child's slot misaligned", field(1, 32, 4)},
		{"child's slot after the fd array's fixup", field(1, 32, 24)},
		{"unknown buffer flags", func(p *Parcel) { ne.PutUint32(p.data[p.offsets[1]+4:], 3) }},
		{"huge buffer", field(0, 16, 1<<40)},
		{"fd array's parent is itself", field(2, 16, 2)},
		{"too many fds", field(2, 8, 9)},
		{"absurd number of fds", field(2, 8, 1<<62)},
		{"fds past the parent", field(2, 24, 24)},
		{"fd array misaligned", field(2, 24, 18)},
		{"fd array before the child's slot", field(2, 24, 4)},
	}
	for _, tc := range tests {
		p := base()
		tc.patch(p)
		if _, err := ParseParcel(Android11, p.data, p.offsets); !errors.Is(err, ErrBadParcel) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The driver's address must be in the parent's slot.
	p := base()
	if _, err := deliver(t, p); err != nil {
		t.Fatal(err)
	}
	r, err := ParseParcel(Android11, p.data, p.offsets)
	if err != nil {
		t.Fatal(err)
	}
	err = r.loadBuffers(func(addr, n uint64) ([]byte, error) { return bytes.Repeat([]byte{1}, int(n)), nil })
	if !errors.Is(err, ErrBadParcel) {
		t.Errorf("parent without the child's address: %v", err)
	}
	err = r.loadBuffers(func(addr, n uint64) ([]byte, error) { return nil, errors.New("outside") })
	if err == nil {
		t.Error("fetch error ignored")
	}
	if r.bufs != nil {
		t.Error("a failed load left buffers")
	}
}

func TestRewriteObjectsForwardsBuffersAndFDArrays(t *testing.T) {
	in, err := deliver(t, hidlParcel(t, []int{5, 6, 7}))
	if err != nil {
		t.Fatal(err)
	}
	var seen []Object
	out, err := rewriteObjects(in, func(o Object) (flatObject, error) {
		seen = append(seen, o)
		return flatObject{Type: TypeFD, Binder: o.Binder + 10}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0].Type != TypeFD || seen[0].FD() != 5 || seen[2].FD() != 7 {
		t.Fatalf("fn saw %+v", seen)
	}
	if !slices.Equal(out.OwnedFDs(), []int{15, 16, 17}) {
		t.Errorf("owned %v", out.OwnedFDs())
	}
	if !slices.Equal(out.fdArrayFDs(), []int{15, 16, 17}) || !slices.Equal(in.fdArrayFDs(), []int{5, 6, 7}) {
		t.Errorf("fds out %v, in %v", out.fdArrayFDs(), in.fdArrayFDs())
	}
	if out.buffersSize() != in.buffersSize() || !bytes.Equal(out.Data(), in.Data()) {
		t.Error("layout changed")
	}
	if string(out.bufs[1]) != "child contents" {
		t.Errorf("child %q", out.bufs[1])
	}
	if got := receivedFDs(in); !slices.Equal(got, []int{5, 6, 7}) {
		t.Errorf("receivedFDs %v", got)
	}

	_, err = rewriteObjects(in, func(o Object) (flatObject, error) {
		return flatObject{}, errObjectRefused{"file descriptors not allowed"}
	})
	if reason, ok := refusal(err); !ok || reason != "file descriptors not allowed" {
		t.Fatalf("refused fd array: %v", err)
	}
}
