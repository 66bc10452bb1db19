package binder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf16"
)

// ErrBadParcel is the class of every error about malformed parcel bytes.
var ErrBadParcel = errors.New("malformed parcel")

// ErrUnexpectedNull is returned when a non-nullable value was written as null
// (libbinder's UNEXPECTED_NULL).
var ErrUnexpectedNull = errors.New("unexpected null")

// maxParcel bounds the size a parcel may claim (the kernel's buffers are
// far smaller; this only stops arithmetic from wrapping).
const maxParcel = math.MaxInt32

var ne = binary.NativeEndian

// A Parcel is the data of one transaction or reply in libbinder's format:
// 4-byte aligned native-endian words plus the offsets of the binder objects
// inside them. Writes append; reads advance a position. A Parcel is not safe
// for concurrent use.
type Parcel struct {
	rel     Release
	data    []byte
	offsets []uint64 // ascending; objects never overlap
	pos     int
	// fds written with takeOwnership, closed by the driver layer once sent.
	owned []int
	// fds the driver installed in this process for a received parcel
	// (plain fd objects and the duplicates of fd arrays' fds): the
	// connection closes those of a call once its handler returned, the
	// caller of Transact those of a reply (CloseFDs).
	recvFDs []int
	// contents of the scatter-gather buffer objects, by object index
	// (parcel_sg.go); nil when the parcel has none or they were not loaded.
	bufs map[int][]byte
}

// NewParcel returns an empty parcel in the format of rel.
func NewParcel(rel Release) *Parcel {
	if !rel.valid() {
		panic(fmt.Sprintf("binder: NewParcel: unsupported release %d", int(rel)))
	}
	return &Parcel{rel: rel}
}

// ParseParcel wraps received bytes and object offsets, checking that every
// offset lies inside data, is 4-aligned, ascends, names an object type the
// kernel knows, and does not overlap the previous object. data is not copied.
func ParseParcel(rel Release, data []byte, offsets []uint64) (*Parcel, error) {
	if !rel.valid() {
		return nil, fmt.Errorf("binder: parse parcel: unsupported release %d", int(rel))
	}
	if len(data) > maxParcel {
		return nil, fmt.Errorf("binder: parse parcel of %d bytes: %w: too large", len(data), ErrBadParcel)
	}
	end := uint64(0)
	for i, off := range offsets {
		if off%4 != 0 {
			return nil, fmt.Errorf("binder: parse parcel: %w: object %d at offset %d is not 4-aligned", ErrBadParcel, i, off)
		}
		if off < end {
			return nil, fmt.Errorf("binder: parse parcel: %w: object %d at offset %d overlaps the previous object or is out of order", ErrBadParcel, i, off)
		}
		if off > uint64(len(data))-4 || len(data) < 4 {
			return nil, fmt.Errorf("binder: parse parcel: %w: object %d at offset %d outside %d bytes", ErrBadParcel, i, off, len(data))
		}
		typ := ne.Uint32(data[off:])
		size := objectSize(typ)
		if size == 0 {
			return nil, fmt.Errorf("binder: parse parcel: %w: object %d has unknown type %#x", ErrBadParcel, i, typ)
		}
		if off+uint64(size) > uint64(len(data)) {
			return nil, fmt.Errorf("binder: parse parcel: %w: object %d (%d bytes at %d) runs past %d bytes", ErrBadParcel, i, size, off, len(data))
		}
		end = off + uint64(size)
	}
	p := &Parcel{rel: rel, data: data, offsets: offsets}
	if err := p.validateSG(); err != nil {
		return nil, fmt.Errorf("binder: parse parcel: %w", err)
	}
	return p, nil
}

// Release is the format the parcel follows.
func (p *Parcel) Release() Release { return p.rel }

// Data returns the parcel's bytes (not a copy).
func (p *Parcel) Data() []byte { return p.data }

// Offsets returns the offsets of the binder objects in Data (not a copy).
func (p *Parcel) Offsets() []uint64 { return p.offsets }

// Len is the number of bytes in the parcel.
func (p *Parcel) Len() int { return len(p.data) }

