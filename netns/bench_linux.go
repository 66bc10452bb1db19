package netns

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	vns "github.com/vishvananda/netns"
)

// BenchSetupTeardown times Ensure (a new profile's whole network) and Remove
// for the given number of rounds and returns the mean of each, for `make
// bench`. The profile must not exist yet.
func BenchSetupTeardown(ctx context.Context, m *Manager, profile string, s Settings, rounds int) (setup, teardown time.Duration, err error) {
	if rounds < 1 {
		return 0, 0, fmt.Errorf("rounds %d: want at least 1: %w", rounds, ErrInvalid)
	}
	for range rounds {
		t0 := time.Now()
		if _, err := m.Ensure(ctx, profile, s); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		if err := m.Remove(ctx, profile); err != nil {
			return 0, 0, err
		}
		setup += t1.Sub(t0)
		teardown += time.Since(t1)
	}
	return setup / time.Duration(rounds), teardown / time.Duration(rounds), nil
}

// BenchAllowListChange times one Apply that replaces the profile's
// allow-list with n entries (from SyntheticAllowList), for `make bench`.
// The profile must exist.
func BenchAllowListChange(ctx context.Context, m *Manager, profile string, n int) (time.Duration, error) {
	s := Settings{Mode: ModeDirect, Allow: SyntheticAllowList(n)}
	t0 := time.Now()
	err := m.Apply(ctx, profile, s)
	return time.Since(t0), err
}

// SyntheticAllowList returns n distinct, non-adjacent allow rules (single
// public hosts, every other one with tcp:443) that no merge can shrink, for
// benchmarks that need an allow-list of a given size.
func SyntheticAllowList(n int) []Rule {
	out := make([]Rule, 0, n)
	base, _ := v4Range(netip.MustParsePrefix("11.0.0.0/8"))
	for i := range n {
		r := Rule{Prefix: netip.PrefixFrom(u32Addr(base+uint32(i)*2), 32)}
		if i%2 == 1 {
			r.Proto, r.Port = "tcp", 443
		}
		out = append(out, r)
	}
	return out
}

// BenchMasquerade installs, in the network namespace pinned at nsPath, a
// table "wcbench" whose only rule masquerades what leaves through oif: the
// NAT (and so conntrack) a profile's traffic pays, without workcell's
// filter rules, for the throughput bench's NAT-only peer.
func BenchMasquerade(nsPath, oif string) error {
	h, err := vns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", nsPath, err)
	}
	defer h.Close()
	c, err := newConn(int(h))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "wcbench"})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Hooknum: nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource, Type: nftables.ChainTypeNAT, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(ifMatch(expr.MetaKeyOIFNAME, oif), &expr.Masq{})})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("masquerade table in %s: %w", nsPath, err)
	}
	return nil
}
