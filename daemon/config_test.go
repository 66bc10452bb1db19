package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "workcelld.json")
	os.WriteFile(path, []byte(`{"state_dir":"/data/misc/workcell","owner_uid":10123,"stop_timeout":"3s"}`), 0o600)
	cfg, err := LoadConfigFile(path, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/data/misc/workcell" || cfg.OwnerUID != 10123 || time.Duration(cfg.StopTimeout) != 3*time.Second {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg.Socket != "/run/workcell/workcelld.sock" {
		t.Fatalf("socket default = %q", cfg.Socket)
	}
	os.WriteFile(path, []byte(`{"state_dri":"/x"}`), 0o600)
	if _, err := LoadConfigFile(path, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "state_dri") || !strings.Contains(err.Error(), path) {
		t.Fatalf("unknown field error = %v", err)
	}
}

// The labels a profile runs under come from the config file (the OEM's),
// and reach the container's options.
func TestConfigLabels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workcelld.json")
	os.WriteFile(path, []byte(`{"selinux_label":"u:r:workcell_app:s0","selinux_mount_label":"u:object_r:workcell_file:s0","apparmor_profile":"workcell-work"}`), 0o600)
	cfg, err := LoadConfigFile(path, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.SELinuxLabel != "u:r:workcell_app:s0" || cfg.SELinuxMountLabel != "u:object_r:workcell_file:s0" || cfg.AppArmorProfile != "workcell-work" {
		t.Fatalf("labels = %q %q %q", cfg.SELinuxLabel, cfg.SELinuxMountLabel, cfg.AppArmorProfile)
	}
	if d := DefaultConfig(); d.SELinuxLabel != "" || d.SELinuxMountLabel != "" || d.AppArmorProfile != "" {
		t.Fatalf("default labels = %q %q %q, want none", d.SELinuxLabel, d.SELinuxMountLabel, d.AppArmorProfile)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"state_dir":           func(c *Config) { c.StateDir = "rel" },
		"run_dir":             func(c *Config) { c.RunDir = "" },
		"owner_uid":           func(c *Config) { c.OwnerUID = -5 },
		"log_max_bytes":       func(c *Config) { c.LogMaxBytes = 10 },
		"cgroup_parent":       func(c *Config) { c.CgroupParent = "x" },
		"selinux_label":       func(c *Config) { c.SELinuxLabel = "workcell_app" },
		"selinux_mount_label": func(c *Config) { c.SELinuxMountLabel = "u:object_r:x:s0\n" },
		"apparmor_profile":    func(c *Config) { c.AppArmorProfile = "work profile" },
		"userns":              func(c *Config) { c.UserNS = "on" },
		"id_ranges":           func(c *Config) { c.IDRanges = 0 },
		"id_base":             func(c *Config) { c.IDBase = 0 },
		"id_base high":        func(c *Config) { c.IDBase = 4_290_000_000 },
		"firewall":            func(c *Config) { c.Firewall = "pf" },
		"pid_namespace":       func(c *Config) { c.PIDNamespace = "on" },
		"fscrypt_contents":    func(c *Config) { c.FscryptContents = "xts" },
		"dns":                 func(c *Config) { c.DNS = []string{"127.0.0.53"} },
	} {
		field, _, _ = strings.Cut(field, " ")
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("Validate with a bad %s = %v", field, err)
		}
	}
}