// Position is the read position.
func (p *Parcel) Position() int { return p.pos }

// SetPosition moves the read position; it must be 4-aligned and within the data.
func (p *Parcel) SetPosition(pos int) error {
	if pos < 0 || pos > len(p.data) || pos%4 != 0 {
		return fmt.Errorf("binder: set parcel position %d of %d bytes: %w", pos, len(p.data), ErrBadParcel)
	}
	p.pos = pos
	return nil
}

// Remaining is the number of unread bytes.
func (p *Parcel) Remaining() int { return len(p.data) - p.pos }

func pad4(n int) int { return (n + 3) &^ 3 }

// grow appends n zero bytes padded to 4 and returns them.
func (p *Parcel) grow(n int) []byte {
	start := len(p.data)
	p.data = append(p.data, make([]byte, pad4(n))...)
	return p.data[start : start+n]
}

// WriteInt32 appends a 32-bit integer.
func (p *Parcel) WriteInt32(v int32) { ne.PutUint32(p.grow(4), uint32(v)) }

// WriteUint32 appends a 32-bit unsigned integer.
func (p *Parcel) WriteUint32(v uint32) { ne.PutUint32(p.grow(4), v) }

// WriteInt64 appends a 64-bit integer (4-aligned, as libbinder does).
func (p *Parcel) WriteInt64(v int64) { ne.PutUint64(p.grow(8), uint64(v)) }

// WriteUint64 appends a 64-bit unsigned integer.
func (p *Parcel) WriteUint64(v uint64) { ne.PutUint64(p.grow(8), v) }

// WriteBool appends a bool as an int32 0 or 1.
func (p *Parcel) WriteBool(v bool) {
	if v {
		p.WriteInt32(1)
	} else {
		p.WriteInt32(0)
	}
}

// WriteFloat32 appends a float.
func (p *Parcel) WriteFloat32(v float32) { p.WriteUint32(math.Float32bits(v)) }

// WriteFloat64 appends a double.
func (p *Parcel) WriteFloat64(v float64) { p.WriteUint64(math.Float64bits(v)) }

// WriteString16 appends s as UTF-16: length in code units, the units, a NUL
// unit, zero padding to 4.
func (p *Parcel) WriteString16(s string) {
	u := utf16.Encode([]rune(s))
	p.WriteInt32(int32(len(u)))
	b := p.grow((len(u) + 1) * 2)
	for i, c := range u {
		ne.PutUint16(b[2*i:], c)
	}
}

// WriteNullString16 appends a null String16 (length -1).
func (p *Parcel) WriteNullString16() { p.WriteInt32(-1) }

// WriteString8 appends s as bytes: length, bytes, NUL, padding. Android 10
// writes an empty String8 as its length alone.
func (p *Parcel) WriteString8(s string) {
	p.WriteInt32(int32(len(s)))
	if len(s) == 0 && p.rel == Android10 {
		return
	}
	copy(p.grow(len(s)+1), s)
}

// WriteNullString8 appends a null String8 (length -1). Android 10 has no
// null String8 and its readers reject it.
func (p *Parcel) WriteNullString8() { p.WriteInt32(-1) }

// WriteByteArray appends a byte vector: length then bytes padded to 4; a nil
// slice is written as null (-1).
func (p *Parcel) WriteByteArray(b []byte) {
	if b == nil {
		p.WriteInt32(-1)
		return
	}
	p.WriteInt32(int32(len(b)))
	copy(p.grow(len(b)), b)
}

// InterfaceToken is the RPC header libbinder writes before a call's
// arguments (Parcel::writeInterfaceToken).
type InterfaceToken struct {
	StrictMode int32 // strict-mode policy | StrictModePenaltyGather
	WorkSource int32 // calling work source uid or UnsetWorkSource
	Header     int32 // Android 11+: HeaderSystem or HeaderVendor; unused on 10
	Descriptor string
}

// WriteInterfaceToken appends the header libbinder writes for descriptor
// with no strict-mode policy and no propagated work source.
func (p *Parcel) WriteInterfaceToken(descriptor string) {
	p.WriteInterfaceHeader(InterfaceToken{
		StrictMode: StrictModePenaltyGather,
		WorkSource: UnsetWorkSource,
		Header:     HeaderSystem,
		Descriptor: descriptor,
	})
}

