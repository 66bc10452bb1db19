//go:build unix

package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ExecIO is the caller's side of an exec: what feeds the process's stdin,
// what receives its output, and what the caller forwards while it runs.
type ExecIO struct {
	// Stdin is copied to the process until EOF, then the process's stdin
	// is closed; nil means an empty stdin. A Read that blocks (a terminal)
	// may outlive Exec, as with os/exec.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it. With
	// a terminal everything arrives on Stdout.
	Stdout, Stderr io.Writer
	// Resize carries the terminal's new size (ExecRequest.Tty only).
	Resize <-chan WindowSize
	// Signals are forwarded to the process's group.
	Signals <-chan Signal
}

// Exec runs a command in a running profile and returns its exit code
// (128+N when signal N killed it; 127 and 126 when it cannot be found or
// run, as a shell says). The daemon makes the process's stdio and relays
// it over the connection; no file descriptor of the caller reaches the
// container. Cancelling ctx hangs up, which kills the process.
func (c *Client) Exec(ctx context.Context, name string, req ExecRequest, sio ExecIO) (int, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return -1, Errorf(ErrInvalidArgument, "encode exec request: %w", err)
	}
	conn, err := c.dial(ctx, "unix", c.socket)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "POST %s HTTP/1.1\r\nHost: workcelld\r\nConnection: Upgrade\r\nUpgrade: %s\r\n", profilePath(name, "exec"), ExecUpgrade)
	fmt.Fprintf(&hdr, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	hdr.Write(body)
	if _, err := conn.Write(hdr.Bytes()); err != nil {
		return -1, execFailed(ctx, "send request: %v", err)
	}
	br := bufio.NewReaderSize(conn, MaxFramePayload+frameHeader)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return -1, execFailed(ctx, "read answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return -1, decodeError(resp)
	}

	fw := NewFrameWriter(conn)
	done := make(chan struct{})
	defer close(done)
	go sendStdin(fw, sio.Stdin, done)
	go forward(fw, sio.Resize, sio.Signals, done)

	fr := NewFrameReader(br, FromDaemon)
	for {
		t, p, err := fr.Next()
		if err != nil {
			if errors.Is(err, ErrBadFrame) {
				return -1, execFailed(ctx, "%v", err)
			}
			return -1, execFailed(ctx, "connection closed before the exit code (did workcelld restart?): %v", err)
		}
		switch t {
		case FrameStdout, FrameStderr:
			w := sio.Stdout
			if t == FrameStderr {
				w = sio.Stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(p); err != nil {
				// Hanging up kills the process, as a closed pipe would.
				return -1, fmt.Errorf("exec: write the process's %s: %w", t, err)
			}
		case FrameExit:
			var res ExecResult
			if err := json.Unmarshal(p, &res); err != nil {
				return -1, execFailed(ctx, "decode result %q: %v", p, err)
			}
			if res.Error != nil {
				return -1, FromBody(*res.Error, 0)
			}
			return res.ExitCode, nil
		}
	}
}

// sendStdin copies r to the process as stdin frames, then stdin EOF. A
// failed write means the connection is gone: the reader sees it too.
func sendStdin(fw *FrameWriter, r io.Reader, done <-chan struct{}) {
	if r != nil {
		buf := make([]byte, MaxFramePayload)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case <-done:
					return
				default:
				}
				if fw.Write(FrameStdin, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = fw.Write(FrameStdinEOF, nil)
}

// forward sends window sizes and signals until the exec ends.
func forward(fw *FrameWriter, resize <-chan WindowSize, signals <-chan Signal, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case ws, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			if fw.WriteResize(ws) != nil {
				return
			}
		case s, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			if !s.Valid() {
				continue
			}
			if fw.Write(FrameSignal, []byte{byte(s)}) != nil {
				return
			}
		}
	}
}

// execFailed reports a broken exec connection, or the caller's
// cancellation when that is what broke it.
func execFailed(ctx context.Context, format string, args ...any) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return execProtocolError(format, args...)
}
