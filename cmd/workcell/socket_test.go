package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestDefaultSocketFollowsWhatIsThere(t *testing.T) {
	for _, tc := range []struct {
		name  string
		there []string
		want  string
	}{
		{"android: init made /dev/socket/workcelld", []string{api.AndroidSocket}, api.AndroidSocket},
		{"android wins over a leftover linux socket", []string{api.AndroidSocket, api.DefaultSocket}, api.AndroidSocket},
		{"linux phone", []string{api.DefaultSocket}, api.DefaultSocket},
		{"no daemon yet: the linux default", nil, api.DefaultSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exists := func(p string) bool {
				for _, q := range tc.there {
					if p == q {
						return true
					}
				}
				return false
			}
			if got := defaultSocket(exists); got != tc.want {
				t.Errorf("defaultSocket = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSocketExists(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "sock")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !socketExists(f) {
		t.Errorf("%s exists but socketExists says no", f)
	}
	if socketExists(filepath.Join(dir, "none")) {
		t.Errorf("a missing path counts as there")
	}
}

// The --socket flag and WORKCELL_SOCKET still win over the probe: the
// error names the socket they gave.
func TestSocketOverrides(t *testing.T) {
	dir := t.TempDir()
	flagSock := filepath.Join(dir, "flag.sock")
	envSock := filepath.Join(dir, "env.sock")
	t.Setenv("WORKCELL_SOCKET", envSock)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"workcell", "--socket", flagSock, "version"}, flagSock},
		{[]string{"workcell", "version"}, envSock},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), tc.args, &out, &errb); code == 0 {
			t.Fatalf("%v: succeeded without a daemon", tc.args)
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q does not name %s", tc.args, errb.String(), tc.want)
		}
	}
}
