package netns

import (
	"context"
	"testing"

	vns "github.com/vishvananda/netns"
)

// Every case of TestBuildProfileRules goes into a real kernel through each
// backend: the host side and the profile side each in a scratch namespace;
// the kernel must take the rules whole, report them intact and count, and
// clearing must leave nothing.
func TestRulesetCasesLoadThroughBothBackends(t *testing.T) {
	requireRoot(t)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			requireBackend(t, b)
			for _, tt := range profileCases() {
				t.Run(tt.name, func(t *testing.T) {
					ref := testRef
					if tt.ref != nil {
						ref = *tt.ref
					}
					pr, err := buildProfile(ref, testPools, tt.s, testHost)
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					err = inScratchNS(func(host vns.NsHandle) error {
						fw, err := newFirewall(b, host)
						if err != nil {
							return err
						}
						if err := fw.applyHost(ctx, testPools, []profileRef{ref}, map[string]profileRules{ref.Name: pr}, nil); err != nil {
							t.Errorf("host rules: %v", err)
							return nil
						}
						// Twice: a reload over the rules in place works too.
						if err := fw.applyHost(ctx, testPools, []profileRef{ref}, map[string]profileRules{ref.Name: pr}, nil); err != nil {
							t.Errorf("host rules again: %v", err)
						}
						if !fw.intact(ctx, ref.Name) {
							t.Errorf("rules not intact right after they were applied")
						}
						if _, err := fw.counters(ctx, ref.Name); err != nil {
							t.Errorf("counters: %v", err)
						}
						if err := inScratchNS(func(inner vns.NsHandle) error { return fw.applyInner(ctx, inner, pr) }); err != nil {
							t.Errorf("inner rules: %v", err)
						}
						if err := fw.clearHost(ctx); err != nil {
							t.Errorf("clear: %v", err)
						}
						if ps, err := fw.profiles(ctx); err != nil || len(ps) > 0 {
							t.Errorf("after clearing: profiles %v, err %v", ps, err)
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				})
			}
		})
	}
}
