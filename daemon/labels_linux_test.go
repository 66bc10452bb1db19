package daemon

import (
	"log/slog"
	"testing"

	"github.com/workcell/workcell/api"
)

// The labels a profile's container runs under are the config's: the
// sandbox refuses a bundle's own, so this is their only way in.
func TestContainerSpecCarriesConfigLabels(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir, cfg.RunDir = t.TempDir(), t.TempDir()
	cfg.SELinuxLabel, cfg.SELinuxMountLabel, cfg.AppArmorProfile = "u:r:workcell_app:s0", "u:object_r:workcell_file:s0", "workcell-work"
	st, err := newStore(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), store: st, profiles: map[string]*profile{}}
	p := &profile{rec: record{Name: "work", State: api.StateStopped}}
	spec, logf, err := d.containerSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	logf.Close()
	h := spec.Harden
	if h.SELinuxLabel != cfg.SELinuxLabel || h.SELinuxMountLabel != cfg.SELinuxMountLabel || h.AppArmorProfile != cfg.AppArmorProfile {
		t.Fatalf("harden options carry labels %q %q %q, want the config's", h.SELinuxLabel, h.SELinuxMountLabel, h.AppArmorProfile)
	}
}
