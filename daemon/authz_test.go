package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestAuthorize(t *testing.T) {
	cfg := DefaultConfig()
	cfg.OwnerUID = 1000
	cfg.SystemUID = 1001
	for _, tc := range []struct {
		name    string
		uid     int
		want    role
		allowed bool
		msg     string
	}{
		{"root may install", 0, roleAdmin, true, ""},
		{"system uid may install", 1001, roleAdmin, true, ""},
		{"owner may start", 1000, roleOwner, true, ""},
		{"owner may not install", 1000, roleAdmin, false, "uid 1000 may not install profiles"},
		{"stranger may not read status", 1234, roleOwner, false, "uid 1234 is not allowed"},
		{"unknown credentials grant nothing", -1, roleOwner, false, "cannot read the caller's credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := authorize(tc.uid, cfg, tc.want, "install profiles")
			if tc.allowed != (err == nil) {
				t.Fatalf("authorize(uid %d) = %v, want allowed=%v", tc.uid, err, tc.allowed)
			}
			if err != nil {
				if !errors.Is(err, api.ErrPermission) {
					t.Fatalf("error %v is not a permission error", err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q does not say %q", err, tc.msg)
				}
			}
		})
	}
}

func TestNoOwnerConfiguredMeansOnlyAdmins(t *testing.T) {
	cfg := DefaultConfig() // owner and system uid -1
	if roleOf(-1, cfg) != roleNone {
		t.Fatal("uid -1 must not match an unset owner")
	}
	if roleOf(1000, cfg) != roleNone {
		t.Fatal("uid 1000 has a role without an owner configured")
	}
	if roleOf(0, cfg) != roleAdmin {
		t.Fatal("root is not admin")
	}
}
