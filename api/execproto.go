package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ExecUpgrade names the exec protocol in the Upgrade header. After "101
// Switching Protocols" both sides exchange frames on the connection: the
// client sends stdin, stdin EOF, window sizes and signals, the daemon sends
// stdout, stderr and one exit frame, then closes. No file descriptor ever
// crosses the connection: the daemon makes the process's stdio itself
// (pipes, or a pty inside the container when ExecRequest.Tty is set).
const ExecUpgrade = "workcell-exec.v2"

// ExecUpgradeV1 is the first exec protocol, which handed the client's own
// file descriptors to the process. The daemon refuses it.
const ExecUpgradeV1 = "workcell-exec"

// MaxFramePayload bounds a frame's payload, so that a peer can make the
// other side hold no more than one such buffer per connection.
const MaxFramePayload = 32 << 10

// frameHeader: one byte type, four bytes big-endian payload length.
const frameHeader = 5

// FrameType says what a frame carries.
type FrameType uint8

const (
	// From the client.
	FrameStdin    FrameType = 1 // 1..MaxFramePayload bytes for the process's stdin
	FrameStdinEOF FrameType = 2 // empty: the process's stdin is closed
	FrameResize   FrameType = 3 // 4 bytes: rows, cols (big-endian uint16); terminal only
	FrameSignal   FrameType = 4 // 1 byte: a Signal
	// From the daemon.
	FrameStdout FrameType = 16 // 1..MaxFramePayload bytes the process wrote
	FrameStderr FrameType = 17 // likewise; never sent for a terminal (it has one stream)
	FrameExit   FrameType = 18 // a JSON ExecResult; the last frame
)

func (t FrameType) String() string {
	switch t {
	case FrameStdin:
		return "stdin"
	case FrameStdinEOF:
		return "stdin-eof"
	case FrameResize:
		return "resize"
	case FrameSignal:
		return "signal"
	case FrameStdout:
		return "stdout"
	case FrameStderr:
		return "stderr"
	case FrameExit:
		return "exit"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Signal is a signal the client may forward, with its Linux number (the
// same on every unix for these four).
type Signal uint8

const (
	SIGHUP  Signal = 1
	SIGINT  Signal = 2
	SIGQUIT Signal = 3
	SIGTERM Signal = 15
)

// Valid reports whether s is one the daemon forwards. Others (KILL, STOP,
// the job-control and real-time ones) are not a terminal's to send.
func (s Signal) Valid() bool {
	switch s {
	case SIGHUP, SIGINT, SIGQUIT, SIGTERM:
		return true
	}
	return false
}

func (s Signal) String() string {
	switch s {
	case SIGHUP:
		return "SIGHUP"
	case SIGINT:
		return "SIGINT"
	case SIGQUIT:
		return "SIGQUIT"
	case SIGTERM:
		return "SIGTERM"
	}
	return fmt.Sprintf("signal %d", uint8(s))
}

// WindowSize is a terminal's size in characters.
type WindowSize struct {
	Rows, Cols uint16
}

// ErrBadFrame is the class of every malformed frame.
var ErrBadFrame = errors.New("bad exec frame")

// Side says whose frames a FrameReader reads.
type Side int

const (
	FromClient Side = iota
	FromDaemon
)

// FrameReader reads and checks frames. Payloads point into its buffer and
// stay valid until the next call to Next.
type FrameReader struct {
	r    io.Reader
	side Side
	hdr  [frameHeader]byte
	buf  []byte
}

// NewFrameReader reads the frames side sends from r.
func NewFrameReader(r io.Reader, side Side) *FrameReader {
	return &FrameReader{r: r, side: side}
}

// Next returns the next frame. io.EOF means the peer closed the connection
// between frames; a connection cut inside a frame is io.ErrUnexpectedEOF.
// A frame of the other side's type, an unknown type, or a length that the
// type does not allow is an error wrapping ErrBadFrame, and nothing of its
// payload is read.
func (fr *FrameReader) Next() (FrameType, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	t := FrameType(fr.hdr[0])
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	if err := checkFrame(fr.side, t, n); err != nil {
		return 0, nil, err
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n, max(int(n), 4096))
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	if t == FrameSignal && !Signal(p[0]).Valid() {
		return 0, nil, fmt.Errorf("%w: signal %d: only SIGHUP, SIGINT, SIGQUIT and SIGTERM are forwarded", ErrBadFrame, p[0])
	}
	return t, p, nil
}

func checkFrame(side Side, t FrameType, n uint32) error {
	var lo, hi uint32
	switch {
	case side == FromClient && (t == FrameStdin):
		lo, hi = 1, MaxFramePayload
	case side == FromClient && t == FrameStdinEOF:
		lo, hi = 0, 0
	case side == FromClient && t == FrameResize:
		lo, hi = 4, 4
	case side == FromClient && t == FrameSignal:
		lo, hi = 1, 1
	case side == FromDaemon && (t == FrameStdout || t == FrameStderr || t == FrameExit):
		lo, hi = 1, MaxFramePayload
	default:
		who := "client"
		if side == FromDaemon {
			who = "daemon"
		}
		return fmt.Errorf("%w: %s is not a frame the %s sends", ErrBadFrame, t, who)
	}
	if n < lo || n > hi {
		if lo == hi {
			return fmt.Errorf("%w: %s frame of %d bytes: want %d", ErrBadFrame, t, n, lo)
		}
		return fmt.Errorf("%w: %s frame of %d bytes: want %d to %d", ErrBadFrame, t, n, lo, hi)
	}
	return nil
}

// DecodeWindowSize reads a resize frame's payload.
func DecodeWindowSize(p []byte) (WindowSize, error) {
	if len(p) != 4 {
		return WindowSize{}, fmt.Errorf("%w: window size of %d bytes: want 4", ErrBadFrame, len(p))
	}
	return WindowSize{Rows: binary.BigEndian.Uint16(p), Cols: binary.BigEndian.Uint16(p[2:])}, nil
}

// AppendFrame appends one frame to b. Data longer than MaxFramePayload is
// the caller's to split (see WriteData).
func AppendFrame(b []byte, t FrameType, p []byte) []byte {
	b = append(b, byte(t), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(p)))
	return append(b, p...)
}

// AppendWindowSize appends a resize frame.
func AppendWindowSize(b []byte, ws WindowSize) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[:], ws.Rows)
	binary.BigEndian.PutUint16(p[2:], ws.Cols)
	return AppendFrame(b, FrameResize, p[:])
}

// FrameWriter writes whole frames, one Write call each, and is safe for
// concurrent use (the daemon's stdout and stderr pumps share one).
type FrameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write sends p as frames of type t, split at MaxFramePayload. Empty p is
// sent as one empty frame (stdin EOF); data types never send empty p.
func (fw *FrameWriter) Write(t FrameType, p []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), MaxFramePayload)
		fw.buf = AppendFrame(fw.buf[:0], t, p[:n])
		if _, err := fw.w.Write(fw.buf); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// WriteResize sends a window size.
func (fw *FrameWriter) WriteResize(ws WindowSize) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.buf = AppendWindowSize(fw.buf[:0], ws)
	_, err := fw.w.Write(fw.buf)
	return err
}
