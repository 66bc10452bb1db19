package netns

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	vns "github.com/vishvananda/netns"
)

// inScratchNS runs fn on a thread in a network namespace of its own, made
// for it and gone with it, so a probe leaves no trace on the host's
// network (nor takes netd's xtables lock on a phone).
func inScratchNS(fn func(ns vns.NsHandle) error) error {
	cur, err := vns.Get()
	if err != nil {
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer cur.Close()
	// inNS switches the thread back to cur whatever fn's thread is in.
	return inNS(cur, func() error {
		ns, err := vns.New() // switches the thread
		if err != nil {
			return fmt.Errorf("make a scratch network namespace: %w", err)
		}
		defer ns.Close()
		return fn(ns)
	})
}

// ProbeNFTables reports whether the kernel gives nf_tables: in a scratch
// namespace, one batch makes an inet table with a filter and a NAT base
// chain (what the rules need), then the table is listed back. GKI kernels
// fail here (no CONFIG_NF_TABLES).
func ProbeNFTables(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := inScratchNS(func(ns vns.NsHandle) error {
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			return err
		}
		// A plain request first: where nfnetlink has no nf_tables
		// subsystem (GKI) it is refused at once, while a batch is never
		// answered and would hang the daemon's start.
		if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
			return err
		}
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "probe"})
		accept := nftables.ChainPolicyAccept
		c.AddChain(&nftables.Chain{Name: "f", Table: t, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Type: nftables.ChainTypeFilter, Policy: &accept})
		c.AddChain(&nftables.Chain{Name: "n", Table: t, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Type: nftables.ChainTypeNAT, Policy: &accept})
		if err := c.Flush(); err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, tb := range tables {
			if tb.Name == "probe" {
				return nil
			}
		}
		return errors.New("a table just made is not listed")
	})
	if err != nil {
		return fmt.Errorf("nf_tables: %w", err)
	}
	return nil
}

// ProbeIPTablesLegacy reports whether rules can go through
// iptables-legacy: the programs of both families exist (PATH or
// /system/bin) and are not the nf_tables variant, and in a scratch
// namespace each lists its filter table and iptables its nat table (the
// kernel's ip_tables and ip6_tables with the tables the rules use; IPv6
// NAT is optional: without it, as on GKI kernels, profiles get no IPv6).
func ProbeIPTablesLegacy(ctx context.Context) error {
	x, err := findXtables()
	if err != nil {
		return fmt.Errorf("iptables-legacy: %w", err)
	}
	err = inScratchNS(func(ns vns.NsHandle) error {
		for _, b := range []xtBins{x.v4, x.v6} {
			tables := []string{"filter", "nat"}
			if b.Family == "IPv6" {
				tables = tables[:1]
			}
			for _, table := range tables {
				out, err := xtRun(ctx, ns, "", b.Cmd, "-w", "-t", table, "-S")
				if err != nil {
					return err
				}
				if !strings.HasPrefix(string(out), "-P ") {
					return fmt.Errorf("%s -t %s -S printed %q, not the table's chains", b.Cmd, table, firstLine(out))
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("iptables-legacy: %w", err)
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// The probes ChooseBackend runs; tests fake a kernel's answers here.
var probeNFT, probeIPT = ProbeNFTables, ProbeIPTablesLegacy

// ChooseBackend turns the daemon's firewall setting into a backend, by
// probing the kernel (never by guessing the platform), and says why:
// "auto" (or "") takes nftables when ProbeNFTables passes, else
// iptables-legacy when ProbeIPTablesLegacy passes, else fails naming both
// probes' failures; "nftables" or "iptables-legacy" takes that one and
// fails if its probe does.
func ChooseBackend(ctx context.Context, setting string) (Backend, string, error) {
	switch setting {
	case "", "auto":
		nftErr := probeNFT(ctx)
		if nftErr == nil {
			return BackendNFTables, "auto: the kernel has nf_tables", nil
		}
		iptErr := probeIPT(ctx)
		if iptErr == nil {
			return BackendIPTables, fmt.Sprintf("auto: no nftables (%v); iptables-legacy works", nftErr), nil
		}
		return "", "", fmt.Errorf("firewall \"auto\": neither backend works here: %v; %v", nftErr, iptErr)
	}
	b, err := ParseBackend(setting)
	if err != nil {
		return "", "", err
	}
	probe := probeNFT
	if b == BackendIPTables {
		probe = probeIPT
	}
	if err := probe(ctx); err != nil {
		return "", "", fmt.Errorf("firewall %q (configured): %w", setting, err)
	}
	return b, "configured", nil
}
