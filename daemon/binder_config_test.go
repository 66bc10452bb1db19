package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/binder"
)

// TestBinderSettingsDefaults: the limits default to binder.DefaultLimits
// and the node helpers to an unprivileged uid, and a config file sets
// each.
func TestBinderSettingsDefaults(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.binderLimits() != binder.DefaultLimits {
		t.Errorf("limits %+v, want %+v", c.binderLimits(), binder.DefaultLimits)
	}
	if c.BinderHelperUID == 0 || c.BinderHelperGID == 0 {
		t.Errorf("node helpers default to uid %d gid %d", c.BinderHelperUID, c.BinderHelperGID)
	}
	path := filepath.Join(t.TempDir(), "daemon.json")
	if err := os.WriteFile(path, []byte(`{"binder_max_services": 9, "binder_max_death_links": 8,
		"binder_max_proxied_objects": 7, "binder_helper_uid": 1234, "binder_helper_gid": 1235,
		"binder_helper_memory_max": 1048576, "binder_helper_pids_max": 0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(path, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := BinderSettings{9, 8, 7, 1234, 1235, 1 << 20, 0}
	if c.BinderSettings != want {
		t.Errorf("settings %+v, want %+v", c.BinderSettings, want)
	}
}

// TestBinderSettingsRefused: a limit below 1, a helper as root, or a
// negative cgroup limit is refused, naming the field.
func TestBinderSettingsRefused(t *testing.T) {
	for field, set := range map[string]func(*Config){
		"binder_max_services":        func(c *Config) { c.BinderMaxServices = 0 },
		"binder_max_death_links":     func(c *Config) { c.BinderMaxDeathLinks = -1 },
		"binder_max_proxied_objects": func(c *Config) { c.BinderMaxProxiedObjects = 0 },
		"binder_helper_uid":          func(c *Config) { c.BinderHelperUID = 0 },
		"binder_helper_gid":          func(c *Config) { c.BinderHelperGID = 0 },
		"binder_helper_memory_max":   func(c *Config) { c.BinderHelperMemoryMax = -1 },
		"binder_helper_pids_max":     func(c *Config) { c.BinderHelperPidsMax = -5 },
	} {
		c := DefaultConfig()
		set(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), field+" ") {
			t.Errorf("%s: %v, want a refusal naming it", field, err)
		}
	}
}
