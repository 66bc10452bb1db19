package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Client talks to workcelld over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	c := &Client{socket: socket}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext:       c.dial,
		DisableKeepAlives: false,
		MaxIdleConns:      2,
	}}
	return c
}

func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, Errorf(ErrUnavailable, "workcelld is not running at %s: %w", c.socket, err)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, Errorf(ErrPermission, "cannot connect to %s: %w", c.socket, err)
		}
		return nil, Errorf(ErrUnavailable, "connect to workcelld at %s: %w", c.socket, err)
	}
	return conn, nil
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return Errorf(ErrInternal, "decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// send performs the request and turns an error status into an error of
// its class; the caller closes the body of a successful answer.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, Errorf(ErrInvalidArgument, "encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://workcelld"+path, body)
	if err != nil {
		return nil, Errorf(ErrInvalidArgument, "make request %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if _, ok := err.(interface{ Is(error) bool }); ok {
			return nil, err
		}
		return nil, Errorf(ErrUnavailable, "%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var eb ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(b, &eb); err != nil {
		eb.Message = strings.TrimSpace(string(b))
	}
	return FromBody(eb, resp.StatusCode)
}

func profilePath(name, action string) string {
	p := "/" + Version + "/profiles/" + url.PathEscape(name)
	if action != "" {
		p += "/" + action
	}
	return p
}

// Version asks the daemon what it is.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.do(ctx, http.MethodGet, "/"+Version+"/version", nil, &v)
	return v, err
}

// Profiles lists every installed profile.
func (c *Client) Profiles(ctx context.Context) ([]Profile, error) {
	var ps []Profile
	err := c.do(ctx, http.MethodGet, "/"+Version+"/profiles", nil, &ps)
	return ps, err
}

// Profile returns the status of one profile.
func (c *Client) Profile(ctx context.Context, name string) (Profile, error) {
	var p Profile
	err := c.do(ctx, http.MethodGet, profilePath(name, ""), nil, &p)
	return p, err
}

// Install imports a bundle as a new profile.
func (c *Client) Install(ctx context.Context, req InstallRequest) (Profile, error) {
	var p Profile
	err := c.do(ctx, http.MethodPost, "/"+Version+"/profiles", req, &p)
	return p, err
}

// Remove deletes a profile and everything it had.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, profilePath(name, ""), nil, nil)
}

// Start starts a stopped profile; it returns once its init runs.
func (c *Client) Start(ctx context.Context, name string) (Profile, error) {
	return c.action(ctx, name, "start", nil)
}

// StartWith starts a stopped profile with options.
func (c *Client) StartWith(ctx context.Context, name string, req StartRequest) (Profile, error) {
	return c.action(ctx, name, "start", req)
}

// Stop stops a running or paused profile.
func (c *Client) Stop(ctx context.Context, name string, req StopRequest) (Profile, error) {
	return c.action(ctx, name, "stop", req)
}

// Off turns work mode off: every process of the profile is frozen.
func (c *Client) Off(ctx context.Context, name string) (Profile, error) {
	return c.action(ctx, name, "off", nil)
}

// On turns work mode on again.
func (c *Client) On(ctx context.Context, name string) (Profile, error) {
	return c.action(ctx, name, "on", nil)
}

func (c *Client) action(ctx context.Context, name, action string, body any) (Profile, error) {
	var p Profile
	err := c.do(ctx, http.MethodPost, profilePath(name, action), body, &p)
	return p, err
}

// Stats returns the resource usage of a profile.
func (c *Client) Stats(ctx context.Context, name string) (Stats, error) {
	var s Stats
	err := c.do(ctx, http.MethodGet, profilePath(name, "stats"), nil, &s)
	return s, err
}

// Logs copies the profile's console log to w; with follow it keeps
// copying what is written until ctx ends.
func (c *Client) Logs(ctx context.Context, name string, follow bool, w io.Writer) error {
	p := profilePath(name, "logs")
	if follow {
		p += "?follow=true"
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil)
	if err != nil {
		return err
	}
	return copyStream(ctx, resp, w, "logs of "+name)
}

// copyStream copies a stream's body to w; a stream that workcelld ended
// (the profile was locked, say) is an ErrUnavailable error saying why.
func copyStream(ctx context.Context, resp *http.Response, w io.Writer, what string) error {
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return Errorf(ErrUnavailable, "read %s: %w", what, err)
	}
	if why := resp.Trailer.Get(StreamEndTrailer); why != "" {
		return Errorf(ErrUnavailable, "%s ended by workcelld: %s", what, why)
	}
	return nil
}

// Events calls fn for every state change until ctx ends or fn returns an
// error.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	resp, err := c.send(ctx, http.MethodGet, "/"+Version+"/events", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return Errorf(ErrInternal, "decode event %q: %w", sc.Text(), err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return Errorf(ErrUnavailable, "event stream: %w", err)
	}
	if ctx.Err() != nil {
		return nil
	}
	return Errorf(ErrUnavailable, "event stream closed by workcelld")
}

// exitCodeError is returned by Exec when the answer cannot be read.
func execProtocolError(format string, args ...any) error {
	return Errorf(ErrUnavailable, "exec: "+format, args...)
}
