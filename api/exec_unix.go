//go:build unix

package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
)

// ExecUpgrade is the protocol named in the Upgrade header of an exec
// request: after 101 Switching Protocols the client sends one byte with
// its stdin, stdout and stderr as SCM_RIGHTS, and the daemon answers one
// JSON ExecResult line when the process has ended.
const ExecUpgrade = "workcell-exec"

// Exec runs a command in a running profile with the given files as its
// stdin, stdout and stderr, and returns its exit code. The files are
// handed to the process itself: no byte of its I/O passes through the
// daemon. Cancelling ctx kills the process.
func (c *Client) Exec(ctx context.Context, name string, req ExecRequest, stdin, stdout, stderr *os.File) (int, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return -1, Errorf(ErrInvalidArgument, "encode exec request: %w", err)
	}
	conn, err := c.dial(ctx, "unix", c.socket)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return -1, execProtocolError("socket %s is not a unix socket", c.socket)
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.Close() })
	defer stop()

	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "POST %s HTTP/1.1\r\nHost: workcelld\r\nConnection: Upgrade\r\nUpgrade: %s\r\n", profilePath(name, "exec"), ExecUpgrade)
	fmt.Fprintf(&hdr, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	hdr.Write(body)
	if _, err := uc.Write(hdr.Bytes()); err != nil {
		return -1, execProtocolError("send request: %v", err)
	}
	br := bufio.NewReader(uc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return -1, execProtocolError("read answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return -1, decodeError(resp)
	}
	rights := syscall.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := uc.WriteMsgUnix([]byte{0}, rights, nil); err != nil {
		return -1, execProtocolError("pass stdio: %v", err)
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, execProtocolError("connection closed before the exit code (did workcelld restart?): %v", err)
	}
	var res ExecResult
	if err := json.Unmarshal(line, &res); err != nil {
		return -1, execProtocolError("decode result %q: %v", line, err)
	}
	if res.Error != nil {
		return -1, FromBody(*res.Error, 0)
	}
	return res.ExitCode, nil
}
