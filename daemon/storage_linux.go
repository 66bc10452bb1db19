package daemon

import (
	"context"

	"github.com/workcell/workcell/sandbox"
)

// storageUp readies a profile's root for its container. Until the
// encrypted overlay lands, the container runs on the bundle's rootfs.
func (d *Daemon) storageUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	return nil
}

// storageDown releases what storageUp made once the container is gone.
func (d *Daemon) storageDown(ctx context.Context, p *profile) {}

// storageRemove deletes a removed profile's storage.
func (d *Daemon) storageRemove(ctx context.Context, p *profile) error { return nil }

// storageReconcile finishes cut-short storage work at start.
func (d *Daemon) storageReconcile(ctx context.Context) error { return nil }

// storageRoutes adds the storage endpoints.
func (s *Server) storageRoutes(h route) {}
