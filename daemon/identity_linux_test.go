package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckIDsRefusesSharedOrRootRanges(t *testing.T) {
	d := &Daemon{ids: map[string]idRange{
		"work":  {HostID: 1_000_000_000, Size: 65536},
		"other": {HostID: 1_000_065_536, Size: 65536},
	}}
	tests := []struct {
		name string
		r    idRange
		want string
	}{
		{"its own range", idRange{HostID: 1_000_000_000, Size: 65536}, ""},
		{"overlapping another's", idRange{HostID: 1_000_060_000, Size: 65536}, "overlaps profile other's"},
		{"host root", idRange{HostID: 0, Size: 65536}, "host root"},
		{"empty", idRange{HostID: 2_000_000_000}, "size 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.checkIDs("work", tt.r)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("checkIDs(%+v) = %v, want an error with %q", tt.r, err, tt.want)
			}
		})
	}
}

func TestDecideIdentity(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RunDir = t.TempDir()
	// TempDir is <tmp>/<test>NNN/001, both made 0700: only those two.
	for _, d := range []string{cfg.RunDir, filepath.Dir(cfg.RunDir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cfg.UserNS = "off"
	if id := decideIdentity(context.Background(), cfg); id.mode != identityUIDRange || !strings.Contains(id.why, "off") {
		t.Fatalf("userns off: %+v", id)
	}
	cfg.UserNS = "auto"
	if id := decideIdentity(context.Background(), cfg); id.mode != identityUserNS {
		t.Fatalf("auto on a kernel with user namespaces: %+v (this machine's kernel has them)", id)
	}
	hidden := filepath.Join(t.TempDir(), "private")
	os.Mkdir(hidden, 0o700)
	cfg.RunDir = filepath.Join(hidden, "run")
	if id := decideIdentity(context.Background(), cfg); id.mode != identityUIDRange || !strings.Contains(id.why, hidden+" is mode 0700") {
		t.Fatalf("run_dir under a 0700 folder: %+v, want uid-range naming %s", id, hidden)
	}
}
