package netns

import (
	"context"
	"fmt"
	"net/netip"
	"time"
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