// WriteInterfaceHeader appends tok in the parcel's release; a proxy uses it
// to forward a caller's header unchanged.
func (p *Parcel) WriteInterfaceHeader(tok InterfaceToken) {
	p.WriteInt32(tok.StrictMode)
	p.WriteInt32(tok.WorkSource)
	if p.rel.hasHeaderWord() {
		p.WriteInt32(tok.Header)
	}
	p.WriteString16(tok.Descriptor)
}

func (p *Parcel) writeObject(o flatObject) {
	p.offsets = append(p.offsets, uint64(len(p.data)))
	b := p.grow(sizeFlatObject)
	ne.PutUint32(b[0:], o.Type)
	ne.PutUint32(b[4:], o.Flags)
	ne.PutUint64(b[8:], o.Binder)
	ne.PutUint64(b[16:], o.Cookie)
}

// schedFlags is schedPolicyMask(SCHED_NORMAL, 19): libbinder's default
// minimum priority for nodes unless background scheduling is disabled.
const schedFlags uint32 = 19

// WriteNullBinder appends a null strong binder. Like libbinder's
// writeObject, it leaves the null object out of the offsets: the driver
// would otherwise take pointer 0 for a node of the sender (for a context
// manager, itself) and hand the receiver a live handle. From Android 11 on
// its stability word says UNDECLARED in the release's encoding (on
// Android 12 a Category of version 1, which its readers require).
func (p *Parcel) WriteNullBinder() {
	b := p.grow(sizeFlatObject)
	ne.PutUint32(b[0:], TypeBinder)
	ne.PutUint32(b[4:], p.rel.binderFlags())
	if p.rel.hasStability() {
		p.WriteInt32(p.rel.StabilityWord(StabilityUndeclared))
	}
}

// WriteHandle appends a strong reference to a remote object by its handle,
// with system stability on Android 11+.
func (p *Parcel) WriteHandle(handle uint32) {
	p.WriteHandleStability(handle, StabilitySystem)
}

// WriteHandleStability appends a handle with an explicit stability level
// (one of the Stability* constants; ignored on Android 10), written in the
// release's encoding: a proxy forwards the level it received.
func (p *Parcel) WriteHandleStability(handle uint32, stability int32) {
	p.writeObject(flatObject{Type: TypeHandle, Flags: p.rel.binderFlags(), Binder: uint64(handle)})
	if p.rel.hasStability() {
		p.WriteInt32(p.rel.StabilityWord(stability))
	}
}

// WriteLocalBinder appends a strong reference to an object this process
// serves, named to the driver by ptr and cookie, with system stability.
// Node.WriteTo is the usual way to call it. Local binders carry
// FLAT_BINDER_FLAG_ACCEPTS_FDS in every release (Parcel::flattenBinder).
func (p *Parcel) WriteLocalBinder(ptr, cookie uint64) {
	p.writeObject(flatObject{Type: TypeBinder, Flags: FlagAcceptsFDs | schedFlags, Binder: ptr, Cookie: cookie})
	if p.rel.hasStability() {
		p.WriteInt32(p.rel.StabilityWord(StabilitySystem))
	}
}

// WriteFD appends a file descriptor object. The driver duplicates fd into
// the receiver; with takeOwnership the connection closes fd after sending.
func (p *Parcel) WriteFD(fd int, takeOwnership bool) {
	var cookie uint64
	if takeOwnership {
		cookie = 1
		p.owned = append(p.owned, fd)
	}
	p.writeObject(flatObject{Type: TypeFD, Flags: p.rel.fdFlags(), Binder: uint64(uint32(int32(fd))), Cookie: cookie})
}

// OwnedFDs returns the fds written with takeOwnership.
func (p *Parcel) OwnedFDs() []int { return p.owned }

// errAt builds a malformed-parcel error naming what was being read.
func (p *Parcel) errAt(what, why string) error {
	return fmt.Errorf("binder: read %s at %d of %d bytes: %w: %s", what, p.pos, len(p.data), ErrBadParcel, why)
}

