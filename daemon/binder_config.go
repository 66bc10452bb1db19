package daemon

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/workcell/workcell/binder"
)

// validateBinder checks the binder settings: absolute device paths, each
// once and none of them the host's own device, and a release the binder
// package speaks.
func (c *Config) validateBinder() error {
	if c.BinderHostDevice == "" || !filepath.IsAbs(c.BinderHostDevice) {
		return fmt.Errorf("binder_host_device %q: must be an absolute path", c.BinderHostDevice)
	}
	for i, dev := range c.BinderDevices {
		switch {
		case !filepath.IsAbs(dev):
			return fmt.Errorf("binder_devices[%d] %q: must be an absolute path", i, dev)
		case filepath.Clean(dev) == filepath.Clean(c.BinderHostDevice):
			return fmt.Errorf("binder_devices[%d] %q: is the host's binder_host_device; a profile needs a context of its own", i, dev)
		case slices.Contains(c.BinderDevices[:i], dev):
			return fmt.Errorf("binder_devices[%d] %q: listed twice", i, dev)
		}
	}
	if _, err := binder.ParseRelease(c.BinderRelease); err != nil {
		return fmt.Errorf("binder_release %q: want android10, android11 or android14", c.BinderRelease)
	}
	return nil
}
