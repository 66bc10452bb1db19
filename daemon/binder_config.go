package daemon

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/workcell/workcell/binder"
)

// BinderSettings are the config's bounds on what a profile's apps can make
// workcelld hold through binder, and the sandbox of the node helpers that
// proxy host services (embedded in Config).
type BinderSettings struct {
	// BinderMaxServices is how many services a profile's apps may have
	// registered at once.
	BinderMaxServices int `json:"binder_max_services"`
	// BinderMaxDeathLinks is how many of a profile's binders its service
	// manager watches for death at once.
	BinderMaxDeathLinks int `json:"binder_max_death_links"`
	// BinderMaxProxiedObjects is how many host objects one node helper
	// stands for over its life (its service and the binders passed
	// through it).
	BinderMaxProxiedObjects int `json:"binder_max_proxied_objects"`
	// BinderHelperUID and BinderHelperGID are what node helpers run as
	// once they opened the binder devices: never 0. On Android, a uid
	// of the system's choosing.
	BinderHelperUID int `json:"binder_helper_uid"`
	BinderHelperGID int `json:"binder_helper_gid"`
	// BinderHelperMemoryMax and BinderHelperPidsMax limit all the node
	// helpers of one profile together (cgroup v2 memory.max, pids.max;
	// 0: no limit); a kernel without those controllers skips them.
	BinderHelperMemoryMax int64 `json:"binder_helper_memory_max"`
	BinderHelperPidsMax   int64 `json:"binder_helper_pids_max"`
}

// defaultBinderSettings are the binder defaults: binder.DefaultLimits, and
// helpers as nobody with room for a few dozen helpers' threads.
func defaultBinderSettings() BinderSettings {
	return BinderSettings{
		BinderMaxServices:       binder.DefaultLimits.Services,
		BinderMaxDeathLinks:     binder.DefaultLimits.DeathLinks,
		BinderMaxProxiedObjects: binder.DefaultLimits.ProxiedObjects,
		BinderHelperUID:         65534,
		BinderHelperGID:         65534,
		BinderHelperMemoryMax:   256 << 20,
		BinderHelperPidsMax:     512,
	}
}

// binderLimits are the limits of the config.
func (c *Config) binderLimits() binder.Limits {
	return binder.Limits{Services: c.BinderMaxServices, DeathLinks: c.BinderMaxDeathLinks, ProxiedObjects: c.BinderMaxProxiedObjects}
}

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
		return fmt.Errorf("binder_release %q: want android10, android11, android12, android13 or android14", c.BinderRelease)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"binder_max_services", c.BinderMaxServices}, {"binder_max_death_links", c.BinderMaxDeathLinks},
		{"binder_max_proxied_objects", c.BinderMaxProxiedObjects}} {
		if f.v < 1 {
			return fmt.Errorf("%s %d: must be at least 1", f.name, f.v)
		}
	}
	// Never root: a hostile parcel is parsed in the helper.
	if c.BinderHelperUID <= 0 {
		return fmt.Errorf("binder_helper_uid %d: must be an unprivileged uid, not 0", c.BinderHelperUID)
	}
	if c.BinderHelperGID <= 0 {
		return fmt.Errorf("binder_helper_gid %d: must be an unprivileged gid, not 0", c.BinderHelperGID)
	}
	if c.BinderHelperMemoryMax < 0 {
		return fmt.Errorf("binder_helper_memory_max %d: must not be negative (0: no limit)", c.BinderHelperMemoryMax)
	}
	if c.BinderHelperPidsMax < 0 {
		return fmt.Errorf("binder_helper_pids_max %d: must not be negative (0: no limit)", c.BinderHelperPidsMax)
	}
	return nil
}
