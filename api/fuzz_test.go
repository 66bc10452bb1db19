package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzFrameReader feeds arbitrary bytes (a hostile client's, or a broken
// daemon's) to the frame decoder of either side. Nothing may panic; every
// frame it returns has a type of that side, a payload within the type's
// bounds, and encodes back to the bytes it was read from.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 2, 'h', 'i', 2, 0, 0, 0, 0}, false)
	f.Add(AppendWindowSize(nil, WindowSize{Rows: 24, Cols: 80}), false)
	f.Add(AppendFrame(nil, FrameSignal, []byte{byte(SIGINT)}), false)
	f.Add(AppendFrame(nil, FrameSignal, []byte{9}), false)
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff}, false)
	f.Add(AppendFrame(nil, FrameExit, []byte(`{"exit_code":0}`)), true)
	f.Add(AppendFrame(nil, FrameStdout, nil), true)
	f.Fuzz(func(t *testing.T, data []byte, daemon bool) {
		side := FromClient
		if daemon {
			side = FromDaemon
		}
		fr := NewFrameReader(bytes.NewReader(data), side)
		read := 0
		for {
			typ, p, err := fr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrBadFrame) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(p) > MaxFramePayload {
				t.Fatalf("%s frame of %d bytes passed", typ, len(p))
			}
			if err := checkFrame(side, typ, uint32(len(p))); err != nil {
				t.Fatalf("returned a frame its own check refuses: %v", err)
			}
			if typ == FrameSignal && !Signal(p[0]).Valid() {
				t.Fatalf("signal %d passed", p[0])
			}
			if typ == FrameResize {
				if _, err := DecodeWindowSize(p); err != nil {
					t.Fatalf("resize frame that does not decode: %v", err)
				}
			}
			enc := AppendFrame(nil, typ, p)
			if !bytes.Equal(enc, data[read:read+len(enc)]) {
				t.Fatalf("frame %s does not encode back to its bytes", typ)
			}
			read += len(enc)
		}
	})
}
