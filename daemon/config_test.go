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

func TestConfigValidateNamesField(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"state_dir":     func(c *Config) { c.StateDir = "rel" },
		"run_dir":       func(c *Config) { c.RunDir = "" },
		"owner_uid":     func(c *Config) { c.OwnerUID = -5 },
		"log_max_bytes": func(c *Config) { c.LogMaxBytes = 10 },
		"cgroup_parent": func(c *Config) { c.CgroupParent = "x" },
		"userns":        func(c *Config) { c.UserNS = "on" },
		"id_ranges":     func(c *Config) { c.IDRanges = 0 },
		"id_base":       func(c *Config) { c.IDBase = 0 },
		"id_base high":  func(c *Config) { c.IDBase = 4_290_000_000 },
	} {
		field, _, _ = strings.Cut(field, " ")
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("Validate with a bad %s = %v", field, err)
		}
	}
}
