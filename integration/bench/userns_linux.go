package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/workcell/workcell/api"
)

// The user namespace rows: what a profile's own user namespace costs at
// start and per exec, against the same daemon binary with `userns: off`
// measured in the same run, interleaved round by round.
func init() {
	Register(Row{Section: "runtime", Name: "userns", Run: usernsCost})
}

// offDaemon is a second workcelld with user namespaces off, in its own
// folder, network namespace and cgroup (below the run's, so the run's
// teardown removes it).
func offDaemon(ctx context.Context, b *Bench) (*api.Client, error) {
	v, err := b.Fixture("daemon-userns-off", func() (any, error) {
		dir := filepath.Join(b.Dir, "userns-off")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		name, err := addBenchNS("host-off")
		if err != nil {
			return nil, err
		}
		d, c, err := startDaemon(ctx, b.DaemonBin, dir, b.CgroupParent+"/userns-off", "/run/netns/"+name, map[string]any{"userns": "off"})
		if err != nil {
			return nil, fmt.Errorf("workcelld with userns off: %w", err)
		}
		b.AtEnd("stop workcelld with userns off", func(context.Context) error {
			err := d.stop()
			deleteBenchNetNS(filepath.Join(dir, "run"))
			return err
		})
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*api.Client), nil
}

type usernsSide struct {
	name   string
	c      *api.Client
	warm   Samples // start from the prepared container
	cold   Samples // start from scratch
	exec   Samples
	prefix string
}

func usernsCost(ctx context.Context, b *Bench) ([]Line, error) {
	off, err := offDaemon(ctx, b)
	if err != nil {
		return nil, err
	}
	for c, want := range map[*api.Client]string{b.Client: "userns", off: "uid-range"} {
		v, err := c.Version(ctx)
		if err != nil {
			return nil, err
		}
		if v.Identity != want {
			return nil, fmt.Errorf("a daemon's identity mode is %q (%s), want %q: the row compares the two", v.Identity, v.IdentityWhy, want)
		}
	}
	bundle, err := b.Bundle("busybox")
	if err != nil {
		return nil, err
	}
	sides := []*usernsSide{{name: "userns", c: b.Client, prefix: "ns"}, {name: "off", c: off, prefix: "nsoff"}}
	for _, s := range sides {
		for _, p := range []struct {
			name      string
			noStandby bool
		}{{s.prefix + "-warm", false}, {s.prefix + "-cold", true}} {
			if _, err := s.c.Install(ctx, api.InstallRequest{Name: p.name, Bundle: bundle, NoStandby: p.noStandby}); err != nil {
				return nil, fmt.Errorf("install %s on the %s daemon: %w", p.name, s.name, err)
			}
			c, name := s.c, p.name
			b.AtEnd("remove profile "+name, func(ctx context.Context) error {
				if pr, err := c.Profile(ctx, name); err == nil && (pr.State == api.StateRunning || pr.State == api.StatePaused) {
					if _, err := c.Stop(ctx, name, api.StopRequest{TimeoutMillis: 500}); err != nil {
						return err
					}
				}
				return c.Remove(ctx, name)
			})
		}
	}
	startStop := func(s *usernsSide, name string, into *Samples) error {
		if err := into.timed(func() error { _, err := s.c.Start(ctx, name); return err }); err != nil {
			return fmt.Errorf("start %s (%s): %w", name, s.name, err)
		}
		if _, err := s.c.Stop(ctx, name, api.StopRequest{TimeoutMillis: 5000}); err != nil {
			return fmt.Errorf("stop %s (%s): %w", name, s.name, err)
		}
		return nil
	}
	n := b.N(20, 3)
	for i := -1; i < n; i++ { // round -1 is untimed: first-use costs
		for _, s := range sides {
			var w, c Samples
			if err := waitPreparedOn(ctx, s.c, s.prefix+"-warm"); err != nil {
				return nil, err
			}
			if err := startStop(s, s.prefix+"-warm", &w); err != nil {
				return nil, err
			}
			if err := startStop(s, s.prefix+"-cold", &c); err != nil {
				return nil, err
			}
			if i >= 0 {
				s.warm, s.cold = append(s.warm, w...), append(s.cold, c...)
			}
		}
	}
	for _, s := range sides {
		if err := waitPreparedOn(ctx, s.c, s.prefix+"-warm"); err != nil {
			return nil, err
		}
		if _, err := s.c.Start(ctx, s.prefix+"-warm"); err != nil {
			return nil, err
		}
	}
	m := b.N(30, 5)
	err = interleave(m, m, func(int) error { return execTrue(ctx, b, sides[0]) }, func(int) error { return execTrue(ctx, b, sides[1]) })
	if err != nil {
		return nil, err
	}
	ns, o := sides[0], sides[1]
	// The cost is the median of the per-round differences: both sides of
	// a round ran back to back, so load on the shared cores hits both.
	diff := func(a, b Samples) time.Duration {
		d := make([]time.Duration, min(len(a), len(b)))
		for i := range d {
			d[i] = a[i] - b[i]
		}
		slices.Sort(d)
		if len(d) == 0 {
			return 0
		}
		return d[len(d)/2]
	}
	const budget = 5 * time.Millisecond
	note := func(a, b Samples) string {
		return fmt.Sprintf("n=%d per side, round by round; userns costs %+.2f ms (median of the per-round differences)", len(a), float64(diff(a, b))/float64(time.Millisecond))
	}
	return []Line{
		{Name: "start (prepared), userns", Workcell: ns.warm.Median(), Peer: o.warm.Median(), PeerName: "same, userns off",
			Target: "<= +5 ms", Over: diff(ns.warm, o.warm) > budget, Note: note(ns.warm, o.warm)},
		{Name: "cold start, userns", Workcell: ns.cold.Median(), Peer: o.cold.Median(), PeerName: "same, userns off",
			Target: "<= +5 ms", Over: diff(ns.cold, o.cold) > budget, Note: note(ns.cold, o.cold) + " (pinned user+net namespaces made once, at the first start)"},
		{Name: "exec true, userns", Workcell: ns.exec.Median(), Peer: o.exec.Median(), PeerName: "same, userns off",
			Target: "<= 1.0x", Over: ns.exec.Median().Value > o.exec.Median().Value*1.1,
			Note: fmt.Sprintf("n=%d interleaved; the exec joins the container's user namespace", len(ns.exec))},
	}, nil
}

func execTrue(ctx context.Context, b *Bench, s *usernsSide) error {
	return s.exec.timed(func() error {
		code, err := s.c.Exec(ctx, s.prefix+"-warm", api.ExecRequest{Args: []string{"true"}}, api.ExecIO{})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		if err != nil {
			return fmt.Errorf("exec true in %s-warm (%s): %w", s.prefix, s.name, err)
		}
		return nil
	})
}

// waitPreparedOn is waitPrepared on another daemon.
func waitPreparedOn(ctx context.Context, c *api.Client, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := c.Profile(ctx, name)
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
