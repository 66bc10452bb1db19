package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	vns "github.com/vishvananda/netns"
)

// xtBins are the iptables-legacy programs of one address family.
type xtBins struct {
	Family             string // "IPv4" or "IPv6"
	Cmd, Save, Restore string
}

// xtTools are the programs of both families.
type xtTools struct{ v4, v6 xtBins }

func (x *xtTools) family(v6 bool) xtBins {
	if v6 {
		return x.v6
	}
	return x.v4
}

// xtFind finds one iptables-legacy program: the "-legacy" name on PATH
// (Debian and friends, where the plain name may be the nf_tables variant),
// Android's /system/bin/NAME, or the plain name on PATH; any of them only
// if it says it is not the nf_tables variant.
func xtFind(name string) (string, error) {
	var cands []string
	if p, err := exec.LookPath(strings.Replace(name, "tables", "tables-legacy", 1)); err == nil {
		cands = append(cands, p)
	}
	if st, err := os.Stat("/system/bin/" + name); err == nil && !st.IsDir() {
		cands = append(cands, "/system/bin/"+name)
	}
	if p, err := exec.LookPath(name); err == nil {
		cands = append(cands, p)
	}
	var why []string
	for _, c := range cands {
		out, err := exec.Command(c, "--version").CombinedOutput()
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("%s --version: %v", c, err))
		case bytes.Contains(out, []byte("nf_tables")):
			why = append(why, fmt.Sprintf("%s is the nf_tables variant (%s)", c, bytes.TrimSpace(out)))
		default:
			return c, nil
		}
	}
	if len(why) == 0 {
		why = append(why, "not on PATH nor in /system/bin")
	}
	return "", fmt.Errorf("no iptables-legacy %s: %s", name, strings.Join(why, "; "))
}

