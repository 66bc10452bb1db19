package netns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	vns "github.com/vishvananda/netns"
)

var (
	probeOnce sync.Once
	probeErrs map[Backend]error
)

// requireBackend fails (never skips) a test whose backend the machine
// lacks.
func requireBackend(t *testing.T, b Backend) {
	t.Helper()
	probeOnce.Do(func() {
		ctx := context.Background()
		probeErrs = map[Backend]error{BackendNFTables: ProbeNFTables(ctx), BackendIPTables: ProbeIPTablesLegacy(ctx)}
	})
	if err := probeErrs[b]; err != nil {
		t.Fatalf("the %s backend cannot run here (install iptables for iptables-legacy; the kernel needs nf_tables or ip_tables): %v", b, err)
	}
}

func (w *world) xt() *xtTools {
	w.t.Helper()
	x, err := findXtables()
	must(w.t, err)
	return x
}

func (w *world) nsHandle(path string) vns.NsHandle {
	w.t.Helper()
	h, err := vns.GetFromPath(path)
	must(w.t, err)
	w.t.Cleanup(func() { h.Close() })
	return h
}

// xtSaveAll is iptables-save of both families in the namespace at path.
func (w *world) xtSaveAll(path string) map[string]map[string]*xtTableState {
	w.t.Helper()
	x, ns := w.xt(), w.nsHandle(path)
	out := map[string]map[string]*xtTableState{}
	for _, v6 := range []bool{false, true} {
		cur, err := x.save(context.Background(), ns, v6)
		must(w.t, err)
		out[x.family(v6).Family] = cur
	}
	return out
}

// flushHostRules empties every chain of ours in the host (as `nft flush
// table` does): the hooks stay, so everything passes.
func (w *world) flushHostRules() {
	w.t.Helper()
	switch w.backend {
	case BackendNFTables:
		c, err := w.mgr.hostConn()
		must(w.t, err)
		c.FlushTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tableName})
		must(w.t, c.Flush())
	case BackendIPTables:
		x, ns := w.xt(), w.nsHandle(w.host)
		for _, v6 := range []bool{false, true} {
			cur, err := x.save(context.Background(), ns, v6)
			must(w.t, err)
			var b strings.Builder
			for name, t := range cur {
				fmt.Fprintf(&b, "*%s\n", name)
				for _, c := range t.Chains {
					if strings.HasPrefix(c, xtPrefix) {
						fmt.Fprintf(&b, "-F %s\n", c)
					}
				}
				b.WriteString("COMMIT\n")
			}
			_, err = xtRun(context.Background(), ns, b.String(), x.family(v6).Restore, "-w", "--noflush")
			must(w.t, err)
		}
	}
}

// deleteHostRules deletes everything of ours in the host (as `nft delete
// table` does).
func (w *world) deleteHostRules() {
	w.t.Helper()
	switch w.backend {
	case BackendNFTables:
		c, err := w.mgr.hostConn()
		must(w.t, err)
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tableName})
		must(w.t, c.Flush())
	case BackendIPTables:
		x, ns := w.xt(), w.nsHandle(w.host)
		for _, v6 := range []bool{false, true} {
			must(w.t, x.apply(context.Background(), ns, xtClearPlan(v6)))
		}
	}
}

// dropInnerRules deletes the rules inside the profile, as a VPN client
// holding NET_ADMIN there could.
func (w *world) dropInnerRules(profile string) {
	w.t.Helper()
	ns := w.nsHandle(w.mgr.nsPath(profile))
	switch w.backend {
	case BackendNFTables:
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		must(w.t, err)
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tableName})
		must(w.t, c.Flush())
	case BackendIPTables:
		x := w.xt()
		for _, v6 := range []bool{false, true} {
			must(w.t, x.apply(context.Background(), ns, xtClearPlan(v6)))
		}
	}
}

