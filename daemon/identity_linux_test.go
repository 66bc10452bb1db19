package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/workcell/workcell/sandbox"
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

// TestDecideModesFromProbes: the decision table of the kernel probes and
// the config, with the probes' answers faked.
func TestDecideModesFromProbes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RunDir = "/"
	fail := func(msg string) func(context.Context) error {
		return func(context.Context) error { return errors.New(msg) }
	}
	ok := func(context.Context) error { return nil }
	modern := func(context.Context) ([]string, error) { return sandbox.ProcModern, nil }
	legacy := func(context.Context) ([]string, error) {
		return sandbox.ProcLegacy, errors.New("procfs refuses hidepid=invisible")
	}
	tests := []struct {
		name          string
		userns, pidns string // config
		probes        kernelProbes
		mode          identityMode
		pid           pidMode
		proc          []string
		why           []string // in why + pid why
	}{
		{"everything there", "auto", "auto", kernelProbes{ok, ok, modern, ok}, identityUserNS, pidPrivate, nil, []string{"CLONE_NEWUSER", "CLONE_NEWPID"}},
		{"GKI: no pid, no user namespaces", "auto", "auto", kernelProbes{fail("no CONFIG_USER_NS"), fail("no CONFIG_PID_NS"), modern, fail("no mqueue filesystem")},
			identityUIDRange, pidShared, sandbox.ProcModern, []string{"no CONFIG_USER_NS", "no CONFIG_PID_NS", "hidepid=invisible", "kill by cgroup", "non-root"}},
		{"no pid namespaces, old kernel, user namespaces", "auto", "auto", kernelProbes{ok, fail("EINVAL"), legacy, ok},
			identityUIDRange, pidShared, sandbox.ProcLegacy, []string{"EINVAL", "hidepid=2", "the host's too", "user namespace cannot mount"}},
		{"pid namespace off, user namespaces there", "auto", "off", kernelProbes{ok, ok, modern, ok},
			identityUIDRange, pidShared, sandbox.ProcModern, []string{"pid_namespace is \"off\"", "user namespace cannot mount"}},
		{"no user namespaces only", "auto", "auto", kernelProbes{fail("max_user_namespaces is 0"), ok, modern, ok},
			identityUIDRange, pidPrivate, nil, []string{"max_user_namespaces is 0", "CLONE_NEWPID"}},
		{"both off in the config", "off", "off", kernelProbes{ok, ok, modern, ok},
			identityUIDRange, pidShared, sandbox.ProcModern, []string{"userns is \"off\"", "pid_namespace is \"off\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.UserNS, c.PIDNamespace = tt.userns, tt.pidns
			id := decide(context.Background(), c, tt.probes)
			if wantNoMq := strings.HasPrefix(tt.name, "GKI"); (id.noMqueue != "") != wantNoMq {
				t.Errorf("noMqueue = %q, want it set: %v", id.noMqueue, wantNoMq)
			}
			if id.mode != tt.mode || id.pid != tt.pid || !slices.Equal(id.proc, tt.proc) {
				t.Fatalf("decide = %s, %s, %v; want %s, %s, %v", id.mode, id.pid, id.proc, tt.mode, tt.pid, tt.proc)
			}
			for _, w := range tt.why {
				if !strings.Contains(id.why+" | "+id.pidWhy, w) {
					t.Errorf("why %q | %q does not say %q", id.why, id.pidWhy, w)
				}
			}
		})
	}
}

func TestIdentityConfigRefusesTrustedUIDsInRanges(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"owner uid in a range", func(c *Config) { c.OwnerUID = DefaultIDBase + 5 }, "owner_uid"},
		{"system uid in a range", func(c *Config) { c.SystemUID = DefaultIDBase + IDRangeSize*3 }, "system_uid"},
		{"ranges among system users", func(c *Config) { c.IDBase = 1000 }, "id_base 1000"},
		{"bad pid_namespace", func(c *Config) { c.PIDNamespace = "on" }, "pid_namespace"},
		{"Android owner below the ranges", func(c *Config) { c.OwnerUID = 10123 }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.validateIdentity()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validateIdentity = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestCheckIDsRefusesTrustedUIDs(t *testing.T) {
	d := &Daemon{ids: map[string]idRange{}}
	d.cfg.OwnerUID, d.cfg.SystemUID = 1_000_000_100, -1
	if err := d.checkIDs("work", idRange{HostID: 1_000_000_000, Size: 65536}); err == nil || !strings.Contains(err.Error(), "owner_uid") {
		t.Fatalf("a recorded range holding the owner's uid: %v", err)
	}
	if err := d.checkIDs("work", idRange{HostID: 5000, Size: 100}); err == nil || !strings.Contains(err.Error(), "below 10000") {
		t.Fatalf("a recorded range among system users: %v", err)
	}
}
