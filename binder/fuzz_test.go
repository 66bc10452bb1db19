package binder

import (
	"encoding/binary"
	"errors"
	"testing"
)

// fuzzInput packs a release, object offsets and data into one byte string:
// byte 0 picks the release, byte 1 the number of offsets, then 8 bytes per
// offset, then the parcel data.
func fuzzInput(rel Release, p *Parcel) []byte {
	b := []byte{byte(rel), byte(len(p.Offsets()))}
	for _, off := range p.Offsets() {
		b = binary.LittleEndian.AppendUint64(b, off)
	}
	return append(b, p.Data()...)
}

func FuzzParcelReader(f *testing.F) {
	for _, rel := range Releases() {
		p := NewParcel(rel)
		p.WriteInterfaceToken(ServiceManagerDescriptor)
		p.WriteString16("activity")
		p.WriteHandle(1)
		p.WriteInt32(0)
		f.Add(fuzzInput(rel, p))

		r := NewParcel(rel)
		r.WriteNoException()
		r.WriteLocalBinder(1, 1)
		r.WriteFD(3, false)
		r.WriteString8("x")
		r.WriteByteArray([]byte{1, 2, 3})
		f.Add(fuzzInput(rel, r))

		f.Add(fuzzInput(rel, SecurityReply(rel, "denied")))

		// Scatter-gather: a parent with an embedded buffer and an fd array.
		sg := NewParcel(rel)
		sg.WriteInt32(1)
		h, _ := sg.WriteBuffer(make([]byte, 32))
		sg.WriteEmbeddedBuffer([]byte("child"), h, 0)
		sg.WriteFDArray([]int{3, 4}, h, 16, false)
		c, _ := sg.WriteBuffer(nil)
		sg.WriteEmbeddedBuffer([]byte{1}, c, 0) // refused (empty parent): not written
		sg.WriteFD(5, false)
		f.Add(fuzzInput(rel, sg))
	}
	f.Add([]byte{10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0xff, 0xff, 12, 0, 0, 0})

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		rel := Releases()[int(in[0])%len(Releases())]
		n := int(in[1])
		in = in[2:]
		if len(in) < 8*n {
			return
		}
		offs := make([]uint64, n)
		for i := range offs {
			offs[i] = binary.LittleEndian.Uint64(in[8*i:])
		}
		data := in[8*n:]
		p, err := ParseParcel(rel, data, offs)
		if err != nil {
			return
		}
		// Buffer contents as a receive mapping of zeros would give them.
		_ = p.loadBuffers(func(addr, n uint64) ([]byte, error) {
			if n > 1<<16 {
				return nil, errors.New("outside the mapping")
			}
			return make([]byte, n), nil
		})
		// Every reader from every position: errors are fine, panics are not.
		readers := []func() error{
			func() error { _, err := p.ReadInt32(); return err },
			func() error { _, err := p.ReadInt64(); return err },
			func() error { _, err := p.ReadString16(); return err },
			func() error { _, _, err := p.ReadNullableString8(); return err },
			func() error { _, err := p.ReadByteArray(); return err },
			func() error { _, err := p.ReadInterfaceToken(); return err },
			func() error { _, err := p.ReadBinder(); return err },
			func() error { _, err := p.ReadFD(); return err },
			func() error { return p.ReadException() },
			func() error { _, _, err := p.ReadBuffer(); return err },
			func() error { _, _, err := p.ReadEmbeddedBuffer(0, 0); return err },
			func() error { _, err := p.ReadFDArray(0, 16); return err },
		}
		for start := 0; start < len(data); start += 4 {
			for _, read := range readers {
				if err := p.SetPosition(start); err != nil {
					t.Fatalf("SetPosition(%d) of %d: %v", start, len(data), err)
				}
				_ = read()
				if p.Position() < 0 || p.Position() > len(data) {
					t.Fatalf("position %d outside %d bytes", p.Position(), len(data))
				}
			}
		}
		_ = p.Objects()
		_ = p.Buffers()
		_ = receivedFDs(p)
		_, _ = rewriteObjects(p, func(o Object) (flatObject, error) {
			return flatObject{Type: o.Type, Flags: o.Flags, Binder: o.Binder, Cookie: o.Cookie}, nil
		})
	})
}