// overlapsObject reports whether [start, end) covers part of an object,
// which plain reads must not (libbinder's validateReadData): a proxy must
// never see a binder pointer as an integer.
func (p *Parcel) overlapsObject(start, end int) bool {
	if len(p.offsets) == 0 {
		return false
	}
	// first object starting at or after start
	i, _ := slices.BinarySearch(p.offsets, uint64(start))
	if i < len(p.offsets) && p.offsets[i] < uint64(end) {
		return true
	}
	if i > 0 {
		prev := p.offsets[i-1]
		size := objectSize(ne.Uint32(p.data[prev:]))
		if prev+uint64(size) > uint64(start) {
			return true
		}
	}
	return false
}

// read returns the next n bytes (n padded to 4 consumed).
func (p *Parcel) read(what string, n int) ([]byte, error) {
	if n < 0 || n > maxParcel {
		return nil, p.errAt(what, fmt.Sprintf("bad length %d", n))
	}
	padded := pad4(n)
	if padded > len(p.data)-p.pos {
		return nil, p.errAt(what, fmt.Sprintf("needs %d bytes, %d left", padded, len(p.data)-p.pos))
	}
	if p.overlapsObject(p.pos, p.pos+padded) {
		return nil, p.errAt(what, "overlaps a binder object")
	}
	b := p.data[p.pos : p.pos+n]
	p.pos += padded
	return b, nil
}

// ReadInt32 reads a 32-bit integer.
func (p *Parcel) ReadInt32() (int32, error) {
	b, err := p.read("int32", 4)
	if err != nil {
		return 0, err
	}
	return int32(ne.Uint32(b)), nil
}

// ReadUint32 reads a 32-bit unsigned integer.
func (p *Parcel) ReadUint32() (uint32, error) {
	v, err := p.ReadInt32()
	return uint32(v), err
}

// ReadInt64 reads a 64-bit integer.
func (p *Parcel) ReadInt64() (int64, error) {
	b, err := p.read("int64", 8)
	if err != nil {
		return 0, err
	}
	return int64(ne.Uint64(b)), nil
}

// ReadUint64 reads a 64-bit unsigned integer.
func (p *Parcel) ReadUint64() (uint64, error) {
	v, err := p.ReadInt64()
	return uint64(v), err
}

// ReadBool reads an int32 as a bool (non-zero is true, as libbinder reads it).
func (p *Parcel) ReadBool() (bool, error) {
	v, err := p.ReadInt32()
	return v != 0, err
}

// ReadFloat32 reads a float.
func (p *Parcel) ReadFloat32() (float32, error) {
	v, err := p.ReadUint32()
	return math.Float32frombits(v), err
}

// ReadFloat64 reads a double.
func (p *Parcel) ReadFloat64() (float64, error) {
	v, err := p.ReadUint64()
	return math.Float64frombits(v), err
}

// ReadString16 reads a String16; a null one is ErrUnexpectedNull.
func (p *Parcel) ReadString16() (string, error) {
	s, ok, err := p.ReadNullableString16()
	if err == nil && !ok {
		return "", fmt.Errorf("binder: read String16 at %d: %w", p.pos-4, ErrUnexpectedNull)
	}
	return s, err
}

// ReadNullableString16 reads a String16 that may be null (ok false).
// Unpaired surrogates become U+FFFD.
func (p *Parcel) ReadNullableString16() (s string, ok bool, err error) {
	start := p.pos
	n, err := p.ReadInt32()
	if err != nil {
		return "", false, err
	}
	if n == -1 {
		return "", false, nil
	}
	if n < 0 || n >= maxParcel/2-1 {
		p.pos = start
		return "", false, p.errAt("String16", fmt.Sprintf("bad length %d", n))
	}
	b, err := p.read("String16", (int(n)+1)*2)
	if err != nil {
		p.pos = start
		return "", false, err
	}
	if ne.Uint16(b[2*n:]) != 0 {
		p.pos = start
		return "", false, p.errAt("String16", "no terminating NUL")
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = ne.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), true, nil
}

