package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// TestJoinedUserNSAdministersItsNetwork: a container that joins a pinned
// user namespace and the network namespace made inside it can open its
// device node (made by MakeDeviceNodes, owned by its root) and make a tun
// interface with the daemon's CAP_NET_ADMIN, which over a network
// namespace of the host's user namespace it could not.
func TestJoinedUserNSAdministersItsNetwork(t *testing.T) {
	rt, _ := newRuntime(t)
	bundle, ns := userNSBundle(t)
	dir := t.TempDir()
	ns.Path = filepath.Join(dir, "user")
	net := filepath.Join(dir, "net")
	if err := PinUserNS(context.Background(), ns.IDs, ns.Path, net); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnpinNS(ns.Path); UnpinNS(net) })
	tun := specs.LinuxDevice{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: ptr(os.FileMode(0o666))}
	nodes := filepath.Join(dir, "dev")
	srcs, err := MakeDeviceNodes(context.Background(), nodes, []specs.LinuxDevice{tun}, ns.IDs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(srcs["/dev/net/tun"], &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != ns.IDs.HostID || st.Mode&0o777 != 0o666 || st.Rdev != unix.Mkdev(10, 200) {
		t.Fatalf("node %+v: want c 10,200 0666 owned by %d", st, ns.IDs.HostID)
	}
	if fi, err := os.Stat(nodes); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("node folder %v %v: want 0700, so that no host uid reaches the node by path", fi, err)
	}
	c := startContainerWith(t, rt, bundle, HardenOptions{UserNS: ns, NetNSPath: net, Devices: []specs.LinuxDevice{tun}, DeviceSources: srcs,
		ExtraCapabilities: []string{"CAP_NET_ADMIN"}})
	if code, out := run(t, c, "sh", "-c", "exec 3<>/dev/net/tun && tunctl -t wctun0 && ip addr add 10.99.0.2/30 dev wctun0 && ip link set wctun0 up && ip link show wctun0"); code != 0 {
		t.Fatalf("make a tun interface in the profile's own network: exit %d: %s", code, out)
	}
	if code, out := run(t, c, "cat", "/sys/class/net/lo/mtu"); code != 0 || strings.TrimSpace(out) != "65536" {
		t.Fatalf("the network namespace's own sysfs: exit %d: %q", code, out)
	}
}

// TestMakeDeviceNodesOwnNode: a node that must be bound as itself (a
// binderfs device) is given the range's owner and its folder made 0700;
// one that is not the device named is refused.
func TestMakeDeviceNodesOwnNode(t *testing.T) {
	requireRoot(t)
	m := IDMap{HostID: 1_700_000_000, Size: 65536}
	fs := t.TempDir()
	own := filepath.Join(fs, "binder-work")
	if err := unix.Mknod(own, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	dev := specs.LinuxDevice{Path: "/dev/binder", Type: "c", Major: 1, Minor: 3, FileMode: ptr(os.FileMode(0o666))}
	out, err := MakeDeviceNodes(context.Background(), filepath.Join(t.TempDir(), "n"), []specs.LinuxDevice{dev}, m, map[string]string{"/dev/binder": own})
	if err != nil {
		t.Fatal(err)
	}
	if out["/dev/binder"] != own {
		t.Fatalf("sources %v, want /dev/binder bound from %s itself", out, own)
	}
	var st unix.Stat_t
	unix.Stat(own, &st)
	if st.Uid != m.HostID || st.Gid != m.HostID || st.Mode&0o777 != 0o666 {
		t.Fatalf("own node is %d:%d %o, want %d:%d 0666", st.Uid, st.Gid, st.Mode&0o777, m.HostID, m.HostID)
	}
	if fi, _ := os.Stat(fs); fi.Mode().Perm() != 0o700 {
		t.Fatalf("its folder is %v, want 0700", fi.Mode().Perm())
	}
	dev.Minor = 5
	if _, err := MakeDeviceNodes(context.Background(), filepath.Join(t.TempDir(), "n"), []specs.LinuxDevice{dev}, m, map[string]string{"/dev/binder": own}); err == nil || !strings.Contains(err.Error(), "is not device 1:5") {
		t.Fatalf("a node of another device: err = %v", err)
	}
}
