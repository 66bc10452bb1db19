package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The iptables-legacy form of the ruleset. Each chain of the nftables table
// becomes a chain named wc_..., each nftables set a chain of one rule per
// element (GKI kernels have no ipset either), jumped to where the set is
// matched. What one nftables batch does, one iptables-restore run per
// address family does here: its tables are committed one by one, each
// whole or not at all.

// xtPrefix starts the name of every chain this package makes.
const xtPrefix = "wc_"

// xtMaxChain is the longest chain name iptables takes
// (XT_EXTENSION_MAXNAMELEN less the NUL).
const xtMaxChain = 28

// xtLongestWhat is the longest object suffix of a profile ("allowpp6").
const xtLongestWhat = 8

// xtTag is how a profile's chains spell its name: the name itself when
// wc_<name>_<what> fits in xtMaxChain, else a prefix of it, a '.' (which no
// profile name holds, so a tag cannot be another profile's name) and a
// stable hash of all of it.
func xtTag(profile string) string {
	max := xtMaxChain - len(xtPrefix) - 1 - xtLongestWhat
	if len(profile) <= max {
		return profile
	}
	sum := sha256.Sum256([]byte(profile))
	return profile[:max-8] + "." + hex.EncodeToString(sum[:])[:7]
}

// xtChain is the chain of a ruleset object: "p:out" (a profile's) becomes
// wc_<tag>_out, "forward" (shared) wc_forward.
func xtChain(name string) string {
	if p, what, ok := strings.Cut(name, ":"); ok {
		return xtPrefix + xtTag(p) + "_" + what
	}
	return xtPrefix + name
}

