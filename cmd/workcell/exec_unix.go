//go:build unix

package main

import (
	"context"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/workcell/workcell/api"
)

// ttyMode is exec's choice of terminal.
type ttyMode int

const (
	ttyAuto  ttyMode = iota // a terminal when stdin and stdout are terminals (as ssh)
	ttyForce                // -t
	ttyNone                 // -T
)

type execOpts struct {
	name string
	args []string
	tty  ttyMode
	user *api.ExecUser
}

// parseExec reads "[-t|-T] [--user UID[:GID]] [NAME] [options] -- CMD
// [ARG...]" (the "--" may be left out when NAME is given). Options come
// before the command; everything from the command on is its own.
func parseExec(args []string) (execOpts, error) {
	o := execOpts{}
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) > 1 && a[0] == '-' {
			switch {
			case a == "-t" || a == "--tty":
				o.tty = ttyForce
			case a == "-T" || a == "--no-tty":
				o.tty = ttyNone
			case a == "-u" || a == "--user" || strings.HasPrefix(a, "--user="):
				v, ok := strings.CutPrefix(a, "--user=")
				if !ok {
					if i+1 >= len(args) {
						return o, usagef("exec: %s needs UID[:GID]", a)
					}
					i++
					v = args[i]
				}
				u, err := parseUser(v)
				if err != nil {
					return o, err
				}
				o.user = u
			default:
				return o, usagef("exec: unknown option %q: want -t, -T or --user UID[:GID] before the command", a)
			}
			i++
			continue
		}
		if o.name != "" {
			break
		}
		o.name = a
		i++
	}
	if o.name == "" {
		o.name = api.DefaultProfile
	}
	o.args = args[i:]
	if len(o.args) == 0 {
		return o, usagef("exec: want [NAME] -- CMD [ARG...]")
	}
	return o, nil
}

// parseUser reads UID[:GID], numbers only (the container's user names are
// the image's business); GID defaults to UID.
func parseUser(v string) (*api.ExecUser, error) {
	us, gs, hasGID := strings.Cut(v, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil || uid == 1<<32-1 {
		return nil, usagef("exec: --user %q: want a numeric UID[:GID]", v)
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.ParseUint(gs, 10, 32); err != nil || gid == 1<<32-1 {
			return nil, usagef("exec: --user %q: want a numeric UID[:GID]", v)
		}
	}
	return &api.ExecUser{UID: uint32(uid), GID: uint32(gid)}, nil
}

func cmdExec(c *cli.Context) error {
	o, err := parseExec(c.Args().Slice())
	if err != nil {
		return err
	}
	inFd, outFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	tty := o.tty == ttyForce || (o.tty == ttyAuto && term.IsTerminal(inFd) && term.IsTerminal(outFd))
	req := api.ExecRequest{Args: o.args, Tty: tty, User: o.user}
	sio := api.ExecIO{Stdin: os.Stdin, Stdout: c.App.Writer, Stderr: c.App.ErrWriter}

	// Signals go to the process, which decides; they do not end the CLI
	// (its context would hang up and kill the process unasked).
	ctx := context.WithoutCancel(c.Context)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	fwd := make(chan api.Signal, 4)
	resize := make(chan api.WindowSize, 1)
	sio.Signals = fwd
	sizeFd := outFd
	if !term.IsTerminal(sizeFd) {
		sizeFd = inFd
	}
	if tty {
		sio.Resize = resize
		if w, h, err := term.GetSize(sizeFd); err == nil && w > 0 && h > 0 {
			req.Rows, req.Cols = uint16(h), uint16(w)
		}
		if term.IsTerminal(inFd) {
			old, err := term.MakeRaw(inFd)
			if err == nil {
				defer func() { _ = term.Restore(inFd, old) }()
			}
		}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if s == syscall.SIGWINCH {
					if tty {
						if w, h, err := term.GetSize(sizeFd); err == nil {
							latest(resize, api.WindowSize{Rows: uint16(h), Cols: uint16(w)})
						}
					}
					continue
				}
				if ss, ok := s.(syscall.Signal); ok {
					select {
					case fwd <- api.Signal(ss):
					default:
					}
				}
			}
		}
	}()
	code, err := client(c).Exec(ctx, o.name, req, sio)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}

// latest puts ws in the one-slot channel, replacing a size not yet sent:
// only the last size matters.
func latest(ch chan api.WindowSize, ws api.WindowSize) {
	for {
		select {
		case ch <- ws:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
