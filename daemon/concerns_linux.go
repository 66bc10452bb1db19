package daemon

import (
	"context"
	"errors"

	"github.com/workcell/workcell/sandbox"
)

// The concern packages plug into a profile's life here, each through its
// own file: storage (storage_linux.go) gives the container its root,
// network (network_linux.go) its network namespace, binder
// (binder_linux.go) its binder context. The order is fixed: storage,
// network, binder on the way up, the reverse on the way down.

// prepare readies what a profile's container runs on and fills the
// trusted parts of its hardening options. On error nothing is left.
func (d *Daemon) prepare(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	// Who work's root is comes first: storage and network make what they
	// make for that identity.
	if err := d.identityUp(ctx, p, h); err != nil {
		return err
	}
	if err := d.storageUp(ctx, p, h); err != nil {
		return err
	}
	if err := d.networkUp(ctx, p, h); err != nil {
		d.storageDown(ctx, p)
		return err
	}
	if err := d.binderUp(ctx, p, h); err != nil {
		d.networkDown(ctx, p)
		d.storageDown(ctx, p)
		return err
	}
	if err := d.identityDevices(ctx, p, h); err != nil {
		d.release(ctx, p)
		return err
	}
	return nil
}

// release undoes prepare after the container has stopped. What a stopped
// profile keeps (its network namespace, its unlocked key) stays.
func (d *Daemon) release(ctx context.Context, p *profile) {
	d.identityDown(ctx, p)
	d.binderDown(ctx, p)
	d.networkDown(ctx, p)
	d.storageDown(ctx, p)
}

// purge deletes what the concerns hold for a profile being removed.
func (d *Daemon) purge(ctx context.Context, p *profile) error {
	return errors.Join(d.binderRemove(ctx, p), d.networkRemove(ctx, p), d.identityRemove(ctx, p), d.storageRemove(ctx, p))
}

// reconcileConcerns runs at start, after the records are loaded and
// before containers are adopted.
func (d *Daemon) reconcileConcerns(ctx context.Context) error {
	if err := d.storageReconcile(ctx); err != nil {
		return err
	}
	if err := d.networkReconcile(ctx); err != nil {
		return err
	}
	d.identityReconcile(ctx)
	return d.binderReconcile(ctx)
}
