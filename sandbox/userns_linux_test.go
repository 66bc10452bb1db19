package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPinUserNSOwnsItsNetNS(t *testing.T) {
	requireRoot(t)
	if err := ProbeUserNS(context.Background()); err != nil {
		t.Fatalf("user namespaces are needed here: %v", err)
	}
	dir := t.TempDir()
	user, net := filepath.Join(dir, "user"), filepath.Join(dir, "net")
	m := IDMap{HostID: 1_900_000_000, Size: 65536}
	if err := PinUserNS(context.Background(), m, user, net); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnpinNS(user); UnpinNS(net) })
	f, err := os.Open(net)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !NetNSOwnedBy(int(f.Fd()), user) {
		t.Fatal("the pinned network namespace is not owned by the pinned user namespace")
	}
	if NetNSOwnedByOurs(int(f.Fd())) {
		t.Fatal("the pinned network namespace is owned by the host's user namespace")
	}
	// The mapping as a process that joins the pin sees it.
	out, err := exec.Command("nsenter", "--user="+user, "cat", "/proc/self/uid_map").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 3 || got[0] != "0" || got[1] != "1900000000" || got[2] != "65536" {
		t.Fatalf("uid_map of the pin = %q, want 0 1900000000 65536", out)
	}
	// Pinning again replaces the pin: a fresh pair.
	var before unix.Stat_t
	unix.Stat(user, &before)
	if err := PinUserNS(context.Background(), m, user, net); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	unix.Stat(user, &after)
	if before.Ino == after.Ino {
		t.Fatal("a second pin kept the old user namespace")
	}
}
