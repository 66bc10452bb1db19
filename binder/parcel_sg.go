package binder

import (
	"fmt"
	"slices"
)

// Scatter-gather buffers (BINDER_TYPE_PTR) and fd arrays (BINDER_TYPE_FDA),
// as libhwbinder's hardware::Parcel writes them for HIDL (writeBuffer,
// writeEmbeddedBuffer, writeEmbeddedNativeHandle):
//
//   - A buffer object (binder_buffer_object) names a block of memory the
//     driver copies after the parcel's data and offsets. A buffer's handle is
//     its index among the parcel's objects. An embedded buffer names a parent
//     buffer and an offset in it (FlagBufferHasParent): the driver writes the
//     block's address in the receiver there.
//   - An fd array object (binder_fd_array_object) names num_fds 32-bit fds
//     stored in a parent buffer at parent_offset: the driver installs each
//     in the receiver and writes the new numbers into the parent.
//
// The driver accepts a parent only under the rules of binder_validate_fixup
// (drivers/android/binder.c): the parent is an earlier buffer object, either
// the last buffer object or one of its ancestors, and fixups inside one
// parent come in ascending offsets. It also takes no fixup into a buffer
// object at data offset 0 (offset 0 means "none" there). ParseParcel checks
// the same rules, so a parcel it accepts is one the driver would have sent;
// the writers refuse what the driver would refuse. Pointer slots are
// 8-aligned inside their parent and fd arrays 4-aligned.

// maxSGBuffers bounds the sum of a parcel's buffer lengths (each rounded up
// to 8 bytes, as the driver lays them out).
const maxSGBuffers = maxParcel

func align8(n uint64) uint64 { return (n + 7) &^ 7 }

func decodeBufferObject(b []byte) bufferObject {
	return bufferObject{
		Type: ne.Uint32(b), Flags: ne.Uint32(b[4:]), Buffer: ne.Uint64(b[8:]),
		Length: ne.Uint64(b[16:]), Parent: ne.Uint64(b[24:]), ParentOffset: ne.Uint64(b[32:]),
	}
}

func decodeFDArrayObject(b []byte) fdArrayObject {
	return fdArrayObject{
		Type: ne.Uint32(b), Pad: ne.Uint32(b[4:]), NumFDs: ne.Uint64(b[8:]),
		Parent: ne.Uint64(b[16:]), ParentOffset: ne.Uint64(b[24:]),
	}
}

func putBufferObject(b []byte, o bufferObject) {
	ne.PutUint32(b[0:], o.Type)
	ne.PutUint32(b[4:], o.Flags)
	ne.PutUint64(b[8:], o.Buffer)
	ne.PutUint64(b[16:], o.Length)
	ne.PutUint64(b[24:], o.Parent)
	ne.PutUint64(b[32:], o.ParentOffset)
}

func putFDArrayObject(b []byte, o fdArrayObject) {
	ne.PutUint32(b[0:], o.Type)
	ne.PutUint32(b[4:], o.Pad)
	ne.PutUint64(b[8:], o.NumFDs)
	ne.PutUint64(b[16:], o.Parent)
	ne.PutUint64(b[24:], o.ParentOffset)
}

// objType is the type of object i (the offsets were checked by ParseParcel
// or written by this package).
func (p *Parcel) objType(i int) uint32 { return ne.Uint32(p.data[p.offsets[i]:]) }

func (p *Parcel) bufferObjectAt(i int) bufferObject {
	off := p.offsets[i]
	return decodeBufferObject(p.data[off : off+sizeBufferObject])
}

func (p *Parcel) fdArrayObjectAt(i int) fdArrayObject {
	off := p.offsets[i]
	return decodeFDArrayObject(p.data[off : off+sizeFDArrayObject])
}

// hasSG reports whether the parcel holds buffer or fd array objects.
func (p *Parcel) hasSG() bool {
	for i := range p.offsets {
		if t := p.objType(i); t == TypePtr || t == TypeFDA {
			return true
		}
	}
	return false
}