// xtTagOf returns the profile tag of a chain name, false for a shared
// chain (wc_forward) or one not ours.
func xtTagOf(chain string) (string, bool) {
	rest, ok := strings.CutPrefix(chain, xtPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// xtRule is one "-A CHAIN ARGS" line; Counts marks the rule whose counters
// are the profile's traffic counters (kept across reloads).
type xtRule struct {
	Chain, Args string
	Counts      bool
}

// xtHook is a jump from a chain that is not ours into Chain: from the
// first of Parents the table has (an OEM chain netd hooks first, else the
// built-in chain), as its first rule.
type xtHook struct {
	Parents []string
	Chain   string
}

// xtTablePlan is the wanted state of our chains in one table of one family.
type xtTablePlan struct {
	Name   string
	Chains []string // made (or emptied) and filled by Rules, in order
	Rules  []xtRule
	Hooks  []xtHook
	// Ensure are chains that must exist (a profile's chain pair, so the
	// jumps into them are valid) but whose rules are left as they are;
	// one missing is made empty, which fails closed.
	Ensure []string
	// Keep says which of our chains found in the table outside Chains
	// stay as they are; every other one is deleted.
	Keep func(chain string) bool
}

// xtFamilyPlan is what one iptables-restore run applies.
type xtFamilyPlan struct {
	V6     bool
	Tables []*xtTablePlan
}

func (p *xtFamilyPlan) table(name string) *xtTablePlan {
	for _, t := range p.Tables {
		if t.Name == name {
			return t
		}
	}
	t := &xtTablePlan{Name: name}
	p.Tables = append(p.Tables, t)
	return t
}

// inFamily reports whether r belongs in the IPv6 (v6) or IPv4 table:
// nftables' inet family holds both, iptables one each.
func (r ruleSpec) inFamily(v6 bool) bool {
	switch {
	case r.NFProtoIPv6 || r.ICMPv6Type != 0:
		return v6
	case r.Saddr.IsValid() || r.DaddrSet != "" || r.DaddrPPSet != "":
		return r.IP6 == v6
	}
	return true
}

// xtIf renders an interface match; nftables' trailing '*' is iptables' '+'.
// xtSafeIfname: a name iptables-restore reads back as one interface name
// (IFNAMSIZ, no space, quote, option dash or comment sign).
func xtSafeIfname(n string) bool {
	if n == "" || len(n) > 15 || n[0] == '-' {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("\"'#!*+\\", c) {
			return false
		}
	}
	return true
}

func xtIf(flag, name string) string {
	neg := ""
	if n, ok := strings.CutPrefix(name, "!"); ok {
		neg, name = "! ", n
	}
	if p, ok := strings.CutSuffix(name, "*"); ok {
		name = p + "+"
	}
	return neg + flag + " " + name
}

func xtTarget(verdict string) (string, error) {
	switch v := verdict; {
	case v == "accept":
		return "-j ACCEPT", nil
	case v == "drop":
		return "-j DROP", nil
	case v == "masquerade":
		return "-j MASQUERADE", nil
	case strings.HasPrefix(v, "jump "):
		return "-j " + xtChain(strings.TrimPrefix(v, "jump ")), nil
	case v == "":
		return "", nil
	}
	return "", fmt.Errorf("unknown verdict %q", verdict)
}

// xtMatches renders the matches of r that are not a set lookup.
func (r ruleSpec) xtMatches(v6 bool) ([]string, error) {
	var a []string
	if r.IIf != "" {
		a = append(a, xtIf("-i", r.IIf))
	}
	if r.OIf != "" {
		a = append(a, xtIf("-o", r.OIf))
	}
	if r.ICMPv6Type != 0 {
		a = append(a, "-p ipv6-icmp --icmpv6-type "+strconv.Itoa(int(r.ICMPv6Type)))
	}
	if r.Saddr.IsValid() {
		if r.Saddr.Addr().Is6() != v6 {
			return nil, fmt.Errorf("source %s does not match the rule's address family", r.Saddr)
		}
		neg := ""
		if r.SaddrNeg {
			neg = "! "
		}
		a = append(a, neg+"-s "+r.Saddr.Masked().String())
	}
	if len(r.CtState) > 0 {
		var st []string
		for _, s := range r.CtState {
			switch s {
			case "established", "related", "new":
				st = append(st, strings.ToUpper(s))
			default:
				return nil, fmt.Errorf("unknown ct state %q", s)
			}
		}
		a = append(a, "-m conntrack --ctstate "+strings.Join(st, ","))
	}
	return a, nil
}

// xtAddRules renders rules of one family into chain of t; a rule that
// matches a set jumps to the set's chain, which holds one rule per element
// with the rule's verdict (or, for a negated match, RETURN per element and
// the verdict last). setChains records how each set's chain was rendered,
// so two uses of one set with different verdicts are refused rather than
// merged wrongly.
func xtAddRules(t *xtTablePlan, v6 bool, chain string, rules []ruleSpec, sets map[string]setSpec, setChains map[string]string) error {
	t.Chains = append(t.Chains, chain)
	for _, r := range rules {
		if !r.inFamily(v6) {
			continue
		}
		m, err := r.xtMatches(v6)
		if err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
		target, err := xtTarget(r.Verdict)
		if err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
		var setName string
		neg := false
		for _, s := range []string{r.OIfSet, r.DaddrSet, r.DaddrPPSet} {
			if s != "" {
				if setName != "" {
					return fmt.Errorf("rule %q: at most one set per rule", r)
				}
				setName = s
			}
		}
		if setName == "" {
			t.Rules = append(t.Rules, xtRule{Chain: chain, Args: strings.Join(append(m, target), " "), Counts: r.Counter != "" && r.Verdict == "" && len(m) == 0})
			continue
		}
		neg = r.OIfSet != "" && r.OIfSetNeg
		set, ok := sets[setName]
		if !ok {
			return fmt.Errorf("rule %q: set %s is not part of these rules", r, setName)
		}
		if target == "" {
			return fmt.Errorf("rule %q: a set match needs a verdict", r)
		}
		sc := xtChain(setName)
		body, err := xtSetRules(set, v6, r.OIfSet != "", neg, target)
		if err != nil {
			return err
		}
		sig := strings.Join(body, "\n")
		if prev, ok := setChains[sc]; ok {
			if prev != sig {
				return fmt.Errorf("set %s is matched with two different verdicts", setName)
			}
		} else {
			setChains[sc] = sig
			t.Chains = append(t.Chains, sc)
			for _, b := range body {
				t.Rules = append(t.Rules, xtRule{Chain: sc, Args: b})
			}
		}
		t.Rules = append(t.Rules, xtRule{Chain: chain, Args: strings.Join(append(m, "-j "+sc), " ")})
	}
	return nil
}

func xtSetRules(s setSpec, v6, oif, neg bool, target string) ([]string, error) {
	each := target
	if neg {
		each = "-j RETURN"
	}
	var out []string
	switch s.Kind {
	case setIfname:
		if !oif {
			return nil, fmt.Errorf("set %s of interface names is only matched against the output interface", s.Name)
		}
		for _, n := range s.Ifnames {
			// The phone's interface names come from the kernel; one that
			// iptables-restore would split or read as an option is
			// refused rather than written into the batch.
			if !xtSafeIfname(n) {
				return nil, fmt.Errorf("set %s: interface name %q cannot be written for iptables-restore", s.Name, n)
			}
			out = append(out, "-o "+n+" "+each)
		}
	case setAddr, setAddrProtoPort:
		if s.V6 != v6 {
			return nil, fmt.Errorf("set %s is of the other address family", s.Name)
		}
		for _, r := range s.Elems {
			if err := checkFamily(s, r); err != nil {
				return nil, err
			}
			a := "-d " + r.Prefix.Masked().String()
			if s.Kind == setAddrProtoPort {
				a += " -p " + r.Proto + " --dport " + strconv.Itoa(int(r.Port))
			}
			out = append(out, a+" "+each)
		}
	}
	if neg {
		out = append(out, target)
	}
	return out, nil
}

func setsByName(ss []setSpec) map[string]setSpec {
	out := map[string]setSpec{}
	for _, s := range ss {
		out[s.Name] = s
	}
	return out
}

func checkFamily(s setSpec, r Rule) error {
	if r.Prefix.Addr().Is6() != s.V6 {
		return fmt.Errorf("set %s: element %s is of the other address family", s.Name, r)
	}
	return nil
}

// Where the shared chains hook in. netd jumps to oem_fwd and oem_out first
// in FORWARD and OUTPUT and leaves them to the device maker: there our
// rules come before netd's own (bw_, fw_, tetherctrl_FORWARD, which ends
// in a DROP on a tethering phone). INPUT and POSTROUTING have no OEM chain
// (netd's oem_nat_pre is in PREROUTING, where these rules have nothing to
// do), so their hook is their first rule.
var xtHookParents = map[string][]string{
	chainForward:     {"oem_fwd", "FORWARD"},
	chainInput:       {"INPUT"},
	chainOutput:      {"oem_out", "OUTPUT"},
	chainPostrouting: {"POSTROUTING"},
}

// xtHostPlan is the host's wanted state for one family: the shared chains
// for all profiles, the chains of the profiles in full, the chain pair of
// every other profile of all left as it is (made empty if missing), and
// every other chain of ours deleted.
func xtHostPlan(v6 bool, pl pools, all []profileRef, full map[string]profileRules) (*xtFamilyPlan, error) {
	p := &xtFamilyPlan{V6: v6}
	filter, nat := p.table("filter"), p.table("nat")
	keepTags := map[string]bool{}
	for _, r := range all {
		if _, ok := full[r.Name]; !ok {
			keepTags[xtTag(r.Name)] = true
			filter.Ensure = append(filter.Ensure, xtChain(objName(r.Name, "out")), xtChain(objName(r.Name, "in")))
		}
	}
	keep := func(chain string) bool {
		tag, ok := xtTagOf(chain)
		return ok && keepTags[tag]
	}
	filter.Keep, nat.Keep = keep, keep
	for _, name := range slices.Sorted(maps.Keys(full)) {
		pr := full[name]
		sets, setChains := setsByName(pr.Sets), map[string]string{}
		if err := xtAddRules(filter, v6, xtChain(objName(name, "out")), pr.Out, sets, setChains); err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		if err := xtAddRules(filter, v6, xtChain(objName(name, "in")), pr.In, sets, setChains); err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
	}
	base := baseRules(all, pl)
	for _, ch := range []string{chainForward, chainInput, chainOutput, chainPostrouting} {
		t := filter
		if ch == chainPostrouting {
			t = nat
			// No masquerade of this family (profiles have no IPv6): no
			// chain and no hook, so a kernel without ip6tables' nat table
			// (GKI's) is never asked for one.
			if !slices.ContainsFunc(base[ch], func(r ruleSpec) bool { return r.inFamily(v6) }) {
				continue
			}
		}
		if err := xtAddRules(t, v6, xtChain(ch), base[ch], nil, map[string]string{}); err != nil {
			return nil, err
		}
		t.Hooks = append(t.Hooks, xtHook{Parents: xtHookParents[ch], Chain: xtChain(ch)})
	}
	return p, nil
}

// xtInnerPlan is the wanted state inside a profile's namespace: no chains
// at all where the mode wants no rules there (every packet would enter a
// hooked chain), else an output and an input chain hooked first in OUTPUT
// and INPUT.
func xtInnerPlan(v6 bool, pr profileRules) (*xtFamilyPlan, error) {
	p := &xtFamilyPlan{V6: v6}
	filter := p.table("filter")
	filter.Keep = func(string) bool { return false }
	if len(pr.InnerOut) == 0 && len(pr.InnerIn) == 0 {
		return p, nil
	}
	sets, setChains := setsByName(pr.InnerSets), map[string]string{}
	if err := xtAddRules(filter, v6, xtChain(chainOutput), pr.InnerOut, sets, setChains); err != nil {
		return nil, err
	}
	if err := xtAddRules(filter, v6, xtChain(chainInput), pr.InnerIn, sets, setChains); err != nil {
		return nil, err
	}
	filter.Hooks = []xtHook{{Parents: []string{"OUTPUT"}, Chain: xtChain(chainOutput)}, {Parents: []string{"INPUT"}, Chain: xtChain(chainInput)}}
	return p, nil
}

// xtClearPlan deletes every chain and hook of ours in one family.
func xtClearPlan(v6 bool) *xtFamilyPlan {
	none := func(string) bool { return false }
	return &xtFamilyPlan{V6: v6, Tables: []*xtTablePlan{{Name: "filter", Keep: none}, {Name: "nat", Keep: none}}}
}

// xtSaved is one rule as iptables-save -c prints it.
type xtSaved struct {
	Args          string
	Packets, Byte uint64
}

// xtTableState is one table as iptables-save -c prints it.
type xtTableState struct {
	Chains []string
	Rules  map[string][]xtSaved
}

func (s *xtTableState) has(chain string) bool { return slices.Contains(s.Chains, chain) }

// parseXtSave reads iptables-save -c output: tables by name.
func parseXtSave(text string) (map[string]*xtTableState, error) {
	out := map[string]*xtTableState{}
	var cur *xtTableState
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '*':
			cur = &xtTableState{Rules: map[string][]xtSaved{}}
			out[line[1:]] = cur
		case cur == nil:
			return nil, fmt.Errorf("iptables-save line %d: %q outside a table", i+1, line)
		case line == "COMMIT":
			cur = nil
		case line[0] == ':':
			name, _, _ := strings.Cut(line[1:], " ")
			cur.Chains = append(cur.Chains, name)
		default:
			var s xtSaved
			if line[0] == '[' {
				ctr, rest, ok := strings.Cut(line[1:], "] ")
				pk, by, ok2 := strings.Cut(ctr, ":")
				var err1, err2 error
				s.Packets, err1 = strconv.ParseUint(pk, 10, 64)
				s.Byte, err2 = strconv.ParseUint(by, 10, 64)
				if !ok || !ok2 || err1 != nil || err2 != nil {
					return nil, fmt.Errorf("iptables-save line %d: bad counters in %q", i+1, line)
				}
				line = rest
			}
			rest, ok := strings.CutPrefix(line, "-A ")
			if !ok {
				return nil, fmt.Errorf("iptables-save line %d: %q is not a rule", i+1, line)
			}
			chain, args, _ := strings.Cut(rest, " ")
			s.Args = strings.TrimSpace(args)
			cur.Rules[chain] = append(cur.Rules[chain], s)
		}
	}
	return out, nil
}

