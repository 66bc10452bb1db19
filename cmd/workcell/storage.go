package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
)

// storageCommands are the encrypted storage's commands (lock, unlock,
// wipe, passphrase).
func storageCommands() []*cli.Command {
	nameArg := "[NAME]"
	stdinFlag := &cli.BoolFlag{Name: "passphrase-stdin", Usage: "read the passphrase(s) from stdin, one per line, instead of the terminal"}
	return []*cli.Command{
		{Name: "lock", Usage: "stop the profile and evict its key: its data is unreadable until unlock", ArgsUsage: nameArg, Action: cmdLock},
		{
			Name: "unlock", Usage: "unlock a locked profile (asks for its passphrase if it has one)", ArgsUsage: nameArg,
			Flags: []cli.Flag{stdinFlag}, Action: cmdUnlock,
		},
		{
			Name: "passphrase", Usage: "set or clear the passphrase that protects the profile's key",
			Subcommands: []*cli.Command{
				{Name: "set", Usage: "set or change the passphrase", ArgsUsage: nameArg, Flags: []cli.Flag{stdinFlag}, Action: cmdPassphrase(true)},
				{Name: "clear", Usage: "remove the passphrase (the device key alone then unlocks)", ArgsUsage: nameArg, Flags: []cli.Flag{stdinFlag}, Action: cmdPassphrase(false)},
			},
		},
		{
			Name: "wipe", Usage: "crypto-erase the profile and delete everything it had (root/system only)", ArgsUsage: nameArg,
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation"}},
			Action: cmdWipe,
		},
	}
}

func cmdLock(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	p, err := client(c).Lock(c.Context, name)
	if err != nil {
		return err
	}
	return printProfile(c, p)
}

func cmdUnlock(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	cl := client(c)
	cur, err := cl.Profile(c.Context, name)
	if err != nil {
		return err
	}
	var req api.UnlockRequest
	if cur.Passphrase {
		in := newSecretReader(c)
		pass, err := in.read(fmt.Sprintf("passphrase for %s: ", name))
		if err != nil {
			return err
		}
		req.Passphrase = pass
	}
	p, err := cl.Unlock(c.Context, name, req)
	if err != nil {
		return err
	}
	return printProfile(c, p)
}

func cmdPassphrase(set bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		name, err := profileName(c)
		if err != nil {
			return err
		}
		cl := client(c)
		cur, err := cl.Profile(c.Context, name)
		if err != nil {
			return err
		}
		if !set && !cur.Passphrase {
			return api.Errorf(api.ErrConflict, "profile %s has no passphrase", name)
		}
		in := newSecretReader(c)
		var req api.PassphraseRequest
		if cur.Passphrase {
			if req.Old, err = in.read(fmt.Sprintf("current passphrase for %s: ", name)); err != nil {
				return err
			}
		}
		if set {
			if req.New, err = in.read(fmt.Sprintf("new passphrase for %s: ", name)); err != nil {
				return err
			}
			if req.New == "" {
				return usagef("passphrase set: the new passphrase is empty (to remove it: workcell passphrase clear)")
			}
			if in.tty {
				again, err := in.read("again: ")
				if err != nil {
					return err
				}
				if again != req.New {
					return usagef("passphrase set: the two passphrases differ; nothing changed")
				}
			}
		}
		p, err := cl.SetPassphrase(c.Context, name, req)
		if err != nil {
			return err
		}
		return printProfile(c, p)
	}
}

func cmdWipe(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	if !c.Bool("yes") {
		if !isTerminal(os.Stdin) {
			return usagef("wipe: no terminal to confirm on: pass --yes to wipe %s", name)
		}
		fmt.Fprintf(c.App.ErrWriter, "This erases profile %s and all its data for good.\nType the profile name to confirm: ", name)
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("wipe: read confirmation: %w", err)
		}
		if strings.TrimSpace(line) != name {
			return usagef("wipe: confirmation %q does not match %s: nothing wiped", strings.TrimSpace(line), name)
		}
	}
	if err := client(c).Wipe(c.Context, name); err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, api.Profile{Name: name, State: api.StateAbsent})
	}
	fmt.Fprintf(c.App.Writer, "%s: wiped\n", name)
	return nil
}

// secretReader reads passphrases: from the terminal without echo, or one
// per line from stdin with --passphrase-stdin.
type secretReader struct {
	c   *cli.Context
	tty bool
	r   *bufio.Reader
	err error
}

func newSecretReader(c *cli.Context) *secretReader {
	s := &secretReader{c: c, r: bufio.NewReader(os.Stdin)}
	if !c.Bool("passphrase-stdin") {
		if isTerminal(os.Stdin) {
			s.tty = true
		} else {
			s.err = usagef("%s: stdin is not a terminal: pass --passphrase-stdin to read passphrases from it", c.Command.Name)
		}
	}
	return s
}

func (s *secretReader) read(prompt string) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.tty {
		fmt.Fprint(s.c.App.ErrWriter, prompt)
		restore, err := noEcho(os.Stdin)
		if err != nil {
			return "", fmt.Errorf("turn terminal echo off: %w", err)
		}
		defer func() {
			restore()
			fmt.Fprintln(s.c.App.ErrWriter)
		}()
	}
	line, err := s.r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) {
			return "", usagef("%s: no passphrase given (end of input)", s.c.Command.Name)
		}
		return "", fmt.Errorf("read passphrase: %w", err)
	}
	return string(bytes.TrimRight(line, "\r\n")), nil
}