// findXtables finds the programs of both families.
func findXtables() (*xtTools, error) {
	x := &xtTools{v4: xtBins{Family: "IPv4"}, v6: xtBins{Family: "IPv6"}}
	var errs []error
	for _, f := range []struct {
		b    *xtBins
		base string
	}{{&x.v4, "iptables"}, {&x.v6, "ip6tables"}} {
		var err error
		if f.b.Cmd, err = xtFind(f.base); err != nil {
			errs = append(errs, err)
		}
		if f.b.Save, err = xtFind(f.base + "-save"); err != nil {
			errs = append(errs, err)
		}
		if f.b.Restore, err = xtFind(f.base + "-restore"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return x, nil
}

// run runs a program with the thread in ns: the child inherits the
// namespace of the thread that forks it.
func xtRun(ctx context.Context, ns vns.NsHandle, stdin string, bin string, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	err := inNS(ns, func() error {
		cmd := exec.CommandContext(ctx, bin, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &out, &errb
		return cmd.Run()
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (x *xtTools) save(ctx context.Context, ns vns.NsHandle, v6 bool) (map[string]*xtTableState, error) {
	out, err := xtRun(ctx, ns, "", x.family(v6).Save, "-c")
	if err != nil {
		return nil, err
	}
	return parseXtSave(string(out))
}

// apply reads the family's tables and brings them to plan in one
// iptables-restore run (the way netd applies its own rules: --noflush
// leaves every chain it does not name alone, -w waits for the xtables
// lock netd and other tools hold while they write).
func (x *xtTools) apply(ctx context.Context, ns vns.NsHandle, plan *xtFamilyPlan) error {
	cur, err := x.save(ctx, ns, plan.V6)
	if err != nil {
		return err
	}
	text := plan.restoreText(cur)
	if text == "" {
		return nil
	}
	b := x.family(plan.V6)
	if _, err := xtRun(ctx, ns, text, b.Restore, "-w", "--noflush", "--counters"); err != nil {
		return fmt.Errorf("%s rules: %w", b.Family, err)
	}
	return nil
}

// iptFirewall keeps the rules in iptables-legacy chains named wc_...
type iptFirewall struct {
	x      *xtTools
	hostNS vns.NsHandle
	// nat6 is set when the host has ip6tables' nat table (see noNAT6).
	nat6 bool
	// applied is the host tables' fingerprint right after the last
	// applyHost, when every profile's rules were as wanted; zero when
	// unknown. intact trusts an unchanged fingerprint, sparing a start
	// from the prepared container two iptables-save runs (about 90 ms in
	// the GKI guest).
	mu      sync.Mutex
	applied xtFingerprint
	known   bool
}

// remember records (or, on error, forgets) the fingerprint of the host's
// tables as they are now.
func (f *iptFirewall) remember(ok bool) {
	var fp xtFingerprint
	var err error
	if ok {
		fp, err = xtReadFingerprint(f.hostNS)
	}
	f.mu.Lock()
	f.applied, f.known = fp, ok && err == nil
	f.mu.Unlock()
}

// unchanged reports whether the host's tables are as the last applyHost
// left them.
func (f *iptFirewall) unchanged() bool {
	f.mu.Lock()
	want, known := f.applied, f.known
	f.mu.Unlock()
	if !known {
		return false
	}
	fp, err := xtReadFingerprint(f.hostNS)
	return err == nil && fp == want
}

// probeNAT6 lists ip6tables' nat table in ns; tests fake its absence.
var probeNAT6 = func(ctx context.Context, x *xtTools, ns vns.NsHandle) error {
	_, err := xtRun(ctx, ns, "", x.v6.Cmd, "-w", "-t", "nat", "-S")
	return err
}

// noNAT6: GKI kernels have no ip6tables nat table (Android's base config
// requires CONFIG_IP6_NF_NAT off), so there profiles get no IPv6.
func (f *iptFirewall) noNAT6(ctx context.Context) string {
	if err := probeNAT6(ctx, f.x, f.hostNS); err != nil {
		f.nat6 = false
		return "the kernel has no IPv6 NAT for iptables (CONFIG_IP6_NF_NAT, which Android's base config leaves out): " + err.Error()
	}
	f.nat6 = true
	return ""
}

// bothFamilies runs fn for IPv4, then IPv6. The families are separate
// kernel tables: a failure in the second leaves the first applied, which
// is a complete ruleset of its own (each family's rules isolate by
// themselves); the caller reports the error and the next apply repairs.
func bothFamilies(fn func(v6 bool) error) error {
	if err := fn(false); err != nil {
		return err
	}
	return fn(true)
}

func (f *iptFirewall) tag(profile string) string { return xtTag(profile) }

func (f *iptFirewall) applyHost(ctx context.Context, pl pools, all []profileRef, full map[string]profileRules, _ []string) error {
	// gone needs no list: the plan deletes every chain of ours that
	// belongs to no profile in all.
	// Profiles not in full keep their chains as they are: the result is
	// known good only if it was before, or if every profile was rebuilt.
	good := len(full) >= len(all) || f.unchanged()
	err := bothFamilies(func(v6 bool) error {
		plan, err := xtHostPlan(v6, pl, all, full)
		if err != nil {
			return err
		}
		return f.x.apply(ctx, f.hostNS, plan)
	})
	f.remember(err == nil && good)
	return err
}

func (f *iptFirewall) clearHost(ctx context.Context) error {
	f.remember(false)
	return bothFamilies(func(v6 bool) error { return f.x.apply(ctx, f.hostNS, xtClearPlan(v6)) })
}

func (f *iptFirewall) applyInner(ctx context.Context, ns vns.NsHandle, pr profileRules) error {
	return bothFamilies(func(v6 bool) error {
		plan, err := xtInnerPlan(v6, pr)
		if err != nil {
			return err
		}
		return f.x.apply(ctx, ns, plan)
	})
}

func (f *iptFirewall) intact(ctx context.Context, profile string) bool {
	if f.unchanged() {
		return true
	}
	return bothFamilies(func(v6 bool) error {
		cur, err := f.x.save(ctx, f.hostNS, v6)
		if err != nil {
			return err
		}
		filter, nat := cur["filter"], cur["nat"]
		if filter == nil {
			return errors.New("no filter table")
		}
		full := func(t *xtTableState, chain string) error {
			if len(t.Rules[chain]) == 0 {
				return fmt.Errorf("chain %s empty or missing", chain)
			}
			return nil
		}
		hooked := func(t *xtTableState, chain string) error {
			for _, c := range t.Chains {
				if rs := t.Rules[c]; !strings.HasPrefix(c, xtPrefix) && len(rs) > 0 && rs[0].Args == "-j "+chain {
					return nil
				}
			}
			return fmt.Errorf("nothing jumps to %s first", chain)
		}
		for _, ch := range []string{chainForward, chainInput, chainOutput} {
			if err := errors.Join(full(filter, xtChain(ch)), hooked(filter, xtChain(ch))); err != nil {
				return err
			}
		}
		if !v6 || f.nat6 {
			if nat == nil {
				return errors.New("no nat table")
			}
			if err := errors.Join(full(nat, xtChain(chainPostrouting)), hooked(nat, xtChain(chainPostrouting))); err != nil {
				return err
			}
		}
		return errors.Join(full(filter, xtChain(objName(profile, "out"))), full(filter, xtChain(objName(profile, "in"))))
	}) == nil
}

func (f *iptFirewall) profiles(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := bothFamilies(func(v6 bool) error {
		cur, err := f.x.save(ctx, f.hostNS, v6)
		if err != nil {
			return err
		}
		for _, t := range cur {
			for _, c := range t.Chains {
				if tag, ok := xtTagOf(c); ok {
					out[tag] = true
				}
			}
		}
		return nil
	})
	return out, err
}

// counters adds up the first (counting) rule of the profile's chains in
// both families.
func (f *iptFirewall) counters(ctx context.Context, profile string) (Counters, error) {
	var out Counters
	err := bothFamilies(func(v6 bool) error {
		cur, err := f.x.save(ctx, f.hostNS, v6)
		if err != nil {
			return err
		}
		filter := cur["filter"]
		if filter == nil {
			return nil
		}
		if rs := filter.Rules[xtChain(objName(profile, "in"))]; len(rs) > 0 && rs[0].Args == "" {
			out.InBytes += rs[0].Byte
			out.InPackets += rs[0].Packets
		}
		if rs := filter.Rules[xtChain(objName(profile, "out"))]; len(rs) > 0 && rs[0].Args == "" {
			out.OutBytes += rs[0].Byte
			out.OutPackets += rs[0].Packets
		}
		return nil
	})
	return out, err
}
