package daemon

import (
	"context"

	"github.com/workcell/workcell/sandbox"
)

// networkUp gives a profile's container its network namespace. Until the
// split network is wired, the container gets a fresh, empty one.
func (d *Daemon) networkUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	return nil
}

// networkDown runs after the container stopped; the namespace is kept.
func (d *Daemon) networkDown(ctx context.Context, p *profile) {}

// networkRemove deletes a removed profile's network.
func (d *Daemon) networkRemove(ctx context.Context, p *profile) error { return nil }

// networkReconcile repairs the profiles' networks at start.
func (d *Daemon) networkReconcile(ctx context.Context) error { return nil }

// networkRoutes adds the network endpoints.
func (s *Server) networkRoutes(h route) {}
