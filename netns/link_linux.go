package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNS runs fn on a thread switched into ns, then switches back. If the
// thread cannot be switched back it stays locked, so the runtime retires it
// instead of handing a goroutine a thread in the wrong namespace.
func inNS(ns vns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := vns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()
	if err := vns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	ferr := fn()
	if err := vns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// isPinned reports whether path is a mounted network namespace.
func openPinned(path string) (vns.NsHandle, bool) {
	h, err := vns.GetFromPath(path)
	if err != nil {
		return vns.None(), false
	}
	var st unix.Statfs_t
	if unix.Fstatfs(int(h), &st) != nil || st.Type != unix.NSFS_MAGIC {
		h.Close()
		return vns.None(), false
	}
	return h, true
}

// pinNewNS makes a fresh network namespace and bind-mounts it at path, on a
// thread that returns to its namespace afterwards.
func pinNewNS(path string) (vns.NsHandle, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return vns.None(), fmt.Errorf("pin namespace: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return vns.None(), fmt.Errorf("pin namespace: %w", err)
	}
	f.Close()
	runtime.LockOSThread()
	orig, err := vns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return vns.None(), fmt.Errorf("pin namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return vns.None(), fmt.Errorf("pin namespace: unshare: %w", err)
	}
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	merr := unix.Mount(src, path, "", unix.MS_BIND, "")
	if err := vns.Set(orig); err != nil {
		return vns.None(), fmt.Errorf("pin namespace: return to original namespace: %w", err)
	}
	runtime.UnlockOSThread()
	if merr != nil {
		os.Remove(path)
		return vns.None(), fmt.Errorf("pin namespace at %s: %w", path, merr)
	}
	h, ok := openPinned(path)
	if !ok {
		return vns.None(), fmt.Errorf("pin namespace at %s: not a namespace after mount", path)
	}
	return h, nil
}

// unpin unmounts and removes a pinned namespace; a missing one is fine.
func unpin(path string) error {
	for {
		// Stacked mounts (a re-pin over a stale file) each need one unmount.
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break
			}
			return fmt.Errorf("unpin namespace %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	return nil
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ensureLink makes the veth pair, addresses, routes and loopback match.
// v4 and v6 are the (gateway, work) address pairs; v6 is zero without
// IPv6.
func ensureLink(ctx context.Context, host *netlink.Handle, ns vns.NsHandle, hostIf string, v4, v6 [2]netip.Prefix) error {
	inner, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in profile namespace: %w", err)
	}
	defer inner.Close()

	hl, herr := host.LinkByName(hostIf)
	el, eerr := inner.LinkByName("eth0")
	healthy := herr == nil && eerr == nil && hl.Type() == "veth" && el.Type() == "veth"
	if healthy {
		// Each end's IFLA_LINK names the other's index: they are one pair.
		// (netlink.VethPeerIndex would ask the caller's namespace, not host's.)
		healthy = hl.Attrs().ParentIndex == el.Attrs().Index && el.Attrs().ParentIndex == hl.Attrs().Index
	}
	if !healthy {
		if herr == nil {
			if err := host.LinkDel(hl); err != nil {
				return fmt.Errorf("delete stale %s: %w", hostIf, err)
			}
		}
		if el, err := inner.LinkByName("eth0"); err == nil {
			if err := inner.LinkDel(el); err != nil {
				return fmt.Errorf("delete stale eth0 in profile namespace: %w", err)
			}
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: hostIf},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(ns)),
		}
		if err := host.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", hostIf, err)
		}
		if hl, err = host.LinkByName(hostIf); err != nil {
			return fmt.Errorf("find new veth %s: %w", hostIf, err)
		}
		if el, err = inner.LinkByName("eth0"); err != nil {
			return fmt.Errorf("find eth0 in profile namespace: %w", err)
		}
	}
	for _, pair := range [][2]netip.Prefix{v4, v6} {
		gw, work := pair[0], pair[1]
		if !gw.IsValid() {
			continue
		}
		// No duplicate address detection: the /64 is ours alone, and a
		// tentative address would hold work's IPv6 back for a second.
		flags := 0
		if gw.Addr().Is6() {
			flags = unix.IFA_F_NODAD
		}
		if err := host.AddrReplace(hl, &netlink.Addr{IPNet: toIPNet(gw), Flags: flags}); err != nil {
			return fmt.Errorf("address %s on %s: %w", gw, hostIf, err)
		}
		if err := inner.AddrReplace(el, &netlink.Addr{IPNet: toIPNet(work), Flags: flags}); err != nil {
			return fmt.Errorf("address %s on eth0: %w", work, err)
		}
	}
	if err := host.LinkSetUp(hl); err != nil {
		return fmt.Errorf("set %s up: %w", hostIf, err)
	}
	for _, l := range []netlink.Link{el} {
		if err := inner.LinkSetUp(l); err != nil {
			return fmt.Errorf("set eth0 up: %w", err)
		}
	}
	lo, err := inner.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in profile namespace: %w", err)
	}
	if err := inner.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	// A new link passes packets only once the kernel's link watcher has
	// activated it (up to a second later): until then the first packets of
	// whatever the daemon starts in the profile would be dropped.
	if err := waitOperUp(ctx, host, hostIf); err != nil {
		return err
	}
	if err := waitOperUp(ctx, inner, "eth0"); err != nil {
		return err
	}
	for _, pair := range [][2]netip.Prefix{v4, v6} {
		gw := pair[0]
		if !gw.IsValid() {
			continue
		}
		dflt := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Addr().Is6() {
			dflt = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		def := &netlink.Route{LinkIndex: el.Attrs().Index, Dst: toIPNet(dflt), Gw: gw.Addr().AsSlice()}
		if err := inner.RouteReplace(def); err != nil {
			return fmt.Errorf("default route via %s: %w", gw.Addr(), err)
		}
	}
	return nil
}

// waitOperUp waits, at most a few seconds, until the link is operationally up.
func waitOperUp(ctx context.Context, h *netlink.Handle, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not up (state %s): %w", name, l.Attrs().OperState, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
