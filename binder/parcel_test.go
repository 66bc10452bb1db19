package binder

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func hexOf(p *Parcel) string { return hex.EncodeToString(p.Data()) }

// Encodings worked out by hand from AOSP's Parcel.cpp (little-endian).
func TestParcelEncodingsMatchLibbinder(t *testing.T) {
	// "android.os.IServiceManager": 26 UTF-16 units, a NUL unit, 2 bytes of padding.
	const sm = "1a000000" + "61006e00640072006f00690064002e006f0073002e00490053006500720076006900630065004d0061006e00610067006500720000000000"
	tests := []struct {
		name  string
		rel   Release
		write func(p *Parcel)
		want  string
	}{
		{"String16 abc: length, UTF-16, NUL, padding", Android10, func(p *Parcel) { p.WriteString16("abc") }, "03000000" + "610062006300" + "0000"},
		{"empty String16 keeps its NUL", Android14, func(p *Parcel) { p.WriteString16("") }, "00000000" + "00000000"},
		{"null String16", Android11, func(p *Parcel) { p.WriteNullString16() }, "ffffffff"},
		{"String8 abc", Android11, func(p *Parcel) { p.WriteString8("abc") }, "03000000" + "61626300"},
		{"empty String8 on 10 is its length alone", Android10, func(p *Parcel) { p.WriteString8("") }, "00000000"},
		{"empty String8 on 11 has a NUL", Android11, func(p *Parcel) { p.WriteString8("") }, "00000000" + "00000000"},
		{"byte array padded", Android14, func(p *Parcel) { p.WriteByteArray([]byte{1, 2, 3, 4, 5}) }, "05000000" + "0102030405000000"},
		{"int64 is 4-aligned", Android10, func(p *Parcel) { p.WriteInt32(7); p.WriteInt64(-2) }, "07000000" + "feffffffffffffff"},
		{"bool and float", Android10, func(p *Parcel) { p.WriteBool(true); p.WriteFloat32(1) }, "01000000" + "0000803f"},
		{"interface token on 10: strict mode, work source, descriptor", Android10,
			func(p *Parcel) { p.WriteInterfaceToken(ServiceManagerDescriptor) },
			"00000080" + "ffffffff" + sm},
		{"interface token on 11 adds SYST", Android11,
			func(p *Parcel) { p.WriteInterfaceToken(ServiceManagerDescriptor) },
			"00000080" + "ffffffff" + "54535953" + sm},
		{"interface token on 14 adds SYST", Android14,
			func(p *Parcel) { p.WriteInterfaceToken(ServiceManagerDescriptor) },
			"00000080" + "ffffffff" + "54535953" + sm},
		{"handle on 10: no stability", Android10, func(p *Parcel) { p.WriteHandle(5) },
			"852a6873" + "13010000" + "0500000000000000" + "0000000000000000"},
		{"handle on 11: stability SYSTEM follows", Android11, func(p *Parcel) { p.WriteHandle(5) },
			"852a6873" + "13010000" + "0500000000000000" + "0000000000000000" + "0c000000"},
		{"handle on 14: no ACCEPTS_FDS flag", Android14, func(p *Parcel) { p.WriteHandle(5) },
			"852a6873" + "13000000" + "0500000000000000" + "0000000000000000" + "0c000000"},
		{"null binder on 11: stability UNDECLARED", Android11, func(p *Parcel) { p.WriteNullBinder() },
			"852a6273" + "13010000" + "0000000000000000" + "0000000000000000" + "00000000"},
		{"local binder on 14", Android14, func(p *Parcel) { p.WriteLocalBinder(9, 9) },
			"852a6273" + "13010000" + "0900000000000000" + "0900000000000000" + "0c000000"},
		{"fd on 10", Android10, func(p *Parcel) { p.WriteFD(3, false) },
			"852a6466" + "7f010000" + "0300000000000000" + "0000000000000000"},
		{"fd on 14 owned", Android14, func(p *Parcel) { p.WriteFD(3, true) },
			"852a6466" + "00000000" + "0300000000000000" + "0100000000000000"},
		{"no exception", Android10, func(p *Parcel) { p.WriteNoException() }, "00000000"},
		{"security exception: code, message, empty stack trace", Android14,
			func(p *Parcel) { p.WriteException(&Exception{Code: ExSecurity, Message: "no"}) },
			"ffffffff" + "02000000" + "6e006f000000" + "0000" + "00000000"},
		{"service-specific exception carries its code", Android11,
			func(p *Parcel) {
				p.WriteException(&Exception{Code: ExServiceSpecific, Message: "", ServiceSpecific: 42})
			},
			"f8ffffff" + "00000000" + "00000000" + "00000000" + "2a000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParcel(tc.rel)
			tc.write(p)
			if got := hexOf(p); got != tc.want {
				t.Errorf("encoding\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestObjectOffsetsAreRecorded(t *testing.T) {
	p := NewParcel(Android11)
	p.WriteInt32(1)
	p.WriteHandle(1)
	p.WriteFD(4, false)
	if got, want := p.Offsets(), []uint64{4, 32}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}

func TestParcelRoundTripPerRelease(t *testing.T) {
	for _, rel := range Releases() {
		t.Run(rel.String(), func(t *testing.T) {
			w := NewParcel(rel)
			w.WriteInterfaceToken("a.b.IFoo")
			w.WriteInt32(-5)
			w.WriteUint32(7)
			w.WriteInt64(-1 << 40)
			w.WriteUint64(1 << 63)
			w.WriteBool(true)
			w.WriteFloat32(2.5)
			w.WriteFloat64(-0.125)
			w.WriteString16("héllo, 世界 🙂")
			w.WriteNullString16()
			w.WriteString8("str8")
			w.WriteString8("")
			w.WriteByteArray([]byte("xyz"))
			w.WriteByteArray(nil)
			w.WriteHandle(3)
			w.WriteNullBinder()
			w.WriteLocalBinder(11, 12)
			w.WriteFD(9, false)
			w.WriteException(&Exception{Code: ExIllegalState, Message: "bad state"})

			r, err := ParseParcel(rel, w.Data(), w.Offsets())
			if err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(r.EnforceInterface("a.b.IFoo"))
			i32, err := r.ReadInt32()
			must(err)
			u32, err := r.ReadUint32()
			must(err)
			i64, err := r.ReadInt64()
			must(err)
			u64, err := r.ReadUint64()
			must(err)
			b, err := r.ReadBool()
			must(err)
			f32, err := r.ReadFloat32()
			must(err)
			f64, err := r.ReadFloat64()
			must(err)
			if i32 != -5 || u32 != 7 || i64 != -1<<40 || u64 != 1<<63 || !b || f32 != 2.5 || f64 != -0.125 {
				t.Fatalf("primitives %v %v %v %v %v %v %v", i32, u32, i64, u64, b, f32, f64)
			}
			s16, err := r.ReadString16()
			must(err)
			if s16 != "héllo, 世界 🙂" {
				t.Fatalf("String16 %q", s16)
			}
			if _, ok, err := r.ReadNullableString16(); err != nil || ok {
				t.Fatalf("null String16: ok %v err %v", ok, err)
			}
			s8, err := r.ReadString8()
			must(err)
			e8, err := r.ReadString8()
			must(err)
			if s8 != "str8" || e8 != "" {
				t.Fatalf("String8 %q %q", s8, e8)
			}
			ba, err := r.ReadByteArray()
			must(err)
			nb, err := r.ReadByteArray()
			must(err)
			if !bytes.Equal(ba, []byte("xyz")) || nb != nil {
				t.Fatalf("byte arrays %q %v", ba, nb)
			}
			h, err := r.ReadBinder()
			must(err)
			if h.Type != TypeHandle || h.Handle() != 3 {
				t.Fatalf("handle %+v", h)
			}
			if rel >= Android11 && h.Stability != StabilitySystem {
				t.Fatalf("handle stability %d", h.Stability)
			}
			n, err := r.ReadBinder()
			must(err)
			if !n.IsNull() {
				t.Fatalf("null binder %+v", n)
			}
			l, err := r.ReadBinder()
			must(err)
			if l.Type != TypeBinder || l.Binder != 11 || l.Cookie != 12 {
				t.Fatalf("local binder %+v", l)
			}
			fd, err := r.ReadFD()
			must(err)
			if fd != 9 {
				t.Fatalf("fd %d", fd)
			}
			var ex *Exception
			if err := r.ReadException(); !errors.As(err, &ex) || ex.Code != ExIllegalState || ex.Message != "bad state" {
				t.Fatalf("exception %v", err)
			}
			if r.Remaining() != 0 {
				t.Fatalf("%d bytes left", r.Remaining())
			}
		})
	}
}

func TestInterfaceTokenMismatchesAreRejected(t *testing.T) {
	tests := []struct {
		name  string
		write Release
		read  Release
		desc  string
	}{
		{"other descriptor", Android14, Android14, "a.b.IOther"},
		{"10 token read as 11 has no SYST header", Android10, Android11, "a.b.IFoo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewParcel(tc.write)
			w.WriteInterfaceToken("a.b.IFoo")
			r, err := ParseParcel(tc.read, w.Data(), w.Offsets())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.EnforceInterface(tc.desc); err == nil {
				t.Fatal("enforceInterface accepted a mismatch")
			}
		})
	}
}

func TestReadExceptionSkipsReplyHeader(t *testing.T) {
	p := NewParcel(Android10)
	p.WriteInt32(ExHasReplyHeader)
	p.WriteInt32(12) // size includes itself
	p.WriteInt32(1)
	p.WriteInt32(2)
	p.WriteInt32(77)
	r, _ := ParseParcel(Android10, p.Data(), nil)
	if err := r.ReadException(); err != nil {
		t.Fatal(err)
	}
	if v, err := r.ReadInt32(); err != nil || v != 77 {
		t.Fatalf("after header: %d %v", v, err)
	}
}

func TestSecurityReplyReadsBackAsSecurityException(t *testing.T) {
	p := SecurityReply(Android14, "denied by policy")
	r, _ := ParseParcel(Android14, p.Data(), p.Offsets())
	var ex *Exception
	if err := r.ReadException(); !errors.As(err, &ex) || ex.Code != ExSecurity || ex.Message != "denied by policy" {
		t.Fatalf("got %v", err)
	}
}

func TestHostileParcelsAreRejected(t *testing.T) {
	obj := NewParcel(Android10)
	obj.WriteHandle(1)
	objBytes := obj.Data()
	tests := []struct {
		name    string
		data    []byte
		offsets []uint64
		read    func(p *Parcel) error
	}{
		{"offset past the end", objBytes, []uint64{8}, nil},
		{"unaligned offset", append([]byte{0, 0}, objBytes...), []uint64{2}, nil},
		{"descending offsets", append(append([]byte{}, objBytes...), objBytes...), []uint64{24, 0}, nil},
		{"overlapping objects", append(append([]byte{}, objBytes...), objBytes...), []uint64{0, 4}, nil},
		{"unknown object type", make([]byte, 24), []uint64{0}, nil},
		{"plain read over an object", objBytes, []uint64{0}, func(p *Parcel) error { _, err := p.ReadInt64(); return err }},
		{"binder read where no object is", objBytes, nil, func(p *Parcel) error { _, err := p.ReadBinder(); return err }},
		{"String16 longer than the data", []byte{0xff, 0xff, 0xff, 0x0f}, nil, func(p *Parcel) error { _, err := p.ReadString16(); return err }},
		{"String16 without NUL", []byte{1, 0, 0, 0, 'a', 0, 'b', 0}, nil, func(p *Parcel) error { _, err := p.ReadString16(); return err }},
		{"negative byte array length", []byte{0xfe, 0xff, 0xff, 0xff}, nil, func(p *Parcel) error { _, err := p.ReadByteArray(); return err }},
		{"short int64", []byte{1, 2, 3, 4}, nil, func(p *Parcel) error { _, err := p.ReadInt64(); return err }},
		{"reply header larger than the parcel", []byte{0x80, 0xff, 0xff, 0xff, 100, 0, 0, 0}, nil, func(p *Parcel) error { return p.ReadException() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseParcel(Android10, tc.data, tc.offsets)
			if tc.read == nil {
				if err == nil {
					t.Fatal("ParseParcel accepted it")
				}
				if !errors.Is(err, ErrBadParcel) {
					t.Fatalf("error %v is not ErrBadParcel", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.read(p); !errors.Is(err, ErrBadParcel) {
				t.Fatalf("read error %v, want ErrBadParcel", err)
			}
		})
	}
}

// TestNullBinderHasNoOffset: a null binder in the offsets would reach the
// driver as pointer 0, which it turns into a node of the sender.
func TestNullBinderHasNoOffset(t *testing.T) {
	for _, rel := range Releases() {
		p := NewParcel(rel)
		p.WriteNullBinder()
		if len(p.Offsets()) != 0 {
			t.Fatalf("%s: null binder listed at offsets %v", rel, p.Offsets())
		}
		r, err := ParseParcel(rel, p.Data(), p.Offsets())
		if err != nil {
			t.Fatal(err)
		}
		if o, err := r.ReadBinder(); err != nil || !o.IsNull() {
			t.Fatalf("%s: read back %+v, %v", rel, o, err)
		}
		junk := NewParcel(rel)
		junk.WriteInt64(1)
		junk.WriteInt64(0)
		junk.WriteInt64(0)
		if _, err := junk.ReadBinder(); err == nil {
			t.Fatalf("%s: plain words read as a binder", rel)
		}
	}
}
