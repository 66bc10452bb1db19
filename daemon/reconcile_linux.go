package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

// reconcile makes the daemon's view match the disk and the kernel:
// half-done installs are rolled back and removals finished; a container
// that still runs is adopted (same pid, frozen or not as the kernel says);
// a profile whose init died becomes stopped with its leftovers removed;
// a container that belongs to no profile is stopped and removed.
func (d *Daemon) reconcile(ctx context.Context) error {
	// A wipe cut short is finished before anything else is looked at.
	if err := d.storageRecover(ctx); err != nil {
		return err
	}
	cleaned, err := d.store.cleanPartial()
	for _, c := range cleaned {
		d.log.Info("finished a cut-short install or removal", "path", c)
	}
	if err != nil {
		return err
	}
	names, err := d.store.list()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	var errs []error
	for _, name := range names {
		rec, err := d.store.load(name)
		if err != nil {
			// Keep the folder for recovery; the profile is not served.
			errs = append(errs, fmt.Errorf("profile %s: %w", name, err))
			d.log.Error("skip profile with a broken record", "profile", name, "err", err)
			continue
		}
		known[name] = true
		p := &profile{rec: rec}
		d.profiles[name] = p
		if rec.IDs != nil {
			d.ids[name] = *rec.IDs
		}
		if err := d.adopt(ctx, p); err != nil {
			d.log.Error("reconcile profile", "profile", name, "err", err)
		}
	}
	if err := d.reconcileConcerns(ctx); err != nil {
		return err
	}
	ids, err := d.rt.List(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if known[id] {
			continue
		}
		d.log.Warn("removing a container that belongs to no profile", "id", id)
		if c, err := d.rt.Load(ctx, id); err == nil {
			if st, _ := c.State(ctx); st != sandbox.Stopped {
				if err := c.Stop(ctx, 0); err != nil {
					errs = append(errs, fmt.Errorf("stop stray container %s: %w", id, err))
				}
			}
			c.Close()
		}
		if err := d.rt.Remove(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove stray container %s: %w", id, err))
		}
	}
	if len(errs) > 0 {
		d.log.Warn("reconcile finished with errors", "err", errors.Join(errs...))
	}
	for _, name := range d.names() {
		if p := d.get(name); p != nil {
			d.kickStandby(p)
		}
	}
	return nil
}

// adopt takes over the container of one profile if it still runs.
func (d *Daemon) adopt(ctx context.Context, p *profile) error {
	name := p.rec.Name
	c, err := d.rt.Load(ctx, name)
	if errors.Is(err, sandbox.ErrNotExist) {
		if p.rec.State == api.StateRunning || p.rec.State == api.StatePaused {
			return d.setState(p, api.StateStopped, 0, "init gone while workcelld was down")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("load container: %w", err)
	}
	st, err := c.State(ctx)
	if err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	switch st {
	case sandbox.Running, sandbox.Paused:
		p.ctr = c
		p.gen++
		want := api.StateRunning
		if st == sandbox.Paused {
			want = api.StatePaused
		}
		if p.rec.State != want || p.rec.Pid != c.Pid() {
			if err := d.setState(p, want, c.Pid(), "adopted"); err != nil {
				return err
			}
		}
		d.watch(p, c)
		d.log.Info("adopted running profile", "profile", name, "pid", c.Pid(), "state", want)
		return nil
	}
	// Its init is gone, or it is a prepared container of an earlier
	// daemon (a fresh one is prepared after reconcile): clean up.
	defer c.Close()
	if err := d.rt.Remove(ctx, name); err != nil {
		if stopErr := c.Stop(ctx, 0); stopErr != nil {
			return fmt.Errorf("remove leftovers: %w", errors.Join(err, stopErr))
		}
	}
	d.release(ctx, p)
	if p.rec.State != api.StateStopped {
		return d.setState(p, api.StateStopped, 0, "init died while workcelld was down")
	}
	return nil
}
