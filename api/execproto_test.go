package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	big := bytes.Repeat([]byte("x"), 2*MaxFramePayload+7)
	if err := fw.Write(FrameStdin, big); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(FrameStdinEOF, nil); err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteResize(WindowSize{Rows: 40, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	if err := fw.Write(FrameSignal, []byte{byte(SIGTERM)}); err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReader(&buf, FromClient)
	var got []byte
	var types []FrameType
	for {
		typ, p, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
		switch typ {
		case FrameStdin:
			got = append(got, p...)
		case FrameResize:
			ws, _ := DecodeWindowSize(p)
			if ws != (WindowSize{Rows: 40, Cols: 132}) {
				t.Errorf("window size %+v", ws)
			}
		case FrameSignal:
			if Signal(p[0]) != SIGTERM {
				t.Errorf("signal %v", Signal(p[0]))
			}
		}
	}
	if !bytes.Equal(got, big) {
		t.Errorf("stdin: got %d bytes, want %d", len(got), len(big))
	}
	want := []FrameType{FrameStdin, FrameStdin, FrameStdin, FrameStdinEOF, FrameResize, FrameSignal}
	if len(types) != len(want) {
		t.Fatalf("frames %v, want %v", types, want)
	}
}

func TestFrameReaderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		side Side
		data []byte
		msg  string
	}{
		{"payload over the bound", FromClient, []byte{byte(FrameStdin), 0, 0, 0x80, 1}, "stdin frame of 32769 bytes"},
		{"huge length", FromClient, []byte{byte(FrameStdin), 0xff, 0xff, 0xff, 0xff}, "want 1 to 32768"},
		{"empty stdin", FromClient, []byte{byte(FrameStdin), 0, 0, 0, 0}, "stdin frame of 0 bytes"},
		{"eof with data", FromClient, AppendFrame(nil, FrameStdinEOF, []byte{1}), "want 0"},
		{"short resize", FromClient, AppendFrame(nil, FrameResize, []byte{1, 2}), "want 4"},
		{"kill is not forwarded", FromClient, AppendFrame(nil, FrameSignal, []byte{9}), "signal 9"},
		{"daemon frame from the client", FromClient, AppendFrame(nil, FrameStdout, []byte("x")), "not a frame the client sends"},
		{"client frame from the daemon", FromDaemon, AppendFrame(nil, FrameStdin, []byte("x")), "not a frame the daemon sends"},
		{"unknown type", FromClient, AppendFrame(nil, 99, []byte("x")), "type 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewFrameReader(bytes.NewReader(tc.data), tc.side).Next()
			if !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want ErrBadFrame saying %q", err, tc.msg)
			}
		})
	}
	_, _, err := NewFrameReader(bytes.NewReader([]byte{byte(FrameStdin), 0, 0, 0, 9, 'a'}), FromClient).Next()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
}
