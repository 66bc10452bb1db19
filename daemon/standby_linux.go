package daemon

import (
	"context"
	"fmt"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

// A stopped, unlocked profile keeps a prepared container: the sandbox has
// made its namespaces, cgroups, mounts and seccomp filter, and its init
// waits just before the user's process (libcontainer's "created"). Start
// then only lets init exec, which turns a start of tens of milliseconds
// (mostly libcontainer's init: mounts and the seccomp filter) into one of a
// few. The price is one idle init process while the profile is stopped.
//
// Whatever would make the prepared container differ from a fresh one
// drops it: lock, wipe and remove (its overlay must go), a network change
// (new rules, devices or capabilities), a cold start on request. A daemon
// that restarts discards prepared containers it finds and prepares anew.

// kickStandby prepares the profile's container in the background, once
// the caller has released the profile. It does nothing unless the
// profile is then stopped, unlocked and without one.
func (d *Daemon) kickStandby(p *profile) {
	if !d.cfg.Standby || d.closing.Load() {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		p.mu.Lock()
		defer p.mu.Unlock()
		if d.closing.Load() || d.ctx.Err() != nil || d.get(p.rec.Name) != p {
			return
		}
		if p.rec.NoStandby || p.rec.State != api.StateStopped || p.ctr != nil || p.standby != nil || d.storageUsable() != nil {
			return
		}
		if err := d.prepareStandby(d.ctx, p); err != nil {
			d.log.Warn("could not prepare the profile's container; start will make it", "profile", p.rec.Name, "err", err)
		}
	}()
}

// prepareStandby makes the prepared container. p.mu is held.
func (d *Daemon) prepareStandby(ctx context.Context, p *profile) error {
	spec, logf, err := d.containerSpec(p)
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := d.prepare(ctx, p, &spec.Harden); err != nil {
		return err
	}
	c, err := d.rt.Prepare(ctx, spec)
	if err != nil {
		d.release(ctx, p)
		return err
	}
	p.standby = c
	p.standbyTun = p.tun
	d.log.Debug("container prepared", "profile", p.rec.Name, "pid", c.Pid())
	return nil
}

// beginStandby starts the user's process in the prepared container, if
// there is one; (nil, nil) when there is none. p.mu is held.
func (d *Daemon) beginStandby(ctx context.Context, p *profile) (*sandbox.Container, error) {
	c := p.standby
	if c == nil {
		return nil, nil
	}
	p.standby = nil
	// The network is made to match what is wanted at every start (someone
	// may have flushed the rules since the container was prepared).
	if !d.networkHealthy(ctx, p) {
		// Its namespace may be the one a repair replaces: discard it and
		// let the start build the network and the container anew.
		d.log.Info("network changed since the container was prepared; starting from scratch", "profile", p.rec.Name)
		d.discardStandby(ctx, p, c)
		return nil, nil
	}
	p.tun = p.standbyTun
	if err := c.Begin(ctx); err != nil {
		d.discardStandby(ctx, p, c)
		return nil, fmt.Errorf("begin prepared container: %w", err)
	}
	return c, nil
}

// dropStandby discards the prepared container, if any. p.mu is held.
func (d *Daemon) dropStandby(ctx context.Context, p *profile) {
	if c := p.standby; c != nil {
		p.standby = nil
		d.discardStandby(ctx, p, c)
	}
}

func (d *Daemon) discardStandby(ctx context.Context, p *profile, c *sandbox.Container) {
	if err := c.Stop(ctx, 0); err != nil {
		d.log.Warn("discard prepared container", "profile", p.rec.Name, "err", err)
	}
	c.Close()
	d.release(ctx, p)
}
