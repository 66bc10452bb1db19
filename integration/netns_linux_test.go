package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Every workcelld under test runs in a network namespace of its own (see
// newDaemon): its "host" side, the profiles' veths and the workcell
// nftables table live there, never in the machine's own namespace, and
// deleting that namespace is the cleanup.

var netnsNo atomic.Int32

// newNetNS makes a fresh named network namespace with loopback up and
// deletes it when the test ends.
func newNetNS(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid()%100000, netnsNo.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { deleteNetNS(name) })
	ipIn(t, name, "link", "set", "lo", "up")
	return name
}

func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// deleteNetNS deletes a named namespace; an absent one is fine.
func deleteNetNS(name string) {
	if name != "" {
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// ipIn runs `ip -n NS args...` and fails the test if it fails.
func ipIn(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
	}
}

// unpinAll unmounts and removes the namespaces pinned in dir (a daemon's
// <run-dir>/netns) that a failed test left behind.
func unpinAll(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		for unix.Unmount(p, unix.MNT_DETACH) == nil {
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "remove pinned namespace %s: %v\n", p, err)
		}
	}
}
