package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/workcell/workcell/api"
)

// The runtime section: issue 2's budget for the daemon and its sandbox.
func init() {
	Register(Row{Section: "runtime", Name: "cold-start", Run: coldStart})
	Register(Row{Section: "runtime", Name: "offon", Run: offOn})
	Register(Row{Section: "runtime", Name: "exec", Run: execRoundTrip})
	Register(Row{Section: "runtime", Name: "idle", Run: idleDaemon})
}

// sleeperArgs is a one-process init: the profile of the off/on, exec and
// idle rows has exactly the processes the row says.
var sleeperArgs = []string{"sleep", "1000000000"}

// pair is a running workcell profile and a running runc container made
// from the same one-process bundle.
type pair struct {
	profile string
	runcID  string
}

// sleepers returns the shared pair, starting it on first use.
func sleepers(ctx context.Context, b *Bench) (*pair, error) {
	v, err := b.Fixture("sleepers", func() (any, error) {
		bundle, err := b.Bundle("sleeper", sleeperArgs...)
		if err != nil {
			return nil, err
		}
		p := &pair{profile: "sleeper"}
		if err := b.Profile(ctx, p.profile, bundle); err != nil {
			return nil, err
		}
		if _, err := b.Client.Start(ctx, p.profile); err != nil {
			return nil, fmt.Errorf("start profile %s: %w", p.profile, err)
		}
		id, dir, err := b.Runc.NewBundle(bundle, "sleeper")
		if err != nil {
			return nil, err
		}
		if err := b.Runc.Run(ctx, id, dir); err != nil {
			return nil, err
		}
		p.runcID = id
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pair), nil
}

// coldStart: API Start of the default busybox bundle (returns once init's
// user process runs), from the prepared container a stopped profile keeps
// and from scratch (a profile installed with no_standby), vs `runc run -d`
// of the same hardened spec vs a bare `unshare -fpmuin true`, interleaved.
// Stops, deletes and the wait for the next prepared container are not
// timed.
func coldStart(ctx context.Context, b *Bench) ([]Line, error) {
	bundle, err := b.Bundle("busybox")
	if err != nil {
		return nil, err
	}
	const warm, cold = "warm", "cold"
	if err := b.Profile(ctx, warm, bundle); err != nil {
		return nil, err
	}
	if _, err := b.Client.Install(ctx, api.InstallRequest{Name: cold, Bundle: bundle, NoStandby: true}); err != nil {
		return nil, fmt.Errorf("install profile %s: %w", cold, err)
	}
	b.AtEnd("remove profile "+cold, func(ctx context.Context) error { return b.Client.Remove(ctx, cold) })
	n := b.N(20, 3)
	var prepared, scratch, rc, floor Samples
	var stopTime Samples
	startStop := func(name string, into *Samples) error {
		if err := into.timed(func() error { _, err := b.Client.Start(ctx, name); return err }); err != nil {
			return fmt.Errorf("start profile %s: %w", name, err)
		}
		if err := stopTime.timed(func() error {
			_, err := b.Client.Stop(ctx, name, api.StopRequest{TimeoutMillis: 5000})
			return err
		}); err != nil {
			return fmt.Errorf("stop profile %s: %w", name, err)
		}
		return nil
	}
	iter := func(record bool) error {
		var w, c, r, f Samples
		if err := waitPrepared(ctx, b, warm); err != nil {
			return err
		}
		if err := startStop(warm, &w); err != nil {
			return err
		}
		if err := startStop(cold, &c); err != nil {
			return err
		}
		id, dir, err := b.Runc.NewBundle(bundle, "cold")
		if err != nil {
			return err
		}
		if err := r.timed(func() error { return b.Runc.Run(ctx, id, dir) }); err != nil {
			return err
		}
		if err := b.Runc.Delete(ctx, id); err != nil {
			return err
		}
		if err := f.timed(func() error {
			out, err := exec.CommandContext(ctx, "unshare", "-fpmuin", "true").CombinedOutput()
			if err != nil {
				return fmt.Errorf("unshare -fpmuin true: %w: %s", err, out)
			}
			return nil
		}); err != nil {
			return err
		}
		if record {
			prepared, scratch = append(prepared, w...), append(scratch, c...)
			rc, floor = append(rc, r...), append(floor, f...)
		}
		return nil
	}
	// One untimed round first: page cache and the daemon's first-use costs.
	if err := iter(false); err != nil {
		return nil, err
	}
	for range n {
		if err := iter(true); err != nil {
			return nil, err
		}
	}
	ratio := prepared.Median().Value / rc.Median().Value
	return []Line{
		{Name: "start (prepared)", Workcell: prepared.Median(), Peer: rc.Median(), PeerName: "runc run -d",
			Target: "<= 0.5x runc", Over: ratio > 0.5,
			Note: fmt.Sprintf("n=%d interleaved; the stopped profile's prepared container (default); p99 %s", len(prepared), prepared.Quantile(0.99))},
		{Name: "cold start (from scratch)", Workcell: scratch.Median(), Peer: rc.Median(), PeerName: "runc run -d",
			Note: fmt.Sprintf("profile installed with no_standby; same hardened spec as the peer; API stop (untimed) median %s", stopTime.Median())},
		{Name: "cold start vs floor", Workcell: scratch.Median(), Peer: floor.Median(), PeerName: "unshare -fpmuin true",
			Note: "kernel floor of the namespaces alone"},
	}, nil
}

// waitPrepared waits (untimed) until a stopped profile's container is
// prepared again after a stop.
func waitPrepared(ctx context.Context, b *Bench, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := b.Client.Profile(ctx, name)
		if err != nil {
			return err
		}
		if p.Standby {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("profile %s: no prepared container after 10s", name)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// offOn: Off then On through the API, timed together, at 1 and 100
// processes, vs `runc pause` + `runc resume` with as many processes.
func offOn(ctx context.Context, b *Bench) ([]Line, error) {
	p, err := sleepers(ctx, b)
	if err != nil {
		return nil, err
	}
	var lines []Line
	for _, procs := range []int{1, 100} {
		wcPids, rcPids, err := fillTo(ctx, b, p, procs)
		if err != nil {
			return lines, err
		}
		// The freeze must be real: check the cgroup once, untimed.
		var frozen string
		if _, err := b.Client.Off(ctx, p.profile); err != nil {
			return lines, fmt.Errorf("off %s: %w", p.profile, err)
		}
		frozen, err = freezerState(b.CgroupParent + "/" + p.profile)
		if err != nil {
			frozen = "unreadable: " + err.Error()
		}
		if _, err := b.Client.On(ctx, p.profile); err != nil {
			return lines, fmt.Errorf("on %s: %w", p.profile, err)
		}

		// The round trip is timed as two halves back to back, so the note
		// can say which half costs what.
		var wc, rc, offs, ons Samples
		err = interleave(b.N(200, 20), b.N(50, 5), func(int) error {
			if err := offs.timed(func() error { _, err := b.Client.Off(ctx, p.profile); return err }); err != nil {
				return fmt.Errorf("off %s: %w", p.profile, err)
			}
			if err := ons.timed(func() error { _, err := b.Client.On(ctx, p.profile); return err }); err != nil {
				return fmt.Errorf("on %s: %w", p.profile, err)
			}
			wc = append(wc, offs[len(offs)-1]+ons[len(ons)-1])
			return nil
		}, func(int) error {
			return rc.timed(func() error {
				if err := b.Runc.Cmd(ctx, "pause", p.runcID); err != nil {
					return err
				}
				return b.Runc.Cmd(ctx, "resume", p.runcID)
			})
		})
		if err != nil {
			return lines, err
		}
		l := Line{
			Name:     fmt.Sprintf("off+on, %d proc", procs),
			Workcell: wc.Median(), Peer: rc.Median(), PeerName: "runc pause + resume",
			WorkcellP99: wc.Quantile(0.99), PeerP99: rc.Quantile(0.99),
			Note: fmt.Sprintf("n=%d/%d; pids %d/%d; Off %s + On %s (medians); cgroup after Off: %s",
				len(wc), len(rc), wcPids, rcPids, offs.Median(), ons.Median(), frozen),
		}
		if frozen != "FROZEN" {
			l.Note += " (NOT FROZEN)"
		}
		if procs == 100 {
			l.Name += "s"
			l.Target = "p99 <= 2 ms"
			l.Over = l.WorkcellP99.Value > 2
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// fillTo brings both sides of the pair to procs processes by starting
// detached sleeps (children of a shell that exits, so they end up under
// the container's init), and returns the counts the kernel reports:
// the daemon's Stats for workcell, pids.current for runc.
func fillTo(ctx context.Context, b *Bench, p *pair, procs int) (wcPids, rcPids int, err error) {
	st, err := b.Client.Stats(ctx, p.profile)
	if err != nil {
		return 0, 0, fmt.Errorf("stats %s: %w", p.profile, err)
	}
	if extra := procs - int(st.Pids); extra > 0 {
		args := spawnArgs(extra)
		code, err := b.Client.Exec(ctx, p.profile, api.ExecRequest{Args: args}, api.ExecIO{})
		if err != nil || code != 0 {
			return 0, 0, fmt.Errorf("exec spawn in %s: exit %d: %v", p.profile, code, err)
		}
	}
	rcPids, err = pidsCurrent(b.Runc.Cgroup(p.runcID))
	if err != nil {
		return 0, 0, err
	}
	if extra := procs - rcPids; extra > 0 {
		if err := b.Runc.Cmd(ctx, append([]string{"exec", p.runcID}, spawnArgs(extra)...)...); err != nil {
			return 0, 0, err
		}
	}
	// The sleeps are counted once the shells that started them are gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := b.Client.Stats(ctx, p.profile)
		if err != nil {
			return 0, 0, fmt.Errorf("stats %s: %w", p.profile, err)
		}
		rcPids, err = pidsCurrent(b.Runc.Cgroup(p.runcID))
		if err != nil {
			return 0, 0, err
		}
		wcPids = int(st.Pids)
		if (wcPids == procs && rcPids == procs) || time.Now().After(deadline) {
			return wcPids, rcPids, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func spawnArgs(n int) []string {
	return []string{"sh", "-c", fmt.Sprintf("for i in $(seq %d); do sleep 100000 >/dev/null 2>&1 & done", n)}
}

// execRoundTrip: Client.Exec of `true` (stdio made by the daemon and
// relayed as frames, nothing to relay but the exit) vs `runc exec` of the
// same, and the relay's throughput: 8 MiB of stdout read by the caller vs
// runc exec writing into a pipe the bench reads.
func execRoundTrip(ctx context.Context, b *Bench) ([]Line, error) {
	p, err := sleepers(ctx, b)
	if err != nil {
		return nil, err
	}
	var wc, rc Samples
	n := b.N(30, 5)
	err = interleave(n, n, func(int) error {
		return wc.timed(func() error {
			code, err := b.Client.Exec(ctx, p.profile, api.ExecRequest{Args: []string{"true"}}, api.ExecIO{})
			if err == nil && code != 0 {
				err = fmt.Errorf("exit code %d", code)
			}
			if err != nil {
				return fmt.Errorf("exec true in %s: %w", p.profile, err)
			}
			return nil
		})
	}, func(int) error {
		return rc.timed(func() error { return b.Runc.Cmd(ctx, "exec", p.runcID, "true") })
	})
	if err != nil {
		return nil, err
	}
	const big = 8 << 20
	bigArgs := []string{"head", "-c", strconv.Itoa(big), "/dev/zero"}
	var wcBig, rcBig Samples
	nb := b.N(10, 3)
	err = interleave(nb, nb, func(int) error {
		return wcBig.timed(func() error {
			var cw countWriter
			code, err := b.Client.Exec(ctx, p.profile, api.ExecRequest{Args: bigArgs}, api.ExecIO{Stdout: &cw})
			if err == nil && (code != 0 || cw.n != big) {
				err = fmt.Errorf("exit code %d, %d bytes of %d", code, cw.n, big)
			}
			if err != nil {
				return fmt.Errorf("exec head in %s: %w", p.profile, err)
			}
			return nil
		})
	}, func(int) error {
		return rcBig.timed(func() error {
			var cw countWriter
			cmd := exec.CommandContext(ctx, b.Runc.Path, append([]string{"--root", b.Runc.Root, "exec", p.runcID}, bigArgs...)...)
			cmd.Stdout = &cw
			if err := cmd.Run(); err != nil || cw.n != big {
				return fmt.Errorf("runc exec head: %v, %d bytes of %d", err, cw.n, big)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	st, _ := b.Client.Stats(ctx, p.profile)
	ratio := func(a, b Samples) float64 {
		if b.Median().Value == 0 {
			return 0
		}
		return a.Median().Value / b.Median().Value
	}
	return []Line{
		{Name: "exec round trip (relay)", Workcell: wc.Median(), Peer: rc.Median(), PeerName: "runc exec",
			Target: "<= 1.0x", Over: ratio(wc, rc) > 1.0,
			Note: fmt.Sprintf("`true`; n=%d interleaved; %d pids in the profile", len(wc), st.Pids)},
		{Name: "exec 8 MiB stdout (relay)", Workcell: wcBig.Median(), Peer: rcBig.Median(), PeerName: "runc exec into a pipe",
			Note: fmt.Sprintf("n=%d interleaved; %.0f MiB/s through the relay", len(wcBig), 8/(wcBig.Median().Value/1000))},
	}, nil
}

// countWriter counts what it is given.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// idleDaemon: with a profile running and nobody calling, the daemon's
// resident set, CPU time and threads over a quiet window. No peer.
func idleDaemon(ctx context.Context, b *Bench) ([]Line, error) {
	if _, err := sleepers(ctx, b); err != nil {
		return nil, err
	}
	window := 10 * time.Second
	if b.Quick {
		window = 2 * time.Second
	}
	// Let the last calls' goroutines and connections settle first.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	pid := b.Daemon.Pid
	before, err := readProcCPU(pid)
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := readProcCPU(pid)
	if err != nil {
		return nil, err
	}
	rss, threads, err := procStatus(pid)
	if err != nil {
		return nil, err
	}
	cpu := time.Duration(after.ticks-before.ticks) * time.Second / userHZ
	return []Line{
		{Name: "idle daemon RSS", Workcell: MiB(rss), Target: "<= 25 MiB", Over: rss > 25<<20,
			Note: "no peer; VmRSS with one profile running"},
		{Name: fmt.Sprintf("idle daemon CPU, %s", window), Workcell: Millis(cpu), Target: "0 ms", Over: after.ticks != before.ticks,
			Note: fmt.Sprintf("no peer; utime+stime; schedstat %s, %d wakeups",
				time.Duration(after.runNanos-before.runNanos).Round(time.Microsecond), after.switches-before.switches)},
		{Name: "idle daemon threads", Workcell: Count(float64(threads)), Note: "no peer"},
	}, nil
}