func builtin(chain string) bool { return chain != "" && strings.ToUpper(chain) == chain }

// restoreText renders the iptables-restore --noflush --counters input
// that takes a table from cur to t; "" when there is nothing to do. The
// order matters within the table's one commit: chains are made or emptied
// first, stray hooks and stale chains emptied, the rules written, the
// hooks put first in their parents, and the stale chains deleted last,
// when nothing jumps to them any more. Chains that are not ours (netd's)
// are never declared, so never flushed: only our hook rules in them are
// touched, one by one.
func (t *xtTablePlan) restoreText(cur *xtTableState) string {
	if cur == nil {
		cur = &xtTableState{Rules: map[string][]xtSaved{}}
	}
	var decl, del, flush, add, ins, drop []string
	planned := map[string]bool{}
	for _, c := range t.Chains {
		planned[c] = true
		decl = append(decl, ":"+c+" - [0:0]")
	}
	for _, c := range t.Ensure {
		if !planned[c] && !cur.has(c) {
			planned[c] = true
			decl = append(decl, ":"+c+" - [0:0]")
		}
	}
	for _, c := range cur.Chains {
		if strings.HasPrefix(c, xtPrefix) && !planned[c] && !slices.Contains(t.Ensure, c) && (t.Keep == nil || !t.Keep(c)) {
			flush = append(flush, "-F "+c)
			drop = append(drop, "-X "+c)
		}
	}
	// Our hooks: jumps without matches from a chain not ours. One wanted
	// and found alone, first in its parent, stays; any other is deleted
	// (every copy: -D takes the first match) and the wanted one inserted
	// first again.
	want := map[string]string{} // parent+" "+chain -> parent
	for _, h := range t.Hooks {
		for _, p := range h.Parents {
			if builtin(p) || cur.has(p) {
				want[p+" "+h.Chain] = p
				break
			}
		}
	}
	found := map[string][]int{}
	var foundOrder []string
	for _, c := range cur.Chains {
		if strings.HasPrefix(c, xtPrefix) {
			continue
		}
		for i, r := range cur.Rules[c] {
			target, ok := strings.CutPrefix(r.Args, "-j ")
			if !ok || !strings.HasPrefix(target, xtPrefix) || strings.Contains(target, " ") {
				continue
			}
			k := c + " " + target
			if len(found[k]) == 0 {
				foundOrder = append(foundOrder, k)
			}
			found[k] = append(found[k], i)
		}
	}
	for _, k := range foundOrder {
		if _, ok := want[k]; ok && len(found[k]) == 1 && found[k][0] == 0 {
			delete(want, k)
			continue
		}
		c, target, _ := strings.Cut(k, " ")
		for range found[k] {
			del = append(del, "-D "+c+" -j "+target)
		}
	}
	for _, h := range t.Hooks {
		for k, parent := range want {
			if strings.HasSuffix(k, " "+h.Chain) {
				ins = append(ins, "-I "+parent+" 1 -j "+h.Chain)
			}
		}
	}
	for _, r := range t.Rules {
		line := "-A " + r.Chain
		if r.Args != "" {
			line += " " + r.Args
		}
		if r.Counts {
			if rs := cur.Rules[r.Chain]; len(rs) > 0 && rs[0].Args == "" {
				line = fmt.Sprintf("[%d:%d] %s", rs[0].Packets, rs[0].Byte, line)
			}
		}
		add = append(add, line)
	}
	body := slices.Concat(decl, del, flush, add, ins, drop)
	if len(body) == 0 {
		return ""
	}
	return "*" + t.Name + "\n" + strings.Join(body, "\n") + "\nCOMMIT\n"
}

// restoreText renders the whole run for one family; "" when there is
// nothing to do.
func (p *xtFamilyPlan) restoreText(cur map[string]*xtTableState) string {
	var b strings.Builder
	for _, t := range p.Tables {
		b.WriteString(t.restoreText(cur[t.Name]))
	}
	return b.String()
}
