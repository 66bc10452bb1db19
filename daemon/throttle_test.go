package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPassphraseBackoffTable(t *testing.T) {
	pol := DefaultConfig().Passphrase
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, 0}, {4, 0}, // the free tries
		{5, 30 * time.Second},
		{6, time.Minute},
		{7, 2 * time.Minute},
		{10, 16 * time.Minute},
		{16, 30 * time.Second << 11}, // 17 h 4 min
		{17, 24 * time.Hour},         // the cap
		{1000, 24 * time.Hour},
	} {
		if got := pol.delay(tc.failures); got != tc.want {
			t.Errorf("delay after %d failures = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestPassphraseWaitWithAFakeClock(t *testing.T) {
	pol := DefaultConfig().Passphrase
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		tries passTries
		now   time.Time
		want  time.Duration
	}{
		{"free tries left", passTries{Failures: 4, Last: t0}, t0, 0},
		{"just throttled", passTries{Failures: 5, Last: t0}, t0, 30 * time.Second},
		{"part way", passTries{Failures: 5, Last: t0}, t0.Add(10 * time.Second), 20 * time.Second},
		{"over", passTries{Failures: 5, Last: t0}, t0.Add(30 * time.Second), 0},
		{"doubled", passTries{Failures: 6, Last: t0}, t0.Add(59 * time.Second), time.Second},
		{"clock set back a day", passTries{Failures: 5, Last: t0}, t0.Add(-24 * time.Hour), 30 * time.Second},
	} {
		if got := tc.tries.wait(pol, tc.now); got != tc.want {
			t.Errorf("%s: wait = %s, want %s", tc.name, got, tc.want)
		}
		if at := tc.tries.retryAt(pol, tc.now); (tc.want == 0) != at.IsZero() || (!at.IsZero() && !at.Equal(tc.now.Add(tc.want))) {
			t.Errorf("%s: retryAt = %v", tc.name, at)
		}
	}
}

func TestPassphraseTriesFile(t *testing.T) {
	pol := DefaultConfig().Passphrase
	path := filepath.Join(t.TempDir(), passTriesFile)
	if s, err := loadPassTries(path, pol); err != nil || s.Failures != 0 {
		t.Fatalf("no file: %+v %v", s, err)
	}
	want := passTries{Failures: 7, Last: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	if err := savePassTries(path, want); err != nil {
		t.Fatal(err)
	}
	if s, err := loadPassTries(path, pol); err != nil || s != want {
		t.Fatalf("read back %+v %v, want %+v", s, err, want)
	}
	// A damaged file gains nothing: the free tries count as used.
	if err := savePassTries(path, passTries{}); err != nil {
		t.Fatal(err)
	}
	if s, _ := loadPassTries(path, pol); s.Failures != 0 {
		t.Fatalf("after reset: %+v", s)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := loadPassTries(path, pol); err == nil || s.Failures != pol.FreeTries || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged: %+v %v", s, err)
	}
}

func TestServerConfigNamesField(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"server.read_timeout":      func(c *Config) { c.Server.ReadTimeout = 0 },
		"server.conn_max_admin":    func(c *Config) { c.Server.ConnMaxAdmin = 0 },
		"server.conn_max_per_uid":  func(c *Config) { c.Server.ConnMaxPerUID = c.Server.ConnMax + 1 },
		"server.conn_max_stranger": func(c *Config) { c.Server.ConnMaxStranger = -1 },
		"stop_timeout_max":         func(c *Config) { c.StopTimeoutMax = 0 },
		"stop_timeout":             func(c *Config) { c.StopTimeout = c.StopTimeoutMax + 1 },
		"passphrase.free_tries":    func(c *Config) { c.Passphrase.FreeTries = 0 },
		"passphrase.backoff_max":   func(c *Config) { c.Passphrase.BackoffMax = 1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("Validate with a bad %s = %v", field, err)
		}
	}
}