// sgCheck follows the driver's fixup bookkeeping over a parcel's objects in
// order (last_fixup_obj_off and last_fixup_min_off in binder_transaction).
type sgCheck struct {
	p       *Parcel
	lastObj int    // object index of the buffer fixups go into; -1 for none
	lastMin uint64 // the lowest offset the next fixup into lastObj may have
	total   uint64 // sum of the buffers' lengths rounded up to 8
}

func newSGCheck(p *Parcel) *sgCheck { return &sgCheck{p: p, lastObj: -1} }

// parent checks that object i may name parent as its parent buffer and
// returns that buffer object.
func (s *sgCheck) parent(i int, parent uint64) (bufferObject, error) {
	if parent >= uint64(i) {
		return bufferObject{}, fmt.Errorf("%w: object %d names parent %d, which is not an earlier object", ErrBadParcel, i, parent)
	}
	if t := s.p.objType(int(parent)); t != TypePtr {
		return bufferObject{}, fmt.Errorf("%w: object %d names parent %d of type %#x, not a buffer", ErrBadParcel, i, parent, t)
	}
	return s.p.bufferObjectAt(int(parent)), nil
}

// fixup is binder_validate_fixup: a fixup at offset into buffer object
// parent must go into the last buffer object or one of its ancestors, at or
// after the end of the previous fixup there.
func (s *sgCheck) fixup(i, parent int, offset uint64) error {
	cur, min := s.lastObj, s.lastMin
	if cur < 0 {
		return fmt.Errorf("%w: object %d: no buffer object before it to fix up", ErrBadParcel, i)
	}
	if s.p.offsets[cur] == 0 {
		return fmt.Errorf("%w: object %d: the driver takes no fixups into a buffer object at data offset 0", ErrBadParcel, i)
	}
	for cur != parent {
		bo := s.p.bufferObjectAt(cur) // lastObj and its ancestors are checked buffer objects
		if bo.Flags&FlagBufferHasParent == 0 {
			return fmt.Errorf("%w: object %d: parent %d is neither the last buffer nor one of its ancestors", ErrBadParcel, i, parent)
		}
		min = bo.ParentOffset + 8
		cur = int(bo.Parent)
	}
	if offset < min {
		return fmt.Errorf("%w: object %d: fixup at %d in parent %d is out of order (next allowed at %d)", ErrBadParcel, i, offset, parent, min)
	}
	return nil
}

// object checks object i, which must be the next one in order.
func (s *sgCheck) object(i int) error {
	switch s.p.objType(i) {
	case TypePtr:
		bo := s.p.bufferObjectAt(i)
		if bo.Flags&^FlagBufferHasParent != 0 {
			return fmt.Errorf("%w: buffer object %d has unknown flags %#x", ErrBadParcel, i, bo.Flags)
		}
		if bo.Length > maxSGBuffers || s.total+align8(bo.Length) > maxSGBuffers {
			return fmt.Errorf("%w: buffer object %d: %d bytes of buffers is too many", ErrBadParcel, i, s.total+bo.Length)
		}
		if bo.Flags&FlagBufferHasParent != 0 {
			pb, err := s.parent(i, bo.Parent)
			if err != nil {
				return err
			}
			if err := s.fixup(i, int(bo.Parent), bo.ParentOffset); err != nil {
				return err
			}
			if pb.Length < 8 || bo.ParentOffset > pb.Length-8 {
				return fmt.Errorf("%w: buffer object %d: no room for a pointer at %d in its parent's %d bytes", ErrBadParcel, i, bo.ParentOffset, pb.Length)
			}
			if bo.ParentOffset%8 != 0 {
				return fmt.Errorf("%w: buffer object %d: pointer at %d in its parent is not 8-aligned", ErrBadParcel, i, bo.ParentOffset)
			}
		}
		s.total += align8(bo.Length)
		s.lastObj, s.lastMin = i, 0
	case TypeFDA:
		fa := s.p.fdArrayObjectAt(i)
		pb, err := s.parent(i, fa.Parent)
		if err != nil {
			return err
		}
		if err := s.fixup(i, int(fa.Parent), fa.ParentOffset); err != nil {
			return err
		}
		if fa.NumFDs > pb.Length/4 || fa.ParentOffset > pb.Length-4*fa.NumFDs {
			return fmt.Errorf("%w: fd array %d: no room for %d fds at %d in its parent's %d bytes", ErrBadParcel, i, fa.NumFDs, fa.ParentOffset, pb.Length)
		}
		if fa.ParentOffset%4 != 0 {
			return fmt.Errorf("%w: fd array %d at %d in its parent is not 4-aligned", ErrBadParcel, i, fa.ParentOffset)
		}
		s.lastObj, s.lastMin = int(fa.Parent), fa.ParentOffset+4*fa.NumFDs
	}
	return nil
}