// innerChains lists the hooked chains inside the profile, by the names
// of the ruleset ("input", "output").
func (w *world) innerChains(profile string) []string {
	w.t.Helper()
	var out []string
	switch w.backend {
	case BackendNFTables:
		ns := w.nsHandle(w.mgr.nsPath(profile))
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		must(w.t, err)
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		must(w.t, err)
		for _, ch := range chains {
			if ch.Table.Name == tableName {
				out = append(out, ch.Name)
			}
		}
	case BackendIPTables:
		byFam := map[string][]string{}
		for fam, tables := range w.xtSaveAll(w.mgr.nsPath(profile)) {
			var got []string
			if f := tables["filter"]; f != nil {
				for _, parent := range []string{"INPUT", "OUTPUT"} {
					for _, r := range f.Rules[parent] {
						if c, ok := strings.CutPrefix(r.Args, "-j "+xtPrefix); ok {
							got = append(got, c)
						}
					}
				}
			}
			slices.Sort(got)
			byFam[fam] = got
		}
		if out = byFam["IPv4"]; !slices.Equal(out, byFam["IPv6"]) {
			w.t.Errorf("inner chains differ between the families: %v", byFam)
		}
	}
	slices.Sort(out)
	return out
}

// traces lists what of profile is left in the host's rules.
func (w *world) traces(profile string) []string {
	w.t.Helper()
	var out []string
	switch w.backend {
	case BackendNFTables:
		c, err := w.mgr.hostConn()
		must(w.t, err)
		objs, err := listTableObjects(c)
		must(w.t, err)
		if objs.profiles()[profile] {
			out = append(out, fmt.Sprintf("nftables objects: chains %v sets %v counters %v", objs.chains[profile], objs.sets[profile], objs.counters[profile]))
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		must(w.t, err)
		for _, ch := range chains {
			rules, err := c.GetRules(ch.Table, ch)
			must(w.t, err)
			for _, r := range rules {
				if s := fmt.Sprintf("%+v", r.Exprs); strings.Contains(s, profile+":") {
					out = append(out, fmt.Sprintf("rule in %s names %s: %s", ch.Name, profile, s))
				}
			}
		}
	case BackendIPTables:
		mark := xtPrefix + xtTag(profile) + "_"
		for fam, tables := range w.xtSaveAll(w.host) {
			for tn, t := range tables {
				for _, c := range t.Chains {
					if strings.HasPrefix(c, mark) {
						out = append(out, fmt.Sprintf("%s %s: chain %s", fam, tn, c))
					}
					for _, r := range t.Rules[c] {
						if strings.Contains(r.Args, mark) {
							out = append(out, fmt.Sprintf("%s %s: rule in %s: %s", fam, tn, c, r.Args))
						}
					}
				}
			}
		}
	}
	return out
}

// leftovers lists anything of ours left in the host once no profile is.
func (w *world) leftovers() []string {
	w.t.Helper()
	var out []string
	switch w.backend {
	case BackendNFTables:
		c, err := w.mgr.hostConn()
		must(w.t, err)
		tables, err := c.ListTables()
		must(w.t, err)
		for _, tb := range tables {
			if tb.Name == tableName {
				out = append(out, "table "+tableName)
			}
		}
	case BackendIPTables:
		for fam, tables := range w.xtSaveAll(w.host) {
			for tn, t := range tables {
				for _, c := range t.Chains {
					if strings.HasPrefix(c, xtPrefix) {
						out = append(out, fmt.Sprintf("%s %s: chain %s", fam, tn, c))
					}
					for _, r := range t.Rules[c] {
						if strings.Contains(r.Args, xtPrefix) {
							out = append(out, fmt.Sprintf("%s %s: rule in %s: %s", fam, tn, c, r.Args))
						}
					}
				}
			}
		}
	}
	return out
}

// dump renders the profile's rules, host and inner, as the kernel
// reports them.
func (w *world) dump(profile string) []string {
	w.t.Helper()
	if w.backend == BackendNFTables {
		return dumpProfile(w.t, w, profile)
	}
	var out []string
	add := func(where string, tables map[string]map[string]*xtTableState, only func(string) bool) {
		for fam, ts := range tables {
			for tn, t := range ts {
				for _, c := range t.Chains {
					for _, r := range t.Rules[c] {
						if only(c) || strings.Contains(r.Args, "-j "+xtPrefix) && only(strings.TrimPrefix(r.Args, "-j ")) {
							out = append(out, fmt.Sprintf("%s %s %s %s: %s", where, fam, tn, c, r.Args))
						}
					}
				}
			}
		}
	}
	mark := xtPrefix + xtTag(profile) + "_"
	add("host", w.xtSaveAll(w.host), func(c string) bool { return strings.HasPrefix(c, mark) })
	add("inner", w.xtSaveAll(w.mgr.nsPath(profile)), func(c string) bool { return strings.HasPrefix(c, xtPrefix) })
	slices.Sort(out)
	return out
}