// ReadString8 reads a String8; a null one is ErrUnexpectedNull.
func (p *Parcel) ReadString8() (string, error) {
	s, ok, err := p.ReadNullableString8()
	if err == nil && !ok {
		return "", fmt.Errorf("binder: read String8 at %d: %w", p.pos-4, ErrUnexpectedNull)
	}
	return s, err
}

// ReadNullableString8 reads a String8 that may be null (ok false; Android
// 11+ only). On Android 10 a zero length is the whole empty string.
func (p *Parcel) ReadNullableString8() (s string, ok bool, err error) {
	start := p.pos
	n, err := p.ReadInt32()
	if err != nil {
		return "", false, err
	}
	if n == -1 && p.rel != Android10 {
		return "", false, nil
	}
	if n < 0 || n >= maxParcel-1 {
		p.pos = start
		return "", false, p.errAt("String8", fmt.Sprintf("bad length %d", n))
	}
	if n == 0 && p.rel == Android10 {
		return "", true, nil
	}
	b, err := p.read("String8", int(n)+1)
	if err != nil {
		p.pos = start
		return "", false, err
	}
	if b[n] != 0 {
		p.pos = start
		return "", false, p.errAt("String8", "no terminating NUL")
	}
	return string(b[:n]), true, nil
}

// ReadByteArray reads a byte vector; null is returned as nil. The result is
// a copy.
func (p *Parcel) ReadByteArray() ([]byte, error) {
	start := p.pos
	n, err := p.ReadInt32()
	if err != nil {
		return nil, err
	}
	if n == -1 {
		return nil, nil
	}
	b, err := p.read("byte array", int(n))
	if err != nil {
		p.pos = start
		return nil, err
	}
	return append([]byte{}, b...), nil
}

// ReadInterfaceToken reads the RPC header of a call in the parcel's release.
func (p *Parcel) ReadInterfaceToken() (InterfaceToken, error) {
	var tok InterfaceToken
	var err error
	if tok.StrictMode, err = p.ReadInt32(); err != nil {
		return tok, err
	}
	if tok.WorkSource, err = p.ReadInt32(); err != nil {
		return tok, err
	}
	if p.rel.hasHeaderWord() {
		if tok.Header, err = p.ReadInt32(); err != nil {
			return tok, err
		}
	}
	tok.Descriptor, err = p.ReadString16()
	return tok, err
}

// ErrWrongInterface is returned by EnforceInterface on a mismatch.
var ErrWrongInterface = errors.New("wrong interface")

// EnforceInterface reads the RPC header and checks it names descriptor (and,
// on Android 11+, carries the system or vendor header word).
func (p *Parcel) EnforceInterface(descriptor string) error {
	tok, err := p.ReadInterfaceToken()
	if err != nil {
		return err
	}
	if p.rel.hasHeaderWord() && tok.Header != HeaderSystem && tok.Header != HeaderVendor {
		return fmt.Errorf("binder: interface header %#x is neither SYST nor VNDR: %w", uint32(tok.Header), ErrWrongInterface)
	}
	if tok.Descriptor != descriptor {
		return fmt.Errorf("binder: interface %q, want %q: %w", tok.Descriptor, descriptor, ErrWrongInterface)
	}
	return nil
}

// Object is a binder object read from a parcel.
type Object struct {
	Type      uint32 // TypeBinder, TypeHandle, TypeFD, ...
	Flags     uint32
	Binder    uint64 // local object pointer; a handle or fd sits in the low 32 bits
	Cookie    uint64
	Stability int32 // the level of the word after a strong binder on Android 11+ (StabilitySystem, ...)
}

// Handle is the handle of a TypeHandle object.
func (o Object) Handle() uint32 { return uint32(o.Binder) }

// FD is the descriptor of a TypeFD object.
func (o Object) FD() int { return int(int32(uint32(o.Binder))) }

// IsNull reports whether o is a null binder.
func (o Object) IsNull() bool { return o.Type == TypeBinder && o.Binder == 0 && o.Cookie == 0 }