// validateSG checks every buffer and fd array object of the parcel.
func (p *Parcel) validateSG() error {
	if !p.hasSG() {
		return nil
	}
	s := newSGCheck(p)
	for i := range p.offsets {
		if err := s.object(i); err != nil {
			return err
		}
	}
	return nil
}

// checkLast validates the object just appended, undoing the append on error.
func (p *Parcel) checkLast(start int) error {
	s := newSGCheck(p)
	var err error
	for i := range p.offsets {
		if err = s.object(i); err != nil {
			break
		}
	}
	if err != nil {
		p.offsets = p.offsets[:len(p.offsets)-1]
		p.data = p.data[:start]
		return err
	}
	return nil
}

func (p *Parcel) appendBufferObject(b []byte, flags uint32, parent, parentOffset int) (int, error) {
	if parentOffset < 0 || parent < -1 {
		return -1, fmt.Errorf("binder: write buffer: %w: parent %d, offset %d", ErrBadParcel, parent, parentOffset)
	}
	start := len(p.data)
	idx := len(p.offsets)
	p.offsets = append(p.offsets, uint64(start))
	o := bufferObject{Type: TypePtr, Flags: flags, Length: uint64(len(b))}
	if flags&FlagBufferHasParent != 0 {
		o.Parent, o.ParentOffset = uint64(parent), uint64(parentOffset)
	}
	putBufferObject(p.grow(sizeBufferObject), o)
	if err := p.checkLast(start); err != nil {
		return -1, fmt.Errorf("binder: write buffer: %w", err)
	}
	if p.bufs == nil {
		p.bufs = map[int][]byte{}
	}
	p.bufs[idx] = append(make([]byte, 0, len(b)), b...)
	return idx, nil
}

// WriteBuffer appends a buffer object carrying a copy of b (libhwbinder's
// writeBuffer) and returns its handle, which embedded buffers and fd arrays
// name as their parent. The driver layer sends the parcel with
// BC_TRANSACTION_SG or BC_REPLY_SG.
func (p *Parcel) WriteBuffer(b []byte) (int, error) {
	return p.appendBufferObject(b, 0, -1, 0)
}

// WriteEmbeddedBuffer appends a buffer object carrying a copy of b whose
// address the driver writes into the buffer parent at parentOffset
// (writeEmbeddedBuffer): an 8-aligned pointer slot after the previous fixup
// into parent, which must be the last buffer written or an ancestor of it.
func (p *Parcel) WriteEmbeddedBuffer(b []byte, parent, parentOffset int) (int, error) {
	return p.appendBufferObject(b, FlagBufferHasParent, parent, parentOffset)
}

// WriteFDArray stores fds as 32-bit words in the buffer parent at
// parentOffset and appends an fd array object naming them
// (writeEmbeddedNativeHandle's fd part). The driver duplicates each fd into
// the receiver; with takeOwnership the connection closes them after sending.
func (p *Parcel) WriteFDArray(fds []int, parent, parentOffset int, takeOwnership bool) error {
	if parent < 0 || parentOffset < 0 {
		return fmt.Errorf("binder: write fd array: %w: parent %d, offset %d", ErrBadParcel, parent, parentOffset)
	}
	for _, fd := range fds {
		if fd < 0 || fd > 1<<31-1 {
			return fmt.Errorf("binder: write fd array: bad fd %d", fd)
		}
	}
	start := len(p.data)
	p.offsets = append(p.offsets, uint64(start))
	putFDArrayObject(p.grow(sizeFDArrayObject), fdArrayObject{
		Type: TypeFDA, NumFDs: uint64(len(fds)), Parent: uint64(parent), ParentOffset: uint64(parentOffset),
	})
	if err := p.checkLast(start); err != nil {
		return fmt.Errorf("binder: write fd array: %w", err)
	}
	buf := p.bufs[parent] // present: checkLast found a buffer object there
	for k, fd := range fds {
		ne.PutUint32(buf[parentOffset+4*k:], uint32(fd))
	}
	if takeOwnership {
		p.owned = append(p.owned, fds...)
	}
	return nil
}

// loadBuffers copies the contents of every buffer object of a received
// parcel through fetch, which returns n bytes at the address the object
// names (in the receive mapping), and checks that the driver wrote each
// embedded buffer's address into its parent.
func (p *Parcel) loadBuffers(fetch func(addr, n uint64) ([]byte, error)) error {
	bufs := map[int][]byte{}
	for i := range p.offsets {
		if p.objType(i) != TypePtr {
			continue
		}
		bo := p.bufferObjectAt(i)
		b, err := fetch(bo.Buffer, bo.Length)
		if err != nil {
			return fmt.Errorf("buffer object %d: %w", i, err)
		}
		if uint64(len(b)) != bo.Length {
			return fmt.Errorf("%w: buffer object %d: got %d of %d bytes", ErrBadParcel, i, len(b), bo.Length)
		}
		bufs[i] = append(make([]byte, 0, len(b)), b...)
		if bo.Flags&FlagBufferHasParent != 0 {
			// validateSG checked that the slot lies inside the parent.
			if got := ne.Uint64(bufs[int(bo.Parent)][bo.ParentOffset:]); got != bo.Buffer {
				return fmt.Errorf("%w: buffer object %d: its parent holds %#x at %d, not its address %#x", ErrBadParcel, i, got, bo.ParentOffset, bo.Buffer)
			}
		}
	}
	p.bufs = bufs
	return nil
}