// readObject reads the flat object that must start exactly at the read position.
func (p *Parcel) readObject(what string) (flatObject, error) {
	i, found := slices.BinarySearch(p.offsets, uint64(p.pos))
	if !found {
		return flatObject{}, p.errAt(what, "no object at this position")
	}
	off := p.offsets[i]
	typ := ne.Uint32(p.data[off:])
	if objectSize(typ) != sizeFlatObject { // ParseParcel checked the bounds
		return flatObject{}, p.errAt(what, fmt.Sprintf("object type %#x", typ))
	}
	b := p.data[off : off+sizeFlatObject]
	p.pos += sizeFlatObject
	return flatObject{Type: typ, Flags: ne.Uint32(b[4:]), Binder: ne.Uint64(b[8:]), Cookie: ne.Uint64(b[16:])}, nil
}

// ReadBinder reads a strong binder (a local object, a handle, or null) and,
// on Android 11+, its stability word, decoded into Object.Stability as a
// level; as in libbinder, a word of an unknown level on a live binder, a
// level on a null one, or on Android 12 a Category of version 0, is
// malformed.
func (p *Parcel) ReadBinder() (Object, error) {
	start := p.pos
	fo, err := p.readObject("binder")
	if err != nil {
		// A null binder has no offset entry (Parcel::readObject accepts
		// one with zero binder and cookie without looking it up).
		b, rerr := p.read("binder", sizeFlatObject)
		if rerr != nil || ne.Uint64(b[8:]) != 0 || ne.Uint64(b[16:]) != 0 ||
			(ne.Uint32(b) != TypeBinder && ne.Uint32(b) != TypeHandle) {
			p.pos = start
			return Object{}, err
		}
		fo = flatObject{Type: TypeBinder, Flags: ne.Uint32(b[4:])}
	}
	if fo.Type != TypeBinder && fo.Type != TypeHandle {
		p.pos = start
		return Object{}, p.errAt("binder", fmt.Sprintf("object type %#x is not a strong binder", fo.Type))
	}
	o := Object{Type: fo.Type, Flags: fo.Flags, Binder: fo.Binder, Cookie: fo.Cookie}
	if p.rel.hasStability() {
		word, err := p.ReadInt32()
		if err != nil {
			p.pos = start
			return Object{}, err
		}
		if o.Stability, err = p.rel.stabilityLevel(word); err != nil {
			p.pos = start
			return Object{}, p.errAt("binder", err.Error())
		}
		// Stability::set (lineage-18.1) and setRepr (19.1 on) refuse a
		// null binder with a level and a live one without a known level
		// (BAD_TYPE), which is also how a release mix-up shows.
		known := o.Stability == StabilityVendor || o.Stability == StabilitySystem || o.Stability == StabilityVINTF
		if o.IsNull() && o.Stability != StabilityUndeclared || !o.IsNull() && !known {
			p.pos = start
			return Object{}, p.errAt("binder", fmt.Sprintf("stability word %#08x (level %#x) in %s", uint32(word), o.Stability, p.rel))
		}
	}
	return o, nil
}

// ReadFD reads a file descriptor object. In a received parcel the fd belongs
// to the parcel: a call's fds are closed when its handler returns (dup one
// to keep it), a reply's by CloseFDs or by the caller.
func (p *Parcel) ReadFD() (int, error) {
	start := p.pos
	fo, err := p.readObject("fd")
	if err != nil {
		return -1, err
	}
	if fo.Type != TypeFD {
		p.pos = start
		return -1, p.errAt("fd", fmt.Sprintf("object type %#x is not an fd", fo.Type))
	}
	return int(int32(uint32(fo.Binder))), nil
}

// Objects decodes every object in the parcel without moving the read position.
func (p *Parcel) Objects() []Object {
	objs := make([]Object, 0, len(p.offsets))
	for _, off := range p.offsets {
		b := p.data[off:]
		o := Object{Type: ne.Uint32(b)}
		if objectSize(o.Type) == sizeFlatObject {
			o.Flags, o.Binder, o.Cookie = ne.Uint32(b[4:]), ne.Uint64(b[8:]), ne.Uint64(b[16:])
		}
		objs = append(objs, o)
	}
	return objs
}