// fdArrays calls fn with the parent buffer contents and the byte offset of
// every fd slot of the parcel's fd arrays; it stops at the first error.
// Buffers that were never loaded have no slots.
func (p *Parcel) fdArraySlots(fn func(buf []byte, at int) error) error {
	for i := range p.offsets {
		if p.objType(i) != TypeFDA {
			continue
		}
		fa := p.fdArrayObjectAt(i)
		buf := p.bufs[int(fa.Parent)]
		if buf == nil {
			continue
		}
		for k := uint64(0); k < fa.NumFDs; k++ {
			if err := fn(buf, int(fa.ParentOffset+4*k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fdArrayFDs lists the fds the parcel's fd arrays hold.
func (p *Parcel) fdArrayFDs() []int {
	var fds []int
	p.fdArraySlots(func(buf []byte, at int) error {
		fds = append(fds, int(int32(ne.Uint32(buf[at:]))))
		return nil
	})
	return fds
}

// objectAt returns the index of the object of type typ that must start
// exactly at the read position, and moves past it.
func (p *Parcel) objectAt(what string, typ uint32) (int, error) {
	i, found := slices.BinarySearch(p.offsets, uint64(p.pos))
	if !found {
		return -1, p.errAt(what, "no object at this position")
	}
	if t := p.objType(i); t != typ {
		return -1, p.errAt(what, fmt.Sprintf("object type %#x", t))
	}
	p.pos += objectSize(typ)
	return i, nil
}

// Buffer is a buffer object of a parcel.
type Buffer struct {
	Handle       int    // the buffer's index among the parcel's objects
	Data         []byte // its contents
	HasParent    bool
	Parent       int // the parent buffer's handle, if HasParent
	ParentOffset int // where the parent holds this buffer's address, if HasParent
}

// readBuffer reads the buffer object at the read position.
func (p *Parcel) readBuffer(what string) (Buffer, error) {
	start := p.pos
	i, err := p.objectAt(what, TypePtr)
	if err != nil {
		return Buffer{}, err
	}
	b, ok := p.bufs[i]
	if !ok {
		p.pos = start
		return Buffer{}, p.errAt(what, "buffer contents were not received")
	}
	bo := p.bufferObjectAt(i)
	r := Buffer{Handle: i, Data: append([]byte{}, b...), Parent: -1}
	if bo.Flags&FlagBufferHasParent != 0 {
		// validateSG bounded both by the parcel's size
		r.HasParent, r.Parent, r.ParentOffset = true, int(bo.Parent), int(bo.ParentOffset)
	}
	return r, nil
}

// ReadBuffer reads a buffer object without a parent (libhwbinder's
// readBuffer) and returns its handle and a copy of its contents. In a
// received parcel the pointers inside the contents are addresses in the
// receive mapping, which is freed: use ReadEmbeddedBuffer for what they
// point to.
func (p *Parcel) ReadBuffer() (handle int, data []byte, err error) {
	start := p.pos
	b, err := p.readBuffer("buffer")
	if err != nil {
		return -1, nil, err
	}
	if b.HasParent {
		p.pos = start
		return -1, nil, p.errAt("buffer", fmt.Sprintf("buffer has parent %d", b.Parent))
	}
	return b.Handle, b.Data, nil
}

// ReadEmbeddedBuffer reads a buffer object that must be embedded in buffer
// parent at parentOffset (readEmbeddedBuffer) and returns its handle and a
// copy of its contents.
func (p *Parcel) ReadEmbeddedBuffer(parent, parentOffset int) (handle int, data []byte, err error) {
	start := p.pos
	b, err := p.readBuffer("embedded buffer")
	if err != nil {
		return -1, nil, err
	}
	if !b.HasParent || b.Parent != parent || b.ParentOffset != parentOffset {
		p.pos = start
		return -1, nil, p.errAt("embedded buffer", fmt.Sprintf("embedded in %d at %d (has parent %v), want %d at %d", b.Parent, b.ParentOffset, b.HasParent, parent, parentOffset))
	}
	return b.Handle, b.Data, nil
}

// ReadFDArray reads an fd array object that must name buffer parent at
// parentOffset, and returns the fds it holds. In a received parcel they
// belong to the parcel (the driver layer duplicated them before the driver
// closed its own at BC_FREE_BUFFER): a call's are closed when its handler
// returns, a reply's by CloseFDs.
func (p *Parcel) ReadFDArray(parent, parentOffset int) ([]int, error) {
	start := p.pos
	i, err := p.objectAt("fd array", TypeFDA)
	if err != nil {
		return nil, err
	}
	fa := p.fdArrayObjectAt(i)
	if fa.Parent != uint64(parent) || fa.ParentOffset != uint64(parentOffset) {
		p.pos = start
		return nil, p.errAt("fd array", fmt.Sprintf("in buffer %d at %d, want %d at %d", fa.Parent, fa.ParentOffset, parent, parentOffset))
	}
	buf, ok := p.bufs[parent]
	if !ok {
		p.pos = start
		return nil, p.errAt("fd array", "parent buffer contents were not received")
	}
	fds := make([]int, fa.NumFDs) // validateSG: NumFDs <= parent length / 4
	for k := range fds {
		fds[k] = int(int32(ne.Uint32(buf[fa.ParentOffset+4*uint64(k):])))
	}
	return fds, nil
}

// Buffers returns the parcel's buffer objects in order, with copies of
// their contents (nil Data where the contents were not loaded).
func (p *Parcel) Buffers() []Buffer {
	var out []Buffer
	for i := range p.offsets {
		if p.objType(i) != TypePtr {
			continue
		}
		bo := p.bufferObjectAt(i)
		b := Buffer{Handle: i, Parent: -1}
		if data, ok := p.bufs[i]; ok {
			b.Data = append([]byte{}, data...)
		}
		if bo.Flags&FlagBufferHasParent != 0 {
			b.HasParent, b.Parent, b.ParentOffset = true, int(bo.Parent), int(bo.ParentOffset)
		}
		out = append(out, b)
	}
	return out
}

// buffersSize is the binder_transaction_data_sg buffers_size of the parcel.
func (p *Parcel) buffersSize() uint64 {
	var n uint64
	for i := range p.offsets {
		if p.objType(i) == TypePtr {
			n += align8(p.bufferObjectAt(i).Length)
		}
	}
	return n
}
